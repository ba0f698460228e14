#!/usr/bin/env bash
# Makes .carry/ for a lent GPU machine, which has Python 3.12, JAX and no network: the
# packages its image lacks as wheels, and the dataset packed for CONFIG's body length.
#   bash scripts/gpu-carry.sh [CONFIG] [DATASET]    # then scripts/gpu-train.sh runs there
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/transformer-gpu.toml}
dataset=${2:-data/shared}
python=.venv/bin/python
grep -qx '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
rm -rf .carry
mkdir -p .carry/wheels
# Keras and what the image lacks of its needs and ours, at the versions tested here.
packages=$("$python" -m pip list --format=freeze | grep -iE '^(keras|namex|optree|orjson)==')
# shellcheck disable=SC2086
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .carry/wheels $packages
body_len=$("$python" -c "import sys, tomllib; print(tomllib.load(open(sys.argv[1], 'rb'))['body_len'])" "$config")
"$python" -m training.carry pack "$dataset" .carry/dataset --body-len "$body_len"
du -sh .carry
