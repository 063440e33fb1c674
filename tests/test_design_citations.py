"""docs/design.md is the contract the code cites by section: every module, file and public name
it mentions must exist, so that the document cannot drift from the code unnoticed."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
SRC = ROOT / "src" / "emsim"
MODULES = {p.stem: p for p in SRC.rglob("*.py") if p.stem != "__init__"}
# Paths the document names, as written: repository paths and module files.
PATH = re.compile(r"`((?:src|tests|workflow|benchmarks|docs)/[\w./{},*-]+|[\w]+\.(?:py|smk))`")
# `module.name` or `emsim.name` (a call's parentheses and arguments cut off).
FILE_SUFFIXES = {"py", "smk", "parquet", "csv", "json", "yaml", "png", "html", "rst"}
DOTTED = re.compile(r"`((?:emsim\.)?[a-z_]+(?:\.[A-Za-z_]\w*)+\*?)")


def _paths() -> list[str]:
    return sorted(set(PATH.findall(DESIGN)))


def _dotted() -> list[str]:
    names = set()
    for name in DOTTED.findall(DESIGN):
        head, last = name.split(".")[0], name.rsplit(".", 1)[1]
        if last in FILE_SUFFIXES:
            continue
        if head == "emsim" or head in MODULES:
            names.add(name)
    return sorted(names)


def _expand_braces(path: str) -> list[str]:
    match = re.search(r"\{([^}]*)\}", path)
    if not match:
        return [path]
    return [
        expanded
        for part in match.group(1).split(",")
        for expanded in _expand_braces(path[: match.start()] + part + path[match.end() :])
    ]


@pytest.mark.parametrize("cited", _paths())
def test_every_path_the_design_names_exists(cited):
    for path in _expand_braces(cited):
        if "/" not in path:  # a bare module file: somewhere in the package or the rules
            found = path in {p.name for p in SRC.rglob("*.py")} | {
                p.name for p in (ROOT / "workflow" / "rules").glob("*.smk")
            }
            assert found, f"design.md names {path}, which is no module or rule file"
        elif "*" in path:
            assert list(ROOT.glob(path)), f"design.md names {path}, which matches no file"
        else:
            assert (ROOT / path).exists(), f"design.md names {path}, which does not exist"


def _resolve(name: str):
    if name.endswith("*"):  # a family of names: `jobs.run_*`
        module, prefix = name[:-1].rsplit(".", 1)
        names = [n for n in dir(_resolve(module)) if n.startswith(prefix)]
        assert names, f"no name {prefix}* in {module}"
        return names
    parts = name.split(".")
    if parts[0] == "emsim":
        obj, rest = importlib.import_module("emsim"), parts[1:]
    else:
        module = MODULES[parts[0]].relative_to(SRC.parent).with_suffix("")
        obj, rest = importlib.import_module(".".join(module.parts)), parts[1:]
    for i, part in enumerate(rest):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        # A submodule not imported by its package yet (emsim.study.config).
        obj = importlib.import_module(f"{obj.__name__}.{part}")
        assert obj is not None, f"{'.'.join(rest[: i + 1])} missing"
    return obj


@pytest.mark.parametrize("cited", _dotted())
def test_every_module_and_public_name_the_design_cites_exists(cited):
    try:
        _resolve(cited)
    except (AttributeError, ImportError, KeyError) as err:
        pytest.fail(f"design.md cites `{cited}`, which does not exist ({err})")


def test_the_design_cites_enough_names_for_the_check_to_mean_something():
    assert len(_dotted()) > 40 and len(_paths()) > 20


SIGNATURE = re.compile(r"`((?:emsim\.)?[a-z_]+(?:\.[A-Za-z_]\w*)+)\(([^`()]*)\)", re.S)


def _signatures() -> list[tuple[str, str]]:
    out = []
    for name, args in SIGNATURE.findall(DESIGN):
        head = name.split(".")[0]
        if head == "emsim" or head in MODULES:
            out.append((name, " ".join(args.split())))
    return sorted(set(out))


@pytest.mark.parametrize(("cited", "args"), _signatures())
def test_every_signature_the_design_gives_matches_the_code(cited, args):
    """`f(a, b=1)` in the design names exactly f's parameters, in order; with `...` among them
    the named ones must exist (an example call such as `emsim.fit(Y[r], ...)` names none)."""
    import inspect

    target = _resolve(cited)
    actual = [
        p.name
        for p in inspect.signature(target).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    parts = [part.strip() for part in args.split(",") if part.strip() not in ("", "*")]
    named = [part.split("=")[0].strip() for part in parts if part != "..."]
    if "..." in parts:
        assert set(filter(str.isidentifier, named)) <= set(actual), (cited, args, actual)
    else:
        assert named == actual, f"design.md gives {cited}({args}); the code has {actual}"


def _section(number: int) -> str:
    match = re.search(rf"^## {number}\. .*?(?=^## \d+\. |\Z)", DESIGN, re.S | re.M)
    assert match, f"design.md has no section {number}"
    return match.group(0)


def test_the_architecture_section_places_every_module():
    architecture = "\n".join(_expand_braces(_section(8)))
    missing = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py") and path.name not in architecture
    )
    assert not missing, f"design.md section 8 does not place {missing}"


def test_the_contents_list_every_section():
    numbers = [int(n) for n in re.findall(r"^## (\d+)\. ", DESIGN, re.M)]
    assert numbers == list(range(1, len(numbers) + 1))
    contents = DESIGN.split("\n## 1. ", 1)[0]
    listed = [int(n) for n in re.findall(r"\[(\d+) [^]]*\]\(#", contents)]
    assert listed == numbers, f"the contents list sections {listed}, the document has {numbers}"


def test_the_engines_callers_are_the_ones_the_architecture_names():
    from test_architecture import import_graph

    callers = r"The engine's callers are (.*?)nothing else imports it"
    sentence = re.search(callers, _section(8), re.S)
    assert sentence, "design.md section 8 no longer names the engine's callers"
    named = set(re.findall(r"`(\w+)\.py`", sentence.group(1)))
    importers = {
        module.rsplit(".", 1)[1]
        for module, imported in import_graph().items()
        if "emsim.engine" in imported
    }
    assert importers == named, f"section 8 names {sorted(named)}; {sorted(importers)} import it"
