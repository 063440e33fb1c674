# Summaries per cell, then gathered (docs/design.md sections 6 and 10): a study of thousands of
# cells never summarises everything in one step. After each round a cell's measures, precision
# targets and next step are written by `cell_summary`; in an adaptive study the cell's
# `cell_gate` checkpoint says whether it runs another round and how far, and the DAG grows by
# that cell's next chunks. A fixed study has one round and no gates: its whole DAG is known
# before it starts.
# Params are there for Snakemake's params rerun trigger: changing the coverage level or the
# precision targets re-summarises without refitting.
rule cell_summary:
    input:
        fits=lambda wildcards: STUDY.cell_round_inputs(
            "fits", wildcards.cell, grid_round(wildcards.cell, wildcards.round)
        ),
        code=[
            jobs.module_path(name)
            for name in (
                "summary",
                "measures",
                "stopping",
                "precision",
                "emsim.pseudo_true",
            )
        ],
    output:
        **{table: STUDY.cell_summary_pattern(table) for table in jobs.SUMMARY_TABLES},
    log:
        "results/logs/cells/cell={cell}/round={round}.log",
    # Before any fit job (whose priorities are at most n x chunk_size): a cell is summarised
    # as soon as its fits exist, while other cells fit, not all at once after the last fit
    # (issue 22: the tail), and an adaptive cell's next round is decided without delay.
    priority: 2**50
    localrule: True
    params:
        coverage_level=STUDY.config["coverage"]["level"],
        precision=STUDY.precision_key,
    run:
        jobs.run_cell_summary(STUDY, wildcards, input, output, params, log)


# A cell's gate after its round: its own checkpoint, so that its next round (or its hashes, when
# it stops) waits for this cell's summary alone, not for the slowest cell of the study.
checkpoint cell_gate:
    input:
        replicates=STUDY.cell_summary_pattern("replicates"),
        precision=STUDY.cell_summary_pattern("precision"),
    output:
        gate=STUDY.gate_pattern(),
    log:
        "results/logs/rounds/cell={cell}/round={round}.log",
    priority: 2**50
    localrule: True
    run:
        jobs.run_cell_gate(STUDY, wildcards, input, output, log)


rule summary:
    input:
        **{table: last_cell_summaries(table) for table in jobs.SUMMARY_TABLES},
        code=jobs.module_path("summary"),
    # Every table of schema.SUMMARY_TABLE_SPECS (Parquet; the CSV copies are summary_csv's).
    output:
        **jobs.summary_outputs(),
    log:
        "results/logs/summary.log",
    localrule: True
    params:
        coverage_level=STUDY.config["coverage"]["level"],
    run:
        jobs.run_summary(STUDY, input, output, params, log)


# The CSV copies (listed in Snakemake's report), from the Parquet tables: the figures and the
# report's body, which read only the Parquet files, start without waiting for them, and they
# take the core the drawing leaves (issue 22: the tail). Below those two in priority.
rule summary_csv:
    input:
        **{table: getattr(rules.summary.output, table) for table in jobs.CSV_TABLES},
        code=jobs.module_path("summary"),
    output:
        **jobs.summary_csv_outputs(lambda csv: report(csv, category="Tables")),
    log:
        "results/logs/summary_csv.log",
    localrule: True
    run:
        jobs.run_summary_csv(input, output, log)
