#!/usr/bin/env bash
# Installs what is missing, starts PostgreSQL if needed, then runs the whole test suite and ruff.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure-postgres.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
