# Which rounds a cell runs is known only as its gates after its rounds are written
# (docs/design.md section 10): these give the rules' inputs through Snakemake's checkpoint
# lookup, which makes a rule wait until the gate it needs exists. Each cell has gates of its
# own, so a cell's next round waits for that cell alone. A fixed study has no gates.
from emsim.study import rounds


def gate(cell, round_):
    return checkpoints.cell_gate.get(cell=cell, round=round_).output.gate


def grid_round(cell, round_):
    return rounds.grid_round(cell, round_, STUDY.plan, gate)


def last_cell_summaries(table):
    return lambda wildcards: jobs.last_cell_summaries(STUDY, table, gate)


def final_outputs(kind):
    return lambda wildcards: jobs.final_outputs(STUDY, kind, gate)


def all_cell_summaries():
    return lambda wildcards: jobs.all_cell_summaries(STUDY, gate)
