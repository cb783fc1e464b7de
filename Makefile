# napbench: the two commands are `make run` and `make test`; both create .venv when missing.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NAPBENCH_MIRROR ?= $(abspath ../shared/data)
export NAPBENCH_HOME ?= $(abspath .napbench)
export ORT_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export TF_CPP_MIN_LOG_LEVEL := 2
export MPLBACKEND := Agg

.PHONY: run test test-all install system-deps bench clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	@test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[tf,test]'
	@touch $(STAMP)

install: system-deps $(STAMP)

# Graphviz renders `napbench draw` pictures; installed from Debian when missing.
system-deps:
	@command -v dot >/dev/null || { (apt-get update -qq && apt-get install -y -qq graphviz) >/dev/null 2>&1 || echo "warning: graphviz not installed; 'napbench draw' needs it"; }

# The main job: the `pipeline` Prefect flow on params.yaml (NB-201 and NB-101 refreshed from the
# mirror, k-GNN, FLOPs and GENNAPE trained on NB-201, zero-shot and 50-shot evaluation, Hub-layout export).
# Results under results/; progress bars and flow logs throughout; the headline table at the end.
run: install
	$(BIN)/python -m napbench.flows pipeline --params params.yaml

test: install
	$(BIN)/pytest -q -m "not slow" -p no:cacheprovider

test-all: install
	$(BIN)/pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python benchmarks/build_families.py
	$(BIN)/python benchmarks/read_dataset.py

clean:
	rm -rf $(VENV) runs results .napbench
