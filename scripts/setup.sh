#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a virtualenv in .venv with cinemate installed.
# Usage: scripts/setup.sh [--test]   (--test also installs the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# Swagger UI for /docs (pinned, integrity-checked, from the npm registry; cached).
scripts/docs-assets.sh
if [ "${1:-}" = "--test" ]; then
    .venv/bin/python -m pip install --quiet -e ".[test]"
    # The docs test drives a real headless browser: Debian's chromium.
    if ! command -v chromium >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        else
            echo "setup: the docs test needs chromium (apt-get install chromium)" >&2
        fi
    fi
else
    .venv/bin/python -m pip install --quiet -e .
fi
