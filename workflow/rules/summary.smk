# Performance and convergence measures with Monte Carlo SEs and the stopping-rule diagnostics
# (docs/design.md section 6), streamed one cell at a time over exactly the fit files of the
# current design. Params are there for Snakemake's params rerun trigger: changing the coverage
# level re-summarises without refitting.
rule summary:
    input:
        fits=STUDY.outputs("fits"),
        code=jobs.module_path("summary"),
        measures_code=jobs.module_path("measures"),
        stopping_code=jobs.module_path("stopping"),
    output:
        performance="results/summary/performance.parquet",
        convergence="results/summary/convergence.parquet",
        stopping_distance="results/summary/stopping_distance.parquet",
        zip_pi="results/summary/zip_pi.parquet",
        performance_csv=report("results/summary/performance.csv", category="Tables"),
        convergence_csv=report("results/summary/convergence.csv", category="Tables"),
    log:
        "results/logs/summary.log",
    localrule: True
    params:
        coverage_level=STUDY.config["coverage"]["level"],
    run:
        jobs.run_summary(STUDY, input, output, params, log)
