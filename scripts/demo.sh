#!/usr/bin/env bash
# Installs what is missing, then runs a demo node on 127.0.0.1 with the embedded SQLite store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/softswitch run "$@"
