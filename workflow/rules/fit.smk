# One job = one cell x one chunk of replicates, every model x method x start on the same data.
# `params` carry what the outputs depend on besides the code: the hash of the fit-relevant config
# and the chunk's replicates, so that changing either reruns exactly the affected fits (Snakemake's
# params rerun trigger) while changing, e.g., figure options reruns none.
rule fit:
    output:
        fits=STUDY.output_pattern("fits"),
        traces=STUDY.output_pattern("traces"),
    log:
        "results/logs/fit/cell={cell}/chunk={chunk}.log",
    # Costlier jobs first, so that the last jobs to finish are short ones and no core idles
    # through a long tail (longest-processing-time-first scheduling).
    priority: lambda wildcards: STUDY.fit_priority(wildcards.cell, wildcards.chunk)
    resources:
        # A job killed at its memory or time limit is retried with more (`--retries`).
        mem_mb=lambda wildcards, attempt: STUDY.fit_mem_mb(wildcards.cell, attempt),
        runtime=lambda wildcards, attempt: STUDY.fit_runtime_min(
            wildcards.cell, attempt
        ),
    params:
        fit_hash=STUDY.fit_hash,
        replicates=lambda wildcards: STUDY.chunk_label(wildcards.chunk),
    run:
        jobs.run_fit(STUDY, wildcards, output, log)
