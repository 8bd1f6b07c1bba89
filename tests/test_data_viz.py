"""The PNG writer (checked by decoding with Pillow and by hand), sample grids, augment_grid."""

import struct
import zlib

import numpy as np
import pytest

from svertka.errors import UsageError
from svertka.viz import augment_grid, encode_png, save_grid, write_png

rng = np.random.default_rng(0)


def decode_with_pillow(path):
    Image = pytest.importorskip("PIL.Image")
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4), (1, 1, 2)])
def test_png_round_trip(tmp_path, shape):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    write_png(tmp_path / "a.png", img)
    got = decode_with_pillow(tmp_path / "a.png")
    np.testing.assert_array_equal(got.reshape(img.shape), img)


def test_png_structure_by_hand():
    img = np.arange(6, dtype=np.uint8).reshape(2, 3)
    data = encode_png(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + body)
        chunks[kind] = body
        pos += 12 + n
    assert struct.unpack(">IIBBBBB", chunks[b"IHDR"]) == (3, 2, 8, 0, 0, 0, 0)
    assert zlib.decompress(chunks[b"IDAT"]) == b"\x00\x00\x01\x02\x00\x03\x04\x05"
    assert chunks[b"IEND"] == b""


def test_png_rejects_bad_arrays():
    for bad in (np.zeros((2, 2), np.float32), np.zeros((2, 2, 5), np.uint8), np.zeros((0, 3), np.uint8)):
        with pytest.raises(UsageError):
            encode_png(bad)


def test_save_grid_layout(tmp_path):
    imgs = rng.integers(0, 256, (10, 8, 6, 3), dtype=np.uint8)
    save_grid(imgs, tmp_path / "g.png", nrow=4, padding=2, scale=1)
    g = decode_with_pillow(tmp_path / "g.png")
    assert g.shape == (3 * 10 + 2, 4 * 8 + 2, 3)
    np.testing.assert_array_equal(g[2:10, 2:8], imgs[0])
    np.testing.assert_array_equal(g[12:20, 10:16], imgs[5])  # row 1, column 1


def test_save_grid_float_nchw_labels_and_torch(tmp_path):
    x = rng.random((3, 1, 28, 28), dtype=np.float32)
    save_grid(x, tmp_path / "f.png", nrow=3, labels=["Ankle boot", 7, "T-shirt/top"])
    g = decode_with_pillow(tmp_path / "f.png")
    scale = 2  # 28-pixel tiles are enlarged to at least 56
    assert g.shape == (2 + 56 + 7 + 2, 2 + 3 * (56 + 2))
    caption = g[2 + 56 : 2 + 56 + 7, 2 : 2 + 56]
    assert caption.max() == 255  # some text was drawn
    tile = g[2 : 2 + 56, 2 : 2 + 56]
    np.testing.assert_array_equal(tile[::scale, ::scale], np.rint(x[0, 0] * 255).astype(np.uint8))
    torch = pytest.importorskip("torch")
    save_grid(torch.from_numpy(x), tmp_path / "t.png")
    np.testing.assert_array_equal(decode_with_pillow(tmp_path / "t.png")[2:58, 2:58], tile)


def test_save_grid_errors(tmp_path):
    with pytest.raises(UsageError, match="labels"):
        save_grid(np.zeros((2, 4, 4, 1), np.uint8), tmp_path / "x.png", labels=["a"])
    with pytest.raises(UsageError, match="empty"):
        save_grid(np.zeros((0, 4, 4, 1), np.uint8), tmp_path / "x.png")
    with pytest.raises(UsageError, match="nrow"):
        save_grid(np.zeros((1, 4, 4, 1), np.uint8), tmp_path / "x.png", nrow=0)


def test_augment_grid(tmp_path):
    path = augment_grid("fashion-mnist-mini", tmp_path / "out" / "grid.png", "flip,rotate:10,erase:0.5", n=10, seed=1, nrow=4)
    g = decode_with_pillow(path)
    # 10 images in rows of 4 -> 3 rows of originals + 3 of augmented copies, captioned
    assert g.ndim == 2 and g.shape == (2 + 6 * (56 + 7 + 2), 2 + 4 * (56 + 2))
    again = augment_grid("fashion-mnist-mini", tmp_path / "again.png", "flip,rotate:10,erase:0.5", n=10, seed=1, nrow=4)
    assert path.read_bytes() == again.read_bytes()
    with pytest.raises(UsageError, match="unknown augmentation"):
        augment_grid("fashion-mnist-mini", tmp_path / "bad.png", "spin:3")
    assert not (tmp_path / "bad.png").exists()
