#!/usr/bin/env bash
# The README's second command: set everything up, lint, and run the whole test suite.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k storage).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh test
bash scripts/setup-system.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
