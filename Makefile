# Domicile developer commands. `make run` and `make test` install what they need themselves.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Addresses, catalog, logs and dev credentials of `make run` and `make run-insecure`: apart by
# default, so both can run at once (run-insecure serves no console).
run: DATA_DIR ?= .domicile
run: RUN_PORT ?= 50051
run: RUN_HTTP ?= 8080
run: RUN_CONSOLE ?= 8081
run-insecure: DATA_DIR ?= .domicile/insecure
run-insecure: RUN_PORT ?= 50052
run-insecure: RUN_HTTP ?= 8082

.PHONY: run run-insecure test test-fast venv lint scan console proto proto-check lint-proto breaking neo4j-up neo4j-down bench clean

# The console's built single-page app (not committed): rebuilt when its sources change.
CONSOLE_BUILT   := domicile/console/static/index.html
CONSOLE_SOURCES := $(shell find console-web/src -type f 2>/dev/null) console-web/index.html console-web/package.json \
                   console-web/package-lock.json console-web/vite.config.ts console-web/tsconfig.json

# The residency engine (crates/) is built by the install: rebuild it when its sources change.
ENGINE_SOURCES := Cargo.toml Cargo.lock $(shell find crates/engine crates/engine-py -name '*.rs' -o -name Cargo.toml) \
	protos/domicile/v1/residency.proto protos/domicile/v1/access.proto

$(STAMP): pyproject.toml setup.py $(ENGINE_SOURCES)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

$(CONSOLE_BUILT): $(CONSOLE_SOURCES)
	bash tools/build-console.sh

## console: build the browser console (npm ci + vite build into domicile/console/static)
console: $(CONSOLE_BUILT)

## run: the server on the embedded SQLite store with the demo catalog and example policy (TLS + JWT with dev
## credentials, whose client side is installed in ~/.config/domicile so client commands anywhere find it); the
## console on http://127.0.0.1:8081 (open the one-time sign-in link it prints)
run: $(STAMP) $(CONSOLE_BUILT)
	$(VENV)/bin/domicile --data-dir $(DATA_DIR) dev init --install-client
	$(VENV)/bin/domicile serve --dev --demo --data-dir $(DATA_DIR) --store sqlite:///$(DATA_DIR)/catalog.db \
	  --policy examples/policy.yaml --listen 127.0.0.1:$(RUN_PORT) --http-listen 127.0.0.1:$(RUN_HTTP) \
	  --console-listen 127.0.0.1:$(RUN_CONSOLE)

## run-insecure: the same, plaintext and without authentication (loopback only), beside `make run`: gRPC on
## 127.0.0.1:50052, HTTP on 127.0.0.1:8082, data in .domicile/insecure
run-insecure: $(STAMP)
	$(VENV)/bin/domicile serve --insecure --demo --data-dir $(DATA_DIR) --store sqlite:///$(DATA_DIR)/catalog.db \
	  --policy examples/policy.yaml --listen 127.0.0.1:$(RUN_PORT) --http-listen 127.0.0.1:$(RUN_HTTP)

## test: the whole suite; starts (and stops) its own Neo4j server, installs buf and Chromium, builds the console
test: $(STAMP) $(CONSOLE_BUILT)
	bash scripts/test.sh

## test-fast: everything but Neo4j-backed tests
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not neo4j"

## lint: ruff (format check and lint rules) and mypy, as `make test` runs them first
lint: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) scripts/typecheck.py

## scan: the deployment files' scans (hadolint, checkov), as `make test` runs them
scan:
	bash tools/scan.sh

## proto: regenerate domicile/v1 from protos/ (commit the result)
proto: $(STAMP)
	$(PY) scripts/gen_protos.py

## lint-proto: buf lint (STANDARD)
lint-proto:
	bash tools/buf.sh lint

## breaking: buf breaking-change check against the main branch
breaking:
	bash tools/buf.sh breaking --against '.git#branch=main'

neo4j-up:
	bash tools/neo4j/neo4j.sh up

neo4j-down:
	bash tools/neo4j/neo4j.sh down

## bench: all benchmarks (see bench/README.md)
bench: $(STAMP)
	bash bench/run_all.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis console-web/node_modules domicile/console/static
