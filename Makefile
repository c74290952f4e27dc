# The README's commands: `make run` serves on SQLite, `make test` runs the whole suite.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
PIP     := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test fuzz lint format bench screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev,s3,celery]'
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/taskledger serve

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

# The fuzz test of `make test`, with many more examples per operation (FUZZ_EXAMPLES to change).
fuzz: $(VENV)/.installed-dev
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100} $(BIN)/python -m pytest tests/api/test_fuzz.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy src

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix src tests bench scripts
	$(BIN)/ruff format src tests bench scripts

# Every script in bench/ but the shared library; options pass through, e.g. BENCH_ARGS="--rows 100000".
bench: $(VENV)/.installed-dev
	@for script in $(filter-out bench/benchlib.py bench/_%.py,$(wildcard bench/*.py)); do \
		echo "== $$script"; $(BIN)/python $$script $(BENCH_ARGS) || exit 1; done

# docs/ui/*.png: every page of the web UI, light and dark, in Debian's Chromium (apt-get install chromium).
screenshots: $(VENV)/.installed-dev
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
