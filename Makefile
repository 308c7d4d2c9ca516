# filebatch — every target creates the environment it needs (.venv), so a fresh clone works.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A second environment on the Lambda runtime's Python, for the compatibility leg of `make test`.
VENV313 := .venv313
STAMP313 := $(VENV313)/.installed
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
# sam build for the python3.13 runtime needs a python3.13 on PATH; pyenv has one on this machine kind.
export PYENV_VERSION ?= 3.11.7:3.12.1:3.13.0

.PHONY: venv up demo test lint typecheck unit integration e2e check-template build bench clean py313

venv: $(STAMP)

$(STAMP): requirements-dev.txt layers/filebatch/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@# The shared layer, the local runtime and the SDK are imported from the source tree.
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  printf '%s\n' "$(CURDIR)/layers/filebatch" "$(CURDIR)/local" "$(CURDIR)/sdk" > "$$site/filebatch-src.pth"
	touch $(STAMP)

$(STAMP313): requirements-dev.txt layers/filebatch/requirements.txt
	python3.13 -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install --quiet --upgrade pip
	$(VENV313)/bin/python -m pip install --quiet -r layers/filebatch/requirements.txt \
	  "moto[server,s3,dynamodb,sqs,events,stepfunctions,awslambda]>=5.2.5,<5.3" requests pyyaml pytest cfn-lint
	@site=$$($(VENV313)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  printf '%s\n' "$(CURDIR)/layers/filebatch" "$(CURDIR)/local" "$(CURDIR)/sdk" > "$$site/filebatch-src.pth"
	touch $(STAMP313)

py313: $(STAMP313) ## unit + integration tests on Python 3.13, the Lambda runtime
	$(VENV313)/bin/python -m pytest tests/unit tests/integration -q -p no:cacheprovider

up: venv ## serve the whole stack on http://127.0.0.1:3000 (Ctrl-C stops it)
	$(PY) -m filebatch_local up

demo: venv ## start the local stack, push the sample files through it, print one description per file
	$(PY) -m filebatch_local demo samples

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

check-template: venv ## cfn-lint, sam validate --lint, and a lint of every ASL file
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --lint --template-file template.yaml
	$(PY) -m filebatch_local lint-asl template.yaml

build: venv ## sam build without Docker (arm64 wheels, python3.13)
	$(VENV)/bin/sam build --parallel --cached

unit: venv
	$(PY) -m pytest tests/unit -q

integration: venv
	$(PY) -m pytest tests/integration -q

e2e: venv
	$(PY) -m pytest tests/e2e -q

test: lint typecheck check-template build py313 ## everything CI runs
	$(PY) -m pytest -q

bench: venv
	$(PY) bench/e2e.py

clean:
	rm -rf .aws-sam .local .pytest_cache .mypy_cache .ruff_cache
