# uba: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# A second environment without numpy, scipy and scikit-learn: basic mode.
VENV_BASIC ?= .venv-basic
BUF    := tools/node_modules/.bin/buf
# npm packages of tools/ (buf; Swagger UI for the gateway's API reference page).
TOOLS  := tools/node_modules/.installed
PROTOS := $(wildcard proto/uba/v1/*.proto)
DESCRIPTOR := envoy/uba_descriptor.pb
# The REST contract, generated from proto/ (uba/gateway/openapi.py).
OPENAPI := docs/openapi/uba.openapi.json

.PHONY: run test test-fast lint test-faults-large venv tools proto openapi proto-check proto-lint lock bench soak evaluate clean

# Starts the service on the embedded SQLite database (data in ./data). The
# gateway serves the API reference page from tools/node_modules (Swagger UI).
# Prometheus metrics on 127.0.0.1:9464/metrics (docs/operations.md).
run: $(VENV)/.installed $(TOOLS)
	$(VENV)/bin/uba serve --gateway-listen 127.0.0.1:8080 --metrics-listen 127.0.0.1:9464

# Runs every test: proto checks, then the whole pytest suite (SQLite and
# PostgreSQL, real Envoy, real Chromium) in enhanced mode (ML packages
# installed), then what depends on the mode again in basic mode (without
# them: the unit tier and the `both_modes` modules, tests/conftest.py). Each
# pass lists its slowest tests, to keep the whole within its time budget.
test: $(VENV)/.installed $(VENV_BASIC)/.installed lint proto-check proto-lint
	@echo "== enhanced mode (numpy, scipy, scikit-learn installed)"
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)
	@echo "== basic mode (standard library detectors only)"
	$(VENV_BASIC)/bin/python -m pytest -q --durations=15 $(PYTEST_ARGS)

# The fast tier: unit and in-process tests (pytest marker `unit`), both modes,
# about a minute each. Tiers: unit, e2e, gateway, browser, fault (tests/conftest.py).
test-fast: $(VENV)/.installed $(VENV_BASIC)/.installed
	$(PY) -m pytest -q -m unit $(PYTEST_ARGS)
	$(VENV_BASIC)/bin/python -m pytest -q -m unit $(PYTEST_ARGS)

# ruff (lint, import order, format) and mypy, configured in pyproject.toml.
LINTED := server clients tests bench
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

# The fault tests (tests/faults) at larger sizes: UBA_FAULT_SCALE multiplies
# their events, rounds of faults and soak seconds (and time limits); 10 here.
# The OpenAPI fuzz test runs with as many times the cases and a fresh seed.
FAULT_SCALE ?= 10
test-faults-large: $(VENV)/.installed
	UBA_FAULT_SCALE=$(FAULT_SCALE) $(PY) -m pytest tests/faults tests/gateway/test_openapi_fuzz.py -q -s $(PYTEST_ARGS)

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[gateway,dev,ml,bench,windows,tracing,eventlog]'
	touch $@

$(VENV_BASIC)/.installed: pyproject.toml constraints.txt
	test -x $(VENV_BASIC)/bin/python || $(PYTHON) -m venv $(VENV_BASIC)
	$(VENV_BASIC)/bin/python -m pip install -q --upgrade pip
	$(VENV_BASIC)/bin/python -m pip install -q -c constraints.txt -e '.[gateway,dev,windows,tracing,eventlog]'
	touch $@

tools: $(TOOLS)
$(TOOLS): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund
	touch $@

# Regenerates the Python stubs (server/uba/v1) and the descriptor set Envoy loads.
proto: $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -Iproto -Ithird_party/googleapis \
		--python_out=server --pyi_out=server --grpc_python_out=server \
		--include_imports --include_source_info --descriptor_set_out=$(DESCRIPTOR) $(PROTOS)
	$(MAKE) openapi

# Regenerates the OpenAPI document from the descriptor set (needs
# protoc-gen-swagger: Debian's golang-grpc-gateway).
openapi: $(VENV)/.installed
	$(PY) -m uba.gateway.openapi --descriptor $(DESCRIPTOR) --out $(OPENAPI)

# Fails when the committed stubs, descriptor set or OpenAPI document drift from proto/.
proto-check: $(VENV)/.installed
	@rm -rf .proto-check && mkdir -p .proto-check/out
	@$(PY) -m grpc_tools.protoc -Iproto -Ithird_party/googleapis \
		--python_out=.proto-check/out --pyi_out=.proto-check/out --grpc_python_out=.proto-check/out \
		--include_imports --include_source_info --descriptor_set_out=.proto-check/out/descriptor.pb $(PROTOS)
	@for f in .proto-check/out/uba/v1/*; do cmp -s $$f server/uba/v1/$$(basename $$f) \
		|| { echo "drift: server/uba/v1/$$(basename $$f) differs from proto/; run 'make proto'"; exit 1; }; done
	@cmp -s .proto-check/out/descriptor.pb $(DESCRIPTOR) \
		|| { echo "drift: $(DESCRIPTOR) differs from proto/; run 'make proto'"; exit 1; }
	@$(PY) -m uba.gateway.openapi --descriptor .proto-check/out/descriptor.pb --check $(OPENAPI)
	@rm -rf .proto-check
	@echo "proto-check: generated code and OpenAPI document match proto/"

# buf lint (STANDARD) and buf breaking (WIRE_JSON) against main.
proto-lint: $(TOOLS)
	$(BUF) lint
	@if git rev-parse --verify -q main >/dev/null; then \
		$(BUF) breaking --against '.git#branch=main'; \
	else echo "proto-lint: no main branch to compare against; breaking check skipped"; fi

# Re-pins every Python dependency from a fresh resolution (review the diff).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip
	.lock-venv/bin/pip install -q '.[gateway,dev,ml,bench,windows,tracing]'
	.lock-venv/bin/pip freeze --exclude uba | grep -v '^-e' > constraints.txt
	rm -rf .lock-venv

# The benchmark suite on SQLite and PostgreSQL (about 20-30 minutes): report.md,
# report.json and plots in bench/results/, summarised in docs/benchmarks.md.
# BENCH_ARGS="--max-events 10000000" takes the growth curve to ten million events.
bench: $(VENV)/.installed
	$(PY) bench/suite.py $(BENCH_ARGS)

# A soak of ingest, queries, exports and subscriptions (SOAK_SECONDS, default 600).
SOAK_SECONDS ?= 600
soak: $(VENV)/.installed
	$(PY) bench/soak.py --seconds $(SOAK_SECONDS)

# Detection quality on the default labelled scenario (200 users, six weeks,
# seed 7), once in enhanced and once in basic mode, each through its own
# throwaway server (a few minutes each); docs/detection.md reads the tables.
# EVALUATE_ARGS="--json" or "--users 500 --seed 3" change the run.
evaluate: $(VENV)/.installed $(VENV_BASIC)/.installed
	@echo "== enhanced mode"
	$(PY) -m uba evaluate $(EVALUATE_ARGS)
	@echo "== basic mode"
	$(VENV_BASIC)/bin/python -m uba evaluate $(EVALUATE_ARGS)

clean:
	rm -rf $(VENV) $(VENV_BASIC) .proto-check tools/node_modules clients/node/node_modules
