# Figures from the summary tables and the kept traces only: `snakemake figures` on a finished
# study refits nothing, and the plotting code is an input, so editing it reruns only this rule
# and the report.
rule figures:
    input:
        # The summary tables some figure reads (captions.FIGURES), under their names.
        **{table: getattr(rules.summary.output, table) for table in jobs.FIGURE_TABLES},
        traces=final_outputs("traces"),
        code=[jobs.module_path(name) for name in jobs.FIGURE_MODULES],
    output:
        **{
            name: report(
                f"results/figures/{name}.png",
                caption=jobs.caption_path(name),
                category="Figures",
            )
            for name in jobs.FIGURE_NAMES
        },
    log:
        "results/logs/figures.log",
    localrule: True
    # Drawn in as many processes as the run has cores (at most 4), one core claimed less, so
    # that Snakemake writes the report's body (rule report_body) beside them (figure_cores).
    # The processes are not a param: a run on other cores redraws nothing.
    threads: jobs.figure_cores(workflow.resource_settings.cores)[1]
    params:
        dpi=STUDY.config["figures"]["dpi"],
    run:
        workers = jobs.figure_cores(workflow.resource_settings.cores)[0]
        jobs.run_figures(STUDY, input, output, params, log, workers)
