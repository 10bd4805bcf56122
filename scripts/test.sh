#!/usr/bin/env bash
# Set up (if needed), then lint, type-check and run every test against real
# PostgreSQL, Redis and Kafka servers that the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/mypy cinemate event_store command_side query_side projections model schema devtools tests bench
# Line coverage of the service packages (pyproject's [tool.coverage.run]) is printed at
# the end, per file below 100% and in total.
.venv/bin/python -m pytest -q -p no:cacheprovider --cov --cov-report=term:skip-covered "$@"
