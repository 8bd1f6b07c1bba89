"""Readers (and an IDX writer) for the dataset file formats the lecture uses.

Array convention, used by every reader and by :mod:`svertka.data.datasets`:

* images: ``uint8`` array of shape ``N x H x W x C`` (NHWC, C = 1 for grey
  images, 3 for RGB). Augmentation and the backends take float32 NCHW; use
  :func:`svertka.data.datasets.to_float_nchw` to convert a batch.
* labels: ``int64`` array of shape ``N``.

Every malformed input raises :class:`svertka.errors.DataError`; no reader
trusts a length, a shape or a type written in the file before checking it.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

from svertka.errors import DataError, UsageError

__all__ = [
    "read_bytes",
    "read_idx",
    "write_idx",
    "read_cifar_binary",
    "read_cifar_python",
    "read_cifar_meta",
    "read_image_folder",
    "IMAGE_EXTENSIONS",
]

# ---------------------------------------------------------------- raw bytes

_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | os.PathLike) -> bytes:
    """Return the file's bytes, gunzipped when it is a gzip file (by magic, not by name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path or the dataset root") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check permissions") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc}); delete it and download again") from None


# ---------------------------------------------------------------------- IDX
# IDX (LeCun's MNIST format): 2 zero bytes, a dtype code, the number of dims,
# then each dim as big-endian uint32, then the data in big-endian C order.

_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a native-endian array, checking magic, dtype, dims and length."""
    if len(data) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(data)} bytes); delete it and download again")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _IDX_DTYPES:
        raise DataError(f"{name}: not an IDX file (bad magic {data[:4].hex()}); check that this is an MNIST-style file")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares 0 dimensions; the file is corrupt")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: IDX header truncated; delete the file and download again")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{name}: IDX file {what} ({len(data)} bytes, header {dims} needs {expected}); "
            "delete it and download again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped or not."""
    return parse_idx(read_bytes(path), str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX; gzip when ``compress`` is true (default: when the name ends in .gz).

    The gzip header carries no timestamp, so the same array always gives the same bytes.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _IDX_CODES or array.ndim == 0 or array.ndim > 255:
        raise UsageError(f"cannot write a {array.dtype} array of {array.ndim} dims as IDX; use uint8/int8/int16/int32/float32/float64")
    code = _IDX_CODES[native]
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    path.write_bytes(payload)


# ----------------------------------------------------------- CIFAR-10 binary
# Each record: 1 label byte, then 3072 pixel bytes (1024 R, 1024 G, 1024 B).

_CIFAR_RECORD = 1 + 3 * 32 * 32


def read_cifar_binary(paths, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Read one or more CIFAR-10 binary batches; return (images NHWC uint8, labels int64)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    images, labels = [], []
    for path in paths:
        data = read_bytes(path)
        if not data or len(data) % _CIFAR_RECORD:
            raise DataError(
                f"{path}: {len(data)} bytes is not a whole number of {_CIFAR_RECORD}-byte CIFAR records; "
                "the file is truncated or not a CIFAR-10 binary batch"
            )
        rec = np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD)
        lab = rec[:, 0].astype(np.int64)
        if lab.max() >= num_classes:
            raise DataError(f"{path}: label {lab.max()} out of range 0..{num_classes - 1}; not a CIFAR-10 batch")
        images.append(rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(lab)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


# ----------------------------------------------------------- CIFAR-10 python
# The python batches are pickles. We never unpickle arbitrary classes: the
# unpickler below resolves only the few globals a pickled uint8 ndarray needs,
# and the result is then checked field by field.


def _allowed_globals() -> dict[tuple[str, str], object]:
    import codecs

    # numpy moved _reconstruct (numpy.core -> numpy._core); ask numpy where it lives now.
    reconstruct = np.zeros(1, np.uint8).__reduce__()[0]
    frombuffer = np.zeros(1, np.uint8).__reduce_ex__(5)[0]  # protocol >= 5 arrays

    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # protocol-2 pickles made by Python 3 encode bytes via _codecs.encode(str, "latin1")
        ("_codecs", "encode"): codecs.encode,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, name):
        super().__init__(file, encoding="latin1")
        self._name = name
        self._allowed = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._name}: pickle refers to {module}.{name}, which a CIFAR batch never contains; "
                "refusing to load it (use the official file or the CIFAR binary version)"
            ) from None

    def persistent_load(self, pid):
        raise DataError(f"{self._name}: pickle uses persistent ids; not a CIFAR batch")


def _safe_unpickle(path) -> dict:
    data = read_bytes(path)
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    except DataError:
        raise
    except Exception as exc:  # any malformed pickle opcode stream
        raise DataError(f"{path}: not a valid CIFAR python batch ({type(exc).__name__}); delete it and download again") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict in the CIFAR batch, found {type(obj).__name__}")
    # Python 2 pickles may give bytes keys; normalise to str.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


_BATCH_KEYS = {"batch_label", "labels", "data", "filenames"}


def read_cifar_python(paths, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-10 python batches (``data_batch_1`` ... ``test_batch``) with a restricted unpickler."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    images, labels = [], []
    for path in paths:
        d = _safe_unpickle(path)
        if not {"data", "labels"} <= d.keys() or not d.keys() <= _BATCH_KEYS:
            raise DataError(f"{path}: unexpected keys {sorted(map(str, d))} for a CIFAR-10 batch; is this the right file?")
        data, lab = d["data"], d["labels"]
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
            raise DataError(f"{path}: 'data' must be a uint8 N x 3072 array; the file is corrupt")
        if not isinstance(lab, list) or len(lab) != len(data) or not all(type(v) is int for v in lab):
            raise DataError(f"{path}: 'labels' must be a list of {len(data)} ints; the file is corrupt")
        lab = np.asarray(lab, dtype=np.int64)
        if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
            raise DataError(f"{path}: labels out of range 0..{num_classes - 1}; not a CIFAR-10 batch")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(lab)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def read_cifar_meta(path) -> list[str]:
    """Class names from ``batches.meta`` (python) or ``batches.meta.txt`` (binary version)."""
    if str(path).endswith(".txt"):
        return [line.strip() for line in read_bytes(path).decode("ascii", "replace").splitlines() if line.strip()]
    d = _safe_unpickle(path)
    names = d.get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{path}: no 'label_names' list; not a CIFAR-10 batches.meta file")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


# -------------------------------------------------------------- ImageFolder

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def read_image_folder(
    root: str | os.PathLike,
    mode: str = "RGB",
    size: tuple[int, int] | None = None,
    classes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read ``root/<class>/<image>`` into (images NHWC uint8, labels int64, class names).

    Classes are the sub-folders, sorted by name (as torchvision's ImageFolder
    does) unless ``classes`` fixes them, e.g. so a val split uses the train
    split's indices. ``mode`` is a Pillow mode ("RGB" or "L"); ``size=(H, W)``
    resizes every image, otherwise all images must share one size.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; pass --root pointing at a folder of class sub-folders")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = list(classes) if classes is not None else found
    files, labels = [], []
    for idx, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."):
                files.append(p)
                labels.append(idx)
    if not files:
        raise DataError(
            f"{root}: no images found; expected sub-folders per class holding .png/.jpg files (root/<class>/<image>)"
        )
    from PIL import Image  # a dependency; imported here so that analysis commands start fast
    arrays = []
    for p in files:
        try:
            with Image.open(p) as im:
                im = im.convert(mode)
                if size is not None:
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                arrays.append(np.asarray(im, dtype=np.uint8))
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for bad image data
            raise DataError(f"{p}: cannot decode image ({exc}); remove or replace the file") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"{root}: images have different sizes {sorted(shapes)[:3]}...; pass size=(H, W) to resize them")
    images = np.stack(arrays)
    if images.ndim == 3:
        images = images[..., None]
    return images, np.asarray(labels, dtype=np.int64), classes
