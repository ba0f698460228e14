#!/usr/bin/env bash
# After scripts/gpu-train.sh ran on a lent GPU: FILES_AT (the device tool's folder of what
# came back) becomes the run folder RUN here, trained on DATASET (the one .carry/ packed).
#   bash scripts/gpu-fetch.sh FILES_AT runs/transformer-gpu [data/shared]
#   .venv/bin/issue-summarizer export runs/transformer-gpu -o BUNDLE --report REPORT
set -euo pipefail
cd "$(dirname "$0")/.."
files=$1 run=$2 dataset=${3:-data/shared}
mkdir -p "$run"
cp "$files"/config.json "$files"/run.json "$files"/metrics.jsonl "$files"/tokenizer.json "$run"/
cat "$files"/model.keras.part-* > "$run/model.keras"
# The run read the dataset unpacked at /tmp/dataset there: point it at the same data here
# (same fingerprint), so export records how that data was prepared.
.venv/bin/python - "$run" "$dataset" <<'PY'
import json, sys
from pathlib import Path
run, dataset = Path(sys.argv[1]), sys.argv[2]
trained_on = json.loads((run / "run.json").read_text())["data_fingerprint"]
here = json.loads(Path(dataset, "dataset.json").read_text())["fingerprint"]
if trained_on != here:
    sys.exit(f"{dataset} is not the data this run trained on (fingerprint {here[:12]}, "
             f"not {trained_on[:12]}); pass the dataset that .carry/ was packed from")
config = json.loads((run / "config.json").read_text())
(run / "config.json").write_text(json.dumps({**config, "dataset": dataset}, indent=2) + "\n")
# The command that reproduces the run, not the module call inside the device script.
info = json.loads((run / "run.json").read_text())
argv = info["command"].split()
command = f"bash scripts/gpu-train.sh {argv[argv.index('--config') + 1]} (scripts/gpu-carry.sh {dataset} first)"
info.update(dataset=dataset, command=command, commands=[command])
(run / "run.json").write_text(json.dumps(info, indent=2) + "\n")
print(f"{run}: ready to export ({len((run / 'metrics.jsonl').read_text().splitlines())} epochs)")
PY
