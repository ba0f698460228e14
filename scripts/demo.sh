#!/usr/bin/env bash
# The README's first command: set everything up and open the web app on the shipped model.
# It listens on 127.0.0.1 (PORT, default 8000; 0 picks a free port) and prints its address;
# Ctrl-C stops it. Settings are environment variables (webapp/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
exec .venv/bin/python -m webapp --host 127.0.0.1 --port "${PORT:-8000}"
