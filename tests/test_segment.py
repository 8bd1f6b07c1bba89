"""Segmentation: pixel targets from the canvases, the confusion-matrix scores against
scikit-learn, the streaming evaluator, the connected-components baseline, the
per-pixel loss on both backends, and the two zoo nets (U-Net skips, FCN backbone keys)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from svertka.analysis import analyze
from svertka.data.canvas import CanvasGenerator
from svertka.errors import ShapeError
from svertka.spec import nodes as n
from svertka.tasks.segment import (
    SEGMENT_CANVAS,
    ConfusionEvaluator,
    baseline_segment,
    confusion_matrix,
    pixel_labels,
    pixel_loss,
    segment_classes,
    segment_scores,
)
from svertka.zoo import create_model

K = 11


@pytest.fixture(scope="module")
def canvases():
    gen = CanvasGenerator.from_dataset("fashion-mnist-mini", "test", SEGMENT_CANVAS)
    return gen.generate(64, seed=3)


# ------------------------------------------------------------------ targets


def test_pixel_labels_follow_the_owner_of_each_pixel(canvases):
    got = pixel_labels(canvases)
    assert got.shape == canvases.masks.shape and got.dtype == np.uint8
    for i in range(8):  # the plain loop: owner k -> class of item k-1, + 1
        want = np.zeros_like(got[i])
        for k in range(1, int(canvases.counts[i]) + 1):
            want[canvases.masks[i] == k] = canvases.labels[i, k - 1] + 1
        np.testing.assert_array_equal(got[i], want)
    # a pixel is an item's exactly where the canvas is above the threshold
    np.testing.assert_array_equal(got > 0, canvases.images[..., 0] > SEGMENT_CANVAS.threshold)
    # every item class that is on a canvas and visible shows up, nothing else
    for i in range(len(canvases)):
        shown = set(np.unique(got[i])) - {0}
        assert shown == {int(c) + 1 for c in canvases.labels[i, :canvases.counts[i]]}


def test_segment_classes_put_background_first(canvases):
    names = segment_classes(canvases.classes)
    assert len(names) == K and names[0] == "background" and names[1:] == canvases.classes


# ------------------------------------------------------------------ metrics


def _random_labels(seed, shape=(6, 20, 20)):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, K, shape)
    true[true == 7] = 0  # class 7 never occurs in the truth ...
    pred = np.where(rng.random(shape) < 0.7, true, rng.integers(0, K, shape))
    pred[pred == 9] = 1  # ... class 9 is never predicted
    pred[(pred == 4) | (true == 4)] = 5  # class 4 occurs in neither: it has no IoU
    true[true == 4] = 5
    return true, pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_agree_with_scikit_learn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    true, pred = _random_labels(seed)
    cm = confusion_matrix(true, pred, K)
    np.testing.assert_array_equal(cm, metrics.confusion_matrix(true.ravel(), pred.ravel(), labels=range(K)))
    s = segment_scores(cm)
    present = [c for c in range(K) if c != 4]
    theirs = metrics.jaccard_score(true.ravel(), pred.ravel(), labels=present, average=None)
    ours = np.array([s["iou"][str(c)] for c in present])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert s["iou"]["4"] is None
    assert s["miou"] == pytest.approx(metrics.jaccard_score(true.ravel(), pred.ravel(), labels=present,
                                                            average="macro"), rel=1e-12)
    assert s["pixel_acc"] == pytest.approx(metrics.accuracy_score(true.ravel(), pred.ravel()), rel=1e-12)


def test_scores_by_hand():
    # 2 classes: truth 0 0 1 1, predicted 0 1 1 1 -> IoU(0) = 1/2, IoU(1) = 2/3
    s = segment_scores(confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2), ("bg", "x"))
    assert s["iou"] == {"bg": 0.5, "x": pytest.approx(2 / 3)}
    assert s["miou"] == pytest.approx(7 / 12) and s["pixel_acc"] == 0.75


def test_streaming_evaluator_equals_one_pass_and_takes_scores():
    true, pred = _random_labels(5)
    whole = ConfusionEvaluator(K)
    whole.add(pred, {"mask": true})
    parts = ConfusionEvaluator(K)
    rng = np.random.default_rng(0)
    for i in range(len(true)):  # per image, as scores whose argmax is the prediction
        scores = rng.random((1, K, *true.shape[1:])).astype(np.float32)
        np.put_along_axis(scores, pred[i][None, None], 2.0, 1)
        parts.add(scores, {"mask": true[i:i + 1]})
    np.testing.assert_array_equal(parts.confusion, whole.confusion)
    r = parts.result()
    assert r["miou"] == segment_scores(whole.confusion)["miou"] and "iou_4" in r and r["iou_4"] is None


def test_bad_shapes_are_one_line_errors():
    ev = ConfusionEvaluator(K)
    with pytest.raises(ShapeError, match="does not match the masks"):
        ev.add(np.zeros((2, K, 8, 8)), {"mask": np.zeros((2, 8, 9), np.int64)})
    with pytest.raises(ShapeError, match=r"must be in \[0, 11\)"):
        confusion_matrix(np.array([0, 11]), np.array([0, 1]), K)


# ------------------------------------------------------------------ baseline


def test_baseline_labels_each_component_with_its_crops_class():
    img = np.zeros((1, 20, 30, 1), np.uint8)
    img[0, 2:8, 3:9] = 200     # first component in raster order
    img[0, 10:18, 15:25] = 90  # second
    img[0, 12, 2] = 10         # faint: background
    calls = []

    def classify(crops):
        calls.append(crops.shape)
        scores = np.zeros((len(crops), 10))
        scores[0, 6], scores[1, 2] = 1, 1  # component 1 -> class 6, component 2 -> class 2
        return scores

    got = baseline_segment(img, classify)
    assert calls == [(2, 28, 28, 1)]
    want = np.zeros((1, 20, 30), np.uint8)
    want[0, 2:8, 3:9], want[0, 10:18, 15:25] = 7, 3
    np.testing.assert_array_equal(got, want)
    assert not baseline_segment(np.zeros((2, 9, 9), np.uint8), classify).any()  # no component: no call
    assert len(calls) == 1


def test_baseline_finds_the_true_foreground(canvases):
    got = baseline_segment(canvases.images, lambda crops: np.ones((len(crops), 10)))
    np.testing.assert_array_equal(got > 0, pixel_labels(canvases) > 0)
    with pytest.raises(ShapeError, match="one row of class scores per crop"):
        baseline_segment(canvases.images[:2], lambda crops: np.ones((1, 10)))


# ------------------------------------------------------------------ loss, both backends


def test_pixel_loss_is_cross_entropy_per_pixel_on_both_backends():
    torch = pytest.importorskip("torch")
    from svertka.backends.numpy import Tensor
    from svertka.backends.numpy import functional as NF

    rng = np.random.default_rng(0)
    scores = rng.standard_normal((2, K, 5, 7))
    mask = rng.integers(0, K, (2, 5, 7))
    t = torch.tensor(scores, requires_grad=True)
    loss_t = pixel_loss(torch.nn.functional, t, torch.from_numpy(mask))
    loss_t.backward()
    # the definition: mean over pixels of -log softmax at the true class
    logp = scores - np.log(np.exp(scores).sum(1, keepdims=True))
    want = -np.take_along_axis(logp, mask[:, None], 1).mean()
    assert loss_t.item() == pytest.approx(want, rel=1e-12)
    e = Tensor(scores, requires_grad=True)
    loss_e = pixel_loss(NF, e, mask)
    loss_e.backward()
    assert float(loss_e.data) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(e.grad, t.grad.numpy(), rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------ models


def test_unet_is_nested_concat_skips_with_transposed_convs():
    net = create_model("unet")
    a = analyze(net)
    assert a.input_shape == (1, 96, 96) and a.output_shape == (K, 96, 96)
    nodes = dict(net.named_nodes())
    merges = [p for p, node in nodes.items() if isinstance(node, n.Concat)]
    assert len(merges) == 4  # one skip per level above the bottom, each inside the one above
    assert all(b.startswith(a_ + ".") for a_, b in zip(merges, merges[1:]))
    for p in merges:
        assert isinstance(nodes[p + ".skip"], n.Identity)
        assert isinstance(nodes[p + ".down.up"], n.ConvTranspose2d)
    rows = {la.name: la for la in a.layers}
    # the decoder's first conv of the top level reads the 8 skip channels + 8 up-sampled ones
    assert rows["body.merge"].out_shape == (16, 96, 96)
    assert a.feature_rf.size == (215, 215)  # every output pixel sees the whole 96x96 canvas


def test_fcn_reuses_vgg_fm_small_features():
    net, backbone = create_model("fcn"), create_model("vgg_fm_small", in_chans=1)
    keys = [p for p, node in net.named_nodes() if p.startswith("features.")]
    assert keys == [p for p, _ in backbone.named_nodes() if p.startswith("features.")]
    a = analyze(net)
    assert a.output_shape == (K, 96, 96)
    assert dict((la.name, la.out_shape) for la in a.layers)["classifier"] == (K, 24, 24)  # stride 4


def test_summary_shows_the_skips(capsys):
    from svertka.cli import main

    assert main(["summary", "unet"]) == 0
    out = capsys.readouterr().out
    assert "body.merge.skip" in out and "ConvTranspose2d" in out and "11x96x96" in out


@pytest.mark.parametrize("name", ["unet", "fcn"])
def test_output_field_is_the_smallest_window_holding_every_phase(name):
    """The transposed convs make the field approximate (docs/layers.md): an output
    pixel's true field depends on its phase modulo the deepest stride. Measured as
    the gradient support of a positive linear twin (tests/test_rf_gradient.py), one
    channel wide at 256 px so the central fields are unclipped: every phase's field
    lies inside the analysed window, and some phase reaches each of its edges."""
    pytest.importorskip("torch")
    import torch

    from svertka.backends.torch import compile as compile_torch
    from test_rf_gradient import _support, positive_linear, thin_network

    net, s = thin_network(create_model(name)), 256
    rf = analyze(net, (1, s, s)).feature_rf
    assert not rf.exact
    model = positive_linear(compile_torch(net, (1, s, s)))
    x = torch.ones(1, 1, s, s, dtype=torch.float64, requires_grad=True)
    y = model(x)
    starts, ends = [], []
    for u in range(120, 136):  # 16 phases: the U-Net's deepest stride
        rows, cols = _support(y[0, :, u, u].sum(), x)
        assert rows == cols
        lo, hi = rf.span(u, 0)
        starts.append(rows[0] - lo)
        ends.append(hi - rows[1])
    assert min(starts) == 0 and min(ends) == 0


# ------------------------------------------------------------------ the task through the loop


@pytest.mark.parametrize("backend", ["torch", pytest.param("numpy", marks=pytest.mark.slow)])
def test_train_eval_predict_a_segment_run(tmp_path, capsys, backend):
    """train --task segment on a few canvases, then eval and predict follow the run's task;
    the numbers are not the point (8 canvases), the records and files are."""
    pytest.importorskip("torch")
    from PIL import Image

    from cli_helpers import one_line_error
    from svertka.cli import main
    from svertka.train.checkpoint import read_checkpoint

    run = tmp_path / "run"
    argv = ["train", "--task", "segment", "--model", "fcn", "--data", "fashion-mnist-mini", "--backend",
            backend, "--task-opt", "canvases=8", "--task-opt", "val=4", "--task-opt", "test=4",
            "--epochs", "1", "-b", "4", "--threads", "1", "--output", str(run)]
    assert main(argv) == 0
    capsys.readouterr()
    rec = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert {"train_pixel_acc", "val_miou", "val_pixel_acc", "test_miou", "test_iou_Bag"} <= set(rec)
    assert 0 <= rec["train_pixel_acc"] <= 1 and 0 <= rec["test_miou"] <= 1
    _, meta, _, _ = read_checkpoint(run / "best.safetensors")
    assert meta["task"] == "segment" and meta["classes"][0] == "background" and len(meta["classes"]) == K

    assert main(["eval", str(run), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["task"] == "segment" and got["n"] == 4
    assert got["miou"] == pytest.approx(rec["test_miou"], abs=1e-6)  # the record keeps 6 decimals

    gen = CanvasGenerator.from_dataset("fashion-mnist-mini", "test", SEGMENT_CANVAS)
    Image.fromarray(gen.generate(1, seed=0).images[0, ..., 0]).save(tmp_path / "c.png")
    assert main(["predict", "-w", str(run), str(tmp_path / "c.png"), "--json", "--out",
                 str(tmp_path / "p.png")]) == 0
    (pred,) = json.loads(capsys.readouterr().out)
    assert len(pred["mask"]) == 96 and {len(r) for r in pred["mask"]} == {96}
    assert sum(pred["pixels"].values()) == 96 * 96
    assert Image.open(tmp_path / "p.png").size == (192, 96)  # the canvas beside its coloured mask
    err = one_line_error(capsys, ["predict", "-k", "3", "-w", str(run), str(tmp_path / "c.png")])
    assert "is a segment model" in err


def test_task_refuses_bad_options_and_classifiers(capsys):
    from cli_helpers import one_line_error

    base = ["train", "--task", "segment", "--data", "fashion-mnist-mini", "--epochs", "1"]
    err = one_line_error(capsys, base + ["--model", "unet", "--task-opt", "items=3"])
    assert "items is not an option of task segment" in err and "canvases" in err
    err = one_line_error(capsys, base + ["--model", "unet", "--task-opt", "canvases=0"])
    assert "canvases=0" in err
    small = ["--task-opt", "canvases=4", "--task-opt", "val=2", "--task-opt", "test=2"]
    err = one_line_error(capsys, base + ["--model", "lenet5", *small])
    assert "use --model unet or fcn" in err
    err = one_line_error(capsys, base + ["--model", "unet", "--aug", "flip"])
    assert "drop --aug" in err
