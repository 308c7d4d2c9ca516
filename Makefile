# filebatch — every target creates the environment it needs (.venv), so a fresh clone works.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A second environment on the Lambda runtime's Python, for the compatibility leg of `make test`.
VENV313 := .venv313
STAMP313 := $(VENV313)/.installed
# checkov in an environment of its own: its exact pins (boto3 1.35, an older aws-sam-cli and
# cfn-lint) would downgrade the main one.
VENVCHECKOV := .venv-checkov
STAMPCHECKOV := $(VENVCHECKOV)/.installed
# schemathesis in an environment of its own too (it pins its own hypothesis and friends).
VENVST := .venv-schemathesis
STAMPST := $(VENVST)/.installed
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
# sam build for the python3.13 runtime needs a python3.13 on PATH; pyenv has one on this machine kind.
export PYENV_VERSION ?= 3.11.7:3.12.1:3.13.0

.PHONY: venv up demo test lint typecheck unit integration e2e check-template checkov openapi contract build sizes coldstart bench cost upload-bench sdk-bench clean py313 smoke-aws

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
	  "moto[server,s3,dynamodb,sqs,events,stepfunctions,awslambda]>=5.2.5,<5.3" requests "rich>=13,<16" "httpx>=0.27,<1" "setuptools>=61" pyyaml pytest "hypothesis>=6.100" cfn-lint aws-sam-translator
	@site=$$($(VENV313)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  printf '%s\n' "$(CURDIR)/layers/filebatch" "$(CURDIR)/local" "$(CURDIR)/sdk" > "$$site/filebatch-src.pth"
	touch $(STAMP313)

$(STAMPST): requirements-schemathesis.txt
	$(PYTHON) -m venv $(VENVST)
	$(VENVST)/bin/python -m pip install --quiet --upgrade pip
	$(VENVST)/bin/python -m pip install --quiet -r requirements-schemathesis.txt
	touch $(STAMPST)

$(STAMPCHECKOV): requirements-checkov.txt
	$(PYTHON) -m venv $(VENVCHECKOV)
	$(VENVCHECKOV)/bin/python -m pip install --quiet --upgrade pip
	$(VENVCHECKOV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $(STAMPCHECKOV)

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

# checkov on template.yaml (SAM resources included). Skips live in .checkov.yaml, one line each
# with its reason, rather than as inline checkov:skip metadata: one reviewable list instead of
# comments spread over a dozen functions and log groups. Skips are per check, so each reason
# holds for every resource of its kind; any other finding fails the build.
checkov: $(STAMPCHECKOV) ## security and best-practice checks of the template
	$(VENVCHECKOV)/bin/checkov --config-file .checkov.yaml

openapi: venv ## regenerate docs/openapi.json from the handlers' routes and models
	$(PY) -m filebatch_local openapi template.yaml docs/openapi.json

# Schemathesis against a local stack it starts itself, from docs/openapi.json as the stack serves it:
# every check (the exceptions and their reasons are in schemathesis.toml), a fixed seed and a bounded
# number of examples.
contract: venv $(STAMPST) ## fuzz the API against its published contract
	$(PY) -m filebatch_local run-against --port 0 -- $(VENVST)/bin/st run "{api_url}/openapi.json" \
	  --url "{api_url}/dev" -H "Authorization: Bearer {api_key}" \
	  --seed 1 --max-examples 30

build: venv ## sam build without Docker (arm64 wheels, python3.13)
	$(VENV)/bin/sam build --parallel --cached

# Not part of `test`: it prints figures (recorded in the README), it checks nothing.
# SIZES_ARGS=--with-ocr also measures the layer with the local provider's OCR (downloads ~150 MB of wheels).
sizes: build ## bytes of sam build's layer and functions, unzipped and zipped, against Lambda's limits
	$(PY) bench/build_sizes.py $(SIZES_ARGS)

unit: venv
	$(PY) -m pytest tests/unit -q

integration: venv
	$(PY) -m pytest tests/integration -q

e2e: venv
	$(PY) -m pytest tests/e2e -q

# Unit and integration tests first: quick to fail, and they run before any local stack's threads.
test: lint typecheck check-template checkov build py313 contract ## everything CI runs
	$(PY) -m pytest -q tests/unit tests/integration tests/e2e

# Not part of `test`: every figure of docs/performance.md in one run (about 10 minutes): cold start per
# function, cost per 1,000 files, upload MB/s (multipart against one PUT), the SDK's upload MB/s against
# a plain httpx loop and its peak RSS, local end-to-end throughput at N=1,000. Each prints its own table.
bench: coldstart cost upload-bench sdk-bench ## all the benchmarks: cold start, cost per 1,000 files, uploads, the SDK, local throughput
	$(PY) bench/e2e.py $(E2E_ARGS)

# Not part of `test`: figures only. UPLOAD_ARGS="--parts 1,4,8 --size-mib 1024" (the defaults).
upload-bench: venv ## MB/s of one 1 GiB file in parts (N at a time) against one PUT, on the local stack
	$(PY) bench/upload.py $(UPLOAD_ARGS)

# Not part of `test`: figures only. SDK_ARGS="--small-files 2000 --large-mib 256 --rss-files 1000,10000
# --rss-large-mib 2048" (the defaults); --rss-wait makes the RSS cases wait for every result too.
sdk-bench: venv ## submit's upload MB/s against a plain httpx loop, and submit's peak RSS, on the local stack
	$(PY) bench/sdk.py $(SDK_ARGS)

cost: venv ## what N files (COST_ARGS, default --files 1000) would cost on AWS, per 1,000 files
	$(PY) bench/cost.py $(COST_ARGS)

# Not part of `test`: figures only. COLDSTART_ARGS=--repeat 9 for steadier medians on a busy machine.
coldstart: build ## every function's handler import + clients against import boto3 + 2 clients (python3.13)
	$(PY) bench/coldstart.py $(COLDSTART_ARGS)

# Not part of `test`: needs AWS credentials and Bedrock model access, and costs a fraction of a cent.
# Without credentials it says so and does nothing.
smoke-aws: venv ## one real image through Amazon Bedrock (the bedrock provider's production path)
	$(PY) scripts/smoke_aws.py $(SMOKE_ARGS)

clean:
	rm -rf .aws-sam .local .pytest_cache .mypy_cache .ruff_cache
