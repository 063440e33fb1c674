# Figures from the summary tables and the kept traces only: `snakemake figures` on a finished
# study refits nothing, and the plotting code is an input, so editing it reruns only this rule
# and the report.
rule figures:
    input:
        performance=rules.summary.output.performance,
        convergence=rules.summary.output.convergence,
        stopping_distance=rules.summary.output.stopping_distance,
        zip_pi=rules.summary.output.zip_pi,
        replicates=rules.summary.output.replicates,
        precision=rules.summary.output.precision,
        traces=final_outputs("traces"),
        code=jobs.module_path("figures"),
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
    # Figures are drawn in parallel processes; Snakemake lowers this to the cores it has.
    threads: 4
    params:
        dpi=STUDY.config["figures"]["dpi"],
    run:
        jobs.run_figures(STUDY, input, output, params, log, threads)
