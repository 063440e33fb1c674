"""The examples in the public API's docstrings run and print what they say.

`python -m pytest --doctest-modules src/emsim/api.py src/emsim/simulate.py src/emsim/rrandom.py`
runs the same examples; this module puts them in the suite (`make test`, CI) without turning on
`--doctest-modules` for every path pytest is given.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

# The modules whose docstrings document the public API (docs/design.md section 7).
DOCUMENTED = ("emsim.api", "emsim.simulate", "emsim.rrandom")


@pytest.mark.parametrize("name", DOCUMENTED)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    # Option flags are written in the examples themselves, so that pytest's doctest runner
    # gives the same results as this one.
    result = doctest.testmod(module, verbose=False, report=True)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
