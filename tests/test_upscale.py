"""Upscaling: the scores against scikit-image, the luma against scikit-image's
YCbCr, the data pairs, the zoo's SR models, tiled inference equal to one pass,
and `svertka upscale` with its one-line errors."""
from __future__ import annotations

import numpy as np
import pytest

from cli_helpers import one_line_error
from svertka.analysis import analyze
from svertka.backends.numpy import Tensor, manual_seed, no_grad
from svertka.backends.numpy import compile as np_compile
from svertka.errors import ShapeError
from svertka.tasks.image_metrics import psnr, ssim
from svertka.tasks.upscale import (
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    as_uint8,
    luma,
    make_pair,
    model_reach,
    patches,
    rgb_to_ycbcr,
    run_tiled,
    score_images,
    ycbcr_to_rgb,
)
from svertka.zoo import create_model

rng = np.random.default_rng(13)


def _pair_of_images(h, w, noise):
    a = rng.random((h, w))
    return a, np.clip(a + noise * rng.standard_normal((h, w)), 0, 1)


# ------------------------------------------------------------------ scores against skimage


@pytest.mark.parametrize("border", [0, 2, 3])
def test_psnr_and_ssim_match_skimage(border):
    metrics = pytest.importorskip("skimage.metrics")
    for h, w, noise in [(40, 52, 0.05), (31, 29, 0.3), (64, 64, 0.01)]:
        pred, true = _pair_of_images(h, w, noise)
        for scale in (1.0, 255.0):  # [0, 1] images and 8-bit values
            p, t = pred * scale, true * scale
            inner = (slice(border, -border or None),) * 2
            pc, tc = p[inner], t[inner]
            want_psnr = metrics.peak_signal_noise_ratio(tc, pc, data_range=scale)
            want_ssim = metrics.structural_similarity(tc, pc, gaussian_weights=True, sigma=1.5,
                                                      use_sample_covariance=False, data_range=scale)
            assert psnr(p, t, scale, border) == pytest.approx(want_psnr, abs=1e-10)
            assert ssim(p, t, scale, border) == pytest.approx(want_ssim, abs=1e-10)


def test_scores_of_identical_and_unrelated_images():
    a = rng.random((30, 30))
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, rng.random((30, 30))) < 0.2


def test_scores_reject_mismatched_or_tiny_images():
    with pytest.raises(ShapeError, match="one shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ShapeError, match="smaller than 11"):
        ssim(np.zeros((14, 14)), np.zeros((14, 14)), border=2)


# ------------------------------------------------------------------ luma and pairs


def test_luma_is_skimage_ycbcr_y_and_colour_round_trips():
    color = pytest.importorskip("skimage.color")
    rgb = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_ycbcr(rgb), color.rgb2ycbcr(rgb), atol=1e-9)
    assert luma(rgb).dtype == np.uint8
    np.testing.assert_array_equal(luma(rgb), np.clip(np.rint(color.rgb2ycbcr(rgb)[..., 0]), 0, 255))
    grey = rgb[..., 0]
    np.testing.assert_array_equal(luma(grey), grey)  # a grey image is its own luma
    back = ycbcr_to_rgb(rgb_to_ycbcr(rgb))
    assert np.abs(back.astype(int) - rgb).max() <= 1


def test_pairs_crop_to_the_scale_and_patches_stay_aligned():
    # a smooth image: a bicubic x2 of the low-res patch stays close to the high-res one only if aligned
    yy, xx = np.mgrid[0:101, 0:77]
    hr = (127 + 100 * np.sin(yy / 9.0) * np.cos(xx / 7.0)).astype(np.uint8)
    pair = make_pair(hr, 3)
    assert pair["hr"].shape == (99, 75) and pair["lr"].shape == (33, 25) and pair["bicubic"].shape == (99, 75)
    x, y = patches([make_pair(hr, 2)], 2, 20, 24, "low-res", seed=0)
    assert x.shape == (20, 12, 12, 1) and x.dtype == np.uint8 and y.shape == (20, 1, 24, 24)
    assert y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1
    from svertka.tasks.upscale import bicubic
    up = np.stack([bicubic(xi[..., 0], (24, 24)) for xi in x]) / 255.0
    inner = (slice(None), slice(3, -3), slice(3, -3))
    assert np.abs(up - y[:, 0])[inner].mean() < 0.02
    shifted = np.abs(np.roll(up, 2, axis=1) - y[:, 0])[inner].mean()
    assert shifted > 2 * np.abs(up - y[:, 0])[inner].mean()   # the check can tell a misalignment
    xb, _ = patches([make_pair(hr, 2)], 2, 5, 24, "bicubic", seed=0)
    assert xb.shape == (5, 24, 24, 1)


def test_train_and_test_photos_are_disjoint_and_load():
    pytest.importorskip("skimage")
    from svertka.tasks.upscale import load_photo
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS) and len(TEST_PHOTOS) >= 4
    y = load_photo("chelsea")
    assert y.dtype == np.uint8 and y.shape == (300, 451)


def test_score_images_crops_the_border_and_rounds_like_a_saved_image():
    true = rng.integers(0, 256, (20, 20)).astype(np.uint8)
    pred = true.copy()
    pred[:2] = 0  # damage only inside the 2-pixel border
    assert score_images([pred], [true], 2)["psnr"] == float("inf")
    assert score_images([pred], [true], 1)["psnr"] < 40
    np.testing.assert_array_equal(as_uint8(np.array([-0.1, 0.5, 1.2, 100 / 255])), [0, 128, 255, 100])


# ------------------------------------------------------------------ zoo


def test_sr_models_counts_and_macs_per_output_pixel():
    a = analyze(create_model("srcnn_x2"))
    weights = sum(layer.params - layer.out_shape[0] for layer in a.leaves if layer.type == "Conv2d")
    assert weights == 8_032                      # Dong et al.'s figure: weights without biases
    assert a.input_shape == a.output_shape == (1, 96, 96)
    per_px = {}
    for name in ("srcnn_x2", "srcnn_x3", "espcn_x2", "espcn_x3"):
        a = analyze(create_model(name))
        assert a.output_shape == (1, 96, 96)
        per_px[name] = a.macs / 96 ** 2
    assert per_px["srcnn_x2"] == per_px["srcnn_x3"] == 81 * 64 + 64 * 32 + 25 * 32
    assert per_px["espcn_x2"] == (25 * 64 + 9 * 64 * 32 + 9 * 32 * 4) / 4
    assert per_px["espcn_x3"] == pytest.approx((25 * 64 + 9 * 64 * 32 + 9 * 32 * 9) / 9)
    assert analyze(create_model("espcn_x3")).input_shape == (1, 32, 32)


# ------------------------------------------------------------------ tiles


@pytest.mark.parametrize("name,scale", [("espcn_x3", 3), ("srcnn_x2", 1)])
def test_tiled_inference_equals_one_pass(name, scale):
    net = create_model(name)
    manual_seed(0)
    model = np_compile(net).eval()

    def forward(x):
        with no_grad():
            return model(Tensor(x[None, None].astype(np.float32))).data[0, 0]

    image = rng.integers(0, 256, (23, 30)).astype(np.uint8)
    whole = forward(image.astype(np.float32) / 255)
    reach = model_reach(net)
    tiled = run_tiled(forward, image, scale, 7, reach)
    assert tiled.shape == whole.shape == (23 * scale, 30 * scale)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-6)
    # without the overlap, the tiles' edges differ: the test can fail
    assert np.abs(run_tiled(forward, image, scale, 7, 0) - whole).max() > 1e-3


# ------------------------------------------------------------------ svertka upscale


def _run(tmp_path, name="espcn_x2"):
    from svertka.spec import save_network
    from svertka.train.checkpoint import save_checkpoint
    net = create_model(name)
    manual_seed(1)
    model = np_compile(net)
    run = tmp_path / name
    run.mkdir()
    save_network(net, run / "model.json")
    meta = {"model": name, "num_classes": 1, "input_shape": list(net.input_shape), "backend": "numpy",
            "task": "upscale", "scale": net.meta["scale"], "input": net.meta["input"], "mean": [0.0],
            "std": [1.0]}
    save_checkpoint(run / "best.safetensors", {k: np.asarray(v) for k, v in model.state_dict().items()}, meta)
    return run


@pytest.mark.parametrize("name", ["espcn_x2", "srcnn_x3"])
def test_upscale_cli_writes_a_larger_image(tmp_path, capsys, name):
    from PIL import Image

    from svertka.cli import main
    run = _run(tmp_path, name)
    scale = int(name[-1])
    rgb = rng.integers(0, 256, (21, 17, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    assert main(["upscale", str(run), str(tmp_path / "in.png"), "--out", str(tmp_path / "out.png"),
                 "--tile", "8"]) == 0
    assert f"21x17 -> {21 * scale}x{17 * scale}" in capsys.readouterr().out
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (21 * scale, 17 * scale, 3)
    # the colour (Cb, Cr) is the bicubic one: a grey input stays grey
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    assert main(["upscale", str(run), str(tmp_path / "grey.png"), "--out", str(tmp_path / "g.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "g.png")).shape == (21 * scale, 17 * scale)


def test_upscale_cli_bad_inputs_are_one_line(tmp_path, capsys):
    from PIL import Image
    run = _run(tmp_path)
    (tmp_path / "notes.png").write_text("not an image")
    err = one_line_error(capsys, ["upscale", str(run), str(tmp_path / "notes.png"), "--out",
                                  str(tmp_path / "o.png")])
    assert "not an image Pillow can decode" in err
    Image.fromarray(np.zeros((3, 40, 3), np.uint8)).save(tmp_path / "thin.png")
    err = one_line_error(capsys, ["upscale", str(run), str(tmp_path / "thin.png"), "--out",
                                  str(tmp_path / "o.png")])
    assert "3x40 pixels" in err and "at least" in err
    err = one_line_error(capsys, ["upscale", str(run), str(tmp_path / "thin.png"), "--out",
                                  str(tmp_path / "o.gif")])
    assert "unknown image extension" in err


# ------------------------------------------------------------------ the task in the training loop

TINY = {"task": "upscale", "data": "fashion-mnist-mini", "limit_train": 32, "limit_test": 24,
        "batch_size": 16, "eval_batch_size": 16, "threads": 1, "epochs": 1, "lr": 3e-3}


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_upscale_task_trains_on_both_backends_and_its_run_upscales(tmp_path, capsys, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    from PIL import Image

    from svertka.cli import main
    from svertka.tasks.upscale import UpscaleTask, fashion_pairs
    from svertka.train import make_config, train
    cfg = make_config({**TINY, "model": "espcn_x2", "backend": backend, "output": str(tmp_path / "r")})
    r = train(cfg, progress=False)
    last = r.history[-1]
    assert {"train_loss", "train_mse", "test_psnr", "test_ssim"} <= set(last) and r.score == "psnr"
    # the loop's test score is score_images over the same items, computed here independently
    _, _, test = UpscaleTask(cfg).load()
    assert len(test) == 24 and test.images.shape[1:] == (14, 14, 1)
    truth = [p["hr"] for p in fashion_pairs("test", 2, 24, dataset="fashion-mnist-mini")]
    np.testing.assert_array_equal(as_uint8(test.targets["hr"][:, 0]), np.stack(truth))
    capsys.readouterr()
    assert main(["eval", str(r.run_dir), "--json", "--limit", "24"]) == 0
    import json
    got = json.loads(capsys.readouterr().out)
    assert got["psnr"] == pytest.approx(last["test_psnr"], abs=1e-6)
    # the checkpoint carries the scale, so `svertka upscale` reads the run as is
    Image.fromarray(rng.integers(0, 256, (20, 26), dtype=np.uint8)).save(tmp_path / "in.png")
    assert main(["upscale", str(r.run_dir), str(tmp_path / "in.png"), "--out", str(tmp_path / "o.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "o.png")).shape == (40, 52)


def test_streaming_evaluator_equals_one_pass():
    from svertka.tasks.upscale import PsnrSsimEvaluator
    out = rng.random((10, 1, 24, 24)).astype(np.float32)
    hr = np.clip(out + 0.05 * rng.standard_normal(out.shape), 0, 1).astype(np.float32)
    ev = PsnrSsimEvaluator(2)
    ev.add(out[:3], {"hr": hr[:3]})
    ev.add(out[3:], {"hr": hr[3:]})
    want = score_images(as_uint8(out[:, 0]), as_uint8(hr[:, 0]), 2)
    assert ev.result() == pytest.approx({"psnr": want["psnr"], "ssim": want["ssim"]})


@pytest.mark.parametrize("argv,needle", [
    (["--model", "lenet5"], "trains an upscaling model"),
    (["--model", "espcn_x2", "--data", "cifar10"], "--data photos"),
    (["--model", "espcn_x3"], "14 -> 28 only"),
    (["--model", "espcn_x2", "--task-opt", "scale=4"], "not an option of task upscale"),
    (["--model", "espcn_x2", "--task-opt", "patches=0"], "patches=N"),
])
def test_upscale_task_bad_settings_are_one_line(capsys, argv, needle):
    err = one_line_error(capsys, ["train", "--task", "upscale", "--data", "fashion-mnist-mini",
                                  "--epochs", "1", *argv])
    assert needle in err, err


def test_a_classifier_run_is_not_upscaled(tmp_path, capsys):
    from PIL import Image

    from svertka.train import make_config, train
    cfg = make_config({"data": "fashion-mnist-mini", "limit_train": 32, "limit_test": 16, "epochs": 1,
                       "threads": 1, "backend": "numpy", "model": "lenet5", "output": str(tmp_path / "c")})
    r = train(cfg, progress=False)
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "in.png")
    err = one_line_error(capsys, ["upscale", str(r.run_dir), str(tmp_path / "in.png"), "--out",
                                  str(tmp_path / "o.png")])
    assert "not an upscaling model" in err
