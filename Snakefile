# The study pipeline (issue 3): config -> one fit job per cell x chunk -> Parquet -> summary ->
# figures -> report. Rules are thin: every step is a function of emsim.study.jobs.
import sys
from pathlib import Path

from snakemake.utils import min_version

from emsim.study import jobs
from emsim.study.config import load_study
from emsim.study.config_checks import ConfigError

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# Validates the config (ConfigError names the bad key; the config files and the --config entries
# are checked for keys given twice, and for YAML aliases that expand beyond any real config) and
# fills the schema's defaults before any job is scheduled; STUDY holds the cells, chunks and
# hashes that the rules use. A bad config ends here with its one line.
try:
    STUDY = load_study(
        config,
        Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
        config_files=workflow.configfiles,
        config_args=workflow.config_settings.config_args,
    )
except ConfigError as error:
    sys.exit(str(error))
if workflow.is_main_process:
    print(STUDY.summary_line(), file=sys.stderr)
    # results/ must hold this study only (docs/design.md section 4): files of cells and chunks
    # this config does not have, and fits or traces that are damaged, foreign, edited or
    # unreadable, go to results/stale/ (one line each), so readers of results/fits see this
    # study and this run refits the rejected files (rule all asks for every one of them). One
    # pass, which reads only the files changed since the last (results/.integrity-cache.json).
    # A dry run or `snakemake --lint` (`make lint`) only says what it would move, and writes
    # nothing: `-n` is known here through the output settings (the executor, which
    # `workflow.dryrun` asks, is not set yet), and linting is the one mode whose workflow skips
    # the check of environment variables.
    dry_run = workflow.dryrun or getattr(workflow.output_settings, "dryrun", False)
    linting = not getattr(workflow, "check_envvars", True)
    jobs.sweep_results(STUDY, move=not (dry_run or linting))


# Compile (or load) the engine here, before the first job: on a cluster each job is a new
# process, and locally each fit worker, that then loads it from numba's cache instead of
# compiling it (README, "Run on a cluster"). Not run by dry runs or by the jobs' own Snakemake
# processes, and not by a run that fits nothing (`make figures`). First the fork server of the
# worker processes starts (`jobs.prepare_workers`): fit jobs on more than one local core run in
# a pool of processes forked from it, not as threads that take turns on one GIL; it imports the
# fit and plotting code while Snakemake schedules, not after the last fit (issue 22). Last,
# what this process holds lives until the run ends: the run's garbage collections need not
# traverse it (`jobs.freeze_heap`).
onstart:
    jobs.prepare_workers(workflow)
    jobs.warm_engine(workflow)
    jobs.freeze_heap()


# The run's last line says where the report is (the console is otherwise quiet: one block per
# finished job, workflow/profiles/default). Not after a run that did not write it (a target
# other than the report, or the report failed). A run ends without waiting a second for the
# timers Snakemake's scheduler left (`jobs.cancel_scheduler_timers`), nor for a last garbage
# collection over everything the run imported (`jobs.freeze_heap`).
onsuccess:
    jobs.stop_workers()
    jobs.cancel_scheduler_timers()
    report_html = Path("results/report/index.html")
    if report_html.is_file():
        print(f"Report: {report_html.resolve()}", file=sys.stderr)
    jobs.freeze_heap()


onerror:
    jobs.stop_workers()
    jobs.cancel_scheduler_timers()
    jobs.freeze_heap()


wildcard_constraints:
    cell=r"[A-Za-z0-9._-]+",
    chunk=r"[0-9]+",
    round=r"[0-9]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/summary.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/manifest.smk"


# Every file the study writes is a target, not only the report and manifest: Snakemake
# regenerates a missing intermediate file only when a target needs it, so without them a
# deleted fits file, summary table, figure or cell summary would stay missing ("Nothing to be
# done"). A rerun rebuilds what is missing and what depends on it.
rule all:
    default_target: True
    input:
        rules.report.output.html,
        rules.manifest.output.manifest,
        jobs.cell_hash_parts(STUDY),
        rules.study_config.output.config,
        list(rules.summary.output),
        list(rules.summary_csv.output),
        list(rules.figures.output),
        all_cell_summaries(),
        final_outputs("fits"),
        final_outputs("traces"),
