"""Detection: the CenterNet-style zoo model, its targets, loss (torch and the NumPy
engine alike), peak decoding against a brute-force reference, and the streaming
COCO evaluator."""
import contextlib
import io
import json

import numpy as np
import pytest

from svertka.analysis import analyze
from svertka.data.canvas import TASK_PRESETS, CanvasGenerator
from svertka.errors import ShapeError
from svertka.tasks.detect import (
    HEAT_PRIOR,
    STRIDE,
    DetectionEvaluator,
    decode_detections,
    detection_loss,
    peaks,
    render_targets,
)
from svertka.zoo import create_model

DATA = "fashion-mnist-mini"
C = 10


@pytest.fixture(scope="module")
def canvases():
    return CanvasGenerator.from_dataset(DATA, "test", TASK_PRESETS["detect"]).generate(256, seed=3)


def perfect_outputs(boxes, labels, grid=(24, 24)):
    """The raw outputs a perfect detector would give: the target heatmaps as logits
    (clipped away from 0 and 1) and the target offsets and sizes."""
    heat, reg, _ = render_targets(boxes, labels, C, grid)
    p = np.clip(heat, 1e-6, 1 - 1e-6)
    return np.concatenate([np.log(p / (1 - p)) - HEAT_PRIOR, reg], 1).astype(np.float32)


def test_zoo_detector_shapes_and_receptive_field():
    for name in ("centernet_fm", "centernet_fm_tiny"):
        a = analyze(create_model(name))
        assert a.output_shape == (C + 4, 96 // STRIDE, 96 // STRIDE)
        # every output cell sees more than the largest item (28 px at scale 2)
        assert min(a.feature_rf.size) > TASK_PRESETS["detect"].patch
    assert analyze(create_model("centernet_fm", num_classes=3)).output_shape == (7, 24, 24)


def test_targets_by_hand():
    boxes = np.array([[[16.0, 12, 50, 20], [0, 0, 0, 0]]])  # centre (33, 16): cell (8, 4), 8.5 x 2 cells
    labels = np.array([[2, -1]])
    heat, reg, mask = render_targets(boxes, labels, C, (8, 12))
    assert heat.shape == (1, C, 8, 12) and reg.shape == (1, 4, 8, 12) and mask.shape == (1, 1, 8, 12)
    assert heat[0, 2, 4, 8] == 1 and (heat[0, 2] < 1).sum() == 95 and heat[0, [0, 1, *range(3, C)]].max() == 0
    assert heat[0, 2, 4, 9] > heat[0, 2, 5, 8]  # the box is wider than tall: a wider Gaussian along x
    assert mask.sum() == 1 and mask[0, 0, 4, 8] == 1
    assert reg[0, :, 4, 8].tolist() == [0.25, 0, 8.5, 2]
    with pytest.raises(ShapeError, match="B x K x 4"):
        render_targets(boxes[0], labels, C, (8, 12))


def test_perfect_outputs_decode_to_the_true_boxes(canvases):
    c = canvases
    out = perfect_outputs(c.boxes, c.labels)
    det = decode_detections(out, C)
    for i in range(len(c)):
        boxes, scores, labels = det.of(i, min_score=0.5)
        truth = c.boxes[i, : c.counts[i]]
        # two items of a canvas may share a centre cell (then one wins); otherwise every box comes back
        cells = {(int((b[0] + b[2]) // 8), int((b[1] + b[3]) // 8)) for b in truth}
        if len(cells) == c.counts[i]:
            order = np.lexsort(boxes.T[::-1])
            want = np.lexsort(truth.T[::-1])
            np.testing.assert_allclose(boxes[order], truth[want], atol=1e-4)
            assert sorted(labels.tolist()) == sorted(c.labels[i, : c.counts[i]].tolist())
    ev = DetectionEvaluator(C)
    ev.add(out[:100], {"boxes": c.boxes[:100], "labels": c.labels[:100]})
    ev.add(out[100:], {"boxes": c.boxes[100:], "labels": c.labels[100:]})
    r = ev.result()
    assert r["map50"] > 0.99 and r["map"] > 0.99
    # a detector that swaps two classes loses their AP
    swapped = out.copy()
    swapped[:, [0, 1]] = out[:, [1, 0]]
    ev = DetectionEvaluator(C)
    ev.add(swapped, {"boxes": c.boxes, "labels": c.labels})
    m = ev.metrics()
    assert m.per_class[0] < 0.05 and m.per_class[1] < 0.05 and m.per_class[2] > 0.99


def test_evaluator_subsets_are_the_subset_scores(canvases):
    c = canvases
    rng = np.random.default_rng(0)
    out = perfect_outputs(c.boxes, c.labels) + rng.normal(0, 1.5, (len(c), C + 4, 24, 24)).astype(np.float32)
    ev = DetectionEvaluator(C)
    ev.add(out, {"boxes": c.boxes, "labels": c.labels})
    touch = np.flatnonzero(c.touching) + 1
    part = DetectionEvaluator(C)
    part.add(out[c.touching], {"boxes": c.boxes[c.touching], "labels": c.labels[c.touching]})
    assert ev.metrics(touch).map == pytest.approx(part.metrics().map, abs=1e-12)
    assert 0.05 < ev.metrics().map < 0.95  # the noise costs something, and not everything


def test_peaks_match_a_brute_force_reference():
    rng = np.random.default_rng(1)
    heat = rng.random((3, 2, 7, 9))
    heat[0, 0, 2, 2] = heat[0, 0, 2, 3] = 2.0  # a plateau: both cells are peaks
    got = peaks(heat)
    want = np.zeros_like(heat)
    for idx in np.ndindex(heat.shape):
        *lead, y, x = idx
        window = heat[(*lead, slice(max(y - 1, 0), y + 2), slice(max(x - 1, 0), x + 2))]
        if heat[idx] >= window.max():
            want[idx] = heat[idx]
    np.testing.assert_array_equal(got, want)
    assert got[0, 0, 2, 2] == got[0, 0, 2, 3] == 2.0


def test_decode_orders_by_score_and_clips_to_the_image():
    out = np.full((1, C + 4, 6, 6), -10.0, np.float32)
    out[0, C:] = 0
    out[0, 3, 1, 1], out[0, 7, 4, 4] = 1.0, 3.0  # two peaks, class 7 stronger
    out[0, C + 2:, 1, 1] = 10.0  # a 40 px box around (4, 4): clipped at 0
    out[0, C + 2:, 4, 4] = 2.0
    det = decode_detections(out, C, top_k=5)
    assert det.labels[0, :2].tolist() == [7, 3] and det.scores.shape == (1, 5)
    assert np.all(np.diff(det.scores[0]) <= 0)
    np.testing.assert_allclose(det.boxes[0, 0], [12, 12, 20, 20])
    np.testing.assert_allclose(det.boxes[0, 1], [0, 0, 24, 24])
    with pytest.raises(ShapeError, match="N x 14 x H x W"):
        decode_detections(out[:, :5], C)


def test_loss_agrees_between_torch_and_the_numpy_engine(canvases):
    torch = pytest.importorskip("torch")
    from svertka.backends import get_backend

    c = canvases.subset(slice(0, 6))
    x = np.random.default_rng(2).normal(0, 2, (6, C + 4, 24, 24))
    t = torch.tensor(x, requires_grad=True)
    loss, focal, l1 = detection_loss(t, torch.from_numpy(c.boxes), torch.from_numpy(c.labels), C)
    loss.backward()
    engine = get_backend("numpy")
    e = engine.Tensor(x, requires_grad=True)
    eloss, efocal, el1 = detection_loss(e, c.boxes, c.labels, C)
    eloss.backward()
    assert float(eloss.data) == pytest.approx(loss.item(), rel=1e-10)
    assert float(efocal.data) == pytest.approx(focal.item(), rel=1e-10)
    np.testing.assert_allclose(e.grad, t.grad.numpy(), rtol=1e-8, atol=1e-12)
    # the loss is the sum of its parts, and a perfect prediction has a far smaller one
    assert loss.item() == pytest.approx(focal.item() + l1.item())
    good = torch.from_numpy(perfect_outputs(c.boxes, c.labels).astype(np.float64))
    assert detection_loss(good, c.boxes, c.labels, C)[0].item() < 0.05 * loss.item()
    with pytest.raises(ShapeError, match="outputs 14 channels"):
        detection_loss(t[:, :8], c.boxes, c.labels, C)


# ------------------------------------------------------------------ the task, end to end

TINY = ["--task", "detect", "--model", "centernet_fm_tiny", "--data", DATA, "--task-opt", "canvases=64",
        "--task-opt", "test_canvases=40", "--epochs", "1", "-b", "32", "--threads", "1"]


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory):
    pytest.importorskip("torch")
    from svertka.cli import main

    out = tmp_path_factory.mktemp("detect") / "run"
    assert main(["train", *TINY, "--val-fraction", "0.25", "--output", str(out)]) == 0  # 16 val canvases
    return out


def test_train_records_the_detection_metrics(detect_run, capsys):
    from svertka.cli import main

    rec = [json.loads(line) for line in (detect_run / "metrics.jsonl").read_text().splitlines()][-1]
    for key in ("train_loss", "train_focal", "train_l1", "val_map", "test_map", "test_map50",
                "test_map_touching", "test_map_separate", "test_ap_t_shirt_top"):
        assert key in rec, key
    assert rec["train_loss"] == pytest.approx(rec["train_focal"] + rec["train_l1"], rel=1e-4)
    capsys.readouterr()
    assert main(["eval", str(detect_run), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["task"] == "detect" and got["n"] == 40
    assert got["map"] == pytest.approx(rec["test_map"], abs=1e-6)  # the same canvases, the same model


def test_coco_results_score_alike_in_pycocotools(detect_run, tmp_path, capsys):
    coco = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    from svertka.cli import main

    preds = tmp_path / "preds.json"
    assert main(["eval", str(detect_run), "--json", "--coco-results", str(preds)]) == 0
    ours = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert main(["data", "export", "canvas", "--task", "detect", "--n", "40", "--data", DATA,
                 "--out", str(tmp_path / "export")]) == 0
    results = json.loads(preds.read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco.COCO(str(tmp_path / "export" / "annotations.json"))
        e = cocoeval.COCOeval(gt, gt.loadRes(str(preds)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    assert e.stats[0] == pytest.approx(ours["map"], abs=1e-6)
    assert e.stats[1] == pytest.approx(ours["map50"], abs=1e-6)


def test_predict_lists_and_draws_boxes(detect_run, tmp_path, capsys):
    from PIL import Image

    from svertka.cli import main

    c = CanvasGenerator.from_dataset(DATA, "test", TASK_PRESETS["detect"]).generate(1, seed=0)
    Image.fromarray(c.images[0, ..., 0]).save(tmp_path / "canvas.png")
    capsys.readouterr()
    assert main(["predict", "-w", str(detect_run), str(tmp_path / "canvas.png"), "--json",
                 "--out", str(tmp_path / "boxes.png")]) == 0
    pred = json.loads(capsys.readouterr().out)[0]
    for d in pred["detections"]:
        assert d["class"] in c.classes and 0.3 < d["score"] <= 1 and len(d["box"]) == 4
    drawn = Image.open(tmp_path / "boxes.png")
    assert drawn.size == (4 * 96, 4 * 96) and drawn.mode == "RGB"


@pytest.mark.parametrize("argv, words", [
    (["--task-opt", "anchors=9"], "not an option of task detect"),
    (["--task-opt", "canvases=0"], "canvases=0"),
    (["--aug", "flip"], "drop --aug"),
])
def test_bad_detect_settings_get_one_line_errors(capsys, tmp_path, argv, words):
    from cli_helpers import one_line_error

    err = one_line_error(capsys, ["train", *TINY, *argv, "--output", str(tmp_path / "r")])
    assert words in err


def test_a_classifier_is_refused_as_a_detector(capsys, tmp_path):
    from cli_helpers import one_line_error

    argv = [a if a != "centernet_fm_tiny" else "lenet5" for a in TINY]
    err = one_line_error(capsys, ["train", *argv, "--output", str(tmp_path / "r")])
    assert "use --model centernet_fm" in err


def test_a_detection_run_is_refused_by_the_classification_predict(detect_run, tmp_path, capsys):
    from PIL import Image

    from cli_helpers import one_line_error

    Image.fromarray(np.zeros((96, 96), np.uint8)).save(tmp_path / "blank.png")
    err = one_line_error(capsys, ["predict", "-w", str(detect_run), str(tmp_path / "blank.png"), "-k", "3"])
    assert "detect" in err


def test_the_numpy_engine_trains_the_detector(tmp_path, capsys):
    from svertka.cli import main

    argv = [a if a != "canvases=64" else "canvases=32" for a in TINY]
    assert main(["train", *argv, "--backend", "numpy", "--task-opt", "test_canvases=8",
                 "--output", str(tmp_path / "np")]) == 0
    rec = json.loads((tmp_path / "np" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(rec["train_loss"]) and "test_map" in rec


def test_output_cell_sees_what_the_analysis_says():
    """The gradient support of one output cell of the detector made a positive linear map
    (as tests/test_rf_gradient.py does for the classifiers) lies inside the analysis'
    field (a bound, after the transposed conv) and spans more than the largest item."""
    torch = pytest.importorskip("torch")
    from svertka.backends.torch import compile
    from test_rf_gradient import _support, positive_linear

    net = create_model("centernet_fm_tiny")
    rf = analyze(net).feature_rf
    assert not rf.exact and rf.size == (99, 99)
    model = positive_linear(compile(net))
    x = torch.ones(1, 1, 192, 192, dtype=torch.float64, requires_grad=True)
    out = model(x)
    unit = (24, 24)  # a cell well inside the 48 x 48 map: its field is not clipped
    rows, cols = _support(out[0, :, unit[0], unit[1]].sum(), x)
    for (lo, hi), axis in ((rows, 0), (cols, 1)):
        want_lo, want_hi = rf.span(unit[axis], axis)
        assert want_lo <= lo and hi <= want_hi  # inside the bound
        assert hi - lo + 1 > 2 * 28  # wider than the largest item (56 px)
        assert hi - lo + 1 >= rf.size[axis] - 2 * STRIDE  # and the bound is tight within a cell either side
