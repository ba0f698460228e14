"""Issue text as the Kaggle/BigQuery dump writes it, so a model also learns to read that form.

The dump that the original example trained on (`issue_url, issue_title, body`) is a real
input: lowercased, its line breaks and runs of spacing made one space, and the markdown
characters " # ( ) * [ ] ` gone (each left a space). Every other character stays: the 7,833
rows of ../shared/data/kaggle-format-sample.csv hold no uppercase letter and none of those
eight characters, and hold all the other ASCII punctuation (tests/test_kaggle_format.py).
"""

from __future__ import annotations

import hashlib

STRIPPED = '"#()*[]`'
_TO_SPACE = str.maketrans(STRIPPED, " " * len(STRIPPED))


def kaggle_format(text: str) -> str:
    """`text` lowercased, the stripped characters and all spacing made single spaces."""
    return " ".join(text.lower().translate(_TO_SPACE).split())


def picked(key: str, share: float, seed: int) -> bool:
    """Whether the issue with this key (its url) is among the `share` rewritten: a hash, so
    the choice does not depend on the order or the number of issues read."""
    digest = hashlib.blake2b(f"{seed}\0{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2**64
