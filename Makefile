# One virtualenv, built from pyproject.toml; every target creates it on demand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-long run sweep bug-table crash-explore jepsen bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The CI job: unit, property, simulation and integration tests.
test: $(STAMP)
	$(BIN)/python -m pytest -q

# Everything, including the slow campaigns (long simulator sweeps).
test-long: $(STAMP)
	RAFTNET_LONG=1 $(BIN)/python -m pytest -q

# The long randomized simulator sweep (50,000 seeds over 3- and 5-node clusters).
sweep: $(STAMP)
	$(BIN)/python -m raftnet.sim --nodes 3 --seeds 1-25000 --jobs 2
	$(BIN)/python -m raftnet.sim --nodes 5 --seeds 25001-50000 --jobs 2

# How often the simulator catches each deliberate bug (docs/simulator.md's table).
bug-table: $(STAMP)
	$(BIN)/python -m raftnet.sim --bug-table --seeds 1-2000 --jobs 2

# The WAL's crash-state explorer, exhaustive: every crash point of every
# workload (up to 4096 states each), every sector of every file zeroed and
# bit-flipped. CI runs a sample (tests/test_storage_explorer.py).
crash-explore: $(STAMP)
	$(BIN)/python -m raftnet.storage.explore

# Jepsen-style campaign: real clusters (3 and 5 nodes alternate) under every
# fault, 45 minutes of runs; JEPSEN_ARGS adds or overrides flags
# (e.g. JEPSEN_ARGS="--nodes 5 --nemesis isolate-leader,pause --seed 7").
jepsen: $(STAMP)
	$(BIN)/python -m raftnet.jepsen --minutes 45 --duration 60 $(JEPSEN_ARGS)

# The benchmark matrix (bench/matrix.py): put and get workloads on fresh
# local 3- and 5-node clusters, each configuration 3 times (about 25 minutes);
# BENCH_ARGS adds or overrides flags (e.g. BENCH_ARGS="--runs 5 --only put").
bench: $(STAMP)
	$(BIN)/python bench/matrix.py $(BENCH_ARGS)

# A local 3-node cluster you can talk to (Ctrl-C stops it).
run: $(STAMP)
	$(BIN)/raftnet local --nodes 3 --dir .raftnet-local

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
