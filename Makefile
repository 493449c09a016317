# Tasuki: `make local` runs everything on this machine, `make test` passes the tests.
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test local bench clean

setup:
	@bash local/setup.sh

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

local: setup
	$(VENV)/bin/tasuki local

clean:
	rm -rf $(VENV) .tasuki .pytest_cache
