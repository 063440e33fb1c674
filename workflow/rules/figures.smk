# Figures from the summary tables and the kept traces only: `snakemake figures traces_figure`
# on a finished study refits nothing, and the plotting code is an input, so editing it reruns
# only these rules and the report.
rule figures:
    input:
        # The summary tables some figure reads (captions.FIGURES), under their names.
        **{table: getattr(rules.summary.output, table) for table in jobs.FIGURE_TABLES},
        code=[jobs.module_path(name) for name in jobs.FIGURE_MODULES],
    output:
        **jobs.figure_outputs(jobs.TABLE_FIGURE_NAMES, report),
    log:
        "results/logs/figures.log",
    # Before summary_csv, which is ready at the same time and waits for a free core.
    priority: 1
    localrule: True
    # Drawn in as many processes as the run has cores (at most 4), one core claimed less, so
    # that Snakemake writes the report's body (rule report_body) beside them (figure_cores).
    # The processes are not a param: a run on other cores redraws nothing.
    threads: jobs.figure_cores(workflow.resource_settings.cores)[1]
    params:
        dpi=STUDY.config["figures"]["dpi"],
    run:
        jobs.run_figures(
            STUDY, input, output, params, log, workflow.resource_settings.cores
        )


# The traces figure reads only the fit jobs that keep traces (each cell's first chunk, which
# its fit priority puts before the cell's others): it is drawn while the last fits run, not
# after them (issue 22: the tail).
rule traces_figure:
    input:
        traces=STUDY.kept_trace_outputs(),
        code=[jobs.module_path(name) for name in jobs.FIGURE_MODULES],
    output:
        **jobs.figure_outputs(jobs.TRACE_FIGURE_NAMES, report),
    log:
        "results/logs/traces_figure.log",
    priority: 2**50
    localrule: True
    params:
        dpi=STUDY.config["figures"]["dpi"],
    run:
        jobs.run_figures(
            STUDY, input, output, params, log, workflow.resource_settings.cores
        )
