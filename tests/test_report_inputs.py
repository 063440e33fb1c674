"""The report's code inputs: editing any report module or template reruns the report (and only
what depends on it), as a dry run of the finished TINY study plans it. The code is the
session's shared copy, edited for each dry run only (studyrun.edited restores it)."""

from __future__ import annotations

import pytest
from studyrun import copy_study, edited, jobs_of, snakemake

from emsim.study.code_inputs import report_code

pytestmark = pytest.mark.slow


def test_report_code_lists_every_report_module_and_template():
    names = {path.rsplit("/emsim/study/", 1)[1] for path in report_code()}
    assert {"report.py", "report_drilldown.py", "report_html.py", "captions.py"} <= names
    assert {"templates/report.html.j2", "templates/report.js", "templates/report.css"} <= names
    assert "templates/sections/drilldown.html.j2" in names
    assert "figure_captions/stopping.rst" in names
    assert "summary.py" not in names


@pytest.mark.parametrize(
    ("edit", "addition"),
    [
        ("templates/sections/drilldown.html.j2", "\n{# an edit #}\n"),
        ("report_drilldown.py", "\n# an edit\n"),
        ("figure_captions/stopping.rst", "An edit."),
    ],
)
def test_editing_report_code_reruns_the_report(tiny_study, tmp_path, edit, addition):
    study = copy_study(tiny_study, tmp_path / "w")
    _, plan = snakemake(study, "-n")
    assert jobs_of(plan) == []
    with edited(study / "src" / "emsim" / "study" / edit, addition):
        _, plan = snakemake(study, "-n")
        # Both the report's body and its page are written by report code.
        assert sorted(jobs_of(plan)) == ["all", "report", "report_body"]
