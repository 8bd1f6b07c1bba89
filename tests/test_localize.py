"""The localize task: targets, the box decoder, smooth-L1 and GIoU written with the
ops both backends share (checked against their direct formulas and the box
utilities), the two backends' losses, the evaluator, the models and the CLI."""
import numpy as np
import pytest

from svertka.analysis import analyze
from svertka.backends.numpy import functional as NF
from svertka.backends.numpy.tensor import Tensor
from svertka.data.canvas import TASK_PRESETS, CanvasGenerator
from svertka.errors import ShapeError
from svertka.tasks.boxes import giou, iou
from svertka.tasks.localize import (
    BOX_LOSSES,
    BOX_WEIGHT,
    PRIOR,
    LocalizeEvaluator,
    decode_boxes,
    draw_box,
    giou_terms,
    localize_json,
    localize_loss,
    localize_targets,
    smooth_l1,
    split_output,
)
from svertka.tasks.metrics import localization_metrics
from svertka.zoo import create_model

DATA = "fashion-mnist-mini"


def random_boxes(rng, n, lo=0.0, hi=40.0):
    b = rng.uniform(lo, hi, (n, 4))
    b[:, 2:] = b[:, :2] + rng.uniform(1, 24, (n, 2))
    return b.astype(np.float32)


def outputs_for(labels, boxes, num_classes=10, size=64, margin=5.0):
    """Model outputs that decode to ``labels`` (logit ``margin`` above the rest) and ``boxes``."""
    out = np.zeros((len(labels), num_classes + 4), np.float64)
    out[np.arange(len(labels)), labels] = margin
    out[:, num_classes:] = boxes / size - np.asarray(PRIOR)
    return out


# ------------------------------------------------------------------ pieces


def test_smooth_l1_is_fast_rcnns():
    d = np.array([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.5])
    want = np.where(np.abs(d) < 1, 0.5 * d * d, np.abs(d) - 0.5)
    np.testing.assert_allclose(smooth_l1(d), want)
    np.testing.assert_allclose(smooth_l1(d, beta=2.0), np.where(np.abs(d) < 2, 0.25 * d * d, np.abs(d) - 1))


def test_giou_terms_match_the_box_utilities():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 200), random_boxes(rng, 200)
    a[:5] = a[:5, [2, 3, 0, 1]]  # inside-out predictions count as empty boxes
    i, g = giou_terms([a[:, j] for j in range(4)], [b[:, j] for j in range(4)])
    np.testing.assert_allclose(i, iou(a, b), atol=1e-6)
    np.testing.assert_allclose(g, giou(a, b), atol=1e-6)
    # by hand: two 2x2 boxes offset by (1, 1): IoU 1/7, hull 9, GIoU 1/7 - (9 - 7) / 9
    i, g = giou_terms([np.array([v]) for v in (0.0, 0, 2, 2)], [np.array([v]) for v in (1.0, 1, 3, 3)])
    assert i[0] == pytest.approx(1 / 7) and g[0] == pytest.approx(1 / 7 - 2 / 9)


def test_split_and_decode():
    rng = np.random.default_rng(1)
    labels, boxes = rng.integers(0, 10, 8), random_boxes(rng, 8)
    out = outputs_for(labels, boxes)
    logits, box = split_output(out, 10)
    assert logits.shape == (8, 10) and len(box) == 4
    label, score, xyxy = decode_boxes(out, 10, 64)
    np.testing.assert_array_equal(label, labels)
    np.testing.assert_allclose(xyxy, boxes, atol=1e-4)
    np.testing.assert_allclose(score, np.exp(5) / (np.exp(5) + 9))
    # an untrained net (all zeros) guesses the prior; boxes are clipped and ordered
    _, _, xyxy = decode_boxes(np.zeros((1, 14)), 10, 64)
    np.testing.assert_allclose(xyxy[0], np.asarray(PRIOR) * 64)
    wild = outputs_for([0], np.array([[70.0, 30, -5, 10]]))
    np.testing.assert_allclose(decode_boxes(wild, 10, 64)[2][0], [0, 10, 64, 30], atol=1e-4)
    with pytest.raises(ShapeError, match="10 classes \\+ 4"):
        split_output(np.zeros((2, 10)), 10)


@pytest.mark.parametrize("box_loss", BOX_LOSSES)
def test_loss_matches_the_formula(box_loss):
    rng = np.random.default_rng(2)
    labels, true = rng.integers(0, 10, 6), random_boxes(rng, 6)
    out = rng.normal(size=(6, 14)).astype(np.float32) * 0.3
    loss, logs = localize_loss(NF, Tensor(out), labels, true, 10, 64, box_loss)
    logits = out[:, :10].astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ce = -logp[np.arange(6), labels].mean()
    pred = (out[:, 10:] + np.asarray(PRIOR)) * 64
    if box_loss == "giou":
        reg = (1 - giou(pred, true)).mean()
    else:
        d = np.abs(pred - true)
        reg = np.where(d < 1, 0.5 * d * d, d - 0.5).mean()
    assert float(loss.data) == pytest.approx(ce + BOX_WEIGHT[box_loss] * reg, rel=1e-5)
    assert int(logs["acc"]) == int((logits.argmax(1) == labels).sum())
    assert float(logs["iou"].data) == pytest.approx(iou(pred, true).sum(), rel=1e-5)


@pytest.mark.parametrize("box_loss", BOX_LOSSES)
def test_both_backends_agree_on_loss_and_gradient(box_loss):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    rng = np.random.default_rng(3)
    labels, true = rng.integers(0, 10, 6), random_boxes(rng, 6)
    out = rng.normal(size=(6, 14)).astype(np.float32) * 0.3
    t = torch.tensor(out, requires_grad=True)
    lt, dt = localize_loss(TF, t, torch.tensor(labels), torch.tensor(true), 10, 64, box_loss)
    lt.backward()
    e = Tensor(out, requires_grad=True)
    le, de = localize_loss(NF, e, labels, true, 10, 64, box_loss)
    le.backward()
    assert float(lt.detach()) == pytest.approx(float(le.data), rel=1e-5)
    assert float(dt["iou"]) == pytest.approx(float(de["iou"].data), rel=1e-5)
    assert int(dt["acc"]) == int(de["acc"])
    np.testing.assert_allclose(t.grad.numpy(), e.grad, rtol=1e-4, atol=1e-6)


def test_giou_loss_has_a_gradient_for_disjoint_boxes():
    true = np.array([[40.0, 40, 50, 50]], np.float32)
    far = outputs_for([0], np.array([[2.0, 2, 10, 10]])).astype(np.float32)  # no overlap at all
    e = Tensor(far, requires_grad=True)
    loss, logs = localize_loss(NF, e, np.array([0]), true, 10, 64, "giou")
    loss.backward()
    assert float(logs["iou"].data) == 0.0
    assert (e.grad[0, 12:] < 0).all()  # x1, y1 must grow towards the far box


# ------------------------------------------------------------ data, scores


@pytest.fixture(scope="module")
def canvases():
    return CanvasGenerator.from_dataset(DATA, "test", TASK_PRESETS["localize"]).generate(48, seed=5)


def test_targets_are_the_items_class_and_box(canvases):
    t = localize_targets(canvases)
    assert t["labels"].dtype == np.int64 and t["boxes"].dtype == np.float32
    np.testing.assert_array_equal(t["labels"], canvases.labels[:, 0])
    np.testing.assert_array_equal(t["boxes"], canvases.boxes[:, 0])
    assert (t["labels"] >= 0).all() and (t["boxes"][:, 2:] > t["boxes"][:, :2]).all()


def test_evaluator_matches_the_metric(canvases):
    t = localize_targets(canvases)
    labels, boxes = t["labels"].copy(), t["boxes"].copy()
    labels[:6] = (labels[:6] + 1) % 10  # 6 wrong classes
    boxes[40:] += 20  # 8 boxes shifted off
    out = outputs_for(labels, np.clip(boxes, 0, 64))
    ev = LocalizeEvaluator(10, 64)
    ev.add(out[:30], {k: v[:30] for k, v in t.items()})
    ev.add(out[30:], {k: v[30:] for k, v in t.items()})
    r = ev.result()
    want = localization_metrics(labels, np.clip(boxes, 0, 64), t["labels"], t["boxes"])
    assert r == pytest.approx(want, abs=1e-5)
    assert r["top1"] == pytest.approx(42 / 48)


def test_json_and_drawing(tmp_path, canvases):
    t = localize_targets(canvases)
    out = outputs_for(t["labels"][:2], t["boxes"][:2])
    preds = localize_json(out, canvases.classes, 64)
    assert preds[0]["class"] == canvases.classes[t["labels"][0]]
    assert preds[1]["box"] == pytest.approx(t["boxes"][1].tolist(), abs=0.01)
    path = tmp_path / "box.png"
    draw_box(canvases.images[0], preds[0], path)
    from PIL import Image
    img = np.asarray(Image.open(path))
    x0, y0, x1, y1 = (int(v * 4) for v in preds[0]["box"])
    assert tuple(img[(y0 + y1) // 2, x0]) == (255, 64, 64)  # the box's left edge


# ------------------------------------------------------------------ models


@pytest.mark.parametrize("name", ["localize_net", "localize_net_small"])
def test_models_give_logits_and_a_box(name):
    a = analyze(create_model(name, num_classes=7))
    assert a.output_shape == (7 + 4,)
    head = a.layer("head")
    assert 0 < head.params < a.params and head.rf.global_


# ------------------------------------------------------------ through the CLI


def test_train_eval_predict_through_the_cli(tmp_path, capsys):
    import json

    from PIL import Image

    from svertka.cli import main

    pytest.importorskip("torch")
    run = tmp_path / "run"
    rc = main(["train", "--task", "localize", "--task-opt", "box_loss=giou", "--data", DATA,
               "--limit-train", "256", "--limit-test", "64", "--epochs", "1", "--threads", "1",
               "--output", str(run), "--json"])
    assert rc in (0, None)
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"train_loss", "train_acc", "train_iou", "test_top1", "test_mean_iou",
            "test_correct_localization"} <= set(rec)
    assert main(["eval", str(run), "--json", "--limit", "64"]) in (0, None)
    got = json.loads(capsys.readouterr().out)
    assert got["task"] == "localize" and got["n"] == 64
    assert got["correct_localization"] == pytest.approx(rec["test_correct_localization"], abs=1e-6)
    c = CanvasGenerator.from_dataset(DATA, "test", TASK_PRESETS["localize"]).generate(1, seed=4)
    Image.fromarray(c.images[0, ..., 0]).save(tmp_path / "c.png")
    out = tmp_path / "drawn.png"
    rc = main(["predict", str(tmp_path / "c.png"), "-w", str(run), "--json", "--out", str(out)])
    assert rc in (0, None)
    pred = json.loads(capsys.readouterr().out)[0]
    assert pred["class"] in c.classes and len(pred["box"]) == 4 and 0 <= pred["score"] <= 1
    assert Image.open(out).size == (256, 256)
    # a localize checkpoint is not a classifier: classification-only flags are refused
    from cli_helpers import one_line_error
    one_line_error(capsys, ["predict", str(tmp_path / "c.png"), "-w", str(run), "-k", "3"])


def test_bad_localize_settings_get_one_line(capsys):
    from cli_helpers import one_line_error

    base = ["train", "--task", "localize", "--data", DATA, "--limit-train", "64", "--limit-test", "32"]
    assert "smooth_l1, giou" in one_line_error(capsys, base + ["--task-opt", "box_loss=l2"])
    assert "localize_net" in one_line_error(capsys, base + ["points_direct"])


@pytest.mark.parametrize("name", ["localize_net", "points_heatmap", "points_direct_small"])
def test_summary_lists_the_head(capsys, name):
    import json

    from svertka.cli import main

    assert main(["summary", name, "--json"]) in (0, None)
    got = json.loads(capsys.readouterr().out)
    head = [row for row in got["layers"] if row["name"].startswith("head")]
    assert head and sum(row["params"] for row in head) > 0 and all("rf" in row for row in head)
    assert got["input"] == [1, 64, 64]
