"""The detector's second stage: the crops task, the library (svertka.tasks.two_stage) and
`svertka eval|predict DETECT_RUN --second-stage CROPS_RUN`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import one_line_error
from svertka.cli import main
from svertka.data.canvas import TASK_PRESETS, CanvasGenerator
from svertka.tasks.baseline import Detections, crop_boxes
from svertka.tasks.crops import CropsTask, jittered
from svertka.tasks.two_stage import fuse, merge_classes, rescore, top_per_image
from svertka.train.config import TrainConfig

DATA = "fashion-mnist-mini"
CLASSES = 10
TSHIRT, SHIRT = 0, 6
CROPS = ["train", "--task", "crops", "--data", DATA, "--task-opt", "canvases=48", "--task-opt",
         "test_canvases=30", "--epochs", "1", "-b", "32", "--threads", "1", "-q"]


# ------------------------------------------------------------------ the library


def brute_merge(image, boxes, scores, labels, iou):
    """One box at a time, in score order: kept unless a kept box of its image overlaps it
    above ``iou``; then per kept box and class the best overlapping score of that class."""
    def overlap(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(image[j] != image[i] or overlap(boxes[i], boxes[j]) <= iou for j in kept):
            kept.append(i)
    votes = {}
    for i in kept:
        row = [0.0] * CLASSES
        for j in range(len(scores)):
            if image[j] == image[i] and overlap(boxes[i], boxes[j]) > iou:
                row[labels[j]] = max(row[labels[j]], scores[j])
        votes[i] = row
    return votes


@pytest.mark.parametrize("seed", range(4))
def test_merge_classes_matches_a_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    n = 60
    image = rng.integers(0, 4, n)
    xy = rng.uniform(0, 40, (n, 2))
    wh = rng.uniform(4, 20, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    boxes[n // 2:] = boxes[: n // 2] + rng.uniform(-1, 1, (n // 2, 4))  # near-copies: most merge
    image[n // 2:] = image[: n // 2]
    scores, labels = rng.uniform(0.01, 1, n), rng.integers(0, CLASSES, n)
    keep, votes = merge_classes(image, boxes, scores, labels, CLASSES, 0.7)
    want = brute_merge(image, boxes, scores, labels, 0.7)
    assert sorted(keep.tolist()) == sorted(want)
    assert len(keep) < n  # the near-copies did merge
    for i, v in zip(keep, votes):
        np.testing.assert_allclose(v, want[i])
        assert v[labels[i]] == scores[i]  # a kept box votes for its own class with its own score
    for img in np.unique(image):  # best first within each image
        s = scores[keep[image[keep] == img]]
        assert (np.diff(s) <= 0).all()


def test_the_second_stage_overrules_an_unsure_detector():
    """A box the detector calls Shirt 0.5 and T-shirt 0.4, which the second stage calls
    T-shirt 0.9, comes out T-shirt first, scored 0.5 x the fused probability."""
    canvas = np.zeros((1, 96, 96, 1), np.uint8)
    canvas[0, 20:50, 30:60] = 200
    box = [30.0, 20.0, 60.0, 50.0]
    det = Detections(np.array([0, 0]), np.array([box, [31.0, 20.0, 60.0, 51.0]]), np.array([0.5, 0.4]),
                     np.array([SHIRT, TSHIRT]))
    seen = []

    def classify(crops):
        seen.append(crops)
        p = np.full((len(crops), CLASSES), 0.1 / 9)
        p[:, TSHIRT] = 0.9
        return p
    out = rescore(det, canvas, classify, CLASSES)
    assert seen[0].shape == (1, 28, 28, 1) and seen[0].dtype == np.uint8 and seen[0].max() == 200  # one crop
    assert len(out.scores) == CLASSES and (out.image == 0).all() and (np.diff(out.scores) <= 0).all()
    assert out.labels[0] == TSHIRT and out.labels[1] == SHIRT
    np.testing.assert_allclose(out.boxes[0], box)  # the best-scoring peak's box
    # by hand: the detector's votes floored at 0.01 and normalised, times the second stage, square root
    votes = {TSHIRT: 0.4, SHIRT: 0.5}
    own = [votes.get(c, 0.01) for c in range(CLASSES)]
    second = [0.9 if c == TSHIRT else 0.1 / 9 for c in range(CLASSES)]
    root = [np.sqrt(p * o / sum(own)) for p, o in zip(second, own)]
    assert out.scores[0] == pytest.approx(0.5 * root[TSHIRT] / sum(root))
    assert out.scores[1] == pytest.approx(0.5 * root[SHIRT] / sum(root))
    alone = rescore(det, canvas, classify, CLASSES, fused=False)
    assert alone.scores[0] == pytest.approx(0.5 * 0.9)


def test_fuse_rows_are_distributions_and_agreement_wins():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(CLASSES), 50)
    v = rng.uniform(0, 1, (50, CLASSES)) * (rng.uniform(size=(50, CLASSES)) < 0.3)
    f = fuse(p, v)
    np.testing.assert_allclose(f.sum(1), 1)
    both = np.zeros((1, CLASSES))
    both[0, 3] = 1.0
    assert fuse(np.eye(CLASSES)[[3]], both).argmax() == 3


def test_rescore_keeps_the_best_100_per_canvas():
    rng = np.random.default_rng(1)
    n = 30  # far-apart boxes on each of 2 canvases: 15 survive merging, 150 detections per canvas
    image = np.repeat([0, 1], 15)
    x = np.tile(np.arange(15) * 6.0, 2)
    boxes = np.stack([x, x * 0, x + 5, x * 0 + 5], 1)
    det = Detections(image, boxes, rng.uniform(0.1, 1, n), rng.integers(0, CLASSES, n))
    canvases = rng.integers(0, 255, (2, 96, 96, 1), dtype=np.uint8)
    every = rescore(det, canvases, lambda c: rng.dirichlet(np.ones(CLASSES), len(c)), CLASSES, top_k=10 ** 6)
    top = rescore(det, canvases, lambda c: rng.dirichlet(np.ones(CLASSES), len(c)), CLASSES)
    assert len(every.scores) == 2 * 15 * CLASSES
    assert [int((top.image == i).sum()) for i in (0, 1)] == [100, 100]
    idx = top_per_image(np.array([1, 0, 1, 1, 0]), np.array([0.2, 0.5, 0.9, 0.1, 0.7]), 2)
    assert idx.tolist() == [4, 1, 2, 0]


def test_jittered_moves_each_side_by_at_most_the_fraction():
    rng = np.random.default_rng(0)
    boxes = np.array([[10.0, 20.0, 30.0, 60.0]] * 500)
    out = jittered(boxes, 0.06, rng)
    moved = np.abs(out - boxes) / np.array([20.0, 40.0, 20.0, 40.0])
    assert moved.max() <= 0.06 and moved.max() > 0.05 and (moved > 0).all()


# ------------------------------------------------------------------ the crops task


def test_test_crops_are_the_true_boxes_of_the_detect_test_canvases():
    cfg = TrainConfig(task="crops", data=DATA, task_options={"test_canvases": "12"})
    test = CropsTask(cfg).load_test()
    c = CanvasGenerator.from_dataset(DATA, "test", TASK_PRESETS["detect"]).generate(12, seed=0)
    live = c.labels >= 0
    np.testing.assert_array_equal(test.images, crop_boxes(c.images, np.nonzero(live)[0], c.boxes[live]))
    np.testing.assert_array_equal(test.targets["label"], c.labels[live])
    assert test.classes == tuple(c.classes) and test.mean == (0.2860,) and test.std == (0.3530,)
    cfg = TrainConfig(task="crops", data=DATA, task_options={"test_canvases": "12"}, limit_test=5)
    assert len(CropsTask(cfg).load_test()) == 5


@pytest.fixture(scope="module")
def crops_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("crops") / "np"
    assert main([*CROPS, "--backend", "numpy", "--val-fraction", "0.25", "-o", str(run)]) == 0
    return run


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_crops_trains_and_evaluates_as_a_classifier(backend, crops_run, tmp_path, capsys):
    if backend == "torch":
        pytest.importorskip("torch")
        run = tmp_path / "torch"
        assert main([*CROPS, "--backend", "torch", "--aug", "flip", "-o", str(run)]) == 0
    else:
        run = crops_run
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"train_loss", "train_acc", "test_acc"} <= set(rec)
    assert (backend == "numpy") == ("val_acc" in rec)
    from svertka.train.checkpoint import read_checkpoint

    assert read_checkpoint(run / "best.safetensors")[1]["model"] == "lenet5"  # the task's own model
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["task"] == "crops" and got["acc"] == pytest.approx(rec["test_acc"], abs=1e-9)
    assert main(["eval", str(run), "--json", "--limit", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 7


def test_a_crops_run_predicts_top_k_as_a_classifier(crops_run, tmp_path, capsys):
    from PIL import Image

    test = CropsTask(TrainConfig(task="crops", data=DATA, task_options={"test_canvases": "1"})).load_test()
    Image.fromarray(test.images[0, ..., 0]).save(tmp_path / "crop.png")
    capsys.readouterr()
    assert main(["predict", str(crops_run), str(tmp_path / "crop.png"), "-k", "3", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert len(top) == 3 and all(t["class"] in test.classes for t in top)
    assert top[0]["prob"] >= top[1]["prob"] >= top[2]["prob"]


def test_bad_crops_settings_get_one_line_errors(capsys, tmp_path):
    assert "jitter=0.7" in one_line_error(capsys, [*CROPS, "--task-opt", "jitter=0.7", "-o", str(tmp_path)])
    assert "not an option of task crops" in one_line_error(capsys, [*CROPS, "--task-opt", "boxes=1",
                                                                    "-o", str(tmp_path)])


# ------------------------------------------------------------------ eval / predict --second-stage


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory):
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("detect") / "run"
    # min_score=0: predict lists the peaks of this barely trained detector too
    assert main(["train", "--task", "detect", "--model", "centernet_fm_tiny", "--data", DATA,
                 "--task-opt", "canvases=48", "--task-opt", "test_canvases=30", "--task-opt", "min_score=0",
                 "--epochs", "1", "-b", "16", "--threads", "1", "-q", "--output", str(out)]) == 0
    return out


def test_eval_with_a_second_stage_scores_its_coco_results(detect_run, crops_run, tmp_path, capsys):
    from test_tasks_metrics import _cocoeval

    capsys.readouterr()
    assert main(["eval", str(detect_run), "--second-stage", str(crops_run)]) == 0
    text = capsys.readouterr().out
    assert "second stage lenet5" in text and str(crops_run) in text
    preds = tmp_path / "preds.json"
    assert main(["eval", str(detect_run), "--json", "--second-stage", str(crops_run),
                 "--coco-results", str(preds)]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert ours["second_stage"].startswith(str(crops_run)) and ours["n"] == 30
    results = json.loads(preds.read_text())
    per_image = np.bincount([r["image_id"] for r in results])
    assert per_image.max() <= 100
    assert main(["data", "export", "canvas", "--task", "detect", "--n", "30", "--data", DATA,
                 "--out", str(tmp_path / "export")]) == 0
    e = _cocoeval(json.loads((tmp_path / "export" / "annotations.json").read_text()), results)
    assert e.stats[0] == pytest.approx(ours["map"], abs=1e-6)
    assert e.stats[1] == pytest.approx(ours["map50"], abs=1e-6)


def test_predict_with_a_second_stage_classes_each_box(detect_run, crops_run, tmp_path, capsys):
    from PIL import Image

    c = CanvasGenerator.from_dataset(DATA, "test", TASK_PRESETS["detect"]).generate(1, seed=0)
    Image.fromarray(c.images[0, ..., 0]).save(tmp_path / "canvas.png")
    capsys.readouterr()
    assert main(["predict", str(detect_run), str(tmp_path / "canvas.png"), "--second-stage", str(crops_run),
                 "--json", "--out", str(tmp_path / "boxes.png")]) == 0
    pred = json.loads(capsys.readouterr().out)[0]
    assert pred["second_stage"].startswith(str(crops_run)) and pred["detections"]
    for d in pred["detections"]:
        assert d["class"] in c.classes and d["detector_class"] in c.classes and 0 < d["prob"] <= 1
        assert d["score"] == pytest.approx(d["detector_score"] * d["prob"], abs=2e-4)
    from svertka.tasks.boxes import box_iou

    boxes = np.array([d["box"] for d in pred["detections"]])
    iou = box_iou(boxes, boxes)
    assert (iou[~np.eye(len(boxes), dtype=bool)] <= 0.7 + 1e-3).all()  # merged across classes
    assert Image.open(tmp_path / "boxes.png").size == (4 * 96, 4 * 96)


def relabelled(run, path, classes):
    """The run's weights with other class names, as a classifier of other items would have."""
    from svertka.train.checkpoint import read_checkpoint, save_checkpoint

    weights, meta, _, _ = read_checkpoint(run / "best.safetensors")
    save_checkpoint(path, weights, {**meta, "classes": classes})
    return path


def colour_run(root, run):
    """A LeNet-5 of 32x32 colour images (two classes of random PNGs)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    assert main(["train", "lenet5", "--data", "imagefolder", "--root", str(root), "--backend", "numpy",
                 "--epochs", "1", "-o", str(run), "-q"]) == 0
    return run


def test_bad_second_stages_get_one_line_errors(detect_run, crops_run, tmp_path, capsys):
    digits = relabelled(crops_run, tmp_path / "digits.safetensors", [str(i) for i in range(10)])
    colour = colour_run(tmp_path / "pictures", tmp_path / "colour")
    cases = [
        (["eval", str(crops_run), "--second-stage", str(crops_run)], "re-classes a detector's boxes"),
        (["eval", str(detect_run), "--second-stage", str(detect_run)], "is a detect model"),
        (["eval", str(detect_run), "--second-stage", str(tmp_path / "nope")], "does not exist"),
        (["eval", str(detect_run), "--second-stage", str(digits)], "train the second stage on the detector"),
        (["eval", str(detect_run), "--second-stage", str(colour)], "takes 3x32x32 inputs"),
        (["predict", str(detect_run), str(tmp_path / "x.png"), "--second-stage", str(tmp_path / "nope")],
         "does not exist"),
    ]
    for argv, words in cases:
        assert words in one_line_error(capsys, argv), argv


def test_a_classifier_run_is_no_detector_for_a_second_stage(crops_run, tmp_path, capsys):
    run = tmp_path / "cls"
    assert main(["train", "lenet5", "--data", DATA, "--backend", "numpy", "--epochs", "1", "--limit-train",
                 "32", "--limit-test", "16", "-b", "32", "-o", str(run), "-q"]) == 0
    err = one_line_error(capsys, ["eval", str(run), "--second-stage", str(crops_run)])
    assert "re-classes a detector's boxes" in err and "classify" in err
