#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a virtualenv in .venv holding the versions pinned
# (with hashes) in uv.lock, cinemate itself installed editable. Needs only Python 3.11 and
# pip: scripts/uv.sh installs the pinned uv first. Fails, changing nothing, when uv.lock no
# longer matches pyproject.toml; refresh the lock with `scripts/uv.sh lock`.
# Usage: scripts/setup.sh [--test]   (--test also installs the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# Swagger UI for /docs (pinned, integrity-checked, from the npm registry; cached).
scripts/docs-assets.sh
if [ "${1:-}" = "--test" ]; then
    # Exactly the lock, test tools included: whatever else is in .venv is removed.
    scripts/uv.sh sync --quiet --locked --compile-bytecode --extra test --python "$PYTHON"
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
    # The service's packages at their locked versions; test tools already there may stay.
    scripts/uv.sh sync --quiet --locked --compile-bytecode --inexact --python "$PYTHON"
fi
# Bytecode written now, once: where PYTHONDONTWRITEBYTECODE is set (the development and
# CI machine here) Python never writes it, and every process (serve, its worker, each CLI
# command, each test's server) compiled its imports from source again: 2.6-3.2 s to
# import the app on the 2-core machine, against 0.9-1.2 s from bytecode. uv compiles the
# installed packages; these are the project's own (editable, so not among them).
.venv/bin/python -m compileall -q -j 0 cinemate event_store command_side query_side \
    projections model schema devtools >/dev/null
