#!/usr/bin/env bash
# Creates .venvs/NAME (NAME = seldon or mlserver), the model server's own environment: each
# server pins libraries that the project's .venv cannot share (seldon-core wants protobuf<4,
# numpy<2, Flask<3). Installs serving/requirements*.txt, then this project with --no-deps (the
# engine needs only numpy, onnxruntime and tokenizers). A stamp holding the requirements file's
# sha256 makes a rerun a no-op; a changed file rebuilds the environment from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-}
case "$name" in
  seldon) requirements=serving/requirements.txt ;;
  mlserver) requirements=serving/requirements-mlserver.txt ;;
  *) echo "usage: bash scripts/setup-serving-env.sh seldon|mlserver" >&2; exit 2 ;;
esac
if [ ! -f "$requirements" ]; then
  echo "$requirements is missing" >&2
  exit 1
fi
source "$(dirname "${BASH_SOURCE[0]}")/find-python.sh"

venv=.venvs/$name
stamp=$venv/requirements.sha256
mkdir -p .venvs
exec 9>".venvs/$name.lock"
flock 9  # two test runs starting at once build it once
wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && "$venv/bin/python" -c '' 2>/dev/null; then
  echo "$venv is up to date with $requirements"
  exit 0
fi
started=$SECONDS
rm -rf "$venv"
"$python" -m venv "$venv"
# -qq: pip's errors still show, its warnings and progress do not.
"$venv/bin/python" -m pip install -qq --disable-pip-version-check -r "$requirements"
"$venv/bin/python" -m pip install -qq --disable-pip-version-check --no-deps -e .
echo "$wanted" >"$stamp"
echo "$venv built from $requirements in $((SECONDS - started)) s"
