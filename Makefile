# Tasuki: `make local` runs everything on this machine, `make test` passes the tests.
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test local demo bench clean

setup:
	@bash local/setup.sh

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

local: setup
	$(VENV)/bin/tasuki local

# With `make local` running (in another terminal): a sample repository, a rule, a signed push.
demo: setup
	$(VENV)/bin/tasuki demo

# Benchmarks: Tasuki beside a baseline measured in the same run; ratios, not absolute times.
bench: setup
	$(VENV)/bin/python -m tests.bench $(BENCH)

clean:
	rm -rf $(VENV) .tasuki .pytest_cache
