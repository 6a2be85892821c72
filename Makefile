# Tamiyo — the commands a user needs.  `make demo` and `make test` work on a fresh
# machine with Python 3.11, Java 17+ and Maven (see README.md).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help venv kafka demo bus-demo test test-fast lint proto bench bench-pipeline clean

help:
	@echo "make demo       train over a local Kafka broker (actors + replay + learner), then a report"
	@echo "make test       the whole test suite against a real local broker"
	@echo "make test-fast  the suite without the slow learning tests"
	@echo "make bus-demo   one envelope of every Leyline type through the broker and back"
	@echo "make lint       ruff, the layer contracts (import-linter), the type checker (mypy)"
	@echo "make proto      regenerate contracts/proto/leyline_pb2.py(i) from leyline.proto"
	@echo "make bench      the micro-benchmarks (JSON to stdout); make bench-pipeline: bus vs in-process"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $@

venv: $(BIN)/.installed

# Resolve Apache Kafka from Maven Central once (cached under ~/.cache/tamiyo).
kafka: venv
	$(BIN)/tamiyo broker fetch

# A default `tamiyo train` (IMPALA on host-sim, 3 minutes) with the host-sim preset (a smaller,
# faster network and a fresher replay buffer): local broker, actors + replay + learner, runs/<id>/.
demo: kafka
	$(BIN)/tamiyo train --preset host-sim

bus-demo: kafka
	$(BIN)/tamiyo demo

test: kafka
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: kafka
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# ruff; the layer contracts (import-linter) and the type checker (mypy) over the installed package
# layout (tools/package_tree.py: the editable install's import hook is invisible to static tools).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/package_tree.py > /dev/null
	PYTHONPATH=build/package-tree $(BIN)/lint-imports --no-cache
	$(BIN)/mypy

proto: venv
	$(BIN)/python -m grpc_tools.protoc -Icontracts/proto --python_out=contracts/proto \
		--pyi_out=contracts/proto contracts/proto/leyline.proto

bench: venv
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python bench/contracts.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/learner.py
	$(BIN)/python bench/envs.py

bench-pipeline: kafka
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
