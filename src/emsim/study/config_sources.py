"""The config's sources as the user typed them, checked for what loading them hides: a key given
twice in a YAML file's mapping or in `--config` (every loader, Snakemake's too, silently keeps
the last), and YAML aliases that make a small file stand for billions of values.

`config.load_study` runs these before it validates the loaded config; the Snakefile hands it the
files (`workflow.configfiles`) and the `--config` entries (`workflow.config_settings.
config_args`). Every problem is a `ConfigError` of one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from emsim.study.config_checks import ConfigError, format_path

__all__ = [
    "MAX_CONFIG_VALUES",
    "check_config_args",
    "check_config_files",
    "check_expanded_size",
]

# A config holds a few hundred values (a large one, 100,000 scenarios, about a million). YAML's
# aliases let a small file stand for billions (9 levels of 9 aliases: 4e8), which the loaders
# keep as shared objects but every walk of the config (validation, the check of keys given
# twice, the hash) would expand, for minutes and gigabytes: a config beyond this is refused.
MAX_CONFIG_VALUES = 1_000_000


def _too_large(what: str) -> str:
    return (
        f"{what} expands to more than {MAX_CONFIG_VALUES:,} values through YAML aliases "
        "(&name ... *name), or contains itself; a study's config is a few hundred: write its "
        "values out"
    )


def _value_children(value: Any) -> Iterable[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    return value if isinstance(value, list | tuple) else ()


def _node_children(node: Any) -> Iterable[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else ()


def _expanded_size(root: Any, children: Any) -> int:
    """How many values `root` stands for with every alias expanded (a shared value counts each
    time it appears), capped at MAX_CONFIG_VALUES + 1, which also stands for a value that
    contains itself. Each distinct object is sized once (by id), so a bomb costs what its text
    does; the walk keeps its own stack, so deep nesting cannot exhaust Python's."""
    cap = MAX_CONFIG_VALUES + 1
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # started, not finished: the ancestors of the current value
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        value, finished = stack.pop()
        key = id(value)
        if finished:
            open_.discard(key)
            sizes[key] = min(cap, 1 + sum(sizes[id(c)] for c in children(value)))
        elif key in open_:
            return cap
        elif key not in sizes:
            open_.add(key)
            stack.append((value, True))
            stack.extend((child, False) for child in children(value))
    return sizes[id(root)]


def check_config_args(config_args: Iterable[str] | None) -> None:
    """Refuse a key given twice in `--config` (Snakemake's `config_settings.config_args`, the
    `key=value` entries as typed): Snakemake silently keeps the last."""
    seen: dict[str, str] = {}
    for entry in config_args or ():
        key = str(entry).partition("=")[0].strip()
        if key in seen:
            raise ConfigError(
                key,
                f"given twice on the command line (--config {seen[key]} {entry}); Snakemake "
                "would silently keep the last: give it once",
            )
        seen[key] = str(entry)


def check_expanded_size(config: Any) -> None:
    """Refuse a config (as loaded: a dict whose aliases are shared objects) that expands beyond
    MAX_CONFIG_VALUES."""
    if _expanded_size(config, _value_children) > MAX_CONFIG_VALUES:
        raise ConfigError("", _too_large("the config"))


def check_config_files(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse a key given twice in one mapping of a YAML config file (ConfigError naming the key,
    the file and both lines): YAML loaders, Snakemake's too, silently keep the last one. A file
    whose aliases expand it beyond MAX_CONFIG_VALUES is refused first, before anything walks it."""
    import yaml

    for path in paths:
        try:
            node = yaml.compose(Path(path).read_text(), Loader=yaml.SafeLoader)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # not ours to report: Snakemake read the file, or says why it cannot
        if node is not None and _expanded_size(node, _node_children) > MAX_CONFIG_VALUES:
            raise ConfigError("", _too_large(str(path)))
        try:
            _check_duplicate_keys(node, [], str(path))
        except RecursionError:
            continue


def _check_duplicate_keys(node: Any, where: list, path: str) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is not None and key in seen:
                raise ConfigError(
                    format_path([*where, key]),
                    f"given twice in {path} (lines {seen[key]} and {line}); "
                    "YAML would silently keep the last: delete one",
                )
            if key is not None:
                seen[key] = line
            _check_duplicate_keys(value_node, [*where, key if key is not None else "?"], path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, [*where, i], path)
