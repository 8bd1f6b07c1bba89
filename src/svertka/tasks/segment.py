"""Semantic segmentation on the canvases: each pixel gets one of 11 classes,
background (0) or 1 + the Fashion-MNIST class of the item that owns it.

* **Targets:** the canvases' per-pixel owner masks (top wins; a pixel belongs to an
  item only where that item's pixel is above the threshold) looked up in each canvas's
  item labels: one gather over the whole batch, no loop.
* **Metrics:** a confusion matrix accumulated batch by batch (``ConfusionEvaluator``),
  then per-class IoU = TP / (TP + FP + FN), mIoU (their mean over the classes that
  occur in the truth or the predictions) and pixel accuracy (the trace over the total).
* **Baseline:** threshold the canvas, label its connected components
  (:mod:`svertka.tasks.baseline`), give each component's pixels the class a
  Fashion-MNIST classifier gives its crop. Canvas thresholding finds the foreground
  exactly (the canvases are built that way), so its errors are all in the classes:
  touching items share one component and one class.
"""
from __future__ import annotations

import numpy as np

from svertka.data.canvas import CanvasConfig, Canvases
from svertka.errors import ShapeError, UsageError
from svertka.tasks.baseline import crop_components, find_components
from svertka.tasks.canvas_options import (
    GEOMETRY,
    canvas_config,
    canvas_options,
    check_memory,
    check_model_size,
)
from svertka.tasks.task import Task, TaskData, register_task

from ..argtypes import positive_int

__all__ = ["SEGMENT_CANVAS", "BACKGROUND", "SEG_COLOURS", "SegmentTask", "segment_classes", "pixel_labels",
           "confusion_matrix", "segment_scores", "ConfusionEvaluator", "baseline_segment", "pixel_loss"]

SEGMENT_CANVAS = CanvasConfig(size=96, min_items=1, max_items=5)
BACKGROUND = "background"


def segment_classes(item_classes) -> tuple[str, ...]:
    """The pixel classes: background first, then the items' classes in their order."""
    return (BACKGROUND, *item_classes)


def pixel_labels(canvases: Canvases) -> np.ndarray:
    """uint8 N x H x W: 0 background, else 1 + the class of the item owning the pixel."""
    # per canvas a lookup table owner -> pixel class: owner 0 (background) -> 0, owner k -> labels[k-1] + 1
    table = np.concatenate([np.zeros((len(canvases), 1), np.int64), canvases.labels + 1], 1)
    flat = canvases.masks.reshape(len(canvases), -1).astype(np.int64)
    return np.take_along_axis(table, flat, 1).reshape(canvases.masks.shape).astype(np.uint8)


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 K x K counts, rows the true class, columns the predicted one (as scikit-learn)."""
    t, p = np.asarray(true).reshape(-1), np.asarray(pred).reshape(-1)
    if t.shape != p.shape:
        raise ShapeError(f"segmentation: {t.size} true labels but {p.size} predicted ones")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ShapeError(f"segmentation labels must be in [0, {num_classes}), got "
                         f"{min(t.min(), p.min())}..{max(t.max(), p.max())}")
    return np.bincount(t.astype(np.int64) * num_classes + p, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


def segment_scores(confusion: np.ndarray, classes=None) -> dict:
    """mIoU, pixel accuracy and per-class IoU from a confusion matrix. A class absent
    from both truth and predictions has no IoU (NaN in ``iou``) and is left out of the mean."""
    cm = np.asarray(confusion, np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    seen = union > 0
    out = {"miou": float(iou[seen].mean()) if seen.any() else float("nan"),
           "pixel_acc": float(tp.sum() / max(cm.sum(), 1))}
    names = classes or [str(i) for i in range(len(cm))]
    out["iou"] = {str(n): (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)}
    return out


class ConfusionEvaluator:
    """Streaming scores: ``add(outputs, targets)`` per batch (outputs: N x K x H x W
    class scores, or N x H x W predicted labels; targets: {"mask": N x H x W}),
    ``result()`` at the end. Memory is the K x K matrix, whatever the data size."""

    def __init__(self, num_classes: int, classes=None):
        self.num_classes, self.classes = num_classes, classes
        self.confusion = np.zeros((num_classes, num_classes), np.int64)

    def add(self, outputs: np.ndarray, targets: dict) -> None:
        outputs, true = np.asarray(outputs), np.asarray(targets["mask"])
        pred = outputs.argmax(1) if outputs.ndim == 4 else outputs
        if pred.shape != true.shape:
            raise ShapeError(f"segmentation output {outputs.shape} does not match the masks {true.shape}")
        self.confusion += confusion_matrix(true, pred, self.num_classes)

    def result(self) -> dict:
        scores = segment_scores(self.confusion, self.classes)
        flat = {"miou": scores["miou"], "pixel_acc": scores["pixel_acc"]}
        flat.update({f"iou_{k}": v for k, v in scores["iou"].items()})
        return flat


def pixel_loss(F, out, mask):
    """Mean per-pixel cross-entropy of N x K x H x W scores against N x H x W labels,
    as N*H*W rows of K (the one cross_entropy both backends have)."""
    k = out.shape[1]
    rows = out.permute(0, 2, 3, 1).reshape(-1, k)
    return F.cross_entropy(rows, mask.reshape(-1))


def baseline_segment(images: np.ndarray, classify, threshold: int = 16) -> np.ndarray:
    """The classical segmentation: uint8 N x H x W pixel classes. ``classify`` takes
    n x 28 x 28 x 1 uint8 crops and returns n x C class scores (C item classes)."""
    comps = find_components(images, threshold=threshold)
    out = np.zeros(comps.labels.shape, np.uint8)
    if not len(comps.image):
        return out
    scores = np.asarray(classify(crop_components(images, comps)))
    if scores.ndim != 2 or len(scores) != len(comps.image):
        raise ShapeError(f"classify must return one row of class scores per crop: "
                         f"got {scores.shape} for {len(comps.image)} crops")
    # per image a table component number -> pixel class, then one gather
    width = int(comps.number.max()) + 1
    table = np.zeros((len(out), width), np.uint8)
    table[comps.image, comps.number] = scores.argmax(1) + 1
    flat = comps.labels.reshape(len(out), -1)
    return np.take_along_axis(table, flat, 1).reshape(out.shape)


# ------------------------------------------------------------------ the task


@register_task
class SegmentTask(Task):
    """``svertka train --task segment --model unet``: every pixel of a 96x96 canvas
    classed as background or its item's Fashion-MNIST class (11 classes). The geometry
    options (:mod:`svertka.tasks.canvas_options`) change the canvas."""

    name = "segment"
    default_model = "unet"
    score = "miou"
    higher_is_better = True
    train_backends = ("torch", "numpy")  # per-pixel cross-entropy: N*H*W rows of the one both engines have
    augments = False  # flips and crops would have to move the masks too
    shown = ("pixel_acc", "miou")
    eval_options = ("test",)  # the test split; the rest is the model's
    options = {
        "canvases": (10_000, positive_int, "training canvases (--limit-train caps them)"),
        "val": (500, positive_int, "validation canvases, drawn from the training items with another seed"),
        "test": (2_000, positive_int, "test canvases, drawn from the test items (--limit-test caps them)"),
        **canvas_options(SEGMENT_CANVAS, GEOMETRY),
    }
    SEEDS = {"train": 0, "val": 1, "test": 0}

    def __init__(self, cfg):
        super().__init__(cfg)
        self.canvas = canvas_config(self, SEGMENT_CANVAS)  # the geometry options, checked

    def check_training(self) -> None:
        super().check_training()
        check_model_size(self.cfg.model, self.canvas, lambda out, s: out[1:] == (s, s))  # unet: 16 divides s

    def _generator(self, split: str):
        from svertka.data.canvas import CanvasGenerator

        gen = CanvasGenerator.from_dataset(self.cfg.data, split, self.canvas, root=self.cfg.root)
        self.classes = segment_classes(gen.classes)
        return gen

    def load(self):
        cfg = self.cfg
        gen = self._generator("train")
        n_train = min(self.opts["canvases"], cfg.limit_train or self.opts["canvases"])
        check_memory(self.canvas, n_train + min(self.opts["val"], n_train) + self._test_count())
        train = gen.generate(n_train, seed=self.SEEDS["train"])
        # the canvases are mostly black: their own statistics, not the items'
        stats = (float(train.images.mean() / 255),), (float(train.images.std() / 255),)
        val = gen.generate(min(self.opts["val"], n_train), seed=self.SEEDS["val"])
        return self._split(train, *stats), self._split(val, *stats), self._test(*stats)

    def load_test(self):
        return self._test((0.0,), (1.0,))  # eval and predict normalise with the run's own mean/std

    def _test_count(self) -> int:
        return min(self.opts["test"], self.cfg.limit_test or self.opts["test"])

    def _test(self, mean, std):
        n = self._test_count()
        check_memory(self.canvas, n)
        return self._split(self._generator("test").generate(n, seed=self.SEEDS["test"]), mean, std)

    def _split(self, canvases, mean, std):
        # masks as uint8 (10,000 canvases: 92 MB, not 737 MB as int64); the loss widens each batch
        return TaskData(canvases.images, {"mask": pixel_labels(canvases)}, self.classes, mean, std,
                        f"{self.canvas.size}x{self.canvas.size} canvases of "
                        f"{canvases.dataset.split('/')[0]} items")

    def network(self, train):
        from svertka.analysis import analyze
        from svertka.spec.geometry import fmt_shape
        from svertka.zoo import resolve_model

        h, w, c = train.image_shape
        net = resolve_model(self.cfg.model, num_classes=len(self.classes), in_chans=c, input_size=h)
        out = analyze(net, (c, h, w)).output_shape
        if tuple(out) != (len(self.classes), h, w):
            raise UsageError(f"{self.cfg.model} gives {fmt_shape(out)} outputs, not the "
                             f"{len(self.classes)}x{h}x{w} class scores per pixel that task segment needs; "
                             f"use --model unet or fcn")
        return net

    def loss(self, F, out, targets):
        mask = targets["mask"]
        mask = mask.long() if hasattr(mask, "long") else mask  # torch wants int64 classes
        pred = out.detach().argmax(1)  # a torch tensor, or an ndarray on the NumPy engine
        pixels = out.shape[2] * out.shape[3]
        return pixel_loss(F, out, mask), {"pixel_acc": (pred == mask).sum() / pixels}

    def evaluator(self):
        return ConfusionEvaluator(len(self.classes), self.classes)

    def decode(self, outputs: np.ndarray, meta: dict) -> list[dict]:
        """Per image: the pixels of each class shown, and the mask as rows of
        class digits (0 background, a = 10), readable in a terminal."""
        classes = list(meta.get("classes") or self.classes)
        out = []
        for labels in np.asarray(outputs).argmax(1):
            counts = np.bincount(labels.ravel(), minlength=len(classes))
            out.append({"pixels": {classes[i] if i < len(classes) else str(i): int(v)
                                   for i, v in enumerate(counts) if v},
                        "mask": ["".join(DIGITS[v] for v in row) for row in labels]})
        return out

    def meta(self) -> dict:
        return {**super().meta(), "classes": list(self.classes)}

    def draw(self, image: np.ndarray, prediction: dict, out_path) -> None:
        """The image beside its mask in colour (background black), as one PNG."""
        from PIL import Image

        mask = np.array([[DIGITS.index(ch) for ch in row] for row in prediction["mask"]], np.int64)
        grey = np.asarray(image)
        grey = np.repeat(grey.reshape(*grey.shape[:2], -1)[..., :1], 3, -1)
        pic = np.concatenate([grey, SEG_COLOURS[mask % len(SEG_COLOURS)]], 1).astype(np.uint8)
        Image.fromarray(pic).save(out_path)


DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"  # a mask row as text: one character per pixel


# background black, then the ten of matplotlib's tab10 (no matplotlib needed to draw)
SEG_COLOURS = np.array([[0, 0, 0], [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
                        [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127],
                        [188, 189, 34], [23, 190, 207]], np.uint8)
