# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install system-packages lint constraints bench clean

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

# Debian packages the tests and the demo drive: a headless Chromium (UI tests), LibreOffice Calc
# (spreadsheet round trips re-saved through a real spreadsheet application) and poppler-utils (PDF
# checks). Installed with apt-get when missing (needs root, as on CI); `SKIP_APT=1` skips the step.
# docker-compose (1.29) validates docker-compose.yaml offline, without an engine (tests/test_deployment.py).
DEBIAN_PACKAGES := chromium libreoffice-calc-nogui poppler-utils fonts-dejavu-core docker-compose
system-packages:
	@if [ -n "$(SKIP_APT)" ]; then exit 0; fi; \
	missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root for apt-get (or install:$$missing; SKIP_APT=1)"; exit 1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

install: system-packages $(STAMP) node_modules/.installed

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
	$(BIN)/python bench/validate_tables.py
	$(BIN)/python bench/distribute.py
	$(BIN)/python bench/triggers.py
	$(BIN)/python bench/peak.py

## Re-freeze constraints.txt from the current environment after changing requirements.txt.
constraints: install
	{ echo "# Full resolved set, frozen with 'make constraints' from a working install (Python 3.11)."; \
	  echo "# Airflow's official constraints file cannot be fetched offline; this one keeps installs reproducible."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^lgdp'; } > constraints.txt

clean:
	rm -rf $(VENV) .lgdp
