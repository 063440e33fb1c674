"""The code's shape (issue 20): no import cycle among emsim's modules, no oversized module in
the study library or oversized function outside the engine, and the config's `precision`,
`replicates` and `starts` read from the dict in one module only. Found by parsing the source
(ast), so the tests see every import, also those deferred into a function."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "emsim"
MAX_STUDY_MODULE_LINES = 700
MAX_FUNCTION_LINES = 80
# The engine's compiled kernels are long by design (one loop, no calls the compiler can't see).
ENGINE = "emsim/engine.py"

# Offenders allowed for a reason, each named with it (none today).
OVERSIZED_MODULES_ALLOWED: set[str] = set()
OVERSIZED_FUNCTIONS_ALLOWED: set[str] = set()

# The one module that reads `precision`, `replicates` and `starts` from the config dict (and
# parses them into the Study's typed members).
CONFIG_PARSER = "emsim/study/config.py"
RAW_READERS_ALLOWED: set[str] = set()
_KEY = r"""["'](precision|replicates|starts)["']"""
# A read of one of those keys from a config, or from a block of one (`study.config`, `cfg`,
# `task.fit_config`, a precision `block`): indexed, by .get, or tested with `in`. A table's
# `replicates` column (`data["replicates"]`) is no config key and does not match.
_HOLDER = r"""\b\w*(config|cfg|block)\b"""
RAW_READ = re.compile(
    rf"""{_HOLDER}\s*(\[\s*{_KEY}\s*\]|\.get\(\s*{_KEY})|{_KEY}\s+(not\s+)?in\s+{_HOLDER}"""
)


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the emsim package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The emsim modules `name` imports anywhere in its file (top level or inside functions):
    `from a.b import c` counts as a.b.c when that is a module, else as a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(name, path).split(".")
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported_modules(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (its modules in order, the first repeated at the end)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    """The cycle finder itself can fail: a cycle is found, a diamond is not one."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


def test_relative_and_deferred_imports_are_seen():
    graph = import_graph()
    # emsim/__init__.py imports `.models` relatively; jobs imports fitjob inside a function.
    assert "emsim.models" in graph["emsim"]
    assert "emsim.study.fitjob" in graph["emsim.study.jobs"]


def test_no_import_cycle_among_emsim_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def test_no_study_module_over_700_lines():
    too_long = {}
    for path in sorted((PACKAGE / "study").glob("*.py")):
        lines = len(path.read_text().splitlines())
        if lines > MAX_STUDY_MODULE_LINES and _rel(path) not in OVERSIZED_MODULES_ALLOWED:
            too_long[_rel(path)] = lines
    assert not too_long, too_long


def _docstring_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = function.body[0]
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    return (
        first.end_lineno - first.lineno + 1 if is_doc and isinstance(first.value.value, str) else 0
    )


def function_lengths(path: Path) -> dict[str, int]:
    """Lines of code (def to last line, less the docstring) of every function and method in
    `path`, by qualified name. The public API's numpydoc docstrings (emsim.fit: 136 lines, every
    argument with its doctests) are its reference, not code to split."""
    out: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                out[name] = child.end_lineno - child.lineno + 1 - _docstring_lines(child)
                walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(ast.parse(path.read_text(), str(path)), "")
    return out


def test_no_function_over_80_lines_outside_the_engine():
    too_long = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if _rel(path) == ENGINE:
            continue
        for name, lines in function_lengths(path).items():
            key = f"{_rel(path)}:{name}"
            if lines > MAX_FUNCTION_LINES and key not in OVERSIZED_FUNCTIONS_ALLOWED:
                too_long[key] = lines
    assert not too_long, too_long


def test_allowlists_name_real_offenders():
    """An allowlisted module or function that is fixed must leave the list (so that it does not
    silently grow back)."""
    for rel in OVERSIZED_MODULES_ALLOWED:
        path = SRC / rel
        assert len(path.read_text().splitlines()) > MAX_STUDY_MODULE_LINES, rel
    for key in OVERSIZED_FUNCTIONS_ALLOWED:
        rel, _, name = key.partition(":")
        assert function_lengths(SRC / rel).get(name, 0) > MAX_FUNCTION_LINES, key


def raw_reads(text: str) -> list[str]:
    return [m.group(0) for m in RAW_READ.finditer(text)]


def test_raw_read_pattern_catches_the_spellings():
    for read in (
        'cfg["precision"]',
        "config['replicates']",
        'study.config["starts"]',
        'expand_starts(task.fit_config["starts"])',
        'cfg.get("precision")',
        'plan = config.get("replicates", 1)',
        'block.get("starts")',
        'if "precision" not in cfg:',
    ):
        assert raw_reads(read), read
    for other in (
        'data["replicates"].astype(int)',
        'row["starts"]',
        "plan.replicates_through(k)",
        "study.starts",
        '"replicates" in cells',
    ):
        assert not raw_reads(other), other


def test_precision_replicates_and_starts_are_read_from_the_config_in_one_module():
    """Only `config` reads these keys from the config dict; everyone else uses the Study's typed
    members (`study.plan`, `study.precision`, `study.starts`)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = _rel(path)
        if rel != CONFIG_PARSER and rel not in RAW_READERS_ALLOWED:
            found += [f"{rel}: {read}" for read in raw_reads(path.read_text())]
    for path in [SRC.parent / "Snakefile", *sorted((SRC.parent / "workflow").rglob("*.smk"))]:
        found += [f"{path.name}: {read}" for read in raw_reads(path.read_text())]
    assert not found, found
    # The scan can fail: the parser, and each module still allowed, do read them.
    for rel in [CONFIG_PARSER, *RAW_READERS_ALLOWED]:
        assert raw_reads((SRC / rel).read_text()), rel
