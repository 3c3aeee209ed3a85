# Redvest: `make run` starts everything, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run demo stories test lint bench chaos images migrate clients clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install Redvest with its development tools

run: $(STAMP) ## migrate, seed the demo community, run every service, restart what exits (Ctrl-C stops)
	$(BIN)/python -m devtools run

demo: $(STAMP) ## walk a knife-sharpening request through the running system
	$(BIN)/python -m devtools demo

stories: $(STAMP) ## walk every built story of the domain through the running system, one line each
	$(BIN)/python -m devtools stories

test: $(STAMP) ## lint, type-check, import contracts, deploy files, tests on SQLite and PostgreSQL, end to end, chaos, containers
	$(BIN)/python -m devtools.checks

lint: $(STAMP) ## ruff, import-linter and mypy only
	$(BIN)/python -m devtools.checks --only-static

bench: $(STAMP) ## intake POST vs a Flask echo and a floor, CPU a POST, fabric hop, post → notified at 100 req/s, killed worker, ledger
	$(BIN)/python -m devtools.bench

chaos: $(STAMP) ## 2,000 requests while every process is killed and Redis restarted; audit for loss
	$(BIN)/python -m devtools.chaos

images: $(STAMP) ## build one image per service with podman (deploy/images/; base images made locally)
	$(BIN)/python -m devtools.containers images

migrate: $(STAMP) ## apply every service's migrations to its database under var/
	$(BIN)/python -m devtools migrate

clients: $(STAMP) ## intake's typed clients (Python, TypeScript) from its OpenAPI document, in var/clients/
	$(BIN)/python -m devtools.clients

clean: ## remove var/ (databases, Redis AOF, logs, credentials)
	rm -rf var
