"""Where streamed images come from: an ImageFolder or WebDataset-layout tar shards.

A source is a map from an index to (encoded image bytes, label, name): it
reads one file (or one tar member) on demand and holds nothing but the index.
Both kinds number their images alike - classes in sorted order, files by name
within a class - and `svertka data shard` keeps that order, so index i is the
same image in a folder and in the shards written from it.

Tar shards (the layout WebDataset and large-scale training use): each sample is
members sharing a key, ``000042.jpg`` (or ``.png``) and ``000042.cls`` (the
class index as text). A shard is seekable, so the index holds each image's byte
offset and a read is one seek; no member is ever extracted to disk.
"""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..formats import IMAGE_EXTENSIONS, list_image_folder

__all__ = ["ImageFolderSource", "TarShardSource", "open_source", "CLASSES_FILE", "MAX_IMAGE_BYTES"]

CLASSES_FILE = "classes.txt"  # beside the shards: one class name per line, in label order
MAX_IMAGE_BYTES = 64 << 20  # one encoded image; an ImageNet JPEG is ~110 kB, a 48 MP photo ~20 MB
IMAGE_SUFFIXES = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)


class ImageFolderSource:
    """``folder/<class>/<image>``, read one file at a time."""

    kind = "imagefolder"

    def __init__(self, folder, classes: list[str] | None = None):
        self.folder = Path(folder)
        self.files, self.labels, classes = list_image_folder(self.folder, classes)
        self.classes = tuple(classes)

    def __len__(self) -> int:
        return len(self.files)

    def name(self, i: int) -> str:
        return str(self.files[i])

    def read(self, i: int) -> bytes:
        path = self.files[i]
        try:
            size = path.stat().st_size
            if size > MAX_IMAGE_BYTES:
                raise DataError(f"{path}: {size:,} bytes is more than svertka reads for one image "
                                f"({MAX_IMAGE_BYTES:,}); shrink it or remove it")
            return path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e}); check that the file is still there "
                            "and readable") from None


class TarShardSource:
    """Every ``*.tar`` in ``folder`` (sorted by name), indexed by member offsets.

    File handles are opened lazily in the process that reads (a DataLoader
    worker), never shared across a fork.
    """

    kind = "tar"

    def __init__(self, folder, classes: list[str] | None = None):
        self.folder = Path(folder)
        self.shards = sorted(p for p in self.folder.glob("*.tar") if p.is_file())
        if not self.shards:
            raise DataError(f"{self.folder}: no .tar shards; write them with `svertka data shard`")
        shard, offset, size, names, labels = [], [], [], [], []
        for s, path in enumerate(self.shards):
            for member, label in _index_shard(path).values():
                shard.append(s)
                offset.append(member.offset_data)
                size.append(member.size)
                names.append(f"{path.name}:{member.name}")
                labels.append(label)
        self.shard = np.asarray(shard, np.int32)
        self.offset = np.asarray(offset, np.int64)
        self.size = np.asarray(size, np.int64)
        self.names = names
        self.labels = np.asarray(labels, np.int64)
        self.classes = tuple(classes) if classes is not None else _read_classes(self.folder, self.labels)
        if len(self.labels) and self.labels.max() >= len(self.classes):
            i = int(self.labels.argmax())
            raise DataError(f"{self.name(i)} has label {self.labels[i]} but the split has "
                            f"{len(self.classes)} classes ({CLASSES_FILE}); write the shards again")
        self._handles: dict[int, object] = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.labels)

    def name(self, i: int) -> str:
        return str(self.folder / self.names[i])

    def read(self, i: int) -> bytes:
        if self._pid != os.getpid():  # a forked worker: its own handles, not the parent's offsets
            self._handles, self._pid = {}, os.getpid()
        s = int(self.shard[i])
        f = self._handles.get(s)
        if f is None:
            f = self._handles[s] = open(self.shards[s], "rb")  # noqa: SIM115 - kept open for the next read
        f.seek(int(self.offset[i]))
        data = f.read(int(self.size[i]))
        if len(data) != self.size[i]:
            raise DataError(f"{self.name(i)}: the shard ends inside this member (truncated); "
                            "write the shards again")
        return data

    def __getstate__(self):  # pickled for spawned workers: no open files
        return {**self.__dict__, "_handles": {}, "_pid": None}


def _index_shard(path: Path) -> dict[str, tuple[tarfile.TarInfo, int]]:
    """key -> (image member, label) for one shard, in member order."""
    images, labels = {}, {}
    try:
        with tarfile.open(path, "r:") as tar:  # "r:": uncompressed only, the seekable kind
            for m in tar:
                if not m.isfile():
                    continue
                base = m.name.rsplit("/", 1)[-1]
                if "." not in base:
                    continue
                stem, ext = base.split(".", 1)
                key = m.name[: len(m.name) - len(base)] + stem
                ext = ext.lower()
                if ext in IMAGE_SUFFIXES:
                    if m.size > MAX_IMAGE_BYTES:
                        raise DataError(f"{path}: member {m.name} is {m.size:,} bytes, more than svertka "
                                        f"reads for one image ({MAX_IMAGE_BYTES:,})")
                    images[key] = m
                elif ext == "cls":
                    labels[key] = _read_label(tar, m, path)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path}: not a readable uncompressed tar ({type(e).__name__}: {str(e)[:60]}); "
                        "write the shards again with `svertka data shard`") from None
    missing = next((k for k in images if k not in labels), None)
    if missing is not None:
        raise DataError(f"{path}: sample {missing} has an image but no {missing}.cls label member")
    return {k: (m, labels[k]) for k, m in images.items()}


def _read_label(tar, member, path) -> int:
    if member.size > 32:
        raise DataError(f"{path}: {member.name} is {member.size} bytes; a .cls member holds one class index")
    text = tar.extractfile(member).read().decode("ascii", "replace").strip()
    if not text.isdigit():
        raise DataError(f"{path}: {member.name} holds {text[:20]!r}, not a class index")
    return int(text)


def _read_classes(folder: Path, labels: np.ndarray) -> tuple[str, ...]:
    """Names from classes.txt beside the shards (or one folder up, for train/ and test/ splits);
    without one, the class indices themselves."""
    for where in (folder / CLASSES_FILE, folder.parent / CLASSES_FILE):
        if where.is_file():
            text = where.read_text(encoding="utf-8", errors="replace")
            return tuple(line.strip() for line in text.splitlines() if line.strip())
    return tuple(str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0))


def open_source(folder, classes: list[str] | None = None):
    """The source for ``folder``: tar shards where it holds ``*.tar`` files, else class folders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; pass --root pointing at class folders or tar shards")
    if any(p.suffix == ".tar" for p in folder.iterdir()):
        return TarShardSource(folder, classes)
    return ImageFolderSource(folder, classes)
