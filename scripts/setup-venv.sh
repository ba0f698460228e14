#!/usr/bin/env bash
# Creates .venv with Python 3.11+ and installs the project into it (with the extras named
# in $1, e.g. "test"). Sourced by the demo and test scripts so both set up the same way.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/find-python.sh"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
extras=${1:-}
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
