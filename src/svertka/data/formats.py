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
import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from svertka.errors import DataError, UsageError
from svertka.untrusted import DEFLATE_MAX_RATIO, Gunzip, check_pickle

__all__ = [
    "read_bytes",
    "read_idx",
    "write_idx",
    "read_cifar_binary",
    "read_cifar_python",
    "read_cifar_meta",
    "read_image_folder",
    "list_image_folder",
    "decode_image",
    "IMAGE_EXTENSIONS",
]

# ---------------------------------------------------------------- raw bytes

_GZIP_MAGIC = b"\x1f\x8b"
MAX_FILE_BYTES = 1 << 30  # what svertka inflates from one dataset file (EMNIST's largest is 0.55 GB)
MAX_CIFAR_BYTES = 1 << 28  # a CIFAR-10 batch is 30.7 MB; the whole set 184 MB


def _read_raw(path) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path or the dataset root") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a file; pass the file itself") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check permissions") from None


def read_bytes(path: str | os.PathLike, limit: int = MAX_FILE_BYTES) -> bytes:
    """Return the file's bytes, gunzipped when it is a gzip file (by magic, not by name).
    Gzip data that inflates beyond ``limit`` bytes is refused before it is all inflated."""
    raw = _read_raw(path)
    if raw[:2] != _GZIP_MAGIC:
        return raw
    return Gunzip(raw, str(path), DataError).read_all(limit)


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


def _idx_header(data: bytes, name: str, read_more=None) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """(dtype, dims, header length, total file length the header implies) from the
    first bytes; ``read_more(n)`` supplies n more bytes when ``data`` is short."""
    if len(data) < 4 and read_more is not None:
        data = bytes(data) + bytes(read_more(4 - len(data)))
    if len(data) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(data)} bytes); delete it and download again")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _IDX_DTYPES:
        raise DataError(f"{name}: not an IDX file (bad magic {bytes(data[:4]).hex()}); "
                        "check that this is an MNIST-style file")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares 0 dimensions; the file is corrupt")
    header = 4 + 4 * ndim
    if len(data) < header and read_more is not None:
        data = bytes(data) + bytes(read_more(header - len(data)))
    if len(data) < header:
        raise DataError(f"{name}: IDX header truncated; delete the file and download again")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    return dtype, dims, header, header + math.prod(dims) * dtype.itemsize  # Python ints: no overflow


def _idx_size_error(name, got, dims, expected):
    what = "truncated" if got < expected else "has trailing bytes"
    return DataError(f"{name}: IDX file {what} ({got} bytes, header {dims} needs {expected}); "
                     "delete it and download again")


def _idx_array(body, dtype: np.dtype, dims) -> np.ndarray:
    arr = np.frombuffer(body, dtype=dtype).reshape(dims)
    if dtype.itemsize == 1 and isinstance(body, bytearray):
        return arr.view(dtype.newbyteorder("="))  # writable already: no copy
    return arr.astype(dtype.newbyteorder("="), copy=True)


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a native-endian array, checking magic, dtype, dims and length."""
    dtype, dims, header, expected = _idx_header(data, name)
    if len(data) != expected:
        raise _idx_size_error(name, len(data), dims, expected)
    return _idx_array(memoryview(data)[header:], dtype, dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped or not. A gzipped file is inflated only as far
    as its header says, after checking that the size is one it can hold."""
    name = str(path)
    raw = _read_raw(path)
    if raw[:2] != _GZIP_MAGIC:
        return parse_idx(raw, name)
    stream = Gunzip(raw, name, DataError)
    dtype, dims, header, expected = _idx_header(b"", name, stream.read)
    if expected > MAX_FILE_BYTES:
        raise DataError(f"{name}: IDX header {dims} declares {expected:,} bytes, "
                        f"more than svertka reads from one file ({MAX_FILE_BYTES:,}); the file is corrupt")
    if expected - header > DEFLATE_MAX_RATIO * len(raw) + 1024:
        raise DataError(f"{name}: IDX header {dims} declares {expected:,} bytes, "
                        f"more than {len(raw):,} gzip bytes can hold; the file is corrupt")
    body = stream.read(expected - header)
    if len(body) < expected - header:
        raise _idx_size_error(name, header + len(body), dims, expected)
    if stream.read(1):
        raise DataError(f"{name}: IDX data goes on past the {expected:,} bytes its header {dims} declares; "
                        "delete it and download again")
    return _idx_array(body, dtype, dims)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX; gzip when ``compress`` is true (default: when the name ends in .gz).

    The gzip header carries no timestamp, so the same array always gives the same bytes.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _IDX_CODES or array.ndim == 0 or array.ndim > 255:
        raise UsageError(f"cannot write a {array.dtype} array of {array.ndim} dims as IDX; "
                         "use uint8/int8/int16/int32/float32/float64")
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
        data = read_bytes(path, MAX_CIFAR_BYTES)
        if not data or len(data) % _CIFAR_RECORD:
            raise DataError(
                f"{path}: {len(data)} bytes is not a whole number of {_CIFAR_RECORD}-byte CIFAR records; "
                "the file is truncated or not a CIFAR-10 binary batch"
            )
        rec = np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD)
        lab = rec[:, 0].astype(np.int64)
        if lab.max() >= num_classes:
            raise DataError(f"{path}: label {lab.max()} out of range 0..{num_classes - 1}; "
                            "not a CIFAR-10 batch")
        images.append(rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(lab)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


# ----------------------------------------------------------- CIFAR-10 python
# The python batches are pickles. We never unpickle arbitrary classes: the
# unpickler below resolves only the few globals a pickled uint8 ndarray needs,
# and the result is then checked field by field.


_MAX_PICKLED_ITEMS = MAX_CIFAR_BYTES  # no array in a CIFAR batch holds more elements than the file has bytes


def _allowed_globals(name: str) -> dict[tuple[str, str], object]:
    """The globals a pickled numeric ndarray needs, each wrapped so a crafted
    argument (an object dtype, a 10**12-element shape, another codec) is a
    DataError before numpy allocates anything."""
    import codecs

    # numpy moved _reconstruct (numpy.core -> numpy._core); ask numpy where it lives now.
    reconstruct = np.zeros(1, np.uint8).__reduce__()[0]
    frombuffer = np.zeros(1, np.uint8).__reduce_ex__(5)[0]  # protocol >= 5 arrays

    def refuse(what):
        raise DataError(f"{name}: pickle builds {what}, which a CIFAR batch never holds; the file is corrupt")

    def small_shape(shape):
        if not (isinstance(shape, tuple) and len(shape) <= 8
                and all(type(v) is int and v >= 0 for v in shape)):
            refuse(f"an array of shape {str(shape)[:40]}")
        if math.prod(shape) > _MAX_PICKLED_ITEMS:
            refuse(f"an array of {math.prod(shape):,} elements")
        return shape

    def make_dtype(spec, *args):
        if not isinstance(spec, str) or spec[-2:] not in ("u1", "i1", "i2", "i4", "i8", "f4", "f8", "b1"):
            refuse(f"a dtype {str(spec)[:20]!r}")
        return np.dtype(spec, *args[:2])

    def make_array(cls, shape, typecode):
        if cls is not np.ndarray or typecode not in (b"b", "b"):
            refuse("an object that is not a plain ndarray")
        return reconstruct(cls, small_shape(shape), typecode)

    def from_buffer(buf, dtype, shape, order):
        if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F"):
            refuse("an array that is not numeric")
        return frombuffer(buf, dtype, small_shape(shape), order)

    def encode(text, encoding="utf-8", errors="strict"):
        # protocol-2 pickles made by Python 3 encode bytes via _codecs.encode(str, "latin1")
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            refuse(f"a {encoding!r} codec call")
        return codecs.encode(text, "latin1")

    return {
        ("numpy.core.multiarray", "_reconstruct"): make_array,
        ("numpy._core.multiarray", "_reconstruct"): make_array,
        ("numpy.core.numeric", "_frombuffer"): from_buffer,
        ("numpy._core.numeric", "_frombuffer"): from_buffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): make_dtype,
        ("_codecs", "encode"): encode,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, name):
        super().__init__(file, encoding="latin1")
        self._name = name
        self._allowed = _allowed_globals(name)

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._name}: pickle refers to {str(module)[:60]}.{str(name)[:60]}, "
                "which a CIFAR batch never contains; "
                "refusing to load it (use the official file or the CIFAR binary version)"
            ) from None

    def persistent_load(self, pid):
        raise DataError(f"{self._name}: pickle uses persistent ids; not a CIFAR batch")


def _safe_unpickle(path) -> dict:
    data = read_bytes(path, MAX_CIFAR_BYTES)
    check_pickle(data, str(path), DataError)  # deep nesting refused before the unpickler builds it
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    except DataError:
        raise
    except Exception as exc:  # any malformed pickle opcode stream
        raise DataError(f"{path}: not a valid CIFAR python batch ({type(exc).__name__}); "
                        "delete it and download again") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict in the CIFAR batch, found {type(obj).__name__}")
    if not all(isinstance(k, (str, bytes)) for k in obj):
        raise DataError(f"{path}: the CIFAR batch has keys that are not strings; the file is corrupt")
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
            raise DataError(f"{path}: unexpected keys {str(sorted(d)[:6])[:120]} for a CIFAR-10 batch; "
                            "is this the right file?")
        data, lab = d["data"], d["labels"]
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == 3072):
            raise DataError(f"{path}: 'data' must be a uint8 N x 3072 array; the file is corrupt")
        if not isinstance(lab, list) or len(lab) != len(data) or not all(type(v) is int for v in lab):
            raise DataError(f"{path}: 'labels' must be a list of {len(data)} ints; the file is corrupt")
        if lab and (min(lab) < 0 or max(lab) >= num_classes):  # checked as Python ints: no int64 overflow
            raise DataError(f"{path}: labels out of range 0..{num_classes - 1}; not a CIFAR-10 batch")
        lab = np.asarray(lab, dtype=np.int64)
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(lab)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def read_cifar_meta(path) -> list[str]:
    """Class names from ``batches.meta`` (python) or ``batches.meta.txt`` (binary version)."""
    if str(path).endswith(".txt"):
        text = read_bytes(path).decode("ascii", "replace")
        return [line.strip() for line in text.splitlines() if line.strip()]
    d = _safe_unpickle(path)
    names = d.get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{path}: no 'label_names' list; not a CIFAR-10 batches.meta file")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


# -------------------------------------------------------------- ImageFolder

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


MAX_IMAGE_PIXELS = 64_000_000  # 8000 x 8000; a 48 MP phone photo fits, a decompression bomb does not


def decode_image(path, mode: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """One PNG/JPEG as a uint8 H x W (x C) array in Pillow ``mode``, resized to
    ``size=(H, W)`` when given. The pixel count is read from the header and
    checked before any pixel is decoded."""
    import warnings

    from PIL import Image  # a dependency; imported here so that analysis commands start fast

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():
            # Pillow warns, then fails, on huge images; our own limit below is lower
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise DataError(f"{path}: {w}x{h} pixels is more than svertka decodes "
                                    f"({MAX_IMAGE_PIXELS:,}); shrink the image first")
                im = im.convert(mode)
                if size is not None:
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DataError(f"{path}: the image declares more pixels than svertka decodes "
                        f"({MAX_IMAGE_PIXELS:,}); shrink it first") from None
    # Pillow's plugins raise many types on corrupt data (OSError, SyntaxError, IndexError...)
    except Exception as exc:
        raise DataError(f"{path}: not an image Pillow can decode ({type(exc).__name__}: {str(exc)[:80]}); "
                        "pass a PNG or JPEG, or remove the file") from None


def list_image_folder(root: str | os.PathLike, classes: list[str] | None = None
                      ) -> tuple[list[Path], np.ndarray, list[str]]:
    """The files of ``root/<class>/<image>`` and their labels, without decoding any.

    Classes are the sub-folders, sorted by name (as torchvision's ImageFolder
    does) unless ``classes`` fixes them, e.g. so a val split uses the train
    split's indices. Files are in class order, then by name.
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
            f"{root}: no images found; expected sub-folders per class holding .png/.jpg files "
            "(root/<class>/<image>)"
        )
    return files, np.asarray(labels, dtype=np.int64), classes


def available_memory() -> int | None:
    """Bytes of memory the system can still give (MemAvailable), or None where it does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_fits_in_memory(root, files, mode: str, size) -> None:
    """Refuse, before decoding anything, a folder whose pixels would take more than half the free
    memory (estimated from the first image's header): it is one for `--stream`."""
    import warnings

    from PIL import Image

    free = available_memory()
    if free is None:
        return
    try:
        with warnings.catch_warnings():  # a bomb is refused in one line when it is decoded, not here
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(files[0]) as im:
                w, h = im.size
    except Exception:  # an unreadable first image gets its own error when it is decoded
        return
    if size is not None:
        h, w = size
    need = len(files) * h * w * (1 if mode == "L" else 3)
    if need > free // 2:
        raise DataError(f"{root}: {len(files):,} images of {w}x{h} px take about {need / 1e9:.1f} GB in "
                        f"memory, more than half of the {free / 1e9:.1f} GB free; train with --stream to "
                        "read them from disk batch by batch")


def read_image_folder(
    root: str | os.PathLike,
    mode: str = "RGB",
    size: tuple[int, int] | None = None,
    classes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read ``root/<class>/<image>`` into (images NHWC uint8, labels int64, class names).

    The files and classes are those of :func:`list_image_folder`. ``mode`` is a
    Pillow mode ("RGB" or "L"); ``size=(H, W)`` resizes every image, otherwise
    all images must share one size.
    """
    files, labels, classes = list_image_folder(root, classes)
    _check_fits_in_memory(root, files, mode, size)
    arrays = [decode_image(p, mode, size) for p in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"{root}: images have different sizes {sorted(shapes)[:3]}...; "
                        "pass size=(H, W) to resize them")
    images = np.stack(arrays)
    if images.ndim == 3:
        images = images[..., None]
    return images, labels, classes
