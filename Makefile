# reelscan developer commands. `make run` and `make test` work on a fresh clone with only python3 and make:
# they create .venv and install the project (editable, with dev tools) first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_DIR := protos
PROTOS := $(wildcard $(PROTO_DIR)/reelscan/v1/*.proto)
LISTEN ?= 127.0.0.1:50051
DB ?= ./var/reelscan.db
PYTEST_ARGS ?=

.PHONY: install proto proto-check sync-check lint typecheck test soak run cluster bench demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Generated code lives next to the .proto files (protos/reelscan/v1/*_pb2*.py[i]) and is committed.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I $(PROTO_DIR) -I third_party/protos \
		--python_out=$(PROTO_DIR) --pyi_out=$(PROTO_DIR) --grpc_python_out=$(PROTO_DIR) $(PROTOS)

# Fails if the committed generated code is not what `make proto` makes from the committed .proto files.
proto-check: proto
	git diff --exit-code -- $(PROTO_DIR) || (echo "generated code is stale: run 'make proto' and commit" >&2; exit 1)
	test -z "$$(git status --porcelain -- $(PROTO_DIR))" || (git status --porcelain -- $(PROTO_DIR); echo "untracked generated files: run 'make proto' and commit" >&2; exit 1)

# mypy cannot see through setuptools' editable import hook, so it checks a link tree that mirrors the
# installed layout (reelscan/{service,client,v1}).
typecheck: $(STAMP)
	rm -rf build/typecheck && mkdir -p build/typecheck/reelscan
	cp protos/reelscan/*.py protos/reelscan/py.typed build/typecheck/reelscan/
	ln -s ../../../service build/typecheck/reelscan/service
	ln -s ../../../client build/typecheck/reelscan/client
	ln -s ../../../protos/reelscan/v1 build/typecheck/reelscan/v1
	cd build/typecheck && MYPYPATH=. ../../$(BIN)/mypy --config-file ../../pyproject.toml -p reelscan.service -p reelscan.client

# client/sync_client.py is generated from client/async_client.py (one copy of each retry/paging/watch loop).
sync-check: $(STAMP)
	$(BIN)/python -m reelscan.client.gen_sync --check

lint: $(STAMP) typecheck sync-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

soak: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

run: $(STAMP)
	mkdir -p $(dir $(DB))
	$(BIN)/reelscan serve --listen $(LISTEN) --db $(DB)

# A throwaway PostgreSQL under var/pg (the system's PostgreSQL server binaries) and three replicas on it, on
# 127.0.0.1:50051-50053. Ctrl-C stops them all.
cluster: $(STAMP)
	$(BIN)/python examples/cluster.py

bench: $(STAMP)
	$(BIN)/python -m bench

demo: $(STAMP)
	$(BIN)/python examples/demo.py

clean:
	rm -rf build .mypy_cache .pytest_cache .ruff_cache
