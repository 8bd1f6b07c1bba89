"""File formats: IDX, CIFAR-10 binary and python, ImageFolder. Every file is generated here."""

import gzip
import pickle
import struct

import numpy as np
import pytest

from svertka.data.formats import (
    parse_idx,
    read_cifar_binary,
    read_cifar_meta,
    read_cifar_python,
    read_idx,
    read_image_folder,
    write_idx,
)
from svertka.errors import DataError

rng = np.random.default_rng(0)


# ---------------------------------------------------------------------- IDX


def mnist_style_bytes(images: np.ndarray) -> bytes:
    """IDX bytes built by hand from the format description (not with write_idx)."""
    n, h, w = images.shape
    return b"\x00\x00\x08\x03" + struct.pack(">III", n, h, w) + images.tobytes()


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_reads_hand_built_file(tmp_path, suffix):
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    raw = mnist_style_bytes(images)
    path = tmp_path / f"x-idx3-ubyte{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    np.testing.assert_array_equal(read_idx(path), images)
    write_idx(tmp_path / "again", images, compress=False)
    assert (tmp_path / "again").read_bytes() == raw


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip_dtypes(tmp_path, dtype):
    arr = (rng.standard_normal((3, 4, 2)) * 100).astype(dtype)
    write_idx(tmp_path / "a.gz", arr)
    out = read_idx(tmp_path / "a.gz")
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_idx_gzip_output_is_deterministic(tmp_path):
    arr = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", arr)
    write_idx(tmp_path / "b.gz", arr)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


GOOD = mnist_style_bytes(np.zeros((2, 3, 3), np.uint8))


@pytest.mark.parametrize(
    "data, message",
    [
        (GOOD[:-1], "truncated"),
        (GOOD + b"\x00", "trailing"),
        (GOOD[:10], "truncated"),
        (b"\x00\x00", "not an IDX"),
        (b"\x01\x00" + GOOD[2:], "bad magic"),
        (b"\x00\x00\x07" + GOOD[3:], "bad magic"),  # unknown dtype code
        (b"\x00\x00\x08\x00", "0 dimensions"),
    ],
)
def test_idx_corrupt_raises_data_error(data, message):
    with pytest.raises(DataError, match=message):
        parse_idx(data, "f")


def test_idx_truncated_gzip(tmp_path):
    blob = gzip.compress(GOOD * 100)
    (tmp_path / "t.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "t.gz")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope")


# ----------------------------------------------------------- CIFAR binary


def cifar_records(labels, images_chw):
    """The CIFAR-10 binary layout: label byte + 1024 R + 1024 G + 1024 B per record."""
    return b"".join(bytes([label]) + img.tobytes() for label, img in zip(labels, images_chw))


def test_cifar_binary(tmp_path):
    imgs = rng.integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    labels = [3, 1, 4, 1, 5, 9, 2]
    (tmp_path / "data_batch_1.bin").write_bytes(cifar_records(labels[:4], imgs[:4]))
    (tmp_path / "data_batch_2.bin").write_bytes(cifar_records(labels[4:], imgs[4:]))
    x, y = read_cifar_binary([tmp_path / "data_batch_1.bin", tmp_path / "data_batch_2.bin"])
    assert x.shape == (7, 32, 32, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, imgs.transpose(0, 2, 3, 1))
    assert y.dtype == np.int64 and y.tolist() == labels


def test_cifar_binary_corrupt(tmp_path):
    rec = cifar_records([1, 2], rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    (tmp_path / "short.bin").write_bytes(rec[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_cifar_binary(tmp_path / "short.bin")
    (tmp_path / "badlabel.bin").write_bytes(b"\x0b" + rec[1:])
    with pytest.raises(DataError, match="out of range"):
        read_cifar_binary(tmp_path / "badlabel.bin")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(DataError):
        read_cifar_binary(tmp_path / "empty.bin")


# ----------------------------------------------------------- CIFAR python


def cifar_batch(n=4, bytes_keys=False, **override):
    """A batch with the real layout: dict of batch_label, labels (list), data (uint8 N x 3072), filenames."""
    d = {
        "batch_label": "training batch 1 of 5",
        "labels": [int(v) for v in rng.integers(0, 10, n)],
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }
    d.update(override)
    if bytes_keys:  # what Python 2's cPickle gives when read with encoding="bytes"
        d = {k.encode(): v for k, v in d.items()}
    return d


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar_python(tmp_path, protocol, bytes_keys):
    batch = cifar_batch(bytes_keys=bytes_keys)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=protocol))
    x, y = read_cifar_python(tmp_path / "data_batch_1")
    data = batch[b"data" if bytes_keys else "data"]
    np.testing.assert_array_equal(x, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert y.tolist() == batch[b"labels" if bytes_keys else "labels"]


def test_cifar_meta(tmp_path):
    names = ["airplane", "automobile"]
    meta = {"num_cases_per_batch": 10000, "label_names": names, "num_vis": 3072}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, 2))
    assert read_cifar_meta(tmp_path / "batches.meta") == names
    (tmp_path / "batches.meta.txt").write_text("airplane\nautomobile\n\n")
    assert read_cifar_meta(tmp_path / "batches.meta.txt") == names


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_rejected_without_running(tmp_path):
    marker = tmp_path / "pwned"
    payload = cifar_batch()
    payload["labels"] = Evil(marker)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match="system"):
        read_cifar_python(tmp_path / "data_batch_1")
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj, message",
    [
        ([1, 2, 3], "expected a dict"),
        (cifar_batch(extra=1), "unexpected keys"),
        (cifar_batch(data=np.zeros((4, 3072), np.float32)), "uint8"),
        (cifar_batch(data=np.zeros((4, 100), np.uint8)), "3072"),
        (cifar_batch(labels=[1, 2]), "labels"),
        (cifar_batch(labels=[1, 2, 3, 99]), "out of range"),
    ],
)
def test_cifar_python_wrong_content(tmp_path, obj, message):
    (tmp_path / "b").write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(DataError, match=message):
        read_cifar_python(tmp_path / "b")


def test_cifar_python_garbage_and_truncated(tmp_path):
    good = pickle.dumps(cifar_batch(), protocol=2)
    (tmp_path / "trunc").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk").write_bytes(b"hello world")
    for name in ("trunc", "junk"):
        with pytest.raises(DataError):
            read_cifar_python(tmp_path / name)


# -------------------------------------------------------------- ImageFolder


def make_folder(root, sizes=((8, 6),) * 3, classes=("cat", "dog")):
    Image = pytest.importorskip("PIL.Image")
    expected = []
    for ci, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            if i % 2:  # JPEG is lossy: check only the shape of these
                Image.fromarray(arr).save(root / cls / f"{i}.jpg", quality=95)
            else:
                Image.fromarray(arr).save(root / cls / f"{i}.png")
            expected.append((ci, i, arr))
    return expected


def test_image_folder(tmp_path):
    expected = make_folder(tmp_path)
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    x, y, classes = read_image_folder(tmp_path)
    assert classes == ["cat", "dog"] and x.shape == (6, 8, 6, 3) and x.dtype == np.uint8
    assert y.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(x[0], expected[0][2])  # a PNG: lossless
    grey, _, _ = read_image_folder(tmp_path, mode="L", size=(4, 5))
    assert grey.shape == (6, 4, 5, 1)


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        read_image_folder(tmp_path / "empty")
    with pytest.raises(DataError, match="no such folder"):
        read_image_folder(tmp_path / "missing")
    make_folder(tmp_path / "mixed", sizes=((8, 6), (5, 5)))
    with pytest.raises(DataError, match="size"):
        read_image_folder(tmp_path / "mixed")
    make_folder(tmp_path / "broken")
    (tmp_path / "broken" / "cat" / "zz.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="zz.png"):
        read_image_folder(tmp_path / "broken")
