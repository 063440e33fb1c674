from emsim.study.code_inputs import report_code


# The self-contained HTML report (ADEMP, tables, figures, provenance), in two jobs: its body,
# every section but the figures, written while the figures are drawn (it reads none of them),
# then the page with the figures put in. The fit files are inputs of the body only for
# provenance (total fits, wall time from their metadata) and its drill-down; the config hash is
# a param because the report describes the whole config, so any change of it rewrites the
# report. Its code is every report module and template: editing a section's template reruns
# the report. The body is kept (results/report/body.html), so that redrawing the figures
# (`make figures`) rewrites only the page.
rule report_body:
    input:
        performance=rules.summary.output.performance,
        convergence=rules.summary.output.convergence,
        replicates=rules.summary.output.replicates,
        precision=rules.summary.output.precision,
        stopping_rules=rules.summary.output.stopping_rules,
        stopping_distance=rules.summary.output.stopping_distance,
        estimands=rules.summary.output.estimands,
        fits=final_outputs("fits"),
        code=report_code(),
    output:
        body="results/report/body.html",
    log:
        "results/logs/report_body.log",
    # Before summary_csv, which is ready at the same time and waits for a free core.
    priority: 1
    localrule: True
    params:
        config_hash=STUDY.config_hash,
    run:
        jobs.run_report_body(STUDY, input, output, log)


# The stopping rules' table gives the stopping figure's list of rows, under it in the page.
rule report:
    input:
        body=rules.report_body.output.body,
        stopping_rules=rules.summary.output.stopping_rules,
        figures=[*rules.figures.output, *rules.traces_figure.output],
        code=report_code(),
    output:
        html=report("results/report/index.html", category="Report"),
    log:
        "results/logs/report.log",
    localrule: True
    run:
        jobs.run_report(STUDY, input, output, log)
