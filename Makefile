# Tasuki: `make local` runs everything on this machine, `make test` passes the tests.
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup lint unit test local demo bench bundle clean

setup:
	@bash local/setup.sh

# Lint and type gate: ruff (lint and format) on the whole tree, mypy on the whole package (tasuki.shared,
# tasuki.functions, tasuki.local). mypy finds tasuki.* through a folder of links, since the package maps
# the top-level folders to tasuki.*.
TYPECHECK := $(VENV)/typecheck
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@mkdir -p $(TYPECHECK)/tasuki && for d in functions shared local; do ln -sfn $(CURDIR)/$$d $(TYPECHECK)/tasuki/$$d; done
	MYPYPATH=$(TYPECHECK) $(VENV)/bin/mypy -p tasuki.shared -p tasuki.functions -p tasuki.local

# The fast tier: no network, no Docker, no RabbitMQ; on both cores (pytest-xdist).
unit:
	@bash local/setup.sh venv
	$(VENV)/bin/pytest -n 2 tests/unit $(PYTEST_ARGS)

# Everything: the lint gate, the unit tier (`make unit`), then integration and e2e on both cores,
# a test file per worker at a time (a file's tests may share a module fixture). They share
# RabbitMQ (a vhost each), Docker (containers labelled per test) and PostgreSQL (a cluster per
# worker); the tests marked `alone` restart or reconfigure the broker under CI, so they run last,
# by themselves.
test: lint unit
	$(VENV)/bin/pytest -n 2 --dist loadfile --durations=15 -m "not alone" tests/integration tests/e2e $(PYTEST_ARGS)
	$(VENV)/bin/pytest --durations=5 -m alone tests/integration tests/e2e $(PYTEST_ARGS)

# `make local` and `make demo` work offline with the demo's repository, a folder on this machine:
# they allow file clone URLs beside https, unless TASUKI_CLONE_SCHEMES says otherwise.
LOCAL_SCHEMES := TASUKI_CLONE_SCHEMES=$${TASUKI_CLONE_SCHEMES:-https,file}

local: setup
	$(LOCAL_SCHEMES) $(VENV)/bin/tasuki local

# With `make local` running (in another terminal): a sample repository, a rule, a signed push.
demo: setup
	$(LOCAL_SCHEMES) $(VENV)/bin/tasuki demo

# Benchmarks: Tasuki beside a baseline measured in the same run; ratios, not absolute times.
bench: setup
	$(VENV)/bin/python -m tests.bench $(BENCH)

# One deployable folder and zip per function under build/bundles/ (infra/gcp, infra/aws, docs/cloud.md).
bundle: setup
	$(VENV)/bin/tasuki deploy bundle

clean:
	rm -rf $(VENV) .tasuki .pytest_cache build
