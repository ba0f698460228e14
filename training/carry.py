"""A prepared dataset packed for a machine that cannot download (a lent GPU): the arrays of
every split the manifest lists (the pretrain split included), bodies cut to the tokens a
config reads, as uint16 in one xz-compressed file, beside the dataset's manifest, report and
tokenizer. Unpacked, it is a dataset folder that `train` opens like the original: the same
manifest and fingerprint, the same batches.

xz, not the zip deflate of `np.savez_compressed`: the shared data with its pretrain split at
256 body tokens packs to about 52 MB instead of 72, and what travels to the machine is 64 MiB
in all. It costs a minute and a half here, and seconds to unpack there.

    python -m training.carry pack data/shared .carry/dataset --body-len 128
    python -m training.carry unpack .carry/dataset /tmp/dataset
"""

from __future__ import annotations

import argparse
import io
import lzma
import shutil
import sys
from pathlib import Path

import numpy as np

from summarizer.dataset import open_dataset
from summarizer.errors import UserError
from summarizer.prepare import MANIFEST, REPORT

ARRAYS = "arrays.npz.xz"


def pack(dataset: str, output: Path, body_len: int) -> Path:
    """Write `output`: the arrays (uint16 halves their size; bodies past `body_len` tokens,
    which training with that body_len never reads, are left out) and the small files."""
    data = open_dataset(dataset)
    if data.manifest["vocab_size"] > 1 << 16:
        raise UserError(f"{dataset}: a vocabulary of {data.manifest['vocab_size']:,} does not fit uint16")
    arrays = {}
    for split in data.manifest["splits"]:
        for shard in data.shards(split):
            arrays[shard["body"]] = np.load(data.folder / shard["body"])[:, :body_len].astype(np.uint16)
            arrays[shard["title"]] = np.load(data.folder / shard["title"]).astype(np.uint16)
    output.mkdir(parents=True, exist_ok=True)
    with lzma.open(output / ARRAYS, "wb") as packed:
        np.savez(packed, **arrays)
    for name in (MANIFEST, REPORT, data.manifest["tokenizer"]):
        shutil.copyfile(data.folder / name, output / name)
    return output


def unpack(packed: Path, folder: Path) -> Path:
    """A dataset folder from `pack`'s output: int32 arrays again, and the small files."""
    folder.mkdir(parents=True, exist_ok=True)
    with lzma.open(packed / ARRAYS) as stream, np.load(io.BytesIO(stream.read())) as arrays:
        for name in arrays.files:
            np.save(folder / name, arrays[name].astype(np.int32), allow_pickle=False)
    for path in packed.iterdir():
        if path.name != ARRAYS:
            shutil.copyfile(path, folder / path.name)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    packing = verbs.add_parser("pack", help="dataset folder -> packed folder")
    packing.add_argument("dataset")
    packing.add_argument("output", type=Path)
    packing.add_argument("--body-len", type=int, required=True,
                         help="body tokens kept (the config's body_len)")
    unpacking = verbs.add_parser("unpack", help="packed folder -> dataset folder")
    unpacking.add_argument("packed", type=Path)
    unpacking.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.verb == "pack":
            print(pack(args.dataset, args.output, args.body_len))
        else:
            print(unpack(args.packed, args.folder))
    except UserError as error:
        print(f"carry: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
