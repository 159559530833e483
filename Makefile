# Set-up, run and test Sieve on one machine. `make run` and `make test` each do
# every step a fresh machine needs; each step is skipped when already done.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTHON311 ?= $(shell command -v python3.11 || command -v python3)
PROTOS := $(wildcard protos/sieve/v1/*.proto)
STAMP := $(VENV)/.installed
GOBIN := $(CURDIR)/var/bin
GRPCURL := $(GOBIN)/grpcurl
GRPCURL_VERSION := v1.9.3
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)

.PHONY: install system-deps proto run down test unit integration lint clean

install: $(STAMP) proto

# System packages: OpenJDK 17 for the Cassandra node, Maven to fetch it.
system-deps:
	@scripts/system-deps.sh

$(STAMP): pyproject.toml constraints.txt | system-deps
	@test -x $(PY) || $(PYTHON311) -m venv $(VENV)
	$(PIP) install -q --upgrade pip==26.3
	$(PIP) install -q -c constraints.txt -e '.[dev]' --config-settings editable_mode=compat
	@touch $(STAMP)

proto: sieve/v1/.generated

sieve/v1/.generated: $(PROTOS) $(STAMP)
	@mkdir -p sieve/v1
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. \
		--grpc_python_out=. $(PROTOS)
	@touch $@

$(GRPCURL):
	GOBIN=$(GOBIN) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

run: install
	$(VENV)/bin/sieve up

down:
	$(VENV)/bin/sieve down

test: install $(GRPCURL)
	$(VENV)/bin/sieve store up
	$(VENV)/bin/pytest -q

unit: install
	$(VENV)/bin/pytest -q tests/unit

lint: install
	$(VENV)/bin/ruff check engine actors perf console tests
	$(VENV)/bin/ruff format --check engine actors perf console tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) sieve build *.egg-info
