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
    # Figures are drawn in as many processes as the run has cores (at most 4), but Snakemake
    # counts one core less (at least one): the report's body (rule report_body), ready at the
    # same time, is written beside them, on the core the drawing leaves idle once fewer figures
    # than processes remain. Only the report waits for this job, so nothing else is slowed.
    threads: max(1, min(4, (workflow.cores or 1) - 1))
    params:
        dpi=STUDY.config["figures"]["dpi"],
        workers=max(1, min(4, workflow.cores or 1)),
    run:
        jobs.run_figures(STUDY, input, output, params, log, params.workers)
