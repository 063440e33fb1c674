from emsim.study.code_inputs import report_code


# The self-contained HTML report (ADEMP, tables, figures, provenance). The fit files are inputs
# only for provenance (total fits, wall time from their metadata); the config hash is a param
# because the report describes the whole config, so any change of it rewrites the report. Its
# code is every report module and template: editing a section's template reruns the report.
rule report:
    input:
        performance=rules.summary.output.performance,
        convergence=rules.summary.output.convergence,
        replicates=rules.summary.output.replicates,
        precision=rules.summary.output.precision,
        stopping_rules=rules.summary.output.stopping_rules,
        stopping_distance=rules.summary.output.stopping_distance,
        estimands=rules.summary.output.estimands,
        figures=list(rules.figures.output),
        fits=final_outputs("fits"),
        code=report_code(),
    output:
        html=report("results/report/index.html", category="Report"),
    log:
        "results/logs/report.log",
    localrule: True
    params:
        config_hash=STUDY.config_hash,
    run:
        jobs.run_report(STUDY, input, output, log)
