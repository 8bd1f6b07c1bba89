"""Detection: 1-5 Fashion-MNIST items on a 96x96 canvas, found by a CenterNet-style
head (``svertka.zoo.detect``), scored with COCO box AP (``svertka.tasks.coco_eval``).

Why CenterNet ("Objects as Points", Zhou et al. 2019) and not an FCOS/YOLO grid:
each item is one peak in its class's heatmap, so there are no anchors to size
and decoding is a 3x3 max-pool (a peak is a cell not below its 8 neighbours)
instead of NMS over overlapping boxes. Items here are small and never nested,
so one centre per cell is enough, and the dense targets below are simple
arrays, built in a few vectorised lines and the same for both backends.

Output of the model, per canvas: ``C + 4`` maps of ``H/4 x W/4`` cells
(``STRIDE`` = 4), C the class count:

- ``0 .. C-1``: heatmap logits (less ``HEAT_PRIOR``); ``C, C+1``: centre offset in the cell (x, y),
  in cells; ``C+2, C+3``: box width and height, in cells.

Targets (:func:`render_targets`, per batch from the items' boxes and labels):

- heatmap: per class, the max over its items of an axis-aligned Gaussian
  centred on the cell holding the box centre, with sigma = 0.54 x the box side
  / 6 per axis (TTFNet's elliptical Gaussian; at least 0.5 cell), exactly 1
  at that cell;
- offset and size at that cell only (a mask); a later item in the same cell wins.

Loss (:func:`detection_loss`): CenterNet's penalty-reduced focal loss on the
heatmap (alpha 2, beta 4), plus L1 on offsets (weight 1) and sizes (weight
0.1), each summed and divided by the number of items in the batch. It uses
only ops both engines have (sigmoid, log, powers, abs, sums, slicing), so the
NumPy engine trains it too.

Decoding (:func:`decode_detections`): sigmoid, 3x3 max-pool peak picking, the
top ``top_k`` peaks per canvas over all classes, boxes from offset and size.
"""
from __future__ import annotations

import re

import numpy as np

from ..argtypes import positive_int
from ..data.canvas import TASK_PRESETS
from ..errors import ShapeError, UsageError
from ..zoo.detect import BOX_CHANNELS, STRIDE
from .boxes import xyxy_to_xywh
from .canvas_options import GEOMETRY, canvas_config, canvas_options, check_memory, check_model_size
from .coco_eval import evaluate_detections
from .task import Task, TaskData, register_task

__all__ = ["STRIDE", "HEAT_PRIOR", "SIGMA_FACTOR", "SIZE_WEIGHT", "render_targets", "detection_loss", "peaks",
           "decode_detections", "Detections", "DetectionEvaluator", "DetectTask", "draw_boxes", "metric_name"]

SIGMA_FACTOR = 0.54 / 6  # sigma = SIGMA_FACTOR * box side (TTFNet's alpha 0.54)
MIN_SIGMA = 0.5  # cells: even a tiny box's Gaussian covers its neighbours a little
SIZE_WEIGHT = 0.1  # CenterNet's weight of the size L1 against the heatmap's focal loss
EPS = 1e-6  # inside the logs of the focal loss: log(0) never happens
# Added to the heatmap logits in the loss and in decoding: a fresh model then predicts about
# 0.1 everywhere instead of 0.5, as CenterNet gets by initialising the last bias to -2.19
# (RetinaNet's "prior"), without which the focal loss of the ~99% background cells swamps the
# first epoch. A constant, so it is part of the model's definition, not of its weights.
HEAT_PRIOR = float(np.log(0.1 / 0.9))


def render_targets(boxes, labels, num_classes: int, grid: tuple[int, int], stride: int = STRIDE):
    """Dense CenterNet targets for a batch: ``boxes`` B x K x 4 xyxy in pixels and
    ``labels`` B x K (-1: no item in that slot) give

    - heat: float32 B x C x gh x gw, the class heatmaps (1 at each item's centre cell);
    - reg: float32 B x 4 x gh x gw, offset x, y and width, height in cells at centre cells;
    - mask: float32 B x 1 x gh x gw, 1 at centre cells.
    """
    boxes, labels = np.asarray(boxes, np.float64), np.asarray(labels, np.int64)
    if boxes.ndim != 3 or boxes.shape[2] != 4 or labels.shape != boxes.shape[:2]:
        raise ShapeError(f"detection targets need B x K x 4 boxes and B x K labels, "
                         f"got {boxes.shape} and {labels.shape}")
    b, k = labels.shape
    gh, gw = (int(v) for v in grid)
    live = labels >= 0
    cx, cy = (boxes[..., 0] + boxes[..., 2]) / (2 * stride), (boxes[..., 1] + boxes[..., 3]) / (2 * stride)
    w, h = (boxes[..., 2] - boxes[..., 0]) / stride, (boxes[..., 3] - boxes[..., 1]) / stride
    ix = np.clip(np.floor(cx), 0, gw - 1).astype(np.intp)
    iy = np.clip(np.floor(cy), 0, gh - 1).astype(np.intp)
    sx, sy = np.maximum(SIGMA_FACTOR * w, MIN_SIGMA), np.maximum(SIGMA_FACTOR * h, MIN_SIGMA)
    ex = np.exp(-(np.arange(gw) - ix[..., None]) ** 2 / (2 * sx[..., None] ** 2))  # B x K x gw
    ey = np.exp(-(np.arange(gh) - iy[..., None]) ** 2 / (2 * sy[..., None] ** 2))  # B x K x gh
    gauss = (ey[..., :, None] * ex[..., None, :]).astype(np.float32)  # B x K x gh x gw
    heat = np.zeros((b, num_classes, gh, gw), np.float32)
    reg = np.zeros((b, BOX_CHANNELS, gh, gw), np.float32)
    mask = np.zeros((b, 1, gh, gw), np.float32)
    values = np.stack([cx - ix, cy - iy, w, h], -1).astype(np.float32)  # B x K x 4
    for j in range(k):  # item slots (at most 5): every canvas at once
        on = np.flatnonzero(live[:, j])
        cls = labels[on, j]
        heat[on, cls] = np.maximum(heat[on, cls], gauss[on, j])
        reg[on, :, iy[on, j], ix[on, j]] = values[on, j]
        mask[on, 0, iy[on, j], ix[on, j]] = 1
    return heat, reg, mask


def _to_numpy(a) -> np.ndarray:
    """A target batch as NumPy (a torch tensor is copied off its device)."""
    return a.detach().cpu().numpy() if hasattr(a, "detach") and hasattr(a, "cpu") else np.asarray(a)


def detection_loss(out, boxes, labels, num_classes: int):
    """CenterNet's loss of a batch of model outputs (a torch tensor or a NumPy-engine
    Tensor, B x (C + 4) x gh x gw) against the items' ``boxes`` and ``labels``
    (either backend's arrays, or NumPy). Returns (mean loss over items, focal part, L1 part)."""
    c = num_classes
    if out.shape[1] != c + BOX_CHANNELS:
        raise ShapeError(f"a detector for {c} classes outputs {c + BOX_CHANNELS} channels, "
                         f"this one {out.shape[1]}")
    heat, reg, mask = render_targets(_to_numpy(boxes), _to_numpy(labels), c, tuple(out.shape[2:]))
    if type(out).__module__.startswith("torch"):
        import torch

        def put(a):
            return torch.from_numpy(a).to(out.device)
    else:
        def put(a):
            return a
    items = max(float(mask.sum()), 1.0)
    pos = (heat == 1).astype(np.float32)
    neg_weight = (1 - heat) ** 4 * (1 - pos)
    p = (out[:, :c] + HEAT_PRIOR).sigmoid()
    pos_term = ((p + EPS).log() * (1 - p) ** 2 * put(pos)).sum()
    neg_term = ((1 - p + EPS).log() * p ** 2 * put(neg_weight)).sum()
    focal = (pos_term + neg_term) * (-1 / items)
    weights = np.asarray([1, 1, SIZE_WEIGHT, SIZE_WEIGHT], np.float32).reshape(1, -1, 1, 1)
    l1 = ((out[:, c:] - put(reg)).abs() * put(mask * weights)).sum() * (1 / items)
    return focal + l1, focal, l1


def peaks(heat: np.ndarray) -> np.ndarray:
    """``heat`` where a cell is the maximum of its 3x3 neighbourhood, else 0
    (CenterNet's max-pool NMS), for ... x H x W arrays."""
    pad = [(0, 0)] * (heat.ndim - 2) + [(1, 1), (1, 1)]
    padded = np.pad(heat, pad, constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(-2, -1))
    return np.where(heat >= win.max((-2, -1)), heat, 0)


class Detections:
    """Decoded detections of a batch: per canvas ``top_k`` rows (padded with score 0)."""

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray):
        self.boxes, self.scores, self.labels = boxes, scores, labels  # n x k x 4 xyxy, n x k, n x k

    def of(self, i: int, min_score: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canvas ``i``'s boxes, scores and labels with score above ``min_score``, best first."""
        keep = self.scores[i] > min_score
        return self.boxes[i][keep], self.scores[i][keep], self.labels[i][keep]


def decode_detections(outputs: np.ndarray, num_classes: int, top_k: int = 100, stride: int = STRIDE,
                      image_hw: tuple[int, int] | None = None) -> Detections:
    """Boxes (xyxy, pixels, clipped to the image), scores and class indices of the
    ``top_k`` strongest heatmap peaks of each canvas, best first."""
    outputs = np.asarray(outputs, np.float32)
    c = num_classes
    if outputs.ndim != 4 or outputs.shape[1] != c + BOX_CHANNELS:
        raise ShapeError(f"detector outputs must be N x {c + BOX_CHANNELS} x H x W for {c} classes, "
                         f"got {outputs.shape}")
    n, _, gh, gw = outputs.shape
    heat = 1 / (1 + np.exp(-(outputs[:, :c].astype(np.float64) + HEAT_PRIOR)))
    flat = peaks(heat).reshape(n, -1)
    k = min(top_k, flat.shape[1])
    top = np.argpartition(-flat, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(flat, top, 1), 1, kind="stable"), 1)
    scores = np.take_along_axis(flat, top, 1)
    labels, cell = top // (gh * gw), top % (gh * gw)
    iy, ix = cell // gw, cell % gw
    reg = np.take_along_axis(outputs[:, c:].reshape(n, BOX_CHANNELS, -1), cell[:, None, :], 2)  # n x 4 x k
    cx, cy = (ix + reg[:, 0]) * stride, (iy + reg[:, 1]) * stride
    w, h = np.maximum(reg[:, 2], 0) * stride, np.maximum(reg[:, 3], 0) * stride
    ih, iw = image_hw or (gh * stride, gw * stride)
    boxes = np.stack([np.clip(cx - w / 2, 0, iw), np.clip(cy - h / 2, 0, ih),
                      np.clip(cx + w / 2, 0, iw), np.clip(cy + h / 2, 0, ih)], -1)
    return Detections(boxes.astype(np.float32), scores, labels.astype(np.int64))


def metric_name(class_name: str) -> str:
    """A class name as part of a metric key: "T-shirt/top" -> "t_shirt_top"."""
    return re.sub(r"[^0-9a-z]+", "_", class_name.lower()).strip("_") or "class"


class DetectionEvaluator:
    """COCO box AP streamed over a split: ``add`` raw outputs and the targets
    (boxes, labels, and optionally touching) of consecutive canvases; canvas i
    (from 0, over all adds) is COCO image i + 1, as `svertka data export canvas`
    numbers them. Detections scoring ``min_score`` or less are dropped (at most
    ``top_k`` per canvas, COCO's maxDets 100). ``num_classes`` None: read from the
    outputs' channel count."""

    def __init__(self, num_classes: int | None = None, top_k: int = 100, min_score: float = 0.01,
                 classes=()):
        self.num_classes, self.top_k, self.min_score = num_classes, top_k, min_score
        self.classes = tuple(classes)
        self.gt, self.dt = [], []
        self.touching = []
        self.n = 0

    def add(self, outputs: np.ndarray, targets: dict) -> None:
        if self.num_classes is None:
            self.num_classes = outputs.shape[1] - BOX_CHANNELS
        det = decode_detections(outputs, self.num_classes, self.top_k)
        labels, boxes = np.asarray(targets["labels"]), np.asarray(targets["boxes"], np.float64)
        ids = self.n + 1 + np.arange(len(labels))
        live = labels >= 0
        self.gt.append((np.broadcast_to(ids[:, None], labels.shape)[live], labels[live], boxes[live]))
        keep = det.scores > self.min_score
        self.dt.append((np.broadcast_to(ids[:, None], keep.shape)[keep], det.labels[keep], det.boxes[keep],
                        det.scores[keep]))
        if "touching" in targets:
            self.touching.append(np.asarray(targets["touching"]).astype(bool))
        self.n += len(labels)

    def arrays(self):
        """(gt image ids, labels, xyxy boxes), (dt image ids, labels, xyxy boxes, scores), as NumPy."""
        gt = [np.concatenate(parts) for parts in zip(*self.gt)] if self.gt else [np.zeros(0)] * 3
        dt = [np.concatenate(parts) for parts in zip(*self.dt)] if self.dt else [np.zeros(0)] * 4
        return gt, dt

    def metrics(self, images=None):
        """COCO DetectionMetrics over every canvas seen, or over the canvases in ``images`` (1-based ids)."""
        (gi, gl, gb), (di, dl, db, ds) = self.arrays()
        images = np.arange(1, self.n + 1) if images is None else np.asarray(images)
        gb, db = gb.reshape(-1, 4), db.reshape(-1, 4)
        return evaluate_detections(gi, gl, xyxy_to_xywh(gb), di, dl, xyxy_to_xywh(db), ds, image_ids=images,
                                   category_ids=np.arange(self.num_classes or 0))

    def result(self) -> dict[str, float]:
        """mAP@[.5:.95], mAP@.5, mAP@.75; the first two again over canvases whose items touch
        and over those where they do not (when the targets said which); AP per class."""
        m = self.metrics()
        out = {"map": m.map, "map50": m.map50, "map75": m.map75}
        if self.touching and len(self.touching) == len(self.gt):
            touching = np.concatenate(self.touching)
            for part, sel in (("touching", touching), ("separate", ~touching)):
                if sel.any():
                    sub = self.metrics(np.flatnonzero(sel) + 1)
                    out[f"map_{part}"], out[f"map50_{part}"] = sub.map, sub.map50
        for c, ap in enumerate(m.per_class):
            name = self.classes[c] if c < len(self.classes) else str(c)
            out[f"ap_{metric_name(name)}"] = None if np.isnan(ap) else float(ap)
        return out


# ------------------------------------------------------------------ the task


def _score(text) -> float:
    v = float(text)
    if not 0 <= v < 1:
        raise ValueError("need a number in [0, 1)")
    return v


@register_task
class DetectTask(Task):
    """`svertka train --task detect`: CenterNet-style detection on 96x96 canvases.

    Canvases (``svertka.data.canvas``, preset ``detect``): training canvases from
    the training items (stream seed 1), validation canvases (``--val-fraction``
    of their number) from the training items with seed 2, test canvases from the
    test items with seed 0, so test canvas i is image i + 1 of
    `svertka data export canvas --task detect` (its default seed is 0; with the
    run's geometry options as its flags, e.g. ``--size 128`` for ``size=128``).
    The geometry options (:mod:`svertka.tasks.canvas_options`) change the preset.
    """

    name = "detect"
    default_model = "centernet_fm"
    score = "map"
    shown = ("map", "map50")
    eval_options = ("test_canvases",)  # the test split; the rest is the model's
    options = {
        "canvases": (20_000, positive_int, "the number of training canvases, e.g. canvases=20000"),
        "test_canvases": (5_000, positive_int, "the number of test canvases, e.g. test_canvases=5000"),
        "min_score": (0.3, _score, "the score a box needs to be listed by predict, e.g. min_score=0.3"),
        **canvas_options(TASK_PRESETS["detect"], GEOMETRY),
    }
    SEEDS = {"train": 1, "val": 2, "test": 0}
    class_names: tuple[str, ...] = ()

    def __init__(self, cfg):
        super().__init__(cfg)
        self.canvas = canvas_config(self, TASK_PRESETS["detect"])  # the geometry options, checked

    def check_training(self) -> None:
        super().check_training()
        # the stride-4 cells must tile the canvas exactly (centernet_fm: a multiple of 8)
        check_model_size(self.cfg.model, self.canvas,
                         lambda out, s: s % STRIDE == 0 and out[1:] == (s // STRIDE, s // STRIDE))

    def _split(self, which: str, n: int) -> TaskData:
        from ..data.canvas import CanvasGenerator
        from ..zoo.detect import CANVAS_MEAN, CANVAS_STD

        items = "test" if which == "test" else "train"
        gen = CanvasGenerator.from_dataset(self.cfg.data, split=items, config=self.canvas, root=self.cfg.root)
        c = gen.generate(n, seed=self.SEEDS[which])
        self.class_names = tuple(c.classes)  # names the per-class APs
        targets = {"boxes": c.boxes, "labels": c.labels, "touching": c.touching.astype(np.int64)}
        size = c.config.size
        seeds = ", ".join(f"{k} {v}" for k, v in self.SEEDS.items())
        return TaskData(c.images, targets, tuple(c.classes), CANVAS_MEAN, CANVAS_STD,
                        f"{gen.name.split('/')[0]} items on {size}x{size} canvases, stream seeds {seeds}")

    def _test_count(self) -> int:
        return min(self.opts["test_canvases"], self.cfg.limit_test or self.opts["test_canvases"])

    def load(self):
        cfg = self.cfg
        n = min(self.opts["canvases"], cfg.limit_train or self.opts["canvases"])
        n_val = round(cfg.val_fraction * n)
        check_memory(self.canvas, n + n_val + self._test_count())
        val = self._split("val", n_val) if n_val else None
        return self._split("train", n), val, self._split("test", self._test_count())

    def load_test(self) -> TaskData:
        check_memory(self.canvas, self._test_count())
        return self._split("test", self._test_count())

    def network(self, train: TaskData):
        from ..analysis import output_shape
        from ..spec.geometry import fmt_shape
        from ..zoo import resolve_model

        h, w, c = train.image_shape
        net = resolve_model(self.cfg.model, num_classes=len(train.classes), in_chans=c, input_size=h)
        want = (len(train.classes) + BOX_CHANNELS, h // STRIDE, w // STRIDE)
        got = tuple(output_shape(net))
        if got != want:
            raise UsageError(f"task detect needs a model whose output is {fmt_shape(want)} (class heatmaps, "
                             f"offset and size at stride {STRIDE}); {self.cfg.model} gives {fmt_shape(got)}: "
                             f"use --model centernet_fm")
        return net

    def loss(self, F, out, targets):
        c, n = out.shape[1] - BOX_CHANNELS, out.shape[0]
        loss, focal, l1 = detection_loss(out, targets["boxes"], targets["labels"], c)
        return loss, {"focal": focal * n, "l1": l1 * n}

    def evaluator(self) -> DetectionEvaluator:
        return DetectionEvaluator(classes=self.class_names)

    def decode(self, outputs, meta):
        classes = list(meta.get("classes") or [])
        det = decode_detections(outputs, outputs.shape[1] - BOX_CHANNELS)
        preds = []
        for i in range(len(outputs)):
            boxes, scores, labels = det.of(i, self.opts["min_score"])
            preds.append({"detections": [
                {"class": classes[k] if k < len(classes) else str(k), "index": int(k),
                 "score": round(float(s), 4), "box": [round(float(v), 2) for v in b]}
                for b, s, k in zip(boxes, scores, labels)]})
        return preds

    def draw(self, image, prediction, path) -> None:
        boxes = [d["box"] for d in prediction["detections"]]
        captions = [f"{d['class']} {d['score']:.2f}" for d in prediction["detections"]]
        draw_boxes(image, boxes, captions).save(path)

    def write_coco_results(self, evaluator: DetectionEvaluator, path) -> int:
        """Write the detections an evaluator has gathered over the test canvases (every box
        above its score floor, at most 100 per canvas) as a COCO results file; returns
        their number. The image ids are the canvas index + 1, as `data export canvas` numbers them."""
        import json

        from ..data.coco import coco_results
        from ..fileio import atomic_write_text

        _, (ids, labels, boxes, scores) = evaluator.arrays()
        atomic_write_text(path, json.dumps(coco_results(ids, boxes, scores, labels)))
        return len(ids)


PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def draw_boxes(image: np.ndarray, boxes, captions=(), colors=None, truth=(), scale: int = 4):
    """A Pillow RGB image of a uint8 H x W (x 1 or 3) canvas, enlarged ``scale`` times, with
    ``boxes`` (xyxy, canvas pixels) outlined and captioned, and the ``truth`` boxes dashed white."""
    from PIL import Image, ImageDraw

    a = np.asarray(image)
    a = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a
    img = Image.fromarray(a).convert("RGB")
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    pen = ImageDraw.Draw(img)
    for b in truth:
        x0, y0, x1, y1 = (float(v) * scale for v in b)
        for t in np.arange(x0, x1, 6):  # dashes along x, then along y
            pen.line([(t, y0), (min(t + 3, x1), y0)], fill="white")
            pen.line([(t, y1), (min(t + 3, x1), y1)], fill="white")
        for t in np.arange(y0, y1, 6):
            pen.line([(x0, t), (x0, min(t + 3, y1))], fill="white")
            pen.line([(x1, t), (x1, min(t + 3, y1))], fill="white")
    for i, b in enumerate(boxes):
        color = tuple(colors[i]) if colors is not None else PALETTE[i % len(PALETTE)]
        x0, y0, x1, y1 = (float(v) * scale for v in b)
        # max(): a box of zero width or height (a fresh model's size) is drawn as a line, not refused
        pen.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color, width=2)
        if i < len(captions):
            pen.text((x0 + 2, max(y0 - 11, 0)), captions[i], fill=color)
    return img
