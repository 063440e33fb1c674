"""A corpus of invalid study configs: each is rejected before any job runs, in one line naming
the key, by `load_study` on the config as Snakemake reads it, and for a handful of cases by a
real Snakemake run in a temporary copy of the workflow (which writes nothing under results/).

Every case is a small valid study (`BASE`) with one thing broken. In-process, each case goes
through Snakemake's own readers (its YAML config-file loader, its `--config` parser and its
merge of the two) and then `load_study`, which is what the Snakefile calls: the whole corpus in
a second. The Snakemake runs (`THROUGH_SNAKEMAKE`, one of each way a config reaches the
Snakefile and of each kind of check) go through `snakemake --cores 1` (not `-n`), so a config
that slipped through validation would run a job and write results; each costs a Snakemake start
(3 to 5 s on two cores), so the whole corpus goes through Snakemake only with EMSIM_CORPUS_ALL=1.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from studyrun import make_workdir

from emsim.study.config import load_study
from emsim.study.config_checks import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

BASE: dict[str, Any] = {
    "study": "corpus",
    "seed": 3,
    "replicates": 2,
    "chunk_size": 2,
    "traces": 0,
    "grid": {"n": [20], "mu": [[0, 3]], "sigma": [1], "pi": [0.7]},
    "scenarios": [{"n": 30, "mu": [0, 2], "sigma": [1, 2], "pi": 0.6}],
    "models": ["pi", "full"],
    "methods": ["em"],
    "starts": [
        {"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}},
        {"name": "quantile", "strategy": "quantile", "pi0": 0.5},
        {"name": "random", "strategy": "random", "k": 2},
        {"name": "truth", "strategy": "truth"},
    ],
    "em": {"tolerance": 1.0e-5, "max_iterations": 50},
    "coverage": {"level": 0.95},
    "figures": {"dpi": 60},
}

_DELETE = object()


def broken(*changes: tuple[tuple[str | int, ...], Any]) -> dict[str, Any]:
    """BASE with each (key path, value) set; the value _DELETE removes the key."""
    cfg = copy.deepcopy(BASE)
    for path, value in changes:
        node = cfg
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return cfg


def _start(**start: Any) -> list[dict[str, Any]]:
    return [start]


NAN, INF = float("nan"), float("inf")

# (id, config, key path the message names, a fragment of the problem)
CORPUS: list[tuple[str, dict[str, Any], str, str]] = [
    # -- wrong types
    ("replicates-text", broken((("replicates",), "ten")), "replicates", "not of type 'integer'"),
    ("replicates-float", broken((("replicates",), 2.5)), "replicates", "not of type 'integer'"),
    ("replicates-bool", broken((("replicates",), True)), "replicates", "not of type 'integer'"),
    ("seed-text", broken((("seed",), "abc")), "seed", "not of type 'integer'"),
    ("traces-float", broken((("traces",), 1.5)), "traces", "not of type 'integer'"),
    ("n-float", broken((("grid", "n"), [20.5])), "grid.n[0]", "not of type 'integer'"),
    ("pi-text", broken((("grid", "pi"), ["0.5"])), "grid.pi[0]", "not of type 'number'"),
    ("sigma-text", broken((("grid", "sigma"), ["x"])), "grid.sigma[0]", "not a number or a pair"),
    ("grid-list", broken((("grid",), [20, 30])), "grid", "not of type 'object'"),
    ("grid-null", broken((("grid",), None)), "grid", "not of type 'object'"),
    ("scenarios-dict", broken((("scenarios",), {"n": 30})), "scenarios", "not of type 'array'"),
    ("em-scalar", broken((("em",), 1e-5)), "em", "not of type 'object'"),
    (
        "max-iterations-text",
        broken((("em", "max_iterations"), "many")),
        "em.max_iterations",
        "type",
    ),
    ("study-empty", broken((("study",), "")), "study", "non-empty"),
    # -- out of range
    ("replicates-0", broken((("replicates",), 0)), "replicates", "minimum"),
    ("chunk-size-0", broken((("chunk_size",), 0)), "chunk_size", "minimum"),
    ("chunk-size-negative", broken((("chunk_size",), -5)), "chunk_size", "minimum"),
    ("seed-negative", broken((("seed",), -1)), "seed", "minimum"),
    ("traces-negative", broken((("traces",), -1)), "traces", "minimum"),
    ("max-iterations-0", broken((("em", "max_iterations"), 0)), "em.max_iterations", "minimum"),
    ("dpi-low", broken((("figures", "dpi"), 10)), "figures.dpi", "minimum"),
    ("sigma-negative", broken((("grid", "sigma"), [1, -1])), "grid.sigma[1]", "-1 is not > 0"),
    ("sigma-zero", broken((("grid", "sigma"), [0])), "grid.sigma[0]", "0 is not > 0"),
    (
        "sigma-pair-negative",
        broken((("scenarios", 0, "sigma"), [1, -2])),
        "scenarios[0].sigma[1]",
        "-2 is not > 0",
    ),
    ("sigma-nan", broken((("grid", "sigma"), [NAN])), "grid.sigma[0]", "not finite"),
    ("pi-zero", broken((("grid", "pi"), [0])), "grid.pi[0]", "not in (0, 1)"),
    ("pi-one", broken((("grid", "pi"), [0.5, 1.0])), "grid.pi[1]", "not in (0, 1)"),
    ("pi-above-one", broken((("scenarios", 0, "pi"), 1.5)), "scenarios[0].pi", "not in (0, 1)"),
    ("pi-negative", broken((("scenarios", 0, "pi"), -0.1)), "scenarios[0].pi", "not in (0, 1)"),
    ("pi-nan", broken((("grid", "pi"), [NAN])), "grid.pi[0]", "not finite"),
    ("n-1", broken((("grid", "n"), [1])), "grid.n[0]", "not >= 2"),
    ("n-0-scenario", broken((("scenarios", 0, "n"), 0)), "scenarios[0].n", "not >= 2"),
    ("n-negative", broken((("grid", "n"), [20, -5])), "grid.n[1]", "not >= 2"),
    ("mu-inf", broken((("grid", "mu"), [[0, INF]])), "grid.mu[0][1]", "not finite"),
    ("tolerance-0", broken((("em", "tolerance"), 0)), "em.tolerance", "not > 0"),
    ("tolerance-negative", broken((("em", "tolerance"), -1e-5)), "em.tolerance", "not > 0"),
    ("tolerance-nan", broken((("em", "tolerance"), NAN)), "em.tolerance", "not finite"),
    ("coverage-95", broken((("coverage", "level"), 95)), "coverage.level", "not in (0, 1)"),
    ("coverage-0", broken((("coverage", "level"), 0)), "coverage.level", "not in (0, 1)"),
    ("coverage-1", broken((("coverage", "level"), 1.0)), "coverage.level", "not in (0, 1)"),
    # -- empty grid, lists and missing keys
    ("grid-n-empty", broken((("grid", "n"), [])), "grid.n", "should be non-empty"),
    ("grid-pi-empty", broken((("grid", "pi"), [])), "grid.pi", "should be non-empty"),
    ("grid-missing-sigma", broken((("grid", "sigma"), _DELETE)), "grid.sigma", "missing"),
    (
        "no-cells",
        broken((("grid",), _DELETE), (("scenarios",), [])),
        "grid",
        "no cells",
    ),
    (
        "scenario-missing-mu",
        broken((("scenarios", 0, "mu"), _DELETE)),
        "scenarios[0].mu",
        "missing",
    ),
    ("models-empty", broken((("models",), [])), "models", "should be non-empty"),
    ("methods-empty", broken((("methods",), [])), "methods", "should be non-empty"),
    ("starts-empty", broken((("starts",), [])), "starts", "should be non-empty"),
    ("models-duplicate", broken((("models",), ["pi", "pi"])), "models", "non-unique"),
    # -- misspelt keys
    ("misspelt-top", broken((("replicats",), 10)), "replicats", "unknown key"),
    ("misspelt-em", broken((("em", "max_iteration"), 10)), "em.max_iteration", "unknown key"),
    ("misspelt-grid", broken((("grid", "sigmas"), [1])), "grid.sigmas", "unknown key"),
    ("misspelt-scenario", broken((("scenarios", 0, "p"), 0.5)), "scenarios[0].p", "unknown key"),
    (
        "misspelt-start-key",
        broken((("starts", 2, "K"), 2)),
        "starts[2].K",
        "unknown key",
    ),
    # -- mu not a pair
    ("mu-scalar", broken((("grid", "mu"), [0, 2])), "grid.mu[1]", "not of type 'array'"),
    ("mu-single", broken((("grid", "mu"), [[0]])), "grid.mu[0]", "too short"),
    ("mu-triple", broken((("scenarios", 0, "mu"), [0, 1, 2])), "scenarios[0].mu", "too long"),
    ("mu-text", broken((("scenarios", 0, "mu"), [0, "b"])), "scenarios[0].mu[1]", "type"),
    ("sigma-triple", broken((("grid", "sigma"), [[1, 2, 3]])), "grid.sigma[0]", "too long"),
    # -- unknown model, method or strategy
    ("model-unknown", broken((("models",), ["full", "fulll"])), "models[1]", "not one of"),
    ("method-unknown", broken((("methods",), ["newton"])), "methods[0]", "not one of"),
    (
        "strategy-unknown",
        broken((("starts",), _start(name="km", strategy="kmeans"))),
        "starts[0].strategy",
        "not one of",
    ),
    # -- starts
    (
        "start-names-duplicate",
        broken((("starts", 1, "name"), "fixed")),
        "starts[1].name",
        "already used",
    ),
    (
        "start-names-random-clash",
        broken((("starts", 0, "name"), "random1")),
        "starts[2].name",
        "already used",
    ),
    (
        "start-name-reserved",
        broken((("starts", 3, "name"), "best")),
        "starts[3].name",
        "reserved",
    ),
    ("start-name-pattern", broken((("starts", 0, "name"), "1st")), "starts[0].name", "match"),
    ("start-name-missing", broken((("starts", 0, "name"), _DELETE)), "starts[0].name", "missing"),
    ("random-k-0", broken((("starts", 2, "k"), 0)), "starts[2].k", "minimum"),
    ("random-k-text", broken((("starts", 2, "k"), "3")), "starts[2].k", "type"),
    (
        "fixed-pi-high",
        broken((("starts", 0, "values"), {"pi": 1.5})),
        "starts[0].values.pi",
        "outside [1e-06, 1 - 1e-06]",
    ),
    (
        "fixed-pi-zero",
        broken((("starts", 0, "values"), {"pi": 0})),
        "starts[0].values.pi",
        "outside [1e-06, 1 - 1e-06]",
    ),
    (
        "fixed-sigma-negative",
        broken((("starts", 0, "values"), {"sigma2": -1})),
        "starts[0].values.sigma2",
        "not > 0",
    ),
    (
        "fixed-mu-nan",
        broken((("starts", 0, "values"), {"mu1": NAN})),
        "starts[0].values.mu1",
        "not finite",
    ),
    ("fixed-values-empty", broken((("starts", 0, "values"), {})), "starts[0].values", "non-empty"),
    ("fixed-no-values", broken((("starts", 0, "values"), _DELETE)), "starts[0].values", "missing"),
    (
        "quantile-pi0-1",
        broken((("starts", 1, "pi0"), 1.0)),
        "starts[1].pi0",
        "outside [1e-06, 1 - 1e-06]",
    ),
    (
        "quantile-pi0-tiny",
        broken((("starts", 1, "pi0"), 1e-300)),
        "starts[1].pi0",
        "outside [1e-06, 1 - 1e-06]",
    ),
    ("k-on-quantile", broken((("starts", 1, "k"), 2)), "starts[1].k", "only for strategy random"),
    # -- beyond what doubles hold: valid-looking cells whose fit jobs would fail
    ("pi-huge-int", broken((("grid", "pi"), [10**400])), "grid.pi[0]", "floating-point range"),
    ("tolerance-huge-int", broken((("em", "tolerance"), 10**400)), "em.tolerance", "not finite"),
    ("mu-1e300", broken((("grid", "mu"), [[0, 1e300]])), "grid.mu[0][1]", "beyond +-1e+100"),
    ("sigma-1e300", broken((("grid", "sigma"), [1e300])), "grid.sigma[0]", "outside"),
    ("sigma-1e-200", broken((("scenarios", 0, "sigma"), 1e-200)), "scenarios[0].sigma", "outside"),
    (
        "sigma-below-resolution",
        broken((("scenarios", 0, "mu"), [1e15, 1e15]), (("scenarios", 0, "sigma"), 0.01)),
        "scenarios[0].sigma",
        "round to a few distinct values",
    ),
    (
        "grid-sigma-below-resolution",
        broken((("grid", "mu"), [[0, 3], [1e8, 2e8]]), (("grid", "sigma"), [1, [1, 1e-6]])),
        "grid.sigma[1]",
        "for grid.mu[1]",
    ),
    # -- integers that are not ints (JSON Schema would take 2.0 as an integer)
    ("k-float", broken((("starts", 2, "k"), 2.0)), "starts[2].k", "write 2, without a decimal"),
    ("n-float-1e12", broken((("grid", "n"), [1e12])), "grid.n[0]", "not of type 'integer'"),
    ("replicates-float-1e3", broken((("replicates",), 1e3)), "replicates", "write 1000,"),
    # -- YAML 1.1 reads 1e-6 (no decimal point) as text: the hint says how to write it
    (
        "tolerance-yaml-text",
        broken((("em", "tolerance"), "1e-6")),
        "em.tolerance",
        "(write 1.0e-6: YAML 1.1 reads 1e-6 as text)",
    ),
    (
        "replicates-yaml-text",
        broken((("replicates",), "1e3")),
        "replicates",
        "(write 1000: YAML reads 1e3 as text)",
    ),
    # -- issue 13: upper bounds, before any job (each was a crash, a hang or a recompile)
    (
        "max-iterations-2-64",
        broken((("em", "max_iterations"), 2**64)),
        "em.max_iterations",
        "greater than the maximum of 2147483647",
    ),
    (
        "max-iterations-2-63",
        broken((("em", "max_iterations"), 2**63)),
        "em.max_iterations",
        "greater than the maximum of 2147483647",
    ),
    (
        "max-iterations-2-31",
        broken((("em", "max_iterations"), 2**31)),
        "em.max_iterations",
        "greater than the maximum",
    ),
    ("n-1e12", broken((("grid", "n"), [20, 10**12])), "grid.n[1]", "raise limits.max_n"),
    (
        "replicates-1e9-chunk-1e9",
        broken((("replicates",), 10**9), (("chunk_size",), 10**9)),
        "limits.max_fits",
        "= 2e+10 fits exceeds limits.max_fits = 1e+08; raise limits.max_fits to run it",
    ),
    (
        "replicates-1e9-chunk-1",
        broken((("replicates",), 10**9), (("chunk_size",), 1)),
        "limits.max_jobs",
        "2,000,000,000 fit jobs exceeds limits.max_jobs = 20,000",
    ),
    (
        "grid-1e5-cells",
        broken(
            (("grid", "n"), list(range(20, 120))),
            (("grid", "pi"), [i / 1001 for i in range(1, 1001)]),
        ),
        "limits.max_jobs",
        "100,001 cells x 1 chunks",
    ),
    (
        "random-k-1e9",
        broken((("starts", 2, "k"), 10**9)),
        "limits.max_fits",
        "raise limits.max_fits",
    ),
    (
        "job-memory",
        broken((("grid", "n"), [500_000]), (("replicates",), 250), (("chunk_size",), 250)),
        "limits.max_job_memory_mb",
        "needs about 38,547 MB, more than limits.max_job_memory_mb = 8,000; lower chunk_size",
    ),
    ("limits-misspelt", broken((("limits",), {"max_fit": 10})), "limits.max_fit", "unknown key"),
    ("limits-text", broken((("limits",), {"max_fits": "1e9"})), "limits.max_fits", "as text"),
    # -- a cell no data can identify (issue 19 finding 7)
    (
        "one-normal-twice",
        broken((("grid", "mu"), [[0, 3], [0, 0]])),
        "grid.mu[1]",
        "one normal twice",
    ),
    (
        "one-normal-twice-scenario",
        broken((("scenarios", 0, "mu"), [2, 2]), (("scenarios", 0, "sigma"), 1)),
        "scenarios[0]",
        "no data can identify pi",
    ),
    # -- keys that are not text
    ("key-number", {**BASE, 7: 1}, "7", "unknown key"),
    ("key-newline", {**BASE, "chunk\nsize": 1}, "'chunk\\nsize'", "unknown key"),
]

IDS = [case[0] for case in CORPUS]
assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize(("cfg", "path", "fragment"), [c[1:] for c in CORPUS], ids=IDS)
def test_load_study_names_the_key_in_one_line(cfg, path, fragment):
    with pytest.raises(ConfigError) as info:
        load_study(cfg, SCHEMA)
    message = str(info.value)
    assert message.startswith(f"config error: {path}: "), message
    assert fragment in message, message
    assert "\n" not in message
    assert info.value.path == path


def test_base_config_is_valid():
    study = load_study(BASE, SCHEMA)
    assert len(study.cells) == 2
    # The design's scale limits leave every real design alone.
    hostile = broken(
        (("grid", "mu"), [[-1e8, 1e8], [0, 1e-88]]),
        (("grid", "sigma"), [[1e-4, 1e100]]),
        (
            ("scenarios",),
            [
                {"n": 2, "mu": [0, 1e-88], "sigma": 1e-100, "pi": 1e-300},
                {"n": 2, "mu": [1e100, -1e100], "sigma": [1e88, 1e100], "pi": 0.999999},
            ],
        ),
    )
    assert len(load_study(hostile, SCHEMA).cells) == 4


def test_limits_can_be_raised_deliberately_and_do_not_change_fits():
    big = broken((("grid", "n"), [500_000]), (("replicates",), 250), (("chunk_size",), 250))
    with pytest.raises(ConfigError, match=r"limits\.max_job_memory_mb"):
        load_study(big, SCHEMA)
    raised = copy.deepcopy(big)
    raised["limits"] = {"max_job_memory_mb": 40_000}
    study = load_study(raised, SCHEMA)
    assert study.config["limits"]["max_fits"] == 100_000_000  # the others keep their defaults
    assert study.fit_mem_mb(study.cells[0].cell_id) <= 40_000
    assert (
        study.fit_hash
        == load_study(big | {"limits": {"max_job_memory_mb": 50_000}}, SCHEMA).fit_hash
    )
    # chunk_size beyond replicates: a chunk holds only the replicates there are.
    small = load_study(broken((("chunk_size",), 10**9)), SCHEMA)
    assert small.fit_mem_mb(small.cells[0].cell_id) < 500


def test_a_key_given_twice_in_a_config_file_is_named(tmp_path):
    text = "seed: 3\nem:\n  tolerance: 1.0e-5\n  max_iterations: 50\n  tolerance: 1.0e-3\n"
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_study(BASE, SCHEMA, config_files=[path])
    message = str(info.value)
    assert message.startswith("config error: em.tolerance: given twice in "), message
    assert "(lines 3 and 5)" in message and "\n" not in message
    path.write_text(
        "seed: 3\nstarts:\n  - {name: a, strategy: truth}\n  - {name: b, strategy: truth}\n"
    )
    load_study(BASE, SCHEMA, config_files=[path])  # equal keys in different mappings are fine


@pytest.mark.parametrize("cfg", [[1, 2], "text", None], ids=["list", "text", "none"])
def test_a_config_that_is_not_a_mapping_is_named(cfg):
    with pytest.raises(ConfigError, match=r"^config error: the config must be a mapping"):
        load_study(cfg, SCHEMA)


# --- as Snakemake reads a config, and through Snakemake -------------------------------------------

# Cases given on the command line (`--config key=value`) rather than in config.yaml: the values
# Snakemake parses from text.
COMMAND_LINE: list[tuple[str, list[str], str, str]] = [
    ("cli-replicates-text", ["replicates=ten"], "replicates", "not of type 'integer'"),
    ("cli-chunk-size-0", ["chunk_size=0"], "chunk_size", "minimum"),
    ("cli-misspelt", ["chunksize=5"], "chunksize", "unknown key"),
    ("cli-traces-negative", ["traces=-1"], "traces", "minimum"),
    ("cli-replicates-1e9", ["replicates=1000000000", "chunk_size=1"], "limits.max_jobs", "raise"),
    ("cli-max-iterations-2-64", [f"em={{max_iterations: {2**64}}}"], "em.max_iterations", "type"),
    ("cli-key-twice", ["replicates=20", "replicates=30"], "replicates", "given twice on the"),
]

# Config files as written (what yaml.safe_dump cannot write): `config.yaml`'s text.
RAW_FILES: list[tuple[str, str, str, str]] = [
    (
        "file-key-twice",
        "replicates: 2\nchunk_size: 2\nreplicates: 4\n",
        "replicates",
        "given twice in",
    ),
    ("file-yaml-1e-6", "em:\n  tolerance: 1e-6\n", "em.tolerance", "write 1.0e-6"),
    (
        "file-yaml-1.0e12",
        "grid:\n  n: [20]\n  mu: [[0, 1.0e12]]\n  sigma: [1]\n  pi: [0.5]\n",
        "grid.mu[0][1]",
        "write 1.0e+12: YAML 1.1 reads 1.0e12 as text",
    ),
]


def as_snakemake_reads(
    folder: Path, cfg: Any, overrides: list[str] = (), extra_text: str | None = None
) -> Any:
    """`load_study` on what the Snakefile gets: `cfg` written as config.yaml and read by
    Snakemake's config-file loader, merged as Snakemake merges `--configfile config.yaml
    extra.yaml` (when `extra_text` is given) and `--config` (parsed by its own parser;
    its entries as typed are `config_args`, as the Snakefile passes them)."""
    from snakemake.cli import parse_config
    from snakemake.common.configfile import load_configfile
    from snakemake.utils import update_config

    folder.mkdir(parents=True, exist_ok=True)
    config_yaml = folder / "config.yaml"
    config_yaml.write_text(yaml.safe_dump(cfg, sort_keys=False))
    given = []  # --configfile
    if extra_text is not None:
        (folder / "extra.yaml").write_text(extra_text)
        given = [config_yaml, folder / "extra.yaml"]
    overwrite: dict[str, Any] = {}
    for path in given:
        update_config(overwrite, load_configfile(path))
    update_config(overwrite, parse_config(list(overrides)))
    config = load_configfile(config_yaml)  # the Snakefile's `configfile:`
    update_config(config, overwrite)
    return load_study(
        config, SCHEMA, config_files=[*given, config_yaml], config_args=list(overrides)
    )


# Every case: (id, config, --config entries, extra config file text, key path, fragment).
ALL_CASES = (
    [(name, cfg, [], None, path, fragment) for name, cfg, path, fragment in CORPUS]
    + [(name, BASE, over, None, path, fragment) for name, over, path, fragment in COMMAND_LINE]
    + [(name, BASE, [], text, path, fragment) for name, text, path, fragment in RAW_FILES]
)


@pytest.mark.parametrize(
    ("name", "cfg", "overrides", "extra", "path", "fragment"),
    ALL_CASES,
    ids=[case[0] for case in ALL_CASES],
)
def test_config_as_snakemake_reads_it_is_rejected_in_one_line(
    tmp_path, name, cfg, overrides, extra, path, fragment
):
    with pytest.raises(ConfigError) as info:
        as_snakemake_reads(tmp_path, cfg, overrides, extra)
    message = str(info.value)
    assert message.startswith(f"config error: {path}: "), message
    assert fragment in message, message
    assert "\n" not in message


def test_the_valid_base_config_as_snakemake_reads_it(tmp_path):
    """The control of the in-process cases: BASE itself passes, read the same way."""
    assert len(as_snakemake_reads(tmp_path, BASE).cells) == 2
    assert as_snakemake_reads(tmp_path / "more", BASE, ["replicates=4"]).replicates == 4


def _snakemake(workdir: Path, *args: str) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str((workdir / "src").resolve()), MPLBACKEND="Agg")
    proc = subprocess.run(
        [str(SNAKEMAKE), "--cores", "1", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout + proc.stderr


# One case of each way a config reaches the Snakefile (config.yaml, --config, --configfile) and
# of the main kinds of check (schema type, range, unknown key, design limits, a key given twice);
# each costs a Snakemake start (3 to 9 s on two cores). The rest of the corpus goes through the
# same readers in-process above. EMSIM_CORPUS_ALL=1 runs every case through Snakemake (about
# 3 minutes on two cores).
THROUGH_SNAKEMAKE = {
    "replicates-text",
    "sigma-negative",  # also the config test_pipeline.py once ran on its own
    "cli-misspelt",  # and its --config replicats=10
    "cli-replicates-1e9",
    "file-key-twice",
    "cli-key-twice",  # the Snakefile hands load_study Snakemake's --config entries as typed
}
assert THROUGH_SNAKEMAKE <= {case[0] for case in ALL_CASES}
if os.environ.get("EMSIM_CORPUS_ALL") == "1":
    THROUGH_SNAKEMAKE = {case[0] for case in ALL_CASES}
SNAKEMAKE_CASES = [c for c in ALL_CASES if c[0] in THROUGH_SNAKEMAKE]
# The checkout's own src/: these runs end before any job, so nothing compiles and nothing edits
# it (the shared, compiled copy of conftest.py is for runs that fit).
CODE = ROOT / "src"


@pytest.fixture(scope="module")
def snakemake_runs(tmp_path_factory) -> dict[str, tuple[Path, int, str]]:
    """Each case of SNAKEMAKE_CASES through a real `snakemake --cores 1` in its own copy of the
    workflow, two at a time; and, as "valid-base", BASE itself planned with -n."""
    root = tmp_path_factory.mktemp("corpus")
    work: list[tuple[str, Path, list[str]]] = [
        ("valid-base", make_workdir(root / "valid-base", BASE, src=CODE), ["-n"])
    ]
    for name, cfg, overrides, extra, _, _ in SNAKEMAKE_CASES:
        workdir = make_workdir(root / name, cfg, src=CODE)
        args = ["--config", *overrides] if overrides else []
        if extra is not None:
            (workdir / "extra.yaml").write_text(extra)
            args += ["--configfile", "config.yaml", "extra.yaml"]
        work.append((name, workdir, args))

    def run(item: tuple[str, Path, list[str]]) -> tuple[str, tuple[Path, int, str]]:
        name, workdir, args = item
        return name, (workdir, *_snakemake(workdir, *args))

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(pool.map(run, work))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "path", "fragment"),
    [(c[0], c[4], c[5]) for c in SNAKEMAKE_CASES],
    ids=[c[0] for c in SNAKEMAKE_CASES],
)
def test_snakemake_rejects_before_any_job(snakemake_runs, name, path, fragment):
    workdir, rc, out = snakemake_runs[name]
    assert rc != 0, out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("config error: ")]
    assert lines, out[-3000:]
    assert "Traceback" not in out and 'File "' not in out, out[-3000:]
    assert lines[0].startswith(f"config error: {path}: "), lines[0]
    assert fragment in lines[0]
    assert "rule fit:" not in out and "Select jobs to execute" not in out
    assert not (workdir / "results").exists()


@pytest.mark.slow
def test_a_valid_base_config_would_run(snakemake_runs):
    """The control: BASE itself passes Snakemake's parse and plans the study's jobs."""
    workdir, rc, out = snakemake_runs["valid-base"]
    assert rc == 0, out[-3000:]
    assert "rule fit:" in out
    assert not (workdir / "results").exists()
