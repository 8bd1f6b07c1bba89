"""The train / val / test splits of a streamed ImageFolder (or its tar shards).

The folders are found as `--data imagefolder` finds them in memory (``train/``
and ``test/`` or ``val/`` under the root, or the root itself for train), and a
validation carve-out and ``--limit-*`` cut the same images as there.
"""
from __future__ import annotations

from ...errors import UsageError
from ..datasets import imagefolder_split, split_indices
from ..registry import get_info
from .decode import CenterCrop, RandomResizedCrop, check_crop
from .loader import StreamSplit, check_workers, default_workers
from .sources import open_source

__all__ = ["stream_splits", "TRAIN_CROPS"]

TRAIN_CROPS = ("rrc", "center")  # RandomResizedCrop + flip (the ImageNet recipe), or the evaluation crop


def stream_splits(root, image_size: int = 224, crop_pct: float = 0.875, train_crop: str = "rrc",
                  seed: int = 0, val_fraction: float = 0.0, split_seed: int | None = None,
                  workers: int | None = None, limit_train: int | None = None,
                  limit_test: int | None = None) -> tuple[StreamSplit, StreamSplit | None, StreamSplit]:
    """(train, val or None, test) read from disk batch by batch. Val and test use the evaluation crop."""
    check_crop(image_size, crop_pct)
    if train_crop not in TRAIN_CROPS:
        raise UsageError(f"unknown --train-crop {train_crop!r}; choose rrc (RandomResizedCrop + flip) or "
                         "center (the evaluation crop, no randomness)")
    workers = default_workers() if workers is None else workers
    check_workers(workers)
    info = get_info("imagefolder")
    train_dir, _ = imagefolder_split(root, "train")
    test_dir, _ = imagefolder_split(root, "test")
    train_src = open_source(train_dir)
    test_src = open_source(test_dir, list(train_src.classes))  # label i names the same class in both
    eval_crop = CenterCrop(image_size, crop_pct)
    fit = RandomResizedCrop(image_size) if train_crop == "rrc" else eval_crop
    common = dict(classes=train_src.classes, mean=info.mean, std=info.std, seed=seed, workers=workers)
    train = StreamSplit("imagefolder", "train", train_src, fit, location=str(train_dir), **common)
    test = StreamSplit("imagefolder", "test", test_src, eval_crop, location=str(test_dir), **common)
    val = None
    if val_fraction > 0:
        keep, held = split_indices(train.labels, val_fraction, seed if split_seed is None else split_seed)
        val = StreamSplit("imagefolder", "val", train_src, eval_crop, index=held, location=str(train_dir),
                          **common)
        train = train.subset(keep)
    if limit_train:
        train = train.subset(slice(0, limit_train))
    if limit_test:
        test = test.subset(slice(0, limit_test))
    if len(train) == 0:
        raise UsageError(f"{train_dir}: the training split is empty")
    return train, val, test
