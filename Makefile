# Two commands matter: `make demo` and `make test`. Both create the virtual environment when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Python 3.13, the Lambda runtime: the newest 3.13 under pyenv, else a python3.13 on PATH. Each candidate
# must really run (a pyenv shim exists on PATH even where pyenv's selected version is not 3.13).
PYTHON313 ?= $(shell for p in $$(ls -d $$(pyenv root 2>/dev/null || echo $${PYENV_ROOT:-$$HOME/.pyenv})/versions/3.13.*/bin/python3.13 2>/dev/null | sort -V -r) $$(command -v python3.13 2>/dev/null); do "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && echo "$$p" && break; done)
export SAM_CLI_TELEMETRY := 0
export PATH := $(abspath $(BIN)):$(PATH)
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: help venv test unit lint template scan build demo cost bench schemas contract-check clean soak

help:
	@echo "make demo   - run the whole product locally (moto + the Leap simulator)"
	@echo "make cost   - the demo's measurements priced for 10,000 and 100,000 Reference IDs (updates docs/cost.md)"
	@echo "make test   - every test, ruff, sam validate --lint, cfn-lint, checkov and sam build"
	@echo "make scan   - checkov on template.yaml and subscriber/template.yaml, as written and after the SAM transform"
	@echo "make soak   - days of seeded faults on every boundary, then the invariants (SEEDS=10 HOURS=72)"
	@echo "make bench  - the benchmarks in bench/"
	@echo "make schemas - regenerate schemas/ from the event catalog"
	@echo "make contract-check - our Meters v2 description against Leap's file (LEAP_METERS_OPENAPI=/path/to/meters-v2.yml)"

$(STAMP): pyproject.toml layers/common/requirements.txt
	@if [ -z "$(PYTHON313)" ]; then echo "Python 3.13 not found: install it (pyenv install 3.13) or set PYTHON313=/path/to/python3.13" >&2; exit 1; fi
	@[ -x $(BIN)/python ] || $(PYTHON313) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

template: $(STAMP)
	$(BIN)/sam validate --lint --template template.yaml
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template subscriber/template.yaml
	$(BIN)/cfn-lint subscriber/template.yaml

# checkov, pinned, in a virtual environment of its own: it pins boto3 1.35 and networkx 2.6, which
# clash with this project's boto3 and cfn-lint. Findings are fixed or skipped in the resource's
# Metadata with a reason (docs/security.md#the-scanner); no check is skipped globally.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
TRANSFORMED := .aws-sam/transformed.json

$(CHECKOV_STAMP):
	@if [ -z "$(PYTHON313)" ]; then echo "Python 3.13 not found: install it (pyenv install 3.13) or set PYTHON313=/path/to/python3.13" >&2; exit 1; fi
	rm -rf $(CHECKOV_VENV)
	$(PYTHON313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	@touch $@

# Both the template as written and as CloudFormation receives it (SAM's generated resources).
# --skip-download and CKV_SKIP_PACKAGE_UPDATE_CHECK: nothing is fetched, the scan runs offline.
# The subscriber template too; checkov evaluates Conditions on the parameters' defaults, so it is also
# scanned with DeploySampleConsumer=true as its default (as written and transformed): the consumer's parts.
CHECKOV := CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --framework cloudformation --skip-download --compact --quiet
SUBSCRIBER := subscriber/template.yaml
SUBSCRIBER_CONSUMER := .aws-sam/subscriber-consumer.json
SUBSCRIBER_TRANSFORMED := .aws-sam/subscriber-consumer-transformed.json
scan: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/python -m devtools.transformed_template --output $(TRANSFORMED)
	$(CHECKOV) -f template.yaml
	$(CHECKOV) -f $(TRANSFORMED)
	$(BIN)/python -m devtools.transformed_template --template $(SUBSCRIBER) --default DeploySampleConsumer=true --untransformed --output $(SUBSCRIBER_CONSUMER)
	$(BIN)/python -m devtools.transformed_template --template $(SUBSCRIBER) --default DeploySampleConsumer=true --output $(SUBSCRIBER_TRANSFORMED)
	$(CHECKOV) -f $(SUBSCRIBER)
	$(CHECKOV) -f $(SUBSCRIBER_CONSUMER)
	$(CHECKOV) -f $(SUBSCRIBER_TRANSFORMED)

build: $(STAMP)
	$(BIN)/sam build --template template.yaml --build-dir .aws-sam/build
	$(BIN)/sam build --template subscriber/template.yaml --build-dir .aws-sam/subscriber-build

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

test: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory template
	$(MAKE) --no-print-directory scan
	$(MAKE) --no-print-directory build

demo: $(STAMP)
	$(BIN)/python -m devtools.demo $(DEMO_ARGS)

# The default demo, measured (AWS calls, request units, durations, log bytes, custom metrics), then priced
# by devtools/cost.py; the numbers in docs/cost.md are its output (docs/cost.md#re-running-it).
MEASURED := demo-out/measured.json
cost: $(STAMP)
	$(BIN)/python -m devtools.demo --quiet --measured $(MEASURED) $(DEMO_ARGS)
	$(BIN)/python -m devtools.cost --measured $(MEASURED) --update-doc docs/cost.md $(COST_ARGS)

# The fault soak (docs/soak.md): per seed the faults injected, the invariants checked with their counts,
# every violation with the fault timeline around it. A failing seed replays with --first-seed S --seeds 1.
SEEDS ?= 10
HOURS ?= 72
soak: $(STAMP)
	$(BIN)/python -W ignore -m devtools.soak --seeds $(SEEDS) --hours $(HOURS) $(SOAK_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/poller.py
	$(BIN)/python bench/emitter.py

schemas: $(STAMP)
	$(BIN)/python -m devtools.generate_schemas

# Not part of `test`: Leap's OpenAPI file is not in the repo. Run it by hand, or in CI where the file is.
contract-check: $(STAMP)
	$(BIN)/python -m tests.contracts.check_against_openapi "$(LEAP_METERS_OPENAPI)"

clean:
	rm -rf .aws-sam .pytest_cache .hypothesis demo-out
