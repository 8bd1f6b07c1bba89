"""The points task: targets, the soft-argmax and direct decoders on constructed
maps, the loss against its formula and across the two backends, the evaluator and
its mean-keypoint baseline, the task models, and training through the CLI."""
import numpy as np
import pytest

from svertka.analysis import analyze
from svertka.backends.numpy import functional as NF
from svertka.backends.numpy.tensor import Tensor
from svertka.data.canvas import KEYPOINT_NAMES, TASK_PRESETS, CanvasGenerator
from svertka.errors import ShapeError
from svertka.tasks.metrics import keypoint_metrics
from svertka.tasks.points import (
    PointsEvaluator,
    decode_keypoints,
    draw_keypoints,
    keypoint_targets,
    keypoints_json,
    mean_keypoints,
    points_loss,
    predicted_xy,
    soft_argmax,
)
from svertka.zoo import create_model

DATA = "fashion-mnist-mini"


def peaked(n, k, side, rows, cols, height=60.0):
    """(n, k, side, side) maps, -height everywhere but +height at (rows, cols)."""
    m = np.full((n, k, side, side), -height, np.float32)
    m[np.arange(n)[:, None], np.arange(k)[None, :], rows, cols] = height
    return m


# ---------------------------------------------------------------- decoders


def test_soft_argmax_of_a_peaked_map_is_the_peaks_cell_centre():
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 32, (3, 5)), rng.integers(0, 32, (3, 5))
    kp = decode_keypoints(peaked(3, 5, 32, rows, cols), 64)
    # a 32x32 map over 64 px: cell (i, j) is centred at pixel (2j + 1, 2i + 1)
    np.testing.assert_allclose(kp[..., 0], 2 * cols + 1, atol=1e-9)
    np.testing.assert_allclose(kp[..., 1], 2 * rows + 1, atol=1e-9)


def test_soft_argmax_of_tied_cells_is_their_centre():
    """A map flat over cells 4..9 of row 7 decodes to their middle, as the canvas's
    extreme points take the centre of tied pixels."""
    m = np.full((1, 1, 16, 16), -80.0, np.float32)
    m[0, 0, 7, 4:10] = 3.0
    x, y = soft_argmax(Tensor(m), 64)
    stride = 64 / 16
    assert x.data[0, 0] * 64 == pytest.approx((4 + 9) / 2 * stride + stride / 2)
    assert y.data[0, 0] * 64 == pytest.approx(7.5 * stride)


def test_soft_argmax_survives_huge_logits():
    m = peaked(1, 2, 8, np.array([[1, 6]]), np.array([[2, 3]]), height=1e4)
    kp = decode_keypoints(m, 64)
    assert np.isfinite(kp).all()
    np.testing.assert_allclose(kp[0], [[2.5 * 8, 1.5 * 8], [3.5 * 8, 6.5 * 8]])


def test_direct_outputs_are_offsets_from_the_centre():
    out = np.zeros((2, 10), np.float32)
    out[1] = np.arange(10) / 100
    kp = decode_keypoints(out, 64)
    np.testing.assert_allclose(kp[0], 32.0)
    np.testing.assert_allclose(kp[1], (0.5 + np.arange(10).reshape(5, 2) / 100) * 64, rtol=1e-6)


def test_a_wrong_output_shape_is_a_shape_error():
    with pytest.raises(ShapeError, match="2K"):
        predicted_xy(Tensor(np.zeros((2, 7), np.float32)))
    with pytest.raises(ShapeError, match="2 x 5"):
        predicted_xy(Tensor(np.zeros((2, 8), np.float32)), 5)
    with pytest.raises(ShapeError, match="square"):
        predicted_xy(Tensor(np.zeros((2, 5, 8, 4), np.float32)))


# ------------------------------------------------------------------ losses


@pytest.mark.parametrize("shape", [(4, 10), (4, 5, 16, 16)])
def test_loss_matches_the_formula(shape):
    rng = np.random.default_rng(1)
    out = rng.normal(size=shape).astype(np.float32)
    kp = rng.uniform(0, 64, (4, 5, 2)).astype(np.float32)
    loss, logs = points_loss(Tensor(out), kp, 64)
    pred = decode_keypoints(out, 64)
    by_hand = np.abs(pred - kp).mean() / 64  # mean over x and y of |d| in fractions of the side
    assert float(loss.data) == pytest.approx(by_hand, rel=1e-5)
    px = np.sqrt(((pred - kp) ** 2).sum(-1)).mean(1).sum()
    assert float(logs["px_error"].data) == pytest.approx(px, rel=1e-5)


@pytest.mark.parametrize("shape", [(3, 10), (3, 5, 8, 8)])
def test_both_backends_agree_on_loss_and_gradient(shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    out = rng.normal(size=shape).astype(np.float32)
    kp = rng.uniform(0, 64, (3, 5, 2)).astype(np.float32)
    t = torch.tensor(out, requires_grad=True)
    lt, dt = points_loss(t, torch.tensor(kp), 64)
    lt.backward()
    e = Tensor(out, requires_grad=True)
    le, de = points_loss(e, kp, 64)
    le.backward()
    assert float(lt.detach()) == pytest.approx(float(le.data), rel=1e-5)
    assert float(dt["px_error"]) == pytest.approx(float(de["px_error"].data), rel=1e-5)
    np.testing.assert_allclose(t.grad.numpy(), e.grad, rtol=1e-4, atol=1e-7)


def test_loss_gradient_points_towards_the_target():
    """One gradient step on the direct outputs lowers the loss."""
    kp = np.array([[[10.0, 20.0]]], np.float32)
    e = Tensor(np.zeros((1, 2), np.float32), requires_grad=True)
    loss, _ = points_loss(e, kp, 64)
    loss.backward()
    assert (e.grad > 0).all()  # the target is up-left of the centre: both outputs must fall
    after, _ = points_loss(Tensor(-0.01 * np.sign(e.grad)), kp, 64)
    assert float(after.data) < float(loss.data)


# ------------------------------------------------------------ data, scores


@pytest.fixture(scope="module")
def canvases():
    return CanvasGenerator.from_dataset(DATA, "test", TASK_PRESETS["points"]).generate(64, seed=3)


def test_targets_are_the_items_keypoints(canvases):
    kp = keypoint_targets(canvases)
    assert kp.shape == (64, len(KEYPOINT_NAMES), 2) and kp.dtype == np.float32
    np.testing.assert_array_equal(kp, canvases.keypoints[:, 0])
    # every keypoint lies on the item's box, the extremes on its edges
    b = canvases.boxes[:, 0]
    assert (kp[:, 1, 1] == b[:, 1] + 0.5).all() and (kp[:, 2, 1] == b[:, 3] - 0.5).all()
    assert (kp[:, 3, 0] == b[:, 0] + 0.5).all() and (kp[:, 4, 0] == b[:, 2] - 0.5).all()


def test_evaluator_scores_and_baseline(canvases):
    kp = keypoint_targets(canvases)
    # direct outputs that decode to the truth plus 1.5 px in x for the first half
    out = (kp / 64 - 0.5).reshape(64, -1).astype(np.float64)
    out[:32, 0::2] += 1.5 / 64
    base = mean_keypoints(kp[:40])
    ev = PointsEvaluator(64, baseline=base)
    ev.add(out[:20], {"keypoints": kp[:20]})
    ev.add(out[20:], {"keypoints": kp[20:]})
    r = ev.result()
    assert r["mean_px_error"] == pytest.approx(0.75, abs=1e-6)
    assert r["pck@2px"] == 1.0 and r["pck@4px"] == 1.0
    assert r[f"px_error_{KEYPOINT_NAMES[2]}"] == pytest.approx(0.75, abs=1e-6)
    want = keypoint_metrics(np.broadcast_to(base, kp.shape), kp)
    assert r["baseline_mean_px_error"] == pytest.approx(want["mean_px_error"])
    assert r["baseline_pck@2px"] == pytest.approx(want["pck@2px"])
    assert all(isinstance(v, float) for v in r.values())


def test_json_and_drawing(tmp_path, canvases):
    kp = keypoint_targets(canvases)[:2]
    preds = keypoints_json(kp)
    assert list(preds[0]["keypoints"]) == list(KEYPOINT_NAMES)
    assert preds[1]["keypoints"]["top"] == [round(float(v), 2) for v in kp[1, 1]]
    path = tmp_path / "pts.png"
    draw_keypoints(canvases.images[0], preds[0], path)
    from PIL import Image
    img = np.asarray(Image.open(path))
    assert img.shape == (256, 256, 3)
    x, y = (np.asarray(preds[0]["keypoints"]["top"]) * 4).astype(int)
    assert tuple(img[y, x]) == (255, 64, 64)  # the top keypoint's colour at its place


# ------------------------------------------------------------------ models


@pytest.mark.parametrize("name, out", [("points_direct", (10,)), ("points_heatmap", (5, 32, 32)),
                                       ("points_direct_small", (10,)), ("points_heatmap_small", (5, 32, 32))])
def test_models_give_coordinates_or_maps(name, out):
    a = analyze(create_model(name))
    assert a.output_shape == out
    head = a.layer("head")  # the summary's rows of the head, and their totals
    assert 0 < head.params < a.params and head.macs > 0
    if len(out) == 3:  # every map cell sees the whole 64 px canvas
        assert min(head.rf.size) >= 64


def test_small_model_trains_on_the_engine_one_step():
    """The loss written once drives the NumPy engine's autograd through the whole model."""
    from svertka.backends import get_backend

    engine = get_backend("numpy")
    model = engine.compile(create_model("points_heatmap_small"))
    x = Tensor(np.random.default_rng(0).normal(size=(2, 1, 64, 64)).astype(np.float32))
    loss, _ = points_loss(model(x), np.full((2, 5, 2), 20.0, np.float32), 64)
    loss.backward()
    grads = [p.grad for _, p in model.named_parameters()]
    assert all(g is not None and np.isfinite(g).all() for g in grads)
    assert NF is not None


# ------------------------------------------------------------ through the CLI


def tiny_canvas_png(path, seed=9):
    from PIL import Image
    c = CanvasGenerator.from_dataset(DATA, "test", TASK_PRESETS["points"]).generate(1, seed=seed)
    Image.fromarray(c.images[0, ..., 0]).save(path)
    return c


@pytest.mark.parametrize("backend, model", [("torch", "points_heatmap"), ("numpy", "points_direct_small")])
def test_train_eval_predict_through_the_cli(tmp_path, capsys, backend, model):
    import json

    from svertka.cli import main

    if backend == "torch":
        pytest.importorskip("torch")
    run = tmp_path / "run"
    rc = main(["train", model, "--task", "points", "--data", DATA, "--backend", backend,
               "--limit-train", "256", "--limit-test", "64", "--epochs", "1", "--threads", "1",
               "--output", str(run), "--json"])
    assert rc in (0, None)
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"train_loss", "train_px_error", "test_mean_px_error", "test_pck@2px", "test_pck@4px",
            "test_baseline_mean_px_error"} <= set(rec)
    assert "test_acc" not in rec and 0 < rec["test_mean_px_error"] < 64
    assert main(["eval", str(run), "--json", "--limit", "64"]) in (0, None)
    got = json.loads(capsys.readouterr().out)
    assert got["task"] == "points" and got["n"] == 64
    assert got["mean_px_error"] == pytest.approx(rec["test_mean_px_error"], abs=1e-5)
    assert got["baseline_mean_px_error"] == pytest.approx(rec["test_baseline_mean_px_error"], abs=1e-5)
    assert {f"px_error_{k}" for k in KEYPOINT_NAMES} <= set(got)
    png = tmp_path / "canvas.png"
    tiny_canvas_png(png)
    rc = main(["predict", str(png), "-w", str(run), "--json", "--out", str(tmp_path / "drawn.png")])
    assert rc in (0, None)
    pred = json.loads(capsys.readouterr().out)
    assert list(pred[0]["keypoints"]) == list(KEYPOINT_NAMES)
    assert all(0 <= v <= 64 for xy in pred[0]["keypoints"].values() for v in xy)
    from PIL import Image
    assert Image.open(tmp_path / "drawn.png").size == (256, 256)


def test_bad_points_settings_get_one_line(capsys):
    from cli_helpers import one_line_error

    base = ["train", "--task", "points", "--data", DATA, "--limit-train", "64", "--limit-test", "32"]
    err = one_line_error(capsys, base + ["--task-opt", "heads=direct"])
    assert "heads" in err and "canvases" in err and "head" in err
    assert "heatmap|direct" in one_line_error(capsys, base + ["--task-opt", "head=argmax"])
    assert "positive integer" in one_line_error(capsys, base + ["--task-opt", "canvases=0"])
    assert "not lenet5" not in one_line_error(capsys, base + ["resnet18"])
    assert "drop one" in one_line_error(capsys, base + ["points_direct", "--task-opt", "head=heatmap"])
    assert "--aug" in one_line_error(capsys, base + ["--aug", "flip"])
