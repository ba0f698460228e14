#!/usr/bin/env bash
# Runs on the lent GPU machine, in the repository's root, after scripts/gpu-carry.sh made
# .carry/ here: trains CONFIG with JAX and leaves the run in $OUT (the model in 15 MB
# parts, the size that comes back). From the device tool:
#   run(command="bash scripts/gpu-train.sh [CONFIG]", carry=[".carry"], timeout_s=600)
# Each command trains for the config's max_minutes; the same command again on the still-warm
# machine continues the run (a run with pretrain_epochs in whichever phase it stopped).
# Back here: copy FILES_AT's files into a run folder RUN, `cat RUN/model.keras.part-* >
# RUN/model.keras`, remove the parts, and `issue-summarizer export RUN`.
set -euo pipefail
config=${1:-configs/transformer-gpu.toml}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .carry/wheels/*.whl
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
out=${OUT:?set OUT to the folder that comes back}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -m training.carry unpack .carry/dataset /tmp/dataset
# One run folder per config: the same command again on a still-warm machine continues its
# run, and another config starts its own instead of being refused.
run=/tmp/runs/$(basename "$config" .toml)
# max_minutes counts a run's training time over all its commands: this command gets the
# config's max_minutes on top of what the run has trained already.
budget=$(python3 - "$config" "$run/checkpoint/state.json" <<'PY'
import json, sys, tomllib
from pathlib import Path
minutes = tomllib.loads(Path(sys.argv[1]).read_text())["max_minutes"]
state = Path(sys.argv[2])
print(minutes + (json.loads(state.read_text())["seconds"] / 60 if state.exists() else 0))
PY
)
# max_minutes ends the run between epochs; should an epoch still run past the command's
# 10 minutes, Ctrl-C stops it and model.keras holds the best epoch so far.
timeout -s INT -k 30 500 python3 -m summarizer.cli train --config "$config" \
    dataset=/tmp/dataset output="$run" max_minutes="$budget" 2>&1 | tee "$out/train.log" \
    || echo "training stopped before its end (exit $?): bringing back the best epoch so far"
cp "$run"/config.json "$run"/run.json "$run"/metrics.jsonl "$run"/tokenizer.json "$out/"
if [ -f "$run/model.keras" ]; then
    split -b 15m -d "$run"/model.keras "$out/model.keras.part-"
else
    echo "no title epoch has finished (still pretraining): no model.keras yet; run this again"
fi
ls -la "$out"
