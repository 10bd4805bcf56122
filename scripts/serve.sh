#!/usr/bin/env bash
# Set up (if needed) and run the service with embedded PostgreSQL and Redis.
# Extra arguments go to `cinemate serve`, e.g. scripts/serve.sh --port 8080
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/cinemate serve "$@"
