"""Batched augmentation: exactness of the simple ops, determinism, NumPy/torch agreement."""

import numpy as np
import pytest

from svertka.data.augment import (
    OPS,
    AltFlip,
    Compose,
    Crop,
    Cutout,
    Erase,
    Flip,
    Noise,
    Rotate,
    Zoom,
    parse_pipeline,
)
from svertka.errors import UsageError

rng0 = np.random.default_rng(0)
X = rng0.random((16, 3, 12, 10), dtype=np.float32)  # non-square on purpose
FULL = "flip,crop:3,rotate:20,zoom:0.2,noise:0.05,erase:0.5,cutout:4"


@pytest.mark.parametrize("spec", list(OPS) + [FULL])
def test_shape_dtype_and_determinism(spec):
    aug = Compose(spec)
    a, b = aug(X, rng=5), aug(X, rng=5)
    assert a.shape == X.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    if spec == "altflip":  # chooses by image and epoch, not from the generator
        assert not np.array_equal(a, aug(X, rng=5, epoch=1))
    else:
        assert not np.array_equal(a, aug(X, rng=6))


def test_input_is_not_modified():
    before = X.copy()
    Compose(FULL)(X, rng=1)
    np.testing.assert_array_equal(X, before)


def test_generator_advances_between_batches():
    aug, g = Compose("rotate:30"), np.random.default_rng(0)
    assert not np.array_equal(aug(X, rng=g), aug(X, rng=g))


def test_flip_is_exact():
    np.testing.assert_array_equal(Compose([Flip(1.0)])(X), X[..., ::-1])
    np.testing.assert_array_equal(Compose([Flip(0.0)])(X), X)
    out = Compose("flip")(X, rng=2)
    flipped = np.all(out == X[..., ::-1], axis=(1, 2, 3))
    kept = np.all(out == X, axis=(1, 2, 3))
    assert np.all(flipped | kept) and flipped.any() and kept.any()


def test_altflip_alternates_per_image_and_epoch():
    aug, idx = Compose("altflip"), np.arange(1000, 1016)
    e0, e1, e2 = (aug(X, index=idx, epoch=e) for e in range(3))
    flipped = np.all(e0 == X[..., ::-1], axis=(1, 2, 3))
    assert np.all(flipped | np.all(e0 == X, axis=(1, 2, 3))) and 0 < flipped.sum() < len(X)
    # the next epoch shows every image the other way round, the one after repeats the first
    np.testing.assert_array_equal(e1, np.where(flipped[:, None, None, None], X, X[..., ::-1]))
    np.testing.assert_array_equal(e2, e0)
    # the choice follows the image's index, not its place in the batch
    p = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_array_equal(aug(X[p], index=idx[p], epoch=0), e0[p])
    # half the dataset is mirrored in each epoch
    assert AltFlip().choose(np.arange(60_000), 0, 60_000).mean() == pytest.approx(0.5, abs=0.01)
    with pytest.raises(UsageError, match="one index per image"):
        aug(X, index=idx[:3])


def test_altflip_draws_no_random_numbers():
    idx = np.arange(len(X))
    a = Compose("altflip,crop:2,noise:0.1")(X, rng=4, index=idx, epoch=3)
    b = Compose("crop:2,noise:0.1")(Compose("altflip")(X, index=idx, epoch=3), rng=4)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("spec", ["rotate:0", "zoom:0", "crop:0", "noise:0", "erase:0", "flip:0",
                                  "rotate:0,zoom:0"])
def test_zero_strength_is_identity(spec):
    np.testing.assert_array_equal(Compose(spec)(X, rng=3), X)


def test_rotate_90_matches_rot90():
    square = X[:, :, :10, :10]
    for mode in ("bilinear", "nearest"):
        out = Compose([Rotate((90, 90))], mode=mode)(square)
        np.testing.assert_allclose(out, np.rot90(square, 1, axes=(2, 3)), atol=1e-6)


def test_crop_is_an_integer_shift_with_zero_fill():
    out = Compose("crop:3")(X, rng=4)
    for i in range(len(X)):  # a check, not the implementation: find each image's shift
        padded = np.pad(X[i], ((0, 0), (3, 3), (3, 3)))
        windows = [padded[:, dy : dy + 12, dx : dx + 10] for dy in range(7) for dx in range(7)]
        assert any(np.array_equal(out[i], w) for w in windows)


def test_zoom_scales_about_the_centre():
    img = np.zeros((8, 1, 41, 41), np.float32)
    img[:, 0, 20, 15:26] = 1  # an 11-pixel bar through the centre
    out = Compose([Zoom(0.5)])(img, rng=0)
    scale = np.random.default_rng(0).uniform(0.5, 1.5, size=8)  # the factors the op draws
    width = (out[:, 0, 20] > 0.5).sum(axis=1)
    assert np.all(np.abs(width - 11 * scale) <= 2)
    np.testing.assert_allclose(out[:, 0, 20], out[:, 0, 20, ::-1], atol=1e-6)  # still centred


def test_noise_statistics():
    z = np.zeros((64, 1, 16, 16), np.float32)
    out = Compose([Noise(0.1)])(z, rng=0)
    assert abs(out.std() - 0.1) < 0.005 and abs(out.mean()) < 0.005


def test_erase_boxes():
    ones = np.ones((256, 1, 20, 20), np.float32)
    out = Compose([Erase(1.0)])(ones, rng=0)
    zeroed = (out == 0).mean(axis=(1, 2, 3))
    assert np.all(zeroed > 0) and np.all(zeroed <= 0.40)  # area 2-33 % (rounding of sides)
    # each erased region is one rectangle
    for m in (out[:20, 0] == 0):
        rows, cols = np.where(m)
        assert m[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    half = Compose([Erase(0.5)])(ones, rng=0)
    frac = (half == 0).any(axis=(1, 2, 3)).mean()
    assert 0.35 < frac < 0.65


def test_cutout_square_clipped_at_border():
    ones = np.ones((128, 1, 16, 16), np.float32)
    out = Compose([Cutout(6)])(ones, rng=0)
    counts = (out == 0).sum(axis=(1, 2, 3))
    assert counts.max() == 36 and counts.min() >= 9  # a corner keeps at least a quarter
    assert counts.min() < 36


def test_affine_ops_are_fused():
    # rotate then rotate back, fused into one identity map: no blur at all
    out = Compose([Rotate((30, 30)), Rotate((-30, -30))])(X)
    np.testing.assert_allclose(out, X, atol=1e-5)


# ---------------------------------------------------------------- spec strings


def test_parse_and_spec_round_trip():
    aug = Compose("flip, crop:4 ,rotate:10,zoom:0.1,noise:0.05,erase:0.25,cutout:8,rotate:-5:20,altflip")
    assert [type(o) for o in aug.ops] == [Flip, Crop, Rotate, Zoom, Noise, Erase, Cutout, Rotate, AltFlip]
    assert aug.spec() == ("flip:0.5,crop:4,rotate:10,zoom:0.1,noise:0.05,erase:0.25,"
                          "cutout:8,rotate:-5:20,altflip")
    assert Compose(aug.spec()).spec() == aug.spec()
    assert len(Compose("")) == 0 and len(parse_pipeline(["flip", Crop(2)])) == 2


@pytest.mark.parametrize(
    "spec, message",
    [
        ("flip,blur:3", "unknown augmentation"),
        ("crop:x", "bad number"),
        ("crop:4:4", "too many"),
        ("altflip:1", "too many"),
        ("flip:2", "probability"),
        ("zoom:-0.1", "zoom"),
        ("noise:nan", "noise"),
        ([3], "neither"),
    ],
)
def test_bad_spec_is_usage_error(spec, message):
    with pytest.raises(UsageError, match=message):
        Compose(spec)


def test_bad_inputs():
    with pytest.raises(UsageError, match="float"):
        Compose("flip")(np.zeros((2, 1, 4, 4), np.uint8))
    with pytest.raises(UsageError, match="N x C x H x W"):
        Compose("flip")(np.zeros((4, 4), np.float32))
    with pytest.raises(UsageError, match="NumPy array or a torch tensor"):
        Compose("flip")([[1.0]])
    with pytest.raises(UsageError, match="mode"):
        Compose("flip", mode="cubic")


# ------------------------------------------------------------------- torch


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("spec", list(OPS) + [FULL, "rotate:45,zoom:0.3"])
def test_numpy_and_torch_agree(spec, mode):
    torch = pytest.importorskip("torch")
    aug = Compose(spec, mode=mode)
    a = aug(X, rng=11)
    b = aug(torch.from_numpy(X.copy()), rng=11)
    assert isinstance(b, torch.Tensor) and b.dtype == torch.float32 and tuple(b.shape) == X.shape
    if mode == "nearest":  # rounding ties may pick the neighbour pixel; allow a handful
        assert np.mean(np.abs(a - b.numpy()) > 1e-4) < 1e-3
    else:
        np.testing.assert_allclose(b.numpy(), a, atol=2e-5)


def test_torch_rotate_zero_and_flip():
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(X.copy())
    np.testing.assert_allclose(Compose("rotate:0")(t).numpy(), X, atol=1e-5)
    assert torch.equal(Compose([Flip(1.0)])(t), t.flip(-1))
    with pytest.raises(UsageError):
        Compose("flip")(torch.zeros(2, 4, 4))
