"""Training batches from the featurized arrays, grouped by length.

Bodies are cut to the model's length and batched with bodies of similar length, padded only
to the next multiple of `BUCKET`: most issues are far shorter than the cap, and on a CPU the
padding would otherwise be most of the work. The order is a pure function of (seed, epoch),
so a resumed run skips exactly the batches it already trained on. On an accelerator the
padding costs less than compiling a step for each shape: `fixed_shapes` pads every batch to
the full lengths, one shape to compile.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BUCKET = 16  # lengths are padded up to a multiple of this: few distinct shapes to compile
WINDOW = 50  # batches sorted by length together: enough to group lengths, still random


def _lengths(ids: np.ndarray) -> np.ndarray:
    """Real tokens per row (padding is 0 and only at the end)."""
    return (ids != 0).sum(axis=1)


class TitleBatches:
    """((body, title_in), title_out) batches of one split, held in memory as int32."""

    def __init__(self, arrays: list[tuple[np.ndarray, np.ndarray]], body_len: int, title_len: int,
                 batch_size: int, seed: int, limit: int = 0, fixed_shapes: bool = False) -> None:
        empty = np.zeros((0, 1))
        bodies = np.concatenate([np.asarray(b[:, :body_len]) for b, _ in arrays]) if arrays else empty
        titles = np.concatenate([np.asarray(t[:, :title_len]) for _, t in arrays]) if arrays else empty
        if limit and len(bodies) > limit:
            keep = np.sort(np.random.default_rng(seed).permutation(len(bodies))[:limit])
            bodies, titles = bodies[keep], titles[keep]
        self.bodies = bodies.astype(np.int32)
        self.titles = titles.astype(np.int32)
        self._cut_titles()
        self.body_lengths = np.maximum(_lengths(self.bodies), 1)
        self.title_lengths = _lengths(self.titles)
        self.batch_size, self.seed, self.fixed_shapes = batch_size, seed, fixed_shapes

    def _cut_titles(self) -> None:
        """A title cut to `title_len` must still end with </s> (id 3), or the model never
        learns to stop on long titles."""
        last = self.titles[:, -1]
        self.titles[last != 0, -1] = 3

    def __len__(self) -> int:
        return -(-len(self.bodies) // self.batch_size)

    @property
    def examples(self) -> int:
        return len(self.bodies)

    def _order(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.bodies))
        span = self.batch_size * WINDOW
        batches = []
        for start in range(0, len(order), span):
            window = order[start:start + span]
            window = window[np.argsort(self.body_lengths[window], kind="stable")]
            batches += [window[i:i + self.batch_size] for i in range(0, len(window), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def batch(self, rows: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        if self.fixed_shapes:
            body_len, title_len = self.bodies.shape[1], self.titles.shape[1]
        else:
            body_len = -(-int(self.body_lengths[rows].max()) // BUCKET) * BUCKET
            # Title inputs and targets are one shorter than the `<s> ... </s>` row.
            title_len = min(-(-(int(self.title_lengths[rows].max()) - 1) // 8) * 8 + 1, self.titles.shape[1])
        body = self.bodies[rows, :body_len]
        if body.shape[1] < body_len:
            body = np.pad(body, ((0, 0), (0, body_len - body.shape[1])))
        title = self.titles[rows, :title_len]
        return (body, title[:, :-1]), title[:, 1:]

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[tuple[tuple[np.ndarray, np.ndarray], np.ndarray]]:
        """The batches of one epoch in training order, after the first `skip`."""
        for rows in self._order(epoch)[skip:]:
            yield self.batch(rows)
