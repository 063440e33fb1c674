# Which rounds each cell runs is known only as the gates after the rounds are written
# (docs/design.md section 10): these give the rules' inputs through Snakemake's checkpoint
# lookup, which makes a rule wait until the gate it needs exists. A fixed study has no gates.
from emsim.study import rounds


def gate(round_):
    return checkpoints.round_gate.get(round=round_).output.gate


def grid_round(cell, round_):
    return rounds.grid_round(cell, round_, STUDY.plan, gate)


def cells_in_round(round_):
    return jobs.cells_in_round(STUDY, round_, gate)


def last_cell_summaries(table):
    return lambda wildcards: jobs.last_cell_summaries(STUDY, table, gate)


def final_outputs(kind):
    return lambda wildcards: jobs.final_outputs(STUDY, kind, gate)


def all_cell_summaries():
    return lambda wildcards: jobs.all_cell_summaries(STUDY, gate)
