"""Issue 10, "instant start": the engine is compiled at set-up and never on a user's clock, and
the command line imports only what a command needs.

Each process-level claim is checked in a new Python process, since this one has long since
imported and loaded everything. None of these tests times anything: they check what was
imported, what numba loaded or saved, and what was loaded when a clock started.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import emsim
from emsim import engine, warmup

SRC = Path(emsim.__file__).parent
HEAVY = ("pandas", "matplotlib", "seaborn", "snakemake")


def python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,  # a cold cache compiles the engine: minutes on a busy machine
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def imported(*argv: str) -> set[str]:
    """Top-level packages in sys.modules after `emsim argv` ran in a new process."""
    code = (
        "import json, sys\nfrom emsim.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    )
    done = python("-c", code, *argv)
    return {name.split(".")[0] for name in json.loads(done.stderr.splitlines()[-1])}


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    y = emsim.simulate(1000, (0.0, 3.0), 1.0, 0.6, np.random.default_rng(10))
    path = tmp_path_factory.mktemp("instant") / "y.csv"
    pd.DataFrame({"Y": y}).to_csv(path, index=False, float_format="%.17g")
    return path


@pytest.fixture(scope="module")
def warmed() -> str:
    """`emsim warmup` has run (it compiles only if the cache lacks the engine for this CPU)."""
    return python("-m", "emsim", "warmup").stdout


# --- a light command line ----------------------------------------------------------------------


def test_help_and_import_load_no_heavy_package() -> None:
    loaded = imported("--help")
    assert not loaded & {*HEAVY, "numba", "scipy"}, sorted(loaded)
    for command in ("fit", "verify", "warmup", "demo", "simulate"):
        assert not imported(command, "--help") & {*HEAVY, "numba"}, command
    done = python("-c", "import sys, json, emsim; print(json.dumps(sorted(sys.modules)))")
    assert not {name.split(".")[0] for name in json.loads(done.stdout)} & {*HEAVY, "numba"}


def test_fit_of_a_csv_file_imports_neither_pandas_nor_scipy(small_csv, warmed) -> None:
    loaded = imported("fit", str(small_csv), "--json")
    assert "numba" in loaded
    assert not loaded & {*HEAVY, "scipy"}, sorted(loaded & {*HEAVY, "scipy"})


def test_lazy_names_of_the_package() -> None:
    assert {"fit", "fit_batch", "FitResult", "__version__"} <= set(dir(emsim))
    assert callable(emsim.fit) and callable(emsim.simulate) and emsim.__version__
    import emsim.simulate as module  # noqa: F401  # the function keeps its name

    assert callable(emsim.simulate) and emsim.simulate.__module__ == "emsim.simulate"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        emsim.nope  # noqa: B018


# --- compile at set-up, never at use -----------------------------------------------------------


def test_every_compiled_function_called_from_python_is_warmed() -> None:
    """A compiled function that some module calls but warm-up does not would compile on the
    first call of every new process (and of every CPU)."""
    dispatchers = {name for name, v in vars(engine).items() if hasattr(v, "py_func")}
    called = set()
    for path in SRC.rglob("*.py"):
        if path.name == "engine.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in dispatchers:
                called.add(node.attr)
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("engine"):
                called |= {alias.name for alias in node.names} & dispatchers
    called.add("fit_rows")  # engine.run's own call
    warmed = {dispatcher.__name__ for dispatcher, _ in warmup.entry_points()}
    assert called <= warmed, sorted(called - warmed)
    assert "information_sums" in called  # the scan found the calls it should


def test_fit_in_a_new_process_after_warmup_compiles_nothing(small_csv, warmed) -> None:
    """numba logs every load from and save to its cache (NUMBA_DEBUG_CACHE); a compile always
    ends in a save, and rewrites the cache index, so neither may happen."""
    where = "from emsim import engine; print(engine.fit_rows.stats.cache_path)"
    cache = Path(python("-c", where).stdout.strip())  # as a new process sees it
    assert str(cache) in warmed

    def files() -> dict[str, tuple[int, int]]:
        found = {}
        # Only the entry points' files: a test running beside this one may compile a kernel
        # of its own (test_em_core calls some directly); what emsim fit runs is all in these.
        for f in [*cache.glob("engine.fit_rows-*"), *cache.glob("engine.information_sums-*")]:
            info = f.stat()
            found[f.name] = (info.st_mtime_ns, info.st_size)
        return found

    before = files()
    assert any(name.startswith("engine.fit_rows-") for name in before)
    done = python("-m", "emsim", "fit", str(small_csv), env={"NUMBA_DEBUG_CACHE": "1"})
    log = [line for line in done.stdout.splitlines() if line.startswith("[cache]")]
    loaded = " ".join(line for line in log if "data loaded from" in line)
    assert "engine.fit_rows-" in loaded and "engine.information_sums-" in loaded, log
    assert not [line for line in log if "saved" in line], log
    assert files() == before


def test_warm_fails_when_a_call_needs_a_second_specialization(monkeypatch) -> None:
    """warm() checks that the API's calls used only the types it compiled: data that reached
    the engine in another layout would be compiled on a user's clock."""
    fake = type("D", (), {"signatures": [1, 2], "__name__": "fit_rows"})()
    monkeypatch.setattr(warmup, "entry_points", lambda: [(fake, ())])
    monkeypatch.setattr(warmup, "load_engine", lambda: 0.0)
    with pytest.raises(RuntimeError, match="fit_rows was compiled for 2 sets"):
        warmup.warm()


def test_read_only_or_strided_data_reaches_the_engine_as_one_type() -> None:
    y = emsim.simulate(200, (0.0, 3.0), 1.0, 0.5, np.random.default_rng(2))
    readonly = y.copy()
    readonly.flags.writeable = False
    strided = np.repeat(y, 2)[::2]
    types_seen = set()
    real = engine.load

    def spy(dispatcher, args):
        types_seen.add(tuple(map(engine.typeof, args)))
        real(dispatcher, args)

    try:
        engine.load = spy
        results = [emsim.fit(d) for d in (y, readonly, strided)]
    finally:
        engine.load = real
    assert len(types_seen) == 1
    assert results[0].params == results[1].params == results[2].params


# --- honest timing fields ----------------------------------------------------------------------

# Runs in a new process: every call of `time.perf_counter` by the module under test records how
# many specializations the engine's entry points hold at that moment. Loading from the cache or
# compiling adds one, so equal counts at the clock's start and stop, both 1, mean the timed span
# neither loaded nor compiled anything, and that the code was there before the clock started.
CLOCK_SPY = """
import json, sys, time
import emsim.{module} as target
from emsim import engine
real, seen = time.perf_counter, []
class Clock:
    @staticmethod
    def perf_counter():
        seen.append([len(engine.fit_rows.overloads), len(engine.information_sums.overloads)])
        return real()
target.time = Clock
{call}
print(json.dumps(seen))
"""


def test_first_cli_fit_starts_its_clock_with_the_engine_loaded(small_csv, warmed) -> None:
    call = f"assert target.main(['fit', {str(small_csv)!r}, '--json']) == 0"
    done = python("-c", CLOCK_SPY.format(module="cli", call=call))
    payload, seen = done.stdout.splitlines()
    assert json.loads(seen) == [[1, 1], [1, 1]]  # elapsed_s: one start, one stop
    assert json.loads(payload)["elapsed_s"] > 0


def test_first_api_fit_starts_its_clock_with_the_engine_loaded(warmed) -> None:
    call = "import numpy as np, emsim\nr = emsim.fit(np.linspace(0, 1, 50) ** 2)"
    done = python("-c", CLOCK_SPY.format(module="engine", call=call))
    seen = json.loads(done.stdout)
    assert [fit_rows for fit_rows, _ in seen] == [1, 1]  # runtime_s: one start, one stop


FIT_JOB_SPY = """
import json, sys, time
import emsim.study.fitjob as target
from emsim import engine
from emsim.study.config import load_study
real, seen = time.perf_counter, []
class Clock:
    thread_time = staticmethod(time.thread_time)
    @staticmethod
    def perf_counter():
        seen.append([len(engine.fit_rows.overloads), len(engine.information_sums.overloads)])
        return real()
target.time = Clock
config = {{"seed": 3, "replicates": 2, "traces": 1, "models": ["full"], "methods": ["em"],
    "scenarios": [{{"n": 40, "mu": [0, 3], "sigma": 1, "pi": 0.7}}]}}
study = load_study(config, {schema!r})
target.fit_chunk(study.fit_task(study.cells[0].cell_id, 0), {out!r}, {traces!r})
print(json.dumps(seen))
"""


def test_first_fit_job_starts_its_clocks_with_the_engine_loaded(tmp_path, warmed) -> None:
    """job_elapsed_s and em_elapsed_s: the first fit job of a process (a SLURM job) starts both
    clocks with the engine loaded, and nothing is loaded while they run."""
    code = FIT_JOB_SPY.format(
        schema=str(SRC.parents[1] / "workflow" / "schemas" / "config.schema.yaml"),
        out=str(tmp_path / "fits.parquet"),
        traces=str(tmp_path / "traces.parquet"),
    )
    seen = json.loads(python("-c", code).stdout.splitlines()[-1])
    assert len(seen) >= 3 and all(counts == [1, 1] for counts in seen), seen
