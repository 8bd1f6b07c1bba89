"""Images written through Pillow (PNG or JPEG by extension), sample grids, augment_grid."""

import numpy as np
import pytest
from PIL import Image

from svertka.cli import main
from svertka.errors import UsageError
from svertka.viz import augment_grid, save_grid, write_image

rng = np.random.default_rng(0)


def decode_with_pillow(path):
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4), (1, 1, 2)])
def test_png_round_trip(tmp_path, shape):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    write_image(tmp_path / "a.png", img)
    got = decode_with_pillow(tmp_path / "a.png")
    np.testing.assert_array_equal(got.reshape(img.shape), img)


@pytest.mark.parametrize("name", ["a.jpg", "b.JPEG"])
def test_jpeg_by_extension(tmp_path, name):
    # a smooth image survives JPEG's loss closely; the alpha channel is dropped
    y, x = np.mgrid[0:32, 0:48]
    img = np.stack([4 * y, 5 * x, 255 - 4 * y, np.full_like(y, 128)], -1).astype(np.uint8)
    path = write_image(tmp_path / name, img)
    assert path.read_bytes()[:3] == b"\xff\xd8\xff"  # the JPEG start-of-image marker, not PNG's signature
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        got = np.asarray(im).astype(int)
    assert np.abs(got - img[..., :3]).mean() < 3


def test_write_rejects_bad_arrays_and_extensions(tmp_path):
    for bad in (np.zeros((2, 2), np.float32), np.zeros((2, 2, 5), np.uint8), np.zeros((0, 3), np.uint8)):
        with pytest.raises(UsageError):
            write_image(tmp_path / "x.png", bad)
    for name in ("x.bmp", "x.gif", "noext"):
        with pytest.raises(UsageError, match="unknown image extension"):
            write_image(tmp_path / name, np.zeros((2, 2), np.uint8))
        assert not (tmp_path / name).exists()


def test_write_to_an_unwritable_place_is_one_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="cannot write"):
        write_image(tmp_path / "file" / "x.png", np.zeros((2, 2), np.uint8))


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
    pipeline = "flip,rotate:10,erase:0.5"
    path = augment_grid("fashion-mnist-mini", tmp_path / "out" / "grid.png", pipeline, n=10, seed=1, nrow=4)
    g = decode_with_pillow(path)
    # 10 images in rows of 4 -> 3 rows of originals + 3 of augmented copies, captioned
    assert g.ndim == 2 and g.shape == (2 + 6 * (56 + 7 + 2), 2 + 4 * (56 + 2))
    again = augment_grid("fashion-mnist-mini", tmp_path / "again.png", pipeline, n=10, seed=1, nrow=4)
    assert path.read_bytes() == again.read_bytes()
    with pytest.raises(UsageError, match="unknown augmentation"):
        augment_grid("fashion-mnist-mini", tmp_path / "bad.png", "spin:3")
    assert not (tmp_path / "bad.png").exists()


def test_augment_cli_writes_the_format_the_name_asks_for(tmp_path, capsys):
    assert main(["augment", "--data", "fashion-mnist-mini", "-n", "4", "--out", str(tmp_path / "g.jpg")]) == 0
    with Image.open(tmp_path / "g.jpg") as im:
        assert im.format == "JPEG"
    assert main(["augment", "--data", "fashion-mnist-mini", "-n", "4", "--out", str(tmp_path / "g.tif")]) == 2
    err = capsys.readouterr().err
    assert "unknown image extension '.tif'" in err and err.count("\n") == 1
    assert not (tmp_path / "g.tif").exists()
