# One-command set-up: every target that runs code depends on the venv stamp, which is rebuilt
# only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
SNAKEMAKE := $(BIN)/snakemake --cores $(CORES) --workflow-profile workflow/profiles/default

.PHONY: help venv warm test study figures report demo bench lint format clean

help:
	@echo "make study    set up .venv, run the default study (config.yaml), write the report"
	@echo "make test     set up .venv, run the test suite"
	@echo "make figures  redraw figures and report from existing results (no refitting)"
	@echo "make demo     reproduce the seed document's fit and table"
	@echo "make bench    run the speed benchmarks (results/bench/)"
	@echo "make lint     ruff, snakefmt and snakemake --lint"
	@echo "make warm     compile the engine for this CPU if numba's cache lacks it (make venv does)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev,bench,slurm]'
	$(BIN)/emsim warmup
	touch $(STAMP)

venv: $(STAMP)

# numba caches the compiled engine per source file and CPU, so a `git pull` that changed the
# engine, or this checkout used from a machine with another CPU, would leave the first command
# to compile it (about 2 minutes on an AMD EPYC core). `emsim warmup` compiles what is missing,
# and takes 1-2 s otherwise.
warm: $(STAMP)
	$(BIN)/emsim warmup

# The 15 slowest tests after every run: the suite is to stay within 5 minutes on two cores.
# One pytest worker process per core (at most 4: a worker's Snakemake runs use 2 cores each);
# the session fixtures (tests/conftest.py) then run once per worker.
test: warm
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --durations=15

study: warm
	$(SNAKEMAKE) all

# Redraws every figure and the report from the existing Parquet files; never refits. The study
# is the one in results/ (its config recorded in results/config.yaml), whichever config file
# ran it: `--configfile my.yaml` or config.yaml.
figures: $(STAMP)
	@test -f results/config.yaml -a -f results/summary/performance.parquet || { echo "no study results yet (results/config.yaml, results/summary/): run 'make study' first" >&2; exit 2; }
	$(SNAKEMAKE) --configfile results/config.yaml --replace-workflow-config --forcerun figures traces_figure report -- report

report: figures

demo: warm
	$(BIN)/emsim demo --plot results/demo/seed_trace.png

bench: warm
	$(BIN)/python benchmarks/run.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint --cores 1

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt .

clean:
	rm -rf results/fits results/traces results/summary results/figures results/report results/logs .snakemake
