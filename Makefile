# hookfan: `make dev` runs the whole stack, `make test` runs every check. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint bench install clean image

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,dev,otel]'
	touch $(STAMP)

install: $(STAMP)

dev: install
	$(BIN)/hookfan dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	sh scripts/ensure-redis.sh
	$(BIN)/pytest

bench: install
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[bench]'
	$(BIN)/python bench/run.py

# The release image, built locally from the same Dockerfile (base pinned by digest, dependencies
# held to constraints.txt) that .github/workflows/release.yml builds for amd64 and arm64.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= ghcr.io/hookfan/hookfan:$(VERSION)
image:
	docker build -t $(IMAGE) .

clean:
	rm -rf $(VENV) .hookfan-dev
