#!/usr/bin/env bash
# The data pipeline end to end on the project's own example issues: ingest, prepare, show
# what it produced, and score the shipped model's titles for those issues next to the real ones.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
out=build/demo
.venv/bin/issue-summarizer ingest examples/issues -o "$out/issues.jsonl.gz"
.venv/bin/issue-summarizer prepare "$out/issues.jsonl.gz" -o "$out/dataset" \
  --vocab-size 2000 --title-len 40 --shards 2 --dev-fraction 0.15 --test-fraction 0.15 \
  --split-seed h -q >/dev/null  # seed h: few repositories, so pick one that fills every split
.venv/bin/issue-summarizer show "$out/dataset" --rows 2
echo
.venv/bin/issue-summarizer evaluate "$out/issues.jsonl.gz" --model models/default --beams 4 \
  --no-repeat-ngram 2 --repeat-penalty 2 --end-penalty 1.5 --lead-bonus 1.5 --examples 6 -q
echo "Records: $out/issues.jsonl.gz   Dataset: $out/dataset (report.json, dataset.json, tokenizer.json, *.npy)"
