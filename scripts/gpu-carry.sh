#!/usr/bin/env bash
# Makes .carry/ for a lent GPU machine, which has Python 3.12, JAX and no network: the
# packages its image lacks as wheels, and the dataset packed for CONFIG's body length (every
# split its manifest lists, the pretrain split included).
#   bash scripts/gpu-carry.sh [CONFIG] [DATASET]    # then scripts/gpu-train.sh runs there
# DATASET defaults to the config's `dataset`.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/transformer-gpu.toml}
python=.venv/bin/python
dataset=${2:-$("$python" -c "import sys, tomllib; print(tomllib.load(open(sys.argv[1], 'rb'))['dataset'])" "$config")}
# The checks train makes on the config and the data (lengths, the pretrain split), made here:
# a mismatch found on the lent machine costs device time.
"$python" - "$config" "$dataset" <<'PY'
import sys
from summarizer.dataset import open_dataset
from summarizer.errors import UserError
from summarizer.train import load_batches, load_pretrain_batches
from summarizer.train_config import load_config
try:
    config = load_config(sys.argv[1], [f"dataset={sys.argv[2]}"])
    dataset = open_dataset(config.dataset)
    load_batches(dataset, config)
    load_pretrain_batches(dataset, config)
except UserError as error:
    sys.exit(f"gpu-carry: {error}")
PY
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
