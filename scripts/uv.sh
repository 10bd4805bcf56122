#!/usr/bin/env bash
# Run the project's pinned uv (scripts/requirements-uv.txt), installing it first if needed
# with plain pip and hash checking, so a machine needs nothing but Python 3.11 and pip.
# Usage: scripts/uv.sh ARGS...   e.g. scripts/uv.sh lock   (refresh uv.lock after editing
# pyproject.toml), scripts/uv.sh lock --upgrade-package NAME, scripts/uv.sh tree
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
version="$(sed -n 's/^uv==\([^ ]*\).*/\1/p' "$root/scripts/requirements-uv.txt")"
prefix="$root/.tools/uv-$version"
if [ ! -x "$prefix/bin/uv" ]; then
    # Into a scratch folder first, so an interrupted install is never taken as done.
    rm -rf "$prefix.partial"
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check \
        --no-deps --require-hashes --only-binary :all: --target "$prefix.partial" \
        -r "$root/scripts/requirements-uv.txt"
    mv "$prefix.partial" "$prefix"
fi
# Never fetch a Python of uv's own (the machine's is the one to use), and copy files out
# of uv's cache rather than warn when the cache sits on another file system.
export UV_PYTHON_DOWNLOADS=never UV_LINK_MODE="${UV_LINK_MODE:-copy}"
exec "$prefix/bin/uv" "$@"
