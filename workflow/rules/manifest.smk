# A cell's content hashes (emsim.study.manifest_cells), as soon as its last fits exist: before
# any fit job, like the cell summaries, so that the manifest job after the last fit reads no rows.
rule cell_hashes:
    input:
        lambda wildcards: jobs.cell_final_outputs(STUDY, wildcards.cell, gate),
        code=[jobs.module_path(name) for name in ("manifest", "manifest_cells")],
    output:
        part=jobs.cell_hash_path(),
    log:
        "results/logs/hashes/cell={cell}.log",
    priority: 2**50
    localrule: True
    params:
        fit_hash=STUDY.fit_hash,
    run:
        jobs.run_cell_hashes(STUDY, wildcards, input, output, log)


# results/manifest.json: a content hash of every fits and traces file, per cell and for the whole
# study (`emsim verify` checks results against it). Its inputs are the fit outputs, the cells'
# parts (a file changed since its part was written is hashed again) and its code; the fit config
# hash is a param because the manifest records it, so figure or summary options never make it
# stale.
rule manifest:
    input:
        fits=final_outputs("fits"),
        traces=final_outputs("traces"),
        parts=jobs.cell_hash_parts(STUDY),
        code=[jobs.module_path(name) for name in ("manifest", "manifest_cells")],
    output:
        manifest="results/manifest.json",
    log:
        "results/logs/manifest.log",
    localrule: True
    params:
        fit_hash=STUDY.fit_hash,
    run:
        jobs.run_manifest(STUDY, input, output, log)


# results/config.yaml: the validated config of the study in results/, so that `make figures`
# redraws that study (`--configfile results/config.yaml`), whichever config file ran it.
rule study_config:
    output:
        config="results/config.yaml",
    log:
        "results/logs/study_config.log",
    localrule: True
    params:
        config_hash=STUDY.config_hash,
    run:
        jobs.run_study_config(STUDY, output, log)
