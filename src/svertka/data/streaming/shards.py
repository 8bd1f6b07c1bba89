"""Write an ImageFolder as WebDataset-layout tar shards (`svertka data shard`).

Each image's file bytes go into the tar as they are (no re-encoding, so the
shards decode to exactly the folder's pixels), as ``NNNNNN.jpg`` or
``NNNNNN.png`` beside ``NNNNNN.cls`` (the class index as text). Samples keep
the folder's order (classes sorted, files by name), so index i names the same
image in both; `svertka train --stream` draws its own random order anyway.
Every image is decoded once while writing: a corrupt file stops the writer
with its name, before any training run meets it.

The shards are reproducible (members carry no time or owner) and each is
written to a temporary name and renamed, so a folder never holds half a shard.
"""
from __future__ import annotations

import io
import tarfile
from functools import partial
from pathlib import Path

from ...errors import DataError, UsageError
from ...fileio import atomic_write, atomic_write_text
from ..datasets import imagefolder_split
from .sources import CLASSES_FILE, ImageFolderSource

__all__ = ["write_shards", "shard_splits"]


def shard_splits(root) -> list[tuple[str, Path, list[str] | None]]:
    """(sub-folder name under --out, source folder, fixed classes) for each split ROOT holds:
    train/ and test/ (or val/) as `--data imagefolder` reads them, else ROOT itself as one split."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder; pass an ImageFolder root (<class>/<image>, "
                         "or train/ and test/ holding them)")
    train_dir, _ = imagefolder_split(root, "train")
    if train_dir == root:
        return [("", root, None)]
    out = [("train", train_dir, None)]
    if any((root / s).is_dir() for s in ("test", "val")):
        test_dir, classes = imagefolder_split(root, "test")
        out.append((test_dir.name, test_dir, classes))
    return out


def _kind(data: bytes, name: str) -> str:
    """The member suffix for an image's bytes, after decoding them whole once."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            fmt = im.format
    except Exception as exc:  # Pillow raises many types on corrupt data
        raise DataError(f"{name}: not an image Pillow can decode ({type(exc).__name__}: {str(exc)[:80]}); "
                        "remove or replace the file, then write the shards again") from None
    if fmt not in ("JPEG", "PNG"):
        raise DataError(f"{name}: a {fmt} image; shards hold JPEG and PNG only, convert it first")
    return "jpg" if fmt == "JPEG" else "png"


def _add(tar, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _write_tar(path, source, part: range) -> None:
    digits = max(6, len(str(len(source) - 1)))  # NNNNNN keys, wider past a million images
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for i in part:
            data = source.read(i)
            key = f"{i:0{digits}d}"
            _add(tar, f"{key}.{_kind(data, source.name(i))}", data)
            _add(tar, f"{key}.cls", str(int(source.labels[i])).encode())


def write_shards(root, out, shard_size: int = 1000, progress=None) -> list[tuple[str, int, int]]:
    """Write ROOT's splits as ``OUT[/split]/shard-000000.tar`` ...; returns (split, images, shards) each.
    ``progress(n)`` is called after each shard with the images it held."""
    if not isinstance(shard_size, int) or shard_size < 1:
        raise UsageError(f"--shard-size must be a positive number of images, got {shard_size!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder; pass a new --out folder")
    plan = [(name, ImageFolderSource(folder, classes)) for name, folder, classes in shard_splits(root)]
    written = []
    for name, source in plan:
        dest = out / name if name else out
        n = len(source)
        parts = [range(s, min(n, s + shard_size)) for s in range(0, n, shard_size)]
        for k, part in enumerate(parts):
            atomic_write(dest / f"shard-{k:06d}.tar", partial(_write_tar, source=source, part=part))
            if progress is not None:
                progress(len(part))
        atomic_write_text(dest / CLASSES_FILE, "".join(c + "\n" for c in source.classes))
        written.append((name or ".", n, len(parts)))
    return written
