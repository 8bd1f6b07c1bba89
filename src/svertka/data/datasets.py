"""Load a dataset by name: find its files, check them, return uint8 arrays.

Images are ``uint8`` NHWC (see :mod:`svertka.data.formats`), labels ``int64``.

Files are looked for in this order, and the first place that has a file wins:

1. an explicit ``root`` (both ``root/`` and ``root/<name>/``);
2. the user cache: ``$SVERTKA_DATA`` if set, else ``~/.cache/svertka``, under ``<name>/``;
3. system copies (``/usr/share/datasets/fashion-mnist`` from Debian's
   ``dataset-fashion-mnist``, for fashion-mnist only);
4. a download from the official mirrors into ``root/<name>/`` (or the cache).

A file that is found but fails its check raises DataError rather than being
skipped: a corrupt copy should be noticed, not silently shadowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from svertka.data import formats
from svertka.data.download import extract_members, fetch, verify_file
from svertka.data.registry import CIFAR10_BINARY_DIR, CIFAR10_PYTHON_DIR, DatasetInfo, get_info
from svertka.errors import DataError, UsageError

__all__ = ["Dataset", "load_dataset", "cache_dir", "search_dirs", "split_indices", "to_float_nchw"]

SPLITS = ("train", "val", "test")


@dataclass
class Dataset:
    """One split of a dataset, held in memory."""

    name: str
    split: str
    images: np.ndarray  # uint8, N x H x W x C
    labels: np.ndarray  # int64, N
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    location: str = ""  # where the files were read from

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def batches(self, batch_size: int, shuffle: bool = False, seed: int | np.random.Generator = 0,
                drop_last: bool = False):
        """Yield (images uint8 NHWC, labels) batches; shuffled by a seeded generator if asked."""
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        for i in range(0, stop, batch_size):
            idx = order[i : i + batch_size]
            yield self.images[idx], self.labels[idx]


def to_float_nchw(images: np.ndarray, mean=None, std=None) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW in [0, 1], then ``(x - mean) / std`` per channel if given."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise UsageError(f"expected a uint8 N x H x W x C batch, got {images.dtype} of shape {images.shape}")
    x = images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    if mean is not None:
        c = x.shape[1]
        x -= np.asarray(mean, np.float32).reshape(1, c, 1, 1)
        x /= np.asarray(std, np.float32).reshape(1, c, 1, 1)
    return x


# ------------------------------------------------------------------ locations


def cache_dir() -> Path:
    """The user cache: ``$SVERTKA_DATA`` or ``~/.cache/svertka``."""
    env = os.environ.get("SVERTKA_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "svertka"


def search_dirs(info: DatasetInfo, root=None) -> list[Path]:
    """Folders searched for ``info``'s files, in order (see the module docstring)."""
    dirs = []
    if root is not None:
        root = Path(root).expanduser()
        dirs += [root, root / info.name]
    dirs.append(cache_dir() / info.name)
    dirs += [Path(d) for d in info.system_dirs]
    return dirs


def _download_dir(info: DatasetInfo, root) -> Path:
    return (Path(root).expanduser() if root is not None else cache_dir()) / info.name


def _find(filename: str, dirs: list[Path]) -> Path | None:
    """First ``dir/filename`` that exists, also accepting the decompressed name for ``.gz``."""
    names = [filename] + ([filename[:-3]] if filename.endswith(".gz") else [])
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def _missing(info: DatasetInfo, names, root, why: str) -> DataError:
    # the place named is one the search reads first: the --root folder itself, else the cache
    where = (f"{Path(root).expanduser()}" if root is not None
             else f"{cache_dir() / info.name} (or in a folder you pass as --root)")
    return DataError(
        f"{info.name}: {why}; put {', '.join(names)} in {where}, "
        f"from {info.mirrors[0] if info.mirrors else info.homepage}"
    )


def _get_file(info: DatasetInfo, entry, root, download: bool, needed: list[str]) -> Path:
    """Find or download one file and verify it; ``needed`` names the split's files for the error message."""
    name, check = entry
    path = _find(name, search_dirs(info, root))
    if path is None:
        if not download:
            raise _missing(info, needed, root, f"{name} not found and download=False")
        try:
            path = fetch([m + name for m in info.mirrors], _download_dir(info, root) / name, check)
        except DataError as exc:
            raise _missing(info, needed, root, f"download failed ({exc})") from None
    verify_file(path, check)
    return path


# -------------------------------------------------------------------- loaders


def _load_idx(info: DatasetInfo, split: str, root, download: bool, base: Path | None = None):
    files = info.idx[split]
    paths = []
    for entry in (files.images, files.labels):
        if base is not None:  # packaged data: one fixed place, no search, no download
            path = base / entry[0]
            verify_file(path, entry[1])
        else:
            path = _get_file(info, entry, root, download, [files.images[0], files.labels[0]])
        paths.append(path)
    images, labels = (formats.read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{paths[0]}: shapes {images.shape} / {labels.shape} do not form an image/label pair")
    return images[..., None], labels.astype(np.int64), str(paths[0].parent)


def _load_cifar10(info: DatasetInfo, split: str, root, download: bool):
    batches = info.batches[split]
    for d in search_dirs(info, root):
        py = d / CIFAR10_PYTHON_DIR
        if all((py / n).is_file() for n, _ in batches):
            for n, check in batches:
                verify_file(py / n, check)
            return (*formats.read_cifar_python([py / n for n, _ in batches]), str(py))
        bn = d / CIFAR10_BINARY_DIR
        names = [f"{n}.bin" for n, _ in batches]
        if all((bn / n).is_file() for n in names):
            return (*formats.read_cifar_binary([bn / n for n in names]), str(bn))
    # No extracted batches anywhere: extract a local archive, or download one.
    archive_name, archive_check = info.archive
    target = _download_dir(info, root)
    archive = _find(archive_name, search_dirs(info, root))
    downloaded = False
    if archive is None:
        if not download:
            raise _missing(info, [archive_name, f"or its extracted {CIFAR10_PYTHON_DIR}/"], root,
                           "no CIFAR-10 files found and download=False")
        try:
            archive = fetch([m + archive_name for m in info.mirrors], target / archive_name, archive_check)
        except DataError as exc:
            raise _missing(info, [archive_name, f"or its extracted {CIFAR10_PYTHON_DIR}/"], root,
                           f"download failed ({exc})") from None
        downloaded = True
    everything = info.batches["train"] + info.batches["test"]
    extract_members(archive,
                    {f"{CIFAR10_PYTHON_DIR}/{n}": target / CIFAR10_PYTHON_DIR / n for n, _ in everything})
    if downloaded:  # the extracted, verified batches are all we need
        archive.unlink(missing_ok=True)
    return _load_cifar10(info, split, root, download=False)  # now found in target


def imagefolder_split(root, split: str) -> tuple[Path, list[str] | None]:
    """The folder that holds ``split`` ("train" or "test") of an ImageFolder root, and the class
    names to fix (the train split's, for a test split beside it; None: the folder's own)."""
    if root is None:
        raise UsageError("imagefolder needs a root: pass --root DIR holding <class>/<image> "
                         "(or train/ and test/ or val/ folders)")
    root = Path(root).expanduser()
    train_dir = root / "train" if (root / "train").is_dir() else root
    if split == "train":
        return train_dir, None
    # ImageNet ships its held-out set as val/; treat it as the test split
    folder = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if folder is None:
        raise DataError(f"{root}: no test/ or val/ folder for the test split; "
                        "add one or use val_fraction on train")
    classes = None
    if train_dir != root:  # keep label indices of the train split
        classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    return folder, classes


def _load_imagefolder(info: DatasetInfo, split: str, root, size, mode):
    folder, classes = imagefolder_split(root, split)
    images, labels, classes = formats.read_image_folder(folder, mode=mode, size=size, classes=classes)
    return images, labels, str(folder), tuple(classes)


def split_indices(labels: np.ndarray, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded (train, val) index split; each class gives round(fraction * count) to val."""
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    perm = np.random.default_rng(seed).permutation(len(labels))
    order = perm[np.argsort(labels[perm], kind="stable")]  # grouped by class, random within class
    counts = np.bincount(labels)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rank = np.arange(len(labels)) - starts
    is_val = rank < np.repeat(np.round(counts * val_fraction).astype(np.int64), counts)
    return np.sort(order[~is_val]), np.sort(order[is_val])


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    split: str = "train",
    download: bool = True,
    val_fraction: float = 0.0,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    mode: str = "RGB",
) -> Dataset:
    """Load one split of a dataset as uint8 NHWC images and int64 labels.

    ``split`` is "train", "val" or "test". With ``val_fraction > 0`` a
    class-stratified validation set is carved from the training data with
    ``seed``; "train" then returns the rest, "val" the carved part.
    ``size``/``mode`` only apply to ``imagefolder``.
    """
    info = get_info(name)
    if root is not None and info.kind == "packaged-idx":
        raise UsageError(f"{info.name} is packaged with svertka, so --root does not apply; drop it")
    if root is not None and not Path(root).expanduser().is_dir():  # never fall back to another copy unasked
        raise DataError(f"--root {root}: no such folder; pass the folder that holds the {info.name} files, "
                        f"or create it to download them there")
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if split == "val" and val_fraction <= 0:
        raise UsageError("split='val' needs val_fraction > 0 (e.g. --val-fraction 0.1)")
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction}")
    source = "test" if split == "test" else "train"
    classes = info.classes
    if info.kind == "idx":
        images, labels, where = _load_idx(info, source, root, download)
    elif info.kind == "packaged-idx":
        base = Path(str(resources.files("svertka.data") / "mini"))
        images, labels, where = _load_idx(info, source, root, download, base=base)
    elif info.kind == "cifar10":
        images, labels, where = _load_cifar10(info, source, root, download)
    else:
        images, labels, where, classes = _load_imagefolder(info, source, root, size, mode)
    if len(classes) and labels.size and labels.max() >= len(classes):
        raise DataError(f"{where}: label {labels.max()} but {info.name} has {len(classes)} classes; "
                        "wrong files?")
    if split != "test" and val_fraction > 0:
        train_idx, val_idx = split_indices(labels, val_fraction, seed)
        keep = val_idx if split == "val" else train_idx
        images, labels = images[keep], labels[keep]
    mean, std = info.mean, info.std
    if images.shape[-1] != len(mean):  # e.g. a grey imagefolder with RGB statistics
        mean, std = (float(np.mean(mean)),) * images.shape[-1], (float(np.mean(std)),) * images.shape[-1]
    return Dataset(info.name, split, np.ascontiguousarray(images), labels, tuple(classes), mean, std, where)
