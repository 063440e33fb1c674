# results/manifest.json: a content hash of every fits and traces file, per cell and for the whole
# study (`emsim verify` checks results against it). Its inputs are the fit outputs and its code;
# the fit config hash is a param because the manifest records it, so figure or summary options
# never make it stale.
rule manifest:
    input:
        fits=final_outputs("fits"),
        traces=final_outputs("traces"),
        code=jobs.module_path("manifest"),
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
