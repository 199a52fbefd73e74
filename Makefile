# The two commands a newcomer runs: `make demo` and `make test`. Both create .venv first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean venv prometheus chromium postgres

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	@# byte-compiled once, as pip does for an installed package: an editable install is not, and with
	@# PYTHONDONTWRITEBYTECODE set every `mcplens` command compiled its modules again (~0.1 s each start)
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

# npm peers for the proxy tests (package.json, pinned in package-lock.json); skipped without npm
node_modules: package.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund || npm install --no-audit --no-fund; \
	else echo "npm not found: the proxy tests against npm MCP peers will skip"; fi

venv: $(STAMP)

# the demo, then the dashboard over its data (Ctrl-C stops it). Without a terminal (CI, a pipe) or with
# DASHBOARD=0 the demo ends after the report, as before.
DEMO_HOME = $${MCPLENS_HOME:-$(CURDIR)/.mcplens-demo}
demo: $(STAMP)
	$(BIN)/python -m examples.demo
	@if [ "$(DASHBOARD)" != 0 ] && [ -t 1 ]; then $(BIN)/mcplens dashboard --home "$(DEMO_HOME)"; \
	else echo "see it in a browser: $(BIN)/mcplens dashboard --home $(DEMO_HOME)"; fi

# Prometheus and promtool for the exporter tests (Debian package; needs root, else those tests skip)
prometheus:
	@command -v prometheus >/dev/null 2>&1 || (if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus; \
	else echo "prometheus not installed and not root: the Prometheus exporter tests will skip"; fi)

# Debian's Chromium for the dashboard's browser tests (driven by the playwright package; never
# `playwright install`); needs root, else those tests skip
chromium:
	@command -v chromium >/dev/null 2>&1 || (if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else echo "chromium not installed and not root: the dashboard's browser tests will skip"; fi)

# PostgreSQL server binaries for the fleet-store tests (a throwaway cluster per run); needs root, else they skip
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	(if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; \
	else echo "PostgreSQL not installed and not root: the PostgreSQL store tests will skip"; fi)

test: $(STAMP) node_modules prometheus postgres chromium
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[test,otel]"
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
