"""Command line: `emsim demo`, `emsim simulate`, `emsim fit`, `emsim verify`.

Bad input ends with exactly one line on stderr naming the problem and exit status 2; a fit that
fails is reported through its status, never as an error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .api import fit
from .models import METHODS, MODELS, PARAMS
from .rrandom import RRandom
from .simulate import simulate

EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise InputError(f"{self.prog}: {message}")


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
            raise InputError(f"{what}: expected name=value pairs like pi=0.5,mu1=0, got {piece!r}")
        if name not in (*PARAMS, "sigma"):
            raise InputError(f"{what}: unknown parameter {name!r}; use {', '.join(PARAMS)}")
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"{what}: {name}={value!r} is not a number") from None
        if not np.isfinite(number):
            raise InputError(f"{what}: {name}={value} is not finite")
        values[name] = number
    return values


def read_data(path: Path, column: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise InputError(
                f"{path}: unsupported format {suffix or '(none)'!r}; use .csv or .parquet"
            )
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty") from None
    except Exception as err:  # pandas and pyarrow raise many types for unreadable files
        raise InputError(
            f"{path}: cannot read as {suffix[1:]}: {str(err).splitlines()[0]}"
        ) from None
    if column not in frame.columns:
        listed = ", ".join(map(str, frame.columns)) or "none"
        raise InputError(
            f"{path}: no column {column!r} (columns: {listed}); choose one with --column"
        )
    values = pd.to_numeric(frame[column], errors="coerce")
    text_rows = values.isna() & frame[column].notna()
    if text_rows.any():
        row = int(np.argmax(text_rows.to_numpy()))
        raise InputError(
            f"{path}: column {column!r}, row {row + 1}: {frame[column].iloc[row]!r} is not a number"
        )
    data = values.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputError(
            f"{path}: column {column!r}, row {int(np.argmax(bad)) + 1}: "
            "missing, NaN or infinite value"
        )
    if data.size < 2:
        raise InputError(
            f"{path}: column {column!r} has {data.size} value(s); a fit needs at least 2"
        )
    if data.min() == data.max():
        raise InputError(
            f"{path}: column {column!r} is constant ({data[0]:g}); a mixture cannot be fitted"
        )
    return data


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_seed_demo

    demo = run_seed_demo()
    table = demo.table
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
    if args.plot:
        from .study.figures import plot_seed_trace

        trace = table.rename(columns={"Iteration": "iteration", "p(Z=1)": "pi"})
        path = plot_seed_trace(trace, Path(args.plot))
        print(f"figure: {path}", file=sys.stderr)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    mu = _numbers(args.mu, "--mu", (2,))
    sigma = _numbers(args.sigma, "--sigma", (1, 2))
    out = Path(args.output)
    if out.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise InputError(
            f"-o {out}: unsupported format {out.suffix or '(none)'!r}; use .csv or .parquet"
        )
    if args.rng == "numpy" and args.seed < 0:
        raise InputError(f"--seed {args.seed}: numpy's SeedSequence needs a seed >= 0")
    rng = (
        RRandom(args.seed)
        if args.rng == "r"
        else np.random.default_rng(np.random.SeedSequence(args.seed))
    )
    try:
        y = simulate(args.n, mu, sigma if len(sigma) == 2 else sigma[0], args.pi, rng)
    except ValueError as err:
        raise InputError(str(err)) from None
    frame = pd.DataFrame({"Y": y})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix.lower() == ".csv":
        frame.to_csv(tmp, index=False, float_format="%.17g")
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(out)
    return 0


def _json_number(value: float) -> float | None:
    """Strict JSON has no NaN or infinity: a value that is not finite becomes null."""
    return float(value) if np.isfinite(value) else None


def _cmd_fit(args: argparse.Namespace) -> int:
    start = parse_assignments(args.start, "--start")
    known = parse_assignments(args.known, "--known")
    y = read_data(Path(args.file), args.column)
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
        )
    except ValueError as err:
        raise InputError(str(err)) from None
    elapsed = time.perf_counter() - began
    if args.trace:
        path = Path(args.trace)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".parquet":
            result.trace.to_parquet(path, index=False)
        else:
            result.trace.to_csv(path, index=False, float_format="%.17g")
    if args.json:
        payload = {
            "status": result.status,
            "iterations": result.iterations,
            "loglik": _json_number(result.loglik),
            "params": {k: _json_number(v) for k, v in result.params.items()},
            "se": {k: _json_number(v) for k, v in result.se.items()},
            "elapsed_s": elapsed,
        }
        print(json.dumps(payload, allow_nan=False))
        return 0
    print(
        f"model {result.model}, method {result.method}: {result.status} after "
        f"{result.iterations} iterations ({elapsed * 1e3:.1f} ms)"
    )
    print(f"log-likelihood {result.loglik:.6f}")
    for name in PARAMS:
        se = result.se[name]
        note = f"  (se {se:.4g})" if np.isfinite(se) else "  (held known)" if name in known else ""
        print(f"  {name:<7}{result.params[name]:>14.6g}{note}")
    return 0


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
        return 1
    print(f"verify: all {n_files} files match {where} (study hash {manifest['study_hash'][:12]})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="emsim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"emsim {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser("demo", help="reproduce the seed document's fit and table")
    demo.add_argument("--format", choices=("table", "csv", "json"), default="table")
    demo.add_argument("--plot", metavar="PATH", help="also draw the seed's figure to PATH (PNG)")
    demo.set_defaults(run=_cmd_demo)

    sim = commands.add_parser("simulate", help="draw data from a two-component mixture")
    sim.add_argument("--n", type=int, required=True)
    sim.add_argument(
        "--mu", required=True, metavar="A,B", help="the two means; write --mu=-1,2 if A < 0"
    )
    sim.add_argument("--sigma", required=True, metavar="S[,S2]")
    sim.add_argument("--pi", type=float, required=True, help="P(Z=1)")
    sim.add_argument("--seed", type=int, required=True)
    sim.add_argument(
        "--rng",
        choices=("numpy", "r"),
        default="numpy",
        help="'r' reproduces R's set.seed(seed); runif(n); rnorm(n)",
    )
    sim.add_argument("-o", "--output", required=True, metavar="FILE", help=".csv or .parquet")
    sim.set_defaults(run=_cmd_simulate)

    fit_cmd = commands.add_parser("fit", help="fit a mixture to a column of a CSV or Parquet file")
    fit_cmd.add_argument("file")
    fit_cmd.add_argument("--column", default="Y")
    fit_cmd.add_argument("--model", choices=tuple(MODELS), default="full")
    fit_cmd.add_argument("--method", choices=METHODS, default="em")
    fit_cmd.add_argument("--start", metavar="pi=..,mu1=..")
    fit_cmd.add_argument("--known", metavar="mu1=..,..", help="values the model holds fixed")
    fit_cmd.add_argument("--tolerance", type=float, default=1e-5)
    fit_cmd.add_argument("--max-iterations", type=int, default=1000)
    fit_cmd.add_argument(
        "--trace", metavar="PATH", help="write the per-iteration trace (.csv/.parquet)"
    )
    fit_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    fit_cmd.set_defaults(run=_cmd_fit)

    verify_cmd = commands.add_parser(
        "verify", help="check a study's results against its manifest, or against another study"
    )
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
        "hold the same numbers, whatever their core count, chunk size or executor",
    )
    verify_cmd.set_defaults(run=_cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except InputError as err:
        print(f"emsim: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:  # an unwritable output path, a folder where a file should be, ...
        where = f"{err.filename}: " if err.filename else ""
        print(f"emsim: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
