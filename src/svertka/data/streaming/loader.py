"""Batches of decoded images from a source, in an order the caller fixes.

The training loop already owns the order: epoch e visits the images in
``default_rng([seed, e]).permutation(n)``, cut into steps. A streamed split
takes that same list of index batches and hands back uint8 N x H x W x C
batches in that order, decoded ahead by torch DataLoader workers. So seeds,
steps, resume and metrics are the in-memory path's: only where the pixels come
from differs. Each image's random crop is seeded by (seed, epoch, index)
(see decode.py), so the batches do not depend on the worker count.

Several processes (torchrun ranks) split every global batch with
:func:`rank_batches`: rank r takes the r-th contiguous block of each step's
indices, so the ranks' batches are disjoint, cover the step, and together are
exactly the single-process batch.

A file that cannot be decoded stops the run with one line naming it (rather
than being skipped): skipping would change the batch size and which images a
step sees, so a run would no longer match its seed or its resume. The
checkpoint of the last whole epoch stays, so after removing or replacing the
file ``--resume`` goes on.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np

from ...errors import DataError, UsageError
from .decode import decode_crop

__all__ = ["StreamSplit", "rank_batches", "epoch_order", "default_workers", "check_workers"]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order the training loop visits ``n`` images in epoch ``epoch`` (its own seeded permutation)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def rank_batches(batches, rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """Rank ``rank``'s part of each global batch: its contiguous block of ``len(batch) / world`` indices
    (DistributedSampler's contract - disjoint parts that cover the epoch - at the granularity of a step)."""
    if not (isinstance(world, int) and world >= 1 and isinstance(rank, int) and 0 <= rank < world):
        raise UsageError(f"rank {rank!r} of world {world!r}: need 0 <= rank < world")
    out = []
    for b in batches:
        b = np.asarray(b)
        if len(b) % world:
            raise UsageError(f"a batch of {len(b)} images does not split evenly over {world} processes; "
                             f"pick a batch size that is a multiple of {world}")
        per = len(b) // world
        out.append(b[rank * per:(rank + 1) * per])
    return out


def default_workers() -> int:
    """Decoding processes when ``--workers`` is not given: half the cores (the rest train), at most 8;
    none without torch (its DataLoader runs them)."""
    return min(8, (os.cpu_count() or 1) // 2) if has_torch() else 0


def has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def check_workers(workers: int) -> None:
    if workers and not has_torch():
        raise UsageError(f"--workers {workers} decodes in torch DataLoader processes, and torch is not "
                         "installed; pip install 'svertka[torch]', or pass --workers 0")


class _Decode:
    """Map-style dataset: key (epoch, index) -> (H x W x 3 uint8, label), or (None, error line)."""

    def __init__(self, source, crop, seed: int, draft: bool = True):
        self.source, self.crop, self.seed, self.draft = source, crop, seed, draft

    def __len__(self):
        return len(self.source)

    def __getitem__(self, key):
        epoch, i = key
        rng = np.random.default_rng([self.seed, epoch, i]) if self.crop.random else None
        try:
            image = decode_crop(self.source.read(i), self.source.name(i), self.crop, rng, self.draft)
        except DataError as e:
            return None, str(e)
        return image, int(self.source.labels[i])


def _collate(items):
    """Stack one batch; the first error in it, if any, travels back as the batch's only content."""
    for image, label in items:
        if image is None:
            return None, label
    return np.stack([im for im, _ in items]), np.asarray([lb for _, lb in items], np.int64)


def _collate_torch(items):
    import torch  # tensors cross from a worker to the trainer through shared memory, arrays by pickle

    images, labels = _collate(items)
    return (None, labels) if images is None else (torch.from_numpy(images), torch.from_numpy(labels))


def _worker_init(_):
    import torch

    torch.set_num_threads(1)  # a worker decodes with Pillow; torch's pool would only fight for cores


class _Batches:
    """The DataLoader's batch sampler: the (epoch, index) keys of the batches asked for next."""

    def __init__(self):
        self.keys: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.keys)

    def __len__(self):
        return len(self.keys)


@dataclass
class StreamSplit:
    """One split read from disk as it is needed; its index is in memory, its pixels never all at once.

    Has a classification TaskData's descriptive fields (classes, mean, std,
    targets, location, image_shape) so the loop can describe and size a run alike.
    """

    name: str
    split: str
    source: object  # a sources.ImageFolderSource or TarShardSource
    crop: object  # decode.RandomResizedCrop or decode.CenterCrop
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    seed: int = 0
    workers: int = 0
    index: np.ndarray | None = None  # the source images this split holds (a val carve-out); None: all
    draft: bool = True
    location: str = ""
    _loader: object = field(default=None, repr=False)
    _sampler: object = field(default=None, repr=False)

    streams = True

    def __post_init__(self):
        if self.index is None:
            self.index = np.arange(len(self.source))

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> np.ndarray:
        return self.source.labels[self.index]

    @property
    def targets(self) -> dict[str, np.ndarray]:
        """As a classification TaskData holds them (svertka.tasks.task)."""
        return {"label": self.labels}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.crop.size, self.crop.size, 3)

    def subset(self, keep) -> "StreamSplit":
        """The split restricted to positions ``keep`` of this one (a --limit, a val carve-out)."""
        return StreamSplit(self.name, self.split, self.source, self.crop, self.classes, self.mean, self.std,
                           self.seed, self.workers, self.index[keep], self.draft, self.location)

    def batches(self, index_batches, epoch: int = 0):
        """Yield (images uint8 N x H x W x 3, labels int64) for each batch of positions, in order."""
        keys = [[(epoch, int(self.index[i])) for i in b] for b in index_batches]
        if self.workers == 0:  # decode here, in the training process (no torch needed)
            ds = _Decode(self.source, self.crop, self.seed, self.draft)
            for k in keys:
                yield _checked(_collate([ds[key] for key in k]))
            return
        loader = self._dataloader()
        self._sampler.keys = keys
        for images, labels in loader:
            images, labels = _checked((images, labels))
            yield images.numpy(), labels.numpy()

    def _dataloader(self):
        """One DataLoader per split, its workers kept across epochs (a fork per epoch costs seconds)."""
        if self._loader is None:
            import torch
            from torch.utils.data import DataLoader

            self._sampler = _Batches()
            # its own generator: the workers' base seed must not come from torch's global RNG,
            # which the model's dropout draws from (that would make --workers change the results)
            self._loader = DataLoader(_Decode(self.source, self.crop, self.seed, self.draft),
                                      batch_sampler=self._sampler, num_workers=self.workers,
                                      collate_fn=_collate_torch, worker_init_fn=_worker_init,
                                      persistent_workers=True, prefetch_factor=4,
                                      generator=torch.Generator())
        return self._loader

    def close(self) -> None:
        """Stop the decoding workers."""
        self._loader = self._sampler = None


def _checked(batch):
    images, labels = batch
    if images is None:
        raise DataError(labels)
    return images, labels
