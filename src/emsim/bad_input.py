"""Bad input from the user: the error the command line reports as one line (exit status 2), and
how that line echoes what the user gave, whatever it holds."""

from __future__ import annotations

__all__ = ["ECHO_CHARS", "InputError", "echo", "one_line"]

# An echoed value (a cell, a column name, a library's message) is cut to this many characters,
# so an error stays one short line whatever the input holds.
ECHO_CHARS = 40


class InputError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


def one_line(text: str, limit: int) -> str:
    """`text` on one line (unprintable characters escaped), cut to `limit` characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: 4 * limit])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """repr(value) on one line, cut to `limit` characters."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[: 4 * limit]
    return one_line(repr(value), limit)
