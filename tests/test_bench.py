"""`make bench` (benchmarks/run.py) measures issue 22's numbers by the definitions its module doc
states: the batched fits' EM iterations are each row's path (its latest-stopping rule), E over
100 points is the arithmetic of an exp pass without numpy's per-call overhead, the default study
is issue 22's design, and the end-to-end and adaptive ratios are read, not rerun."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import emsim
from emsim.study.config import load_study

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import fit_phases  # noqa: E402
import run  # noqa: E402
import study_split  # noqa: E402


def test_issue22_design_is_the_issues_378000_paths():
    config = yaml.safe_load((BENCHMARKS.parent / "config.yaml").read_text())
    before = copy.deepcopy(config)
    design = study_split.issue22_design(config)
    assert config == before
    assert design["em"]["stopping"] == ["abs", "aitken"]
    assert all("family" not in s for s in design["scenarios"])
    study = load_study(design)
    rows = len(study.cells) * design["replicates"] * study.fits_per_replicate
    assert design["replicates"] == 500
    assert rows // len(design["em"]["stopping"]) == 378_000


def test_issue22_design_with_fewer_replicates_keeps_chunks_within_them():
    config = yaml.safe_load((BENCHMARKS.parent / "config.yaml").read_text())
    design = study_split.issue22_design(config, replicates=40)
    assert design["replicates"] == 40
    assert design["chunk_size"] == 40
    full = study_split.issue22_design(config)
    assert len(load_study(design).cells) == len(load_study(full).cells)


def test_paired_ratio_is_the_median_of_each_rounds_own_ratio():
    # A round where the machine was slow for both (10 against 5) is one ratio of 2, not a
    # slow case against a fast E: the ratio of medians would be 3.
    cases, es = iter([1.0, 10.0, 3.0]), iter([1.0, 5.0, 1.0])
    ratio, case_s, e_s = run.paired_ratio(lambda: next(cases), lambda: next(es), 3)
    assert (ratio, case_s, e_s) == (2.0, 3.0, 1.0)


def test_e_around_samples_e_before_and_after_the_run():
    calls = []

    def e():
        calls.append("e")
        return float(len(calls))

    def study():
        calls.append("run")
        return "result"

    e_s, result = run.e_around(e, 2, study)
    assert calls == ["e", "e", "run", "e", "e"]
    assert (e_s, result) == (3.0, "result")  # the median of 1, 2, 4 and 5


def test_polish_share_counts_each_path_once_weighted_by_n():
    import pandas as pd

    def row(cell, n, stopping, evals, polish, start="fixed"):
        return {
            "cell_id": cell, "n": n, "replicate": 0, "model": "full", "method": "em",
            "start": start, "stopping": stopping, "loglik_evals": evals, "polish_evals": polish,
        }  # fmt: skip

    fits = pd.DataFrame(
        [
            # One path, two rules: its E-steps run to the later stop (30), one polish of 10.
            row("a", 100, "abs", 20, 10),
            row("a", 100, "aitken", 30, 10),
            # Another path in a cell of n = 1000: 40 E-steps and a polish of 60.
            row("b", 1000, "abs", 40, 60, start="quantile"),
        ]
    )
    polish, capped, evals = fit_phases.polish_share(fits)
    assert polish == 10 * 100 + 60 * 1000
    # Only the second path's polish ran into the cap of 60 E-steps.
    assert capped == 60 * 1000
    assert evals == polish + 30 * 100 + 40 * 1000


def test_fit_phase_timers_are_removed_after_the_measurement():
    before = [getattr(module, name) for module, name, _ in fit_phases.PHASES]
    spent = {label: 0.0 for _, _, label in fit_phases.PHASES}
    with fit_phases.timed(spent):
        assert all(
            getattr(module, name) is not inner
            for (module, name, _), inner in zip(fit_phases.PHASES, before, strict=True)
        )
    assert [getattr(module, name) for module, name, _ in fit_phases.PHASES] == before


def test_study_in_e_scales_to_500_replicates():
    assert run.study_in_e(200.0, 500, 0.4e-3) == pytest.approx(500_000)
    assert run.study_in_e(20.0, 50, 0.4e-3) == pytest.approx(500_000)


def test_batch_iterations_are_each_rows_path_under_the_study_rules():
    seeds = np.random.SeedSequence(7).spawn(12)
    Y = np.stack(
        [emsim.simulate(100, (0.0, 2.0), 1.0, 0.8, np.random.default_rng(s)) for s in seeds]
    )
    cost = run.batch_iteration_cost(Y, repeats=1)
    alone = [
        emsim.fit_batch(Y, "full", start=run.FULL_START, stopping=rule, tolerance=tol)
        for rule, tol in run.STUDY_TOLERANCES.items()
    ]
    assert cost["iterations"] == int(np.max([r.iterations for r in alone], axis=0).sum())
    assert cost["seconds"] > 0
    # E over 100 points without the call overhead is below one exp call over 100 points.
    assert 0 < cost["E_s"] < cost["E_one_call_s"]


def test_engine_estep_seconds_is_a_positive_marginal_cost():
    y = emsim.simulate(20_000, (0.0, 2.0), 1.0, 0.8, np.random.default_rng(3))
    # Both runs share the polish from the cap (about 60 E-steps here), so the difference is
    # the iterations alone: 295 E-steps (about 12 ms) stand well above a busy machine's noise,
    # where 20 (under a millisecond) had come out negative with a second test worker running.
    seconds = run.engine_estep_seconds(y, repeats=3, few=5, many=300)
    whole = run.engine_fit(y, 25)
    assert 0 < seconds < whole.seconds
    assert whole.path_evals[0] == 26  # the start's E-step and one per iteration


def test_recorded_ratios_are_read_with_their_targets(tmp_path, monkeypatch):
    scale = tmp_path / "scale.json"
    adaptive = tmp_path / "adaptive_cost.json"
    monkeypatch.setattr(run, "SCALE_JSON", scale)
    monkeypatch.setattr(run, "ADAPTIVE_JSON", adaptive)
    rows: list[dict] = []
    notes: list[str] = []
    run.case_recorded(rows, notes)
    assert rows == [] and len(notes) == 2

    e2e = {"fits": 4_320_000, "wall_s": 900.0, "share_of_engine": {"e2e": 0.81}}
    scale.write_text(json.dumps({"e2e": e2e}))
    adaptive.write_text(json.dumps({"em_cpu_ratio": 0.80, "wall_ratio": 0.69}))
    rows, notes = [], []
    run.case_recorded(rows, notes)
    met = {row["case"].split(" (")[0]: row["met"] for row in rows}
    assert met == {
        "e2e: pipeline's share of the engine's rate, 4,320,000 fits": True,
        "adaptive / fixed study, wall time": True,
        "adaptive / fixed study, EM CPU": False,
    }
    assert notes == []


def test_cpu_model_names_the_processor():
    name = run.cpu_model()
    assert name and name != "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "model name" in cpuinfo.read_text():
        assert name in cpuinfo.read_text() or name.split()[0] in cpuinfo.read_text()
