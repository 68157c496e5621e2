# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install lint constraints bench clean

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Node packages (Azurite, the Azure Blob emulator the tests and demo use), pinned by package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

install: $(STAMP) node_modules/.installed

## Start the demo: embedded PostgreSQL (unless LGDP_DATABASE_URL is set), migrations, the M365 stand-in
## (SharePoint, mail), Azurite (requester storage), airflow standalone.
demo: install
	$(BIN)/lgdp dev demo

## Run the whole test suite against real services (PostgreSQL started by the tests if none is configured).
test: install
	$(BIN)/lgdp specs lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/lgdp specs lint

bench: install
	$(BIN)/python bench/parse_dags.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/distribute.py

## Re-freeze constraints.txt from the current environment after changing requirements.txt.
constraints: install
	{ echo "# Full resolved set, frozen with 'make constraints' from a working install (Python 3.11)."; \
	  echo "# Airflow's official constraints file cannot be fetched offline; this one keeps installs reproducible."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^lgdp'; } > constraints.txt

clean:
	rm -rf $(VENV) .lgdp
