#!/usr/bin/env bash
# Sets up .venv (if needed) with the dev extras and runs every check the project has:
# ruff (lint + format), mypy --strict, import-linter (the layer rule), pytest (unit,
# doctests, property tests, integration tests against PostgreSQL/Redis when reachable,
# and the dashboard in headless chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# The dashboard's browser tests drive Debian's chromium through Playwright (no browser
# download): install it where this runs as root on Debian and it is missing.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing chromium (Debian) for the dashboard's browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
fi
echo "== ruff"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== import-linter"
.venv/bin/lint-imports
echo "== pytest"
.venv/bin/python -m pytest "$@"
