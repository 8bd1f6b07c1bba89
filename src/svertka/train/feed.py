"""Where the loop's batches come from: a split held by the adapter, or one streamed from disk.

The loop decides the order (its seeded permutation, cut into steps); this module
turns that order into backend batches. An in-memory split is indexed on the
device; a streamed split (svertka.data.streaming.StreamSplit, ``--stream``)
is decoded batch by batch in that same order by DataLoader workers and handed
to the adapter as uint8. Either way the augmentation draws from the loop's
generator in step order, so seeds, resume and metrics are the same.
"""
from __future__ import annotations

import numpy as np


def streams(ds) -> bool:
    """Whether ``ds`` is read from disk as it goes (a StreamSplit) rather than held in memory."""
    return bool(getattr(ds, "streams", False))


def hold(adapter, name: str, ds) -> None:
    """Give split ``ds`` (a TaskData or a StreamSplit) to the adapter: its pixels and targets when
    in memory, only its targets when streamed."""
    if streams(ds):
        adapter.targets_np[name] = ds.targets
    else:
        adapter.add_split(name, ds.images, ds.targets)


def train_batches(adapter, name: str, ds, batches, aug, rng, epoch: int):
    """(x, targets) on the backend for each index batch of ``batches``, in order."""
    if not streams(ds):
        for idx in batches:
            yield adapter.batch(name, idx, aug, rng, epoch)
        return
    for idx, (images, labels) in zip(batches, ds.batches(batches, epoch)):
        yield adapter.batch_of(images, {"label": labels}, aug, rng, idx, epoch)


def eval_outputs(adapter, name: str, ds, n: int, batch: int, tta: str = "none"):
    """(raw outputs, targets), both NumPy, for the first ``n`` images of split ``name``, ``batch``
    at a time (no autograd, eval mode)."""
    batches = [np.arange(i, min(n, i + batch)) for i in range(0, n, batch)]
    if not streams(ds):
        targets = adapter.targets_np[name]
        for idx in batches:
            yield adapter.logits(name, idx, tta), {k: v[idx] for k, v in targets.items()}
        return
    for images, labels in ds.batches(batches):
        yield adapter.logits_u8(images, tta), {"label": labels}
