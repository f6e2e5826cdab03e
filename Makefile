# `make run`: set up .venv and run the default workflow (embedded synthetic cohort, study scale).
# `make test`: set up .venv and run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= work/default
CORES ?= all
STAMP := $(VENV)/.installed

.PHONY: setup run test test-slurm lint dryrun clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --directory $(WORKDIR)

dryrun: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --directory $(WORKDIR) --dry-run --quiet

test: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/pytest -q

# Opt-in: a real single-node SLURM (root, Debian packages slurm-wlm munge); see README.
test-slurm: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH tests/slurm/run.sh $(SLURM_TEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check datspect scripts tests bench
	$(BIN)/ruff format --check datspect scripts tests bench
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/lint-imports
	$(BIN)/snakemake --lint --directory $(WORKDIR)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
