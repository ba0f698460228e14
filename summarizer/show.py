"""A readable look at a prepared dataset: what was kept and dropped, and rows decoded back
from the arrays (proof that ids, tokenizer and text agree)."""

from __future__ import annotations

import json

from tokenizers import Tokenizer

from summarizer.dataset import open_dataset


def show(path: str, split: str = "train", rows: int = 3) -> str:
    dataset = open_dataset(path)
    report = dataset.report
    lines = [
        f"dataset {path}",
        f"  fingerprint {dataset.manifest['fingerprint'][:16]}, vocabulary "
        f"{dataset.manifest['vocab_size']:,}, body {dataset.manifest['settings']['body_len']} / "
        f"title {dataset.manifest['settings']['title_len']} tokens",
        f"  read {report['read']:,} issues, kept {report['kept']:,}",
        f"  skipped while reading: {json.dumps(report['skipped_input'])}",
        f"  dropped: {json.dumps(report['dropped'])}",
    ]
    for name, info in report["splits"].items():
        cut = report["truncated"][name]
        lines.append(
            f"  {name:5} {info['issues']:>8,} issues from {info['repositories']:,} repositories; "
            f"bodies cut {cut['body_rate']:.1%}, titles cut {cut['title_rate']:.1%}")
    tokenizer = Tokenizer.from_file(str(dataset.tokenizer_path))
    shown = 0
    for body, title in dataset.arrays(split):
        for row in range(min(rows - shown, len(body))):
            lines += [
                f"--- {split} row {shown}",
                f"title ids {title[row][:12].tolist()}...",
                f"title: {tokenizer.decode(title[row].tolist())}",
                f"body:  {tokenizer.decode(body[row].tolist())[:300]}",
            ]
            shown += 1
    return "\n".join(lines)
