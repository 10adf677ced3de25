# claimscrub: `make demo` and `make test` do all set-up on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: demo test lint bench bench-compare clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/claimscrub demo

# The suite runs in PYTEST_WORKERS processes (pytest-xdist), a test file per process at a time: most of its
# time is real Prefect servers, workers and flows starting and waiting. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# Before and after a change, in one run: make bench-compare BEFORE=<git revision> (default origin/main).
BEFORE ?= origin/main
bench-compare: $(STAMP)
	rm -rf .bench-before; git worktree prune
	git worktree add --detach .bench-before $(BEFORE)
	$(BIN)/python -m benchmarks.compare .bench-before $(BENCH_ARGS); status=$$?; \
	  git worktree remove --force .bench-before; exit $$status

clean:
	rm -rf $(VENV) .prefect demo_run .pytest_cache benchmarks/data .bench-before
