"""Pictures of dataset samples, e.g. what an augmentation pipeline does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from svertka.data.augment import Compose
from svertka.data.datasets import load_dataset, to_float_nchw
from svertka.errors import UsageError
from svertka.viz.image import image_format, save_grid

__all__ = ["augment_grid"]


def augment_grid(
    dataset_name: str,
    out_path,
    pipeline="flip,crop:4,rotate:10",
    n: int = 64,
    seed: int = 0,
    root=None,
    split: str = "train",
    download: bool = True,
    nrow: int = 8,
) -> Path:
    """Write a picture of ``n`` random training images after ``pipeline``; return the path.

    Rows alternate: a row of originals, then the same images augmented, so the
    effect of each op is visible. Captions are class names. ``pipeline`` is a
    spec string such as "flip,crop:4,rotate:10,noise:0.05,erase:0.25". The extension of
    ``out_path`` picks the format: .png or .jpg.
    """
    if n < 1:
        raise UsageError(f"n must be at least 1, got {n}")
    image_format(out_path)  # check the file name and the pipeline first: both fail before any loading
    aug = Compose(pipeline)
    ds = load_dataset(dataset_name, root=root, split=split, download=download)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(ds), size=min(n, len(ds)), replace=False))
    original = to_float_nchw(ds.images[idx])
    augmented = aug(original, rng=rng)
    names = [ds.classes[int(k)] if ds.classes else str(int(k)) for k in ds.labels[idx]]
    # Interleave rows of originals and their augmented copies; blank tiles fill the last row.
    chw = original.shape[1:]
    pad = -len(idx) % nrow
    blank = np.zeros((pad, *chw), np.float32)
    rows = (len(idx) + pad) // nrow
    # 2 x N' x C x H x W: originals and augmented copies, padded to whole rows
    pair = np.stack([np.concatenate([original, blank]), np.concatenate([augmented, blank])])
    tiles = pair.reshape(2, rows, nrow, *chw).transpose(1, 0, 2, 3, 4, 5).reshape(-1, *chw)
    names += [""] * pad
    captions = []
    for r in range(rows):
        row = names[r * nrow : (r + 1) * nrow]
        captions += row + ["aug" if name else "" for name in row]
    return save_grid(tiles, out_path, nrow=nrow, labels=captions)
