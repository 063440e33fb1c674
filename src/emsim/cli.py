"""Command line: `emsim demo`, `emsim simulate`, `emsim fit`, `emsim verify`, `emsim replay`,
`emsim table`, `emsim status`, `emsim warmup`.

Bad input ends with exactly one line on stderr naming the problem and exit status 2; a fit that
fails is reported through its status, never as an error. Reading the data file of `emsim fit`
is `emsim.datafile`'s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .bad_input import InputError, echo, one_line
from .datafile import read_data
from .inputs import (
    MAX_ITERATIONS_CLI,
    check_equal_var_start,
    check_known_given,
    check_start_pi,
)
from .models import (
    DEFAULT_SCORE_TOLERANCE,
    DEFAULT_STOPPING,
    METHODS,
    MODELS,
    PARAMS,
    PREMATURE_THRESHOLD_SE,
    STOPPING_RULES,
)
from .rrandom import RRandom
from .safe_write import UnsafeOutputError, check_output_path, write_output
from .simulate import simulate

# pandas (0.3-0.5 s to import) and the engine (numba) are imported by the commands that use
# them, so that `emsim --help` and `emsim verify` start at once (issue 10).
if TYPE_CHECKING:
    import pandas as pd

    from .api import FitResult

EXIT_BAD_INPUT = 2
# A reader that closed the pipe (`emsim demo | head`) ends the command as SIGPIPE ends other
# Unix tools (the shell's 128 + 13), quietly: nothing is wrong with the input.
EXIT_CLOSED_STDOUT = 141
# The most points `emsim simulate` draws: 10^8 doubles are 800 MB, and R's stream needs more.
MAX_SIMULATE_N = 10**8


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise InputError(f"{self.prog}: {message}")


def _count(text: str) -> int:
    """A whole number, also written as 1e6."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise argparse.ArgumentTypeError(f"{echo(text)} is not a whole number")
    return int(number)


def _iteration_cap(text: str) -> int:
    """--max-iterations: a whole number in [1, 2^31 - 1], the cap the study's config allows."""
    cap = _count(text)
    if not 1 <= cap <= MAX_ITERATIONS_CLI:
        raise argparse.ArgumentTypeError(f"{cap} is not in [1, {MAX_ITERATIONS_CLI}] (2^31 - 1)")
    return cap


def _numbers(text: str, what: str, count: tuple[int, ...]) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise InputError(
            f"{what} must be {' or '.join(map(str, count))} comma-separated numbers, got {text!r}"
        ) from None
    if len(values) not in count or not all(np.isfinite(values)):
        raise InputError(
            f"{what} must be {' or '.join(map(str, count))} finite numbers, got {text!r}"
        )
    return values


def parse_assignments(text: str | None, what: str) -> dict[str, float]:
    """Parse 'pi=0.5,mu1=0' into a dict, naming the bad piece on error."""
    if not text:
        return {}
    values: dict[str, float] = {}
    for piece in text.split(","):
        name, sep, value = piece.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError(
                f"{what}: expected name=value pairs like pi=0.5,mu1=0, got {echo(piece)}"
            )
        if name not in (*PARAMS, "sigma"):
            raise InputError(
                f"{what}: unknown parameter {echo(name)}; use {', '.join(PARAMS)} or sigma"
            )
        if name in values:
            raise InputError(f"{what}: {name} is given twice")
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"{what}: {name}={echo(value)} is not a number") from None
        if not np.isfinite(number):
            raise InputError(f"{what}: {name}={value} is not finite")
        values[name] = number
    return values


def _output(path: str, option: str, suffixes: tuple[str, ...], inputs: tuple = ()) -> Path:
    """An output path checked before any work: its format and that writing it destroys nothing."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise InputError(
            f"{option} {out}: unsupported format {out.suffix or '(none)'!r}; "
            f"use {' or '.join(suffixes)}"
        )
    try:
        return check_output_path(out, option, inputs)
    except UnsafeOutputError as err:
        raise InputError(str(err)) from None


def _write(path: Path, write, option: str, inputs: tuple = ()) -> None:
    try:
        write_output(path, write, option, inputs)
    except UnsafeOutputError as err:
        raise InputError(str(err)) from None


def _numba_without_scipy() -> None:
    """Called by a command that runs the engine, before it imports numba. numba imports
    numba.np.arraymath, which imports scipy.linalg (0.2-0.4 s, where scipy is installed) only to
    decide whether np.convolve and np.correlate may call BLAS. The engine uses neither, so a
    command's own process decides without scipy (a library call does not: the user's own numba
    code may use them)."""
    if "scipy" in sys.modules or "numba" in sys.modules:
        return
    sys.modules["scipy"] = None  # `import scipy...` raises ImportError: no BLAS
    try:
        import numba.np.arraymath  # noqa: F401
    except ImportError:  # a numba that needs scipy here: imported later, with scipy
        pass
    finally:
        del sys.modules["scipy"]


def _load_engine() -> float:
    """Load the compiled engine before a command starts a clock; seconds spent."""
    from .warmup import load_engine

    return load_engine()


def _cmd_demo(args: argparse.Namespace) -> int:
    _numba_without_scipy()
    from .demo import run_seed_demo

    plot = _output(args.plot, "--plot", (".png",)) if args.plot else None
    demo = run_seed_demo()
    table = demo.table
    if plot is not None:  # first: a figure that cannot be written leaves no table printed
        from .study.figures import plot_seed_trace

        trace = table.rename(columns={"Iteration": "iteration", "p(Z=1)": "pi"})
        _write(plot, lambda tmp: plot_seed_trace(trace, tmp), "--plot")
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False, float_format="%.17g")
    elif args.format == "json":
        payload = {
            "status": demo.status,
            "fit_seconds": demo.fit_seconds,
            "engine_load_seconds": demo.engine_load_seconds,
            # Python floats print as the shortest string that reads back exactly: full precision.
            "rows": [
                {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
                for row in table.astype(object).to_dict(orient="records")
            ],
        }
        print(json.dumps(payload, indent=2))
    else:
        print("The seed's fit: n = 500000, mu = (0, 2), sigma = 1, pi = 0.8, set.seed(1);")
        print("pi model from p(Z=1) = 0.5, stop when the log-likelihood rises by < 1e-5.\n")
        print(
            table.to_string(
                index=False,
                na_rep="NA",
                formatters={
                    "p(Z=1)": "{:.6f}".format,
                    "loglik": "{:.4f}".format,
                    "diff_loglik": lambda v: "NA" if np.isnan(v) else f"{v:.3e}",
                },
            )
        )
        print(
            f"\nstatus: {demo.status}; fit time: {demo.fit_seconds * 1e3:.1f} ms "
            f"(and {demo.engine_load_seconds:.2f} s before it, once per process, to load the "
            "compiled engine)"
        )
    if plot is not None:
        print(f"figure: {plot}", file=sys.stderr)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    import pandas as pd

    mu = _numbers(args.mu, "--mu", (2,))
    sigma = _numbers(args.sigma, "--sigma", (1, 2))
    out = _output(args.output, "-o", (".csv", ".parquet", ".pq"))
    if args.n > MAX_SIMULATE_N:
        raise InputError(f"--n {args.n}: emsim simulate draws at most {MAX_SIMULATE_N:_} points")
    if args.rng == "numpy" and args.seed < 0:
        raise InputError(f"--seed {args.seed}: numpy's SeedSequence needs a seed >= 0")
    try:
        rng = (
            RRandom(args.seed)
            if args.rng == "r"
            else np.random.default_rng(np.random.SeedSequence(args.seed))
        )
    except ValueError as err:
        raise InputError(f"--seed {args.seed}: {err}") from None
    family = _family(args)
    try:
        y = simulate(args.n, mu, sigma if len(sigma) == 2 else sigma[0], args.pi, rng, family)
    except ValueError as err:
        raise InputError(str(err)) from None
    frame = pd.DataFrame({"Y": y})
    if out.suffix.lower() == ".csv":
        _write(out, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.17g"), "-o")
    else:
        _write(out, lambda tmp: frame.to_parquet(tmp, index=False), "-o")
    return 0


def _family(args: argparse.Namespace):
    """The family of `emsim simulate`'s --family and its shape flags (--df, --alpha, ...)."""
    from .families import FAMILY_PARAMETERS, FamilyError, parse_family

    spec: dict[str, object] = {"name": args.family}
    for key in sorted({k for keys in FAMILY_PARAMETERS.values() for k in keys}):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    try:
        return parse_family(spec)
    except FamilyError as err:
        flag = f"--{err.key}" if err.key != "name" else "--family"
        raise InputError(f"{flag}: {err.problem}") from None


def _json_number(value: float) -> float | None:
    """Strict JSON has no NaN or infinity: a value that is not finite becomes null."""
    return float(value) if np.isfinite(value) else None


def _cmd_fit(args: argparse.Namespace) -> int:
    _numba_without_scipy()
    from .api import check_start_known, fit

    start = parse_assignments(args.start, "--start")
    known = parse_assignments(args.known, "--known")
    try:
        check_start_known(args.model, start, known, "--start", "--known", refuse_held_start=True)
        check_known_given(args.model, known, "--known")
        check_equal_var_start(args.model, start, "--start")
        check_start_pi(start, "--start")
    except ValueError as err:
        raise InputError(str(err)) from None
    trace_path = (
        _output(args.trace, "--trace", (".csv", ".parquet"), (args.file,)) if args.trace else None
    )
    y = read_data(Path(args.file), args.column)
    # elapsed_s times the fit alone: the engine is loaded from numba's cache first, and pandas,
    # which builds the trace, imported.
    _load_engine()
    if args.trace:
        import pandas  # noqa: F401
    began = time.perf_counter()
    try:
        result = fit(
            y,
            model=args.model,
            method=args.method,
            start=start,
            known=known,
            tolerance=args.tolerance,
            max_iterations=args.max_iterations,
            trace=bool(args.trace),
            stopping=args.stopping,
            premature_threshold=args.premature_threshold,
            score_tolerance=args.score_tolerance,
        )
    except ValueError as err:
        raise InputError(str(err)) from None
    elapsed = time.perf_counter() - began
    if trace_path is not None:
        _write_trace(trace_path, result.trace, args.file)
    if args.json:
        print(json.dumps(_fit_payload(result, elapsed), allow_nan=False))
    else:
        _print_fit(result, elapsed, known)
    return 0


def _write_trace(path: Path, trace: pd.DataFrame, data_file: str) -> None:
    def write(tmp: Path) -> None:
        if path.suffix.lower() == ".parquet":
            trace.to_parquet(tmp, index=False)
        else:
            trace.to_csv(tmp, index=False, float_format="%.17g")

    _write(path, write, "--trace", (data_file,))


def _fit_payload(result: FitResult, elapsed: float) -> dict:
    """`emsim fit --json`'s object."""
    return {
        "status": result.status,
        "stopping": result.stopping,
        "iterations": result.iterations,
        "loglik": _json_number(result.loglik),
        "params": {k: _json_number(v) for k, v in result.params.items()},
        "se": {k: _json_number(v) for k, v in result.se.items()},
        "distance_to_limit": _json_number(result.distance_to_limit),
        "loglik_gap_to_limit": _json_number(result.loglik_gap_to_limit),
        "polish_evals": result.polish_evals,
        "elapsed_s": elapsed,
    }


def _print_fit(result: FitResult, elapsed: float, known: dict[str, float]) -> None:
    """`emsim fit`'s text output."""
    print(
        f"model {result.model}, method {result.method}: {result.status} after "
        f"{result.iterations} iterations ({elapsed * 1e3:.1f} ms)"
    )
    print(f"log-likelihood {result.loglik:.6f}")
    if np.isfinite(result.distance_to_limit):
        print(
            f"limit of the iteration: {result.distance_to_limit:.3g} SE away, "
            f"{result.loglik_gap_to_limit:.3g} log-likelihood still to gain"
        )
    for name in PARAMS:
        se = result.se[name]
        note = f"  (se {se:.4g})" if np.isfinite(se) else "  (held known)" if name in known else ""
        print(f"  {name:<7}{result.params[name]:>14.6g}{note}")


def _cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0: the results match (the manifest, or the other study); 1: they differ (one line
    per difference on stdout, then a summary); 2: bad input."""
    from .study.manifest import ManifestError, compare, load_manifest, manifest_path, verify

    try:
        if args.compare is not None:
            first, second = load_manifest(args.results), load_manifest(args.compare)
            problems = compare(first, second)
            a, b = manifest_path(args.results), manifest_path(args.compare)
            for problem in problems:
                print(problem)
            if problems:
                print(f"compare: {a} and {b} differ ({len(problems)} difference(s))")
                return 1
            digest = first["study_hash"][:12]
            print(f"compare: {a} and {b} hold identical results (study hash {digest})")
            return 0
        manifest, problems = verify(args.results)
    except ManifestError as err:
        raise InputError(str(err)) from None
    where = manifest_path(args.results)
    n_files = len(manifest["files"])
    for problem in problems:
        print(problem)
    files_bad = sum(1 for p in problems if p.what != "study")
    if problems:
        print(
            f"verify: {files_bad} of {n_files} files differ from {where}"
            + ("" if files_bad else "; the study hash does not match its files")
        )
        from .study.manifest import repair_hint

        hint = repair_hint(problems, args.results)
        if hint:
            print(hint)
    else:
        digest = manifest["study_hash"][:12]
        print(f"verify: all {n_files} files match {where} (study hash {digest})")
    code = 1 if problems else 0
    if args.recompute is not None:
        try:
            code = max(code, _recompute(args))
        except ManifestError as err:
            raise InputError(str(err)) from None
    return code


def _recompute(args: argparse.Namespace) -> int:
    """`verify --recompute K`: refit some replicates of K chunks and compare them with the files
    (`recompute.recompute`); prints one line per file that differs, then a summary. Returns 1
    if any differs, else 0."""
    import secrets

    from .study.recompute import recompute

    if args.recompute < 1 or args.replicates < 0:
        bad = "--recompute" if args.recompute < 1 else "--replicates"
        raise InputError(f"verify: {bad} must be >= {1 if bad == '--recompute' else 0}")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    checked = recompute(args.results, args.recompute, args.replicates, seed)
    bad = [c for c in checked if not c.ok]
    for c in bad:
        why = c.problem or f"differs in {', '.join(c.differs)}"
        print(f"{c.path}: refit of replicates {_replicate_list(c.replicates)} {why}")
    chunks = len({c.path for c in checked if "/fits/" in c.path})
    how = f"{chunks} chunk(s) drawn with --seed {seed}"
    if bad:
        print(f"recompute: {len(bad)} of {len(checked)} files differ from their refit ({how})")
        return 1
    print(f"recompute: the refitted rows of all {len(checked)} files match ({how})")
    return 0


def _replicate_list(replicates: tuple[int, ...]) -> str:
    if len(replicates) > 1 and replicates == tuple(range(replicates[0], replicates[-1] + 1)):
        return f"{replicates[0]}-{replicates[-1]}"
    return ",".join(map(str, replicates))


def _cmd_replay(args: argparse.Namespace) -> int:
    """`emsim replay`: one fit of the study in --results recomputed from its seeds
    (`study.replay`), printed as `emsim fit` prints a fit."""
    _numba_without_scipy()
    from .study.replay import FitKey, compare_with_stored, replay

    key = FitKey(args.cell, args.replicate, args.model, args.method, args.start, args.stopping)
    formats = (".csv", ".parquet")
    trace_path = _output(args.trace, "--trace", formats) if args.trace else None
    data_path = _output(args.data, "--data", formats) if args.data else None
    try:
        replayed = replay(args.results, key)
    except ValueError as err:
        raise InputError(str(err)) from None
    if trace_path is not None:
        _write_frame(trace_path, replayed.trace, "--trace")
    if data_path is not None:
        import pandas as pd

        _write_frame(data_path, pd.DataFrame({"Y": replayed.data}), "--data")
    result = replayed.result()
    if args.json:
        print(json.dumps(_fit_payload(result, result.runtime_s), allow_nan=False))
        return 0
    print(
        f"replay of cell {key.cell}, replicate {key.replicate}, start {key.start}, "
        f"rule {key.stopping}"
    )
    _print_fit(result, result.runtime_s, replayed.known())
    differs = compare_with_stored(replayed)
    if differs is None:
        print(f"{replayed.fits_file}: the study holds no row of this fit (yet)")
    elif differs:
        print(f"{replayed.fits_file}: its row DIFFERS from the replay in {', '.join(differs)}")
    else:
        print(f"{replayed.fits_file}: its row is identical to the replay (runtime_s aside)")
    return 0


def _write_frame(path: Path, frame: pd.DataFrame, option: str) -> None:
    """A table to .parquet or, at full precision, .csv, as `path`'s suffix says."""

    def write(tmp: Path) -> None:
        if path.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, float_format="%.17g")

    _write(path, write, option)


def _cmd_table(args: argparse.Namespace) -> int:
    """`emsim table`: one measure of the study's performance table as a design x method table
    with its MCSE (`study.tables`), on stdout or into -o."""
    import pandas as pd

    from .study.schema import summary_path
    from .study.tables import measure_table, render

    out = _output(args.output, "-o", (".md", ".tex", ".csv", ".txt")) if args.output else None
    if args.digits < 0 or args.digits > 17:
        raise InputError(f"--digits {args.digits}: use 0 to 17")
    path = Path(summary_path("performance", str(Path(args.results) / "summary")))
    if not path.is_file():
        raise InputError(f"{path}: no performance table; run the study (or its summary) first")
    try:
        table = measure_table(
            pd.read_parquet(path),
            args.measure,
            args.parameter,
            models=args.model,
            stopping=args.stopping,
            starts=args.start,
            set_=args.set,
            order=_config_order(Path(args.results)),
        )
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None
    text = render(table, args.format, args.digits)
    if out is None:
        sys.stdout.write(text)
    else:
        _write(out, lambda tmp: Path(tmp).write_text(text), "-o")
    return 0


def _config_order(results: Path) -> dict[str, list[str]]:
    """The study's order of rules, starts and methods (its recorded config), or none."""
    from .study.recompute import recorded_study

    try:
        study = recorded_study(results)
    except ValueError:
        return {}
    return {
        "stopping": list(study.stopping),
        "start": study.start_names,
        "method": list(study.methods),
    }


def _cmd_status(args: argparse.Namespace) -> int:
    """`emsim status`: the study's progress and ETA from what is on disk (`study.status`)."""
    from .study.status import read_status, render

    try:
        status = read_status(args.results)
    except ValueError as err:
        raise InputError(str(err)) from None
    if args.json:
        print(json.dumps(status.as_json(), allow_nan=False))
    else:
        sys.stdout.write(render(status))
    return 0


class _Version(argparse.Action):
    """--version, reading the installed version only when asked (importlib.metadata is slow)."""

    def __init__(self, option_strings, dest, help=None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from . import __version__

        print(f"emsim {__version__}")
        parser.exit()


def _cmd_warmup(args: argparse.Namespace) -> int:
    from .warmup import main as warm

    return warm()


def build_parser() -> argparse.ArgumentParser:
    """Every option's help states its default (or that it is required)."""
    parser = _Parser(prog="emsim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_Version, help="print emsim's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_demo(commands.add_parser("demo", help="reproduce the seed document's fit and table"))
    _add_simulate(commands.add_parser("simulate", help="draw data from a two-component mixture"))
    _add_fit(commands.add_parser("fit", help="fit a mixture to a column of a CSV or Parquet file"))
    _add_verify(
        commands.add_parser(
            "verify", help="check a study's results against its manifest, or against another study"
        )
    )
    _add_replay(
        commands.add_parser(
            "replay", help="recompute one fit of a study from its seeds, as `emsim fit` prints it"
        )
    )
    _add_table(
        commands.add_parser(
            "table", help="one performance measure as a design x method table with its MCSE"
        )
    )
    status_cmd = commands.add_parser(
        "status", help="a study's fits done and planned, running and failed jobs, and its ETA"
    )
    status_cmd.add_argument(
        "--results",
        default="results",
        metavar="DIR",
        help="the study's results folder (Snakemake's state is read from the folder above "
        "it); default: results",
    )
    status_cmd.add_argument(
        "--json", action="store_true", help="print one JSON object; default: text"
    )
    status_cmd.set_defaults(run=_cmd_status)
    warm_cmd = commands.add_parser(
        "warmup",
        help="compile the engine for this CPU into numba's cache (make venv runs it), so that "
        "no later command or job compiles",
    )
    warm_cmd.set_defaults(run=_cmd_warmup)
    return parser


def _add_demo(demo: argparse.ArgumentParser) -> None:
    demo.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="how to print the progress table; default: table",
    )
    demo.add_argument(
        "--plot",
        metavar="PATH",
        help="also draw the seed's figure to PATH (.png); default: no figure",
    )
    demo.set_defaults(run=_cmd_demo)


def _add_simulate(sim: argparse.ArgumentParser) -> None:
    sim.add_argument(
        "--n",
        type=_count,
        required=True,
        help=f"number of points (required), 1 to {MAX_SIMULATE_N:_} (10^8); 1e6 is allowed",
    )
    sim.add_argument(
        "--mu",
        required=True,
        metavar="A,B",
        help="the two means (required); write --mu=-1,2 if A < 0",
    )
    sim.add_argument(
        "--sigma",
        required=True,
        metavar="S[,S2]",
        help="one sd for both components, or one each (required)",
    )
    sim.add_argument("--pi", type=float, required=True, help="P(Z=1), in [0, 1] (required)")
    sim.add_argument(
        "--seed",
        type=int,
        required=True,
        help="random seed (required); >= 0 for numpy, -2147483647 to 2147483647 for r",
    )
    sim.add_argument(
        "--rng",
        choices=("numpy", "r"),
        default="numpy",
        help="'r' reproduces R's set.seed(seed); runif(n); rnorm(n); default: numpy",
    )
    sim.add_argument(
        "--family",
        choices=("normal", "t", "skew_normal", "contaminated"),
        default="normal",
        help="the components' family; all but normal need --rng numpy (default: normal)",
    )
    sim.add_argument(
        "--df", type=float, help="t: degrees of freedom, > 2 (required with --family t)"
    )
    sim.add_argument(
        "--alpha",
        type=float,
        help="skew_normal: Azzalini's shape (required with --family skew_normal)",
    )
    sim.add_argument(
        "--epsilon",
        type=float,
        help="contaminated: outlier probability, in (0, 1) (required with --family contaminated)",
    )
    sim.add_argument(
        "--scale",
        type=float,
        help="contaminated: an outlier's sd factor, > 0 (required with --family contaminated)",
    )
    sim.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="where to write the data, a .csv or .parquet file (required); replaced atomically",
    )
    sim.set_defaults(run=_cmd_simulate)


def _add_fit(fit_cmd: argparse.ArgumentParser) -> None:
    fit_cmd.add_argument("file", help="the data, a .csv or .parquet file (required)")
    fit_cmd.add_argument(
        "--column",
        default="Y",
        help="the column to fit; if absent, the one column equal to it up to case; default: Y",
    )
    fit_cmd.add_argument(
        "--model",
        choices=tuple(MODELS),
        default="full",
        help="pi: only the mixing weight; equal_var: one common sigma; default: full",
    )
    fit_cmd.add_argument(
        "--method", choices=METHODS, default="em", help="em or squarem; default: em"
    )
    fit_cmd.add_argument(
        "--start",
        metavar="pi=..,mu1=..",
        help="starting values of estimated parameters (sigma=S: both sigmas); default: pi=0.5, "
        "the rest from the data split at its quantile",
    )
    fit_cmd.add_argument(
        "--known",
        metavar="mu1=..,..",
        help="values of the parameters the model holds fixed (pi model: mu1, mu2, sigma1, "
        "sigma2; sigma=S: both sigmas); default: none",
    )
    fit_cmd.add_argument(
        "--tolerance",
        type=float,
        default=1e-5,
        help="stop when the log-likelihood rises by less; default: 1e-5",
    )
    fit_cmd.add_argument(
        "--max-iterations",
        type=_iteration_cap,
        default=1000,
        help="iteration limit, 1 to 2^31 - 1 (as in the study's config); default: 1000",
    )
    fit_cmd.add_argument(
        "--stopping",
        choices=STOPPING_RULES,
        default=DEFAULT_STOPPING,
        help="abs: the rise of the log-likelihood is below --tolerance (the seed's rule); rel: "
        "below tolerance x |log-likelihood|; aitken: Aitken's estimate of the gain still to "
        "come is below it; score: the Newton decrement is below --score-tolerance SEs; param: "
        "no parameter changed by --tolerance; default: abs",
    )
    fit_cmd.add_argument(
        "--score-tolerance",
        type=float,
        default=DEFAULT_SCORE_TOLERANCE,
        help="the score rule's threshold in standard errors; default: 0.01",
    )
    fit_cmd.add_argument(
        "--premature-threshold",
        type=float,
        default=PREMATURE_THRESHOLD_SE,
        help="a stopped fit farther than this many SEs from the limit of its iteration is "
        "'premature'; default: 0.1",
    )
    fit_cmd.add_argument(
        "--trace",
        metavar="PATH",
        help="write the per-iteration trace (.csv/.parquet); default: no trace",
    )
    fit_cmd.add_argument("--json", action="store_true", help="print one JSON object; default: text")
    fit_cmd.set_defaults(run=_cmd_fit)


def _add_verify(verify_cmd: argparse.ArgumentParser) -> None:
    verify_cmd.add_argument(
        "--results",
        default="results",
        metavar="DIR",
        help="the study's results folder (or its manifest.json); default: results",
    )
    verify_cmd.add_argument(
        "--compare",
        metavar="OTHER",
        help="compare with another study's results folder (or manifest.json): exit 0 when both "
        "hold the same numbers, whatever their core count, chunk size or executor; "
        "default: check against the manifest",
    )
    verify_cmd.add_argument(
        "--recompute",
        type=int,
        nargs="?",
        const=3,
        metavar="K",
        help="also refit K randomly chosen chunks (3 if K is left out) from their seeds in a "
        "temporary folder and compare their rows with the files bit for bit (runtime_s aside); "
        "default: hashes only",
    )
    verify_cmd.add_argument(
        "--replicates",
        type=int,
        default=5,
        metavar="R",
        help="with --recompute: refit R randomly chosen replicates of each chunk (each replicate "
        "has its own random streams, so it refits alone to its rows), 0 for all; default: 5",
    )
    verify_cmd.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help="with --recompute: the seed that draws the chunks and replicates; default: a new "
        "one each run, printed, so that a run can be repeated",
    )
    verify_cmd.set_defaults(run=_cmd_verify)


def _add_replay(replay_cmd: argparse.ArgumentParser) -> None:
    replay_cmd.add_argument(
        "--results",
        default="results",
        metavar="DIR",
        help="the study's results folder (its config.yaml records the study); default: results",
    )
    replay_cmd.add_argument(
        "--cell", required=True, metavar="ID", help="the cell's id, as in results/fits (required)"
    )
    replay_cmd.add_argument(
        "--replicate", type=int, required=True, metavar="R", help="the replicate (required)"
    )
    for option, what in (
        ("--model", "the model"),
        ("--method", "the method"),
        ("--start", "the start's name"),
        ("--stopping", "the stopping rule"),
    ):
        replay_cmd.add_argument(option, required=True, help=f"{what}, one the study ran (required)")
    replay_cmd.add_argument(
        "--trace",
        metavar="PATH",
        help="write the fit's iterates, in the study's traces columns (.csv/.parquet); "
        "default: no trace",
    )
    replay_cmd.add_argument(
        "--data",
        metavar="PATH",
        help="write the replicate's data set, column Y (.csv/.parquet), which `emsim fit` "
        "reads; default: no data",
    )
    replay_cmd.add_argument(
        "--json", action="store_true", help="print `emsim fit --json`'s object; default: text"
    )
    replay_cmd.set_defaults(run=_cmd_replay)


def _add_table(table_cmd: argparse.ArgumentParser) -> None:
    from .study.tables import MEASURES, TABLE_FORMATS

    table_cmd.add_argument(
        "--measure", required=True, choices=MEASURES, help="the measure (required)"
    )
    table_cmd.add_argument(
        "--parameter",
        required=True,
        help="the parameter: pi, mu1, mu2, sigma1, sigma2, or sigma (equal_var) (required)",
    )
    table_cmd.add_argument(
        "--format",
        choices=TABLE_FORMATS,
        default="markdown",
        help="markdown, latex (booktabs), or csv (value and MCSE unrounded, two columns per "
        "method); default: markdown",
    )
    table_cmd.add_argument(
        "--results",
        default="results",
        metavar="DIR",
        help="the study's results folder (DIR/summary/performance.parquet); default: results",
    )
    for option, what in (
        ("--model", "models"),
        ("--stopping", "stopping rules"),
        ("--start", "starts"),
    ):
        table_cmd.add_argument(
            option, nargs="+", metavar="NAME", help=f"only these {what}; default: all"
        )
    table_cmd.add_argument(
        "--set",
        choices=("own", "common"),
        default="own",
        help="own: each group's usable fits; common: the replicates where every method and rule "
        "succeeded (docs/design.md section 6); default: own",
    )
    table_cmd.add_argument(
        "--digits", type=int, default=3, help="decimals of value and MCSE; default: 3"
    )
    table_cmd.add_argument(
        "-o", "--output", metavar="PATH", help="write the table to PATH; default: stdout"
    )
    table_cmd.set_defaults(run=_cmd_table)


def _silence_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for the closed pipe is dropped, and
    the interpreter's flush at exit has nothing to report."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # a stdout without a file descriptor (tests' capture)
        pass


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        status = args.run(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return status
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_CLOSED_STDOUT
    except InputError as err:
        print(f"emsim: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:  # an unwritable output path, a full disk, a file as a folder, ...
        where = f"{err.filename}: " if err.filename else ""
        print(f"emsim: error: {where}{one_line(str(err.strerror or err), 80)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print(
            "emsim: error: out of memory; use less data (or a machine with more memory)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
