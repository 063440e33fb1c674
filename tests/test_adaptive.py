"""Adaptive replication (docs/design.md section 10): rounds and chunks, the precision rule, and
a real adaptive study checked against fixed studies and against its own fit rows.

The study: four cells, the `pi` model only, target bias MCSE of pi 0.01 over the starts
`fixed` and `truth`. Its EmpSE of pi is about 0.04 (n = 200) and 0.09 (n = 50), so cells stop
after different rounds, some with the target met and some at `max`. The reference for "met" is
computed here from the fit rows (sd of the usable estimates / sqrt(their number)), not from the
summary the pipeline wrote.
"""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from studyrun import ADAPTIVE, make_workdir, read_fits, snakemake

from emsim.study import snakemake_records
from emsim.study.config import load_study
from emsim.study.config_checks import ConfigError
from emsim.study.measures import coverage_z
from emsim.study.precision import (
    GO_ON,
    STOP_FIXED,
    STOP_MAX,
    STOP_MET,
    Precision,
    assess,
    decide,
    projected_replicates,
)
from emsim.study.rounds import (
    ReplicatePlan,
    final_grid_rounds,
    final_rounds,
    grid_round,
    read_gate,
    write_gate,
)
from emsim.study.summary import summarise

# A valid config of one cell: the schema's defaults fill the rest.
ONE_CELL = {"scenarios": [{"n": 100, "mu": [0, 2], "sigma": 1, "pi": 0.8}]}

# --- the plan ---------------------------------------------------------------------------------


def listed_plan(low: int, high: int, step: int, chunk: int):
    """The rounds and chunks written out one by one, the way section 10 describes them."""
    blocks = [range(0, low)]
    while blocks[-1].stop < high:
        start = blocks[-1].stop
        blocks.append(range(start, min(start + step, high)))
    chunks, first = [], []
    for block in blocks:
        first.append(len(chunks))
        chunks += [
            range(a, min(a + chunk, block.stop)) for a in range(block.start, block.stop, chunk)
        ]
    first.append(len(chunks))
    return blocks, chunks, first


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(0, 120),
    st.integers(1, 30),
    st.integers(1, 25),
)
def test_plan_matches_the_rounds_written_out(low, extra, step, chunk):
    high = low + extra
    plan = ReplicatePlan(low, high, step, chunk)
    blocks, chunks, first = listed_plan(low, high, step, chunk)
    assert plan.rounds == len(blocks)
    assert plan.adaptive == (len(blocks) > 1)
    assert plan.n_chunks == len(chunks)
    assert [plan.chunk_replicates(k) for k in range(plan.n_chunks)] == chunks
    for k, block in enumerate(blocks):
        assert plan.round_chunks(k) == range(first[k], first[k + 1])
        assert plan.chunks_through(k) == range(0, first[k + 1])
        assert plan.replicates_through(k) == block.stop
    assert plan.largest_chunk() == max(len(c) for c in chunks)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 120),
    st.integers(1, 30),
    st.integers(1, 25),
    st.data(),
)
def test_a_jump_lands_on_the_grid_and_runs_the_chunks_of_stepping(low, extra, step, chunk, data):
    """A cell at a grid point that wants `wanted` replicates runs through the first grid point
    at or above it (at least one step on, at most max); its chunks are the ones a cell stepping
    one block per round has there, holding exactly replicates 0 .. R - 1, in the same files."""
    high = low + extra
    plan = ReplicatePlan(low, high, step, chunk)
    blocks, chunks, first = listed_plan(low, high, step, chunk)
    grid = [block.stop for block in blocks]
    j = data.draw(st.integers(0, len(grid) - 2))
    wanted = data.draw(st.floats(0, 3 * high) | st.just(float("nan")))

    through = plan.next_stop(grid[j], wanted)

    above = [g for g in grid[j + 1 :] if not g < wanted] or [high]
    assert through == above[0]
    stepped = grid.index(through)
    assert plan.grid_round(through) == stepped
    assert [plan.chunk_replicates(k) for k in plan.chunks_through(stepped)] == chunks[
        : first[stepped + 1]
    ]
    assert sorted(r for k in plan.chunks_through(stepped) for r in plan.chunk_replicates(k)) == (
        list(range(through))
    )


def test_projected_replicates_is_r_times_the_squared_mcse_ratio_on_the_grid():
    plan = ReplicatePlan(100, 5000, 100, 50)
    assessment = pd.DataFrame(
        {"met": [False, True, False], "reached": [0.013, 0.004, 0.009], "target": [0.01] * 3}
    )
    # 100 x (0.013 / 0.01)^2 = 169 -> 200; the met target does not count.
    assert projected_replicates(assessment, 100, plan) == 200
    assessment.loc[0, "reached"] = 0.05  # 100 x 25 = 2500, a grid point itself
    assert projected_replicates(assessment, 100, plan) == 2500
    assessment.loc[0, "reached"] = 0.0101  # 102.01 replicates: still one step
    assert projected_replicates(assessment, 100, plan) == 200
    assessment.loc[0, "reached"] = 1.0  # capped at max
    assert projected_replicates(assessment, 300, plan) == 5000
    assessment.loc[2, "reached"] = np.nan  # a row without an MCSE projects nothing: one step
    assert projected_replicates(assessment, 300, plan) == 400


def test_chunk_of_a_replicate_does_not_depend_on_max():
    """Replicate r sits in the same chunk, with the same neighbours, whatever `max` is: the
    files of a cell that stopped early are those of one that went on."""
    short, long = ReplicatePlan(30, 90, 20, 15), ReplicatePlan(30, 500, 20, 15)
    assert [short.chunk_replicates(k) for k in range(short.n_chunks)] == [
        long.chunk_replicates(k) for k in range(short.n_chunks)
    ]


def test_fixed_plan_is_one_round_of_the_old_chunks():
    plan = load_study({**ONE_CELL, "replicates": 10, "chunk_size": 4}).plan
    assert plan == ReplicatePlan(10, 10, 10, 4)
    assert plan.rounds == 1 and not plan.adaptive
    assert [plan.chunk_replicates(k) for k in range(plan.n_chunks)] == [
        range(0, 4),
        range(4, 8),
        range(8, 10),
    ]


def test_a_cell_s_rounds_read_its_own_gates_only(tmp_path):
    """Each cell's last round and blocks come from its own gates: a lookup of another cell's
    gate (in the workflow, a wait for it) is never made, and a missing gate of the cell is."""
    plan = ReplicatePlan(20, 100, 20, 10)
    # "cheap" stops after round 0; "jumper" goes to 60, then to max (100), where its gate stops
    # it; "stepper" steps to 40 and stops there; "late" has no gate yet, "maxed" no gate after
    # its round at max yet, "unstopped" gates that never stop it (none such is ever written).
    written = {
        "cheap": [None],
        "jumper": [60, 100, None],
        "stepper": [40, None],
        "maxed": [60, 100],
        "unstopped": [60, 80, 100, 100, 100],
    }
    for cell, throughs in written.items():
        for k, through in enumerate(throughs):
            write_gate(tmp_path / f"{cell}-{k}.json", cell, k, through)

    def own_gates_of(cell):
        def lookup(asked, k):
            assert asked == cell, f"{cell} asked for {asked}'s gate"
            path = tmp_path / f"{asked}-{k}.json"
            if not path.exists():
                raise LookupError(f"{asked} round {k}")  # the checkpoint's wait
            return path

        return lookup

    for cell, (last, block) in {"cheap": (0, 0), "jumper": (2, 4), "stepper": (1, 1)}.items():
        assert final_rounds([cell], plan, own_gates_of(cell)) == {cell: last}
        assert final_grid_rounds([cell], plan, own_gates_of(cell)) == {cell: block}
    assert read_gate(tmp_path / "jumper-0.json") == 60
    assert grid_round("jumper", 1, plan, own_gates_of("jumper")) == plan.grid_round(60)
    with pytest.raises(LookupError, match="late round 0"):
        final_rounds(["late"], plan, own_gates_of("late"))
    # Reaching max does not end the walk, the gate after that round does: "maxed" has run its
    # round through max, whose gate is not written yet.
    with pytest.raises(LookupError, match="maxed round 2"):
        final_rounds(["maxed"], plan, own_gates_of("maxed"))
    with pytest.raises(ValueError, match="does not stop it"):
        final_rounds(["unstopped"], plan, own_gates_of("unstopped"))
    with pytest.raises(ValueError, match="cheap stopped after round 0"):
        grid_round("cheap", 1, plan, own_gates_of("cheap"))
    fixed = ReplicatePlan(20, 20, 20, 10)
    assert final_rounds(["late"], fixed, own_gates_of("nobody")) == {"late": 0}


# --- the precision rule -----------------------------------------------------------------------


def perf_rows(**mcse_by_group) -> pd.DataFrame:
    """Performance rows of one cell: group name 'model/start/parameter' -> bias MCSE."""
    rows = []
    for group, value in mcse_by_group.items():
        model, start, parameter = group.split("__")
        for set_ in ("own", "common"):
            rows.append(
                {
                    "cell_id": "c",
                    "n": 50,
                    "mu1": 0.0,
                    "mu2": 2.0,
                    "sigma1": 1.0,
                    "sigma2": 1.0,
                    "pi": 0.5,
                    "family": "normal",
                    "model": model,
                    "method": "em",
                    "stopping": "abs",
                    "start": start,
                    "parameter": parameter,
                    "set": set_,
                    # The common set is never what a target reads: make it fail loudly.
                    "true_value": 0.5,
                    "bias_mcse": value if set_ == "own" else 99.0,
                    "coverage_mcse": 0.001,
                }
            )
    return pd.DataFrame(rows)


def precision_of(block: dict, models=("pi", "full")) -> Precision:
    config = {
        **ONE_CELL,
        "models": list(models),
        "starts": [
            {"name": "fixed", "strategy": "fixed", "values": {"pi": 0.5}},
            {"name": "truth", "strategy": "truth"},
        ],
        "precision": block,
    }
    return load_study(config).precision


def test_target_is_met_only_when_every_row_in_scope_meets_it():
    perf = perf_rows(pi__fixed__pi=0.004, full__fixed__pi=0.006, full__truth__pi=0.012)
    out = assess(perf, precision_of({"bias_mcse": {"pi": 0.01}}), replicates=100)
    row = out.iloc[0]
    assert (row.reached, bool(row.met), row.rows) == (0.012, False, 3)
    assert (row.worst_model, row.worst_start) == ("full", "truth")
    # Scoped to the start `fixed`, the truth start's row no longer counts.
    scoped = precision_of({"bias_mcse": {"pi": 0.01}, "starts": ["fixed"]})
    row = assess(perf, scoped, replicates=100).iloc[0]
    assert (row.reached, bool(row.met), row.rows) == (0.006, True, 2)


def test_a_row_without_mcse_misses_and_no_row_is_met():
    perf = perf_rows(pi__fixed__pi=0.001, full__fixed__pi=np.nan)
    out = assess(perf, precision_of({"bias_mcse": {"pi": 0.01, "mu1": 0.01}}), replicates=40)
    by_parameter = out.set_index("parameter")
    assert np.isnan(by_parameter.loc["pi", "reached"]) and not by_parameter.loc["pi", "met"]
    assert by_parameter.loc["pi", "worst_model"] == "full"
    # No mu1 row in this cell: nothing to measure, so the target does not hold the cell back.
    assert by_parameter.loc["mu1", "met"] and by_parameter.loc["mu1", "rows"] == 0


def test_rows_without_a_true_value_are_not_measured():
    perf = perf_rows(pi__fixed__pi=0.001, full__fixed__pi=0.5)
    perf.loc[perf["model"] == "full", "true_value"] = np.nan
    row = assess(perf, precision_of({"bias_mcse": 0.01}), replicates=40).iloc[0]
    assert bool(row.met) and row.rows == 1


def test_one_number_applies_to_every_parameter_the_models_estimate():
    targets = precision_of({"bias_mcse": 0.01}, models=("pi", "equal_var")).targets
    assert [t.parameter for t in targets] == ["pi", "mu1", "mu2", "sigma"]


def test_a_first_round_covering_every_interval_does_not_meet_a_coverage_target():
    """Coverage 1 in 100 fits: the performance table's MCSE is sqrt(1 * 0 / 100) = 0, the
    decision's is Wilson's z / (2 (100 + z^2)) (docs/design.md section 10), above 0.005."""
    perf = perf_rows(pi__fixed__pi=0.001).assign(coverage=1.0, n_se=100, coverage_mcse=0.0)
    z = coverage_z(0.95)
    wilson = z / (2.0 * (100 + z * z))
    assert 0.005 < wilson < 0.01

    for target, stop in ((0.005, GO_ON), (0.01, STOP_MET)):
        out = assess(perf, precision_of({"coverage_mcse": {"pi": target}}), replicates=100)
        assert out["reached"].tolist() == pytest.approx([wilson], rel=1e-15)
        assert decide(out, 100, 500, adaptive=True) == stop


def test_decide():
    met = pd.DataFrame({"met": [True, True]})
    missed = pd.DataFrame({"met": [True, False]})
    assert decide(met, 100, 500, adaptive=True) == STOP_MET
    assert decide(missed, 100, 500, adaptive=True) == GO_ON
    assert decide(missed, 500, 500, adaptive=True) == STOP_MAX
    assert decide(missed, 500, 500, adaptive=False) == STOP_FIXED


# The shared adaptive study, its targets read over the fitted starts only, so that the test can
# recompute them from the fit rows without deriving `best`.
BASE = {**ADAPTIVE, "precision": {"bias_mcse": {"pi": 0.01}, "starts": ["fixed", "truth"]}}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"precision": {"bias_mcse": {"mu1": 0.01}}}, "precision.bias_mcse.mu1"),
        ({"precision": {"bias_mcse": {"pi": 0}}}, "precision.bias_mcse.pi"),
        ({"precision": {"bias_mcse": {"pi": "1e-3"}}}, "precision.bias_mcse.pi"),
        ({"precision": {"bias_mcse": 0.1, "models": ["full"]}}, "precision.models[0]"),
        ({"precision": {"bias_mcse": 0.1, "starts": ["random"]}}, "precision.starts[0]"),
        ({"precision": {"bias_mcse": 0.1, "stopping": ["aitken"]}}, "precision.stopping[0]"),
        ({"precision": {"coverage": 0.1}}, "precision.coverage"),
        ({"precision": {"models": ["pi"]}}, "precision"),
        ({"replicates": {"min": 50, "max": 20}}, "replicates.min"),
        ({"replicates": {"min": 20, "max": 50, "step": 0}}, "replicates.step"),
        ({"replicates": {"min": 20}}, "replicates.max"),
        ({"replicates": {"min": 20, "max": 50}, "precision": None}, "replicates"),
    ],
)
def test_bad_precision_or_replicates_is_refused_naming_the_key(change, key):
    cfg = {**BASE, **change}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        load_study(cfg)
    message = str(info.value)
    assert message.startswith(f"config error: {key}: ") and "\n" not in message, message


def test_bad_precision_stops_snakemake_before_any_job(study_src, tmp_path):
    cfg = {**BASE, "precision": {"bias_mcse": {"sigma1": 0.01}}}
    workdir = make_workdir(tmp_path / "w", cfg, src=study_src)
    code, out = snakemake(workdir, check=False)
    assert code != 0
    assert "config error: precision.bias_mcse.sigma1: " in out
    assert not (workdir / "results").exists()


# --- a real adaptive study ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def adaptive_study(study_src, tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("adaptive") / "w", BASE, src=study_src)
    snakemake(workdir, "summary", "manifest")
    return workdir


def replicates_table(workdir) -> pd.DataFrame:
    return pd.read_parquet(workdir / "results" / "summary" / "replicates.parquet")


def bias_mcse_from_fits(fits: pd.DataFrame) -> float:
    """The largest bias MCSE of pi over the (start) groups, from the fit rows themselves."""
    worst = 0.0
    for _, group in fits.groupby("start"):
        usable = group.loc[
            (group["status"] == "converged") & np.isfinite(group["est_pi"]), "est_pi"
        ]
        if len(usable) < 2:
            return np.inf
        worst = max(worst, float(usable.std(ddof=1) / np.sqrt(len(usable))))
    return worst


def test_every_cell_meets_its_target_or_reaches_max_and_not_a_round_later(adaptive_study):
    reps = replicates_table(adaptive_study).set_index("cell_id")
    fits = read_fits(adaptive_study)
    assert set(reps["stop"]) <= {STOP_MET, STOP_MAX}
    assert reps["rounds"].nunique() > 1, "the test study should stop cells after different rounds"
    grid = [20, 40, 60, 80]
    jumps = []
    for cell, row in reps.iterrows():
        cell_fits = fits[fits["cell_id"] == cell]
        # Exactly the replicates of its rounds, no more: nothing was fitted past its stop.
        assert sorted(cell_fits["replicate"].unique()) == list(range(row["replicates"]))
        stops = round_stops(adaptive_study, cell, row["rounds"])
        assert stops[-1] == row["replicates"]
        reached = bias_mcse_from_fits(cell_fits)
        if row["stop"] == STOP_MET:
            assert reached <= 0.01
        else:
            assert row["replicates"] == 80 and reached > 0.01
        # Each earlier round missed the target and jumped to the first grid point at or above
        # R (MCSE / 0.01)^2, one step at least.
        for before, after in itertools.pairwise(stops):
            mcse = bias_mcse_from_fits(cell_fits[cell_fits["replicate"] < before])
            assert mcse > 0.01
            wanted = before * (mcse / 0.01) ** 2
            assert after == min([g for g in grid if g > before and g >= wanted] or [80])
            jumps.append(after - before)
    assert max(jumps) > 20, "the test study should have a cell jump over a step"


def round_stops(workdir, cell: str, rounds: int) -> list[int]:
    """The replicates `cell` ran through after each of its rounds: 20, then what each gate
    recorded for it."""
    stops = [20]
    for k in range(rounds - 1):
        gate = workdir / "results" / "rounds" / f"cell={cell}" / f"round={k}.json"
        stops.append(json.loads(gate.read_text())["through"])
    return stops


def test_a_cell_s_last_summary_is_made_before_its_hashes(adaptive_study):
    """The gate after a cell's last round (one at max too) is what the cell's own target, its
    `cell_hashes` job, walks to: so that round's summary is made as soon as the cell's fits
    exist. Without that gate a cell at max was summarised only when the summary job asked,
    after the last fit of the study."""
    records = snakemake_records.records(adaptive_study)
    reps = replicates_table(adaptive_study).set_index("cell_id")
    assert (reps["stop"] == STOP_MAX).any(), "the test study should have a cell at max"
    for cell, row in reps.iterrows():
        last = f"results/cells/cell={cell}/round={row['rounds'] - 1}/performance.parquet"
        hashes = records[f"results/hashes/cell={cell}.json"]
        assert float(records[last]["endtime"]) <= float(hashes["starttime"]), cell


def test_precision_table_reports_what_decided(adaptive_study):
    results = adaptive_study / "results"
    precision = pd.read_parquet(results / "summary" / "precision.parquet").set_index("cell_id")
    reps = replicates_table(adaptive_study).set_index("cell_id")
    fits = read_fits(adaptive_study)
    for cell, row in precision.iterrows():
        assert row["measure"] == "bias_mcse" and row["parameter"] == "pi"
        assert row["reached"] == pytest.approx(bias_mcse_from_fits(fits[fits["cell_id"] == cell]))
        assert bool(row["met"]) == (reps.loc[cell, "stop"] == STOP_MET)
    # Each cell's gates: after each of its rounds but the last, how far it goes on; after the
    # last, that it stops, max (80) reached or not.
    for cell, row in reps.iterrows():
        gates = sorted((results / "rounds" / f"cell={cell}").glob("round=*.json"))
        throughs = [json.loads(g.read_text())["through"] for g in gates]
        assert len(gates) == row["rounds"] and throughs[-1] is None
        assert None not in throughs[:-1]


def test_gathered_tables_equal_one_summary_of_all_fits(adaptive_study, tmp_path):
    """Per-cell summaries gathered = the whole dataset summarised at once (`summarise`)."""
    results = adaptive_study / "results"
    summarise(results / "fits", tmp_path, oracle_starts=("truth",))
    for table in ("performance", "convergence", "stopping_distance", "zip_pi", "stopping_rules"):
        gathered = pq.read_table(results / "summary" / f"{table}.parquet")
        at_once = pq.read_table(tmp_path / f"{table}.parquet")
        assert gathered.equals(at_once), table


def test_adaptive_study_equals_fixed_studies_of_its_final_sizes(
    adaptive_study, study_src, tmp_path
):
    """Cell by cell, the adaptive study is the fixed study with that cell's final replicates:
    the same content hashes in the manifest and the same performance rows."""
    manifest = json.loads((adaptive_study / "results" / "manifest.json").read_text())
    reps = replicates_table(adaptive_study)
    perf = pd.read_parquet(adaptive_study / "results" / "summary" / "performance.parquet")
    for size, cells in reps.groupby("replicates"):
        scenarios = [
            {"n": int(c.n), "mu": [c.mu1, c.mu2], "sigma": [c.sigma1, c.sigma2], "pi": c.pi}
            for c in cells.itertuples()
        ]
        fixed = {**BASE, "replicates": int(size), "grid": None, "scenarios": scenarios}
        fixed = {k: v for k, v in fixed.items() if k not in ("grid", "precision")}
        workdir = make_workdir(tmp_path / f"fixed{size}", fixed, src=study_src)
        snakemake(workdir, "summary", "manifest")
        fixed_manifest = json.loads((workdir / "results" / "manifest.json").read_text())
        fixed_perf = pd.read_parquet(workdir / "results" / "summary" / "performance.parquet")
        for cell in cells["cell_id"]:
            assert fixed_manifest["cells"][cell] == manifest["cells"][cell], cell
            pd.testing.assert_frame_equal(
                perf[perf["cell_id"] == cell].reset_index(drop=True),
                fixed_perf[fixed_perf["cell_id"] == cell].reset_index(drop=True),
            )


def test_new_targets_resummarise_without_refitting(adaptive_study, tmp_path):
    """A looser target: every cell stops after round 0, from the fits already there."""
    workdir = tmp_path / "w"
    shutil.copytree(adaptive_study, workdir, symlinks=True)
    cfg = {**BASE, "precision": {"bias_mcse": {"pi": 1.0}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    _, out = snakemake(workdir, "summary")
    assert "rule fit:" not in out and "localrule fit:" not in out
    reps = replicates_table(workdir)
    assert (reps["rounds"] == 1).all() and (reps["stop"] == STOP_MET).all()
