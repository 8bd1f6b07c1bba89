"""The localize task: one Fashion-MNIST item on a 64x64 canvas; the model names its
class and draws its box (the ImageNet localisation task in miniature).

The model gives num_classes logits, then 4 numbers: the box (x0, y0, x1, y1) in
fractions of the canvas side, as offsets from a prior box (the middle half of the
canvas, so an untrained net guesses a plausible box). The true box is the tight
box of the item's visible pixels (svertka.data.canvas).

Loss: cross-entropy on the class plus ``BOX_WEIGHT`` times a box loss (weights that balance
the two gradients on the shared backbone), either

* ``smooth_l1`` (Fast R-CNN's): per coordinate, in pixels, 0.5 d^2 / beta where
  |d| < beta and |d| - beta / 2 beyond, with beta = 1 px, averaged over the four; or
* ``giou`` (Rezatofighi et al. 2019): 1 - GIoU, which has a gradient even when the
  boxes do not overlap and does not grow with the box's size.

Both are written with ops the two backends share: min and max as
(a + b -+ |a - b|) / 2, so the NumPy engine trains them too (no clip, no where).

Scores (svertka.tasks.metrics.localization_metrics): top-1, mean IoU, and
"correct localisation": the right class and IoU >= 0.5.
"""
from __future__ import annotations

import numpy as np

from svertka.argtypes import positive_int
from svertka.data.canvas import TASK_PRESETS
from svertka.errors import ShapeError, UsageError
from svertka.tasks.canvas_options import ONE_ITEM, canvas_config, canvas_options, check_model_size
from svertka.tasks.metrics import localization_metrics
from svertka.tasks.points import (
    TRAIN_CANVASES,
    as_float32,
    canvas_data,
    choice,
    draw_canvases,
    pick_model,
    pixel_stats,
)
from svertka.tasks.task import Task, register_task

__all__ = ["localize_targets", "split_output", "smooth_l1", "giou_terms", "localize_loss", "decode_boxes",
           "LocalizeEvaluator", "localize_json", "box_picture", "draw_box", "BOX_LOSSES", "PRIOR",
           "LocalizeTask"]

BOX_LOSSES = ("smooth_l1", "giou")
PRIOR = (0.25, 0.25, 0.75, 0.75)  # the box an all-zero output means, in fractions of the side
BOX_WEIGHT = {"smooth_l1": 0.05, "giou": 0.5}  # the box loss's weight beside cross-entropy (see below)
# Why these weights: the gradients, not the loss values, must balance on the shared backbone.
# Per output number, cross-entropy's gradient is at most 1; smooth-L1 in px beyond beta gives
# weight x 64 px / 4 coordinates = 16 x weight, and 1 - GIoU about 2-4 x weight for boxes half the
# canvas wide. Measured (benchmarks/README.md): with weight 0.25 the box took the backbone
# (mean IoU 0.83) and the class stayed at 24% top-1 after 3 epochs of 8,000 canvases.


def localize_targets(canvases) -> dict:
    """{"labels": (N,) int64, "boxes": (N, 4) float32 xyxy in pixels} of each canvas's item."""
    return {"labels": np.ascontiguousarray(canvases.labels[:, 0], dtype=np.int64),
            "boxes": np.ascontiguousarray(canvases.boxes[:, 0], dtype=np.float32)}


def split_output(out, num_classes: int):
    """(logits (N, C), [x0, y0, x1, y1], each (N,) in fractions of the side) of a
    localize model's (N, C + 4) output; backend tensors or NumPy arrays."""
    if len(out.shape) != 2 or out.shape[1] != num_classes + 4:
        raise ShapeError(f"a localize model gives (N, {num_classes} classes + 4 box numbers), "
                         f"got {tuple(out.shape)}")
    box = [out[:, num_classes + i] + PRIOR[i] for i in range(4)]
    return out[:, :num_classes], box


def _abs(a):
    """|a| of a backend tensor or of a NumPy array (the engine's targets are arrays)."""
    return np.abs(a) if isinstance(a, np.ndarray) else a.abs()


def _max(a, b):
    return (a + b + _abs(a - b)) * 0.5


def _min(a, b):
    return (a + b - _abs(a - b)) * 0.5


def _pos(a):
    """max(a, 0)."""
    return (a + _abs(a)) * 0.5


def smooth_l1(d, beta: float = 1.0):
    """Elementwise smooth-L1 of a difference ``d``: 0.5 d^2 / beta for |d| < beta, else
    |d| - 0.5 beta. Written as m (|d| - m / 2) / beta with m = min(|d|, beta)."""
    a = _abs(d)
    m = _min(a, beta)
    return m * (a - m * 0.5) * (1.0 / beta)


def giou_terms(p, t, eps: float = 1e-7):
    """(IoU, GIoU), each (N,), of boxes given as lists of 4 (N,) coordinates (x0, y0, x1,
    y1); a predicted box turned inside out has area 0."""
    area_p = _pos(p[2] - p[0]) * _pos(p[3] - p[1])
    area_t = _pos(t[2] - t[0]) * _pos(t[3] - t[1])
    inter = _pos(_min(p[2], t[2]) - _max(p[0], t[0])) * _pos(_min(p[3], t[3]) - _max(p[1], t[1]))
    union = area_p + area_t - inter
    hull = _pos(_max(p[2], t[2]) - _min(p[0], t[0])) * _pos(_max(p[3], t[3]) - _min(p[1], t[1]))
    iou = inter / (union + eps)
    return iou, iou - (hull - union) / (hull + eps)


def localize_loss(F, out, labels, boxes, num_classes: int, size: int, box_loss: str = "smooth_l1"):
    """(cross-entropy + BOX_WEIGHT x box loss, {"acc": right classes, "iou": summed IoU})
    for a batch: ``F`` the backend's functional module, ``labels`` (N,) and ``boxes``
    (N, 4) in pixels as backend tensors."""
    logits, box = split_output(out, num_classes)
    px = [b * float(size) for b in box]
    true = [boxes[:, i] for i in range(4)]
    iou, g = giou_terms(px, true)
    if box_loss == "giou":
        reg = (1.0 - g).mean()
    else:
        reg = sum(smooth_l1(p - t) for p, t in zip(px, true)).mean() * 0.25
    loss = F.cross_entropy(logits, labels) + reg * BOX_WEIGHT[box_loss]
    right = (logits.detach().argmax(1) == labels).sum()
    return loss, {"acc": right, "iou": iou.detach().sum()}


# ---------------------------------------------------------------- NumPy side


def decode_boxes(outputs: np.ndarray, num_classes: int, size: int):
    """(class index (N,), softmax score of it (N,), xyxy boxes (N, 4) in pixels, clipped
    to the canvas and ordered so x0 <= x1, y0 <= y1) from NumPy outputs."""
    logits, box = split_output(np.asarray(outputs, np.float64), num_classes)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    xyxy = np.clip(np.stack(box, -1) * size, 0, size)
    xyxy = np.concatenate([np.minimum(xyxy[:, :2], xyxy[:, 2:]), np.maximum(xyxy[:, :2], xyxy[:, 2:])], 1)
    label = p.argmax(1)
    return label, p[np.arange(len(p)), label], xyxy


class LocalizeEvaluator:
    """Streaming scores: ``add(outputs, {"labels", "boxes"})`` per batch, then ``result()``."""

    def __init__(self, num_classes: int, size: int):
        self.num_classes, self.size = num_classes, size
        self.parts = []

    def add(self, outputs: np.ndarray, targets: dict) -> None:
        label, _, box = decode_boxes(outputs, self.num_classes, self.size)
        self.parts.append((label, box, np.asarray(targets["labels"]), np.asarray(targets["boxes"])))

    def result(self) -> dict:
        label, box, true_label, true_box = (np.concatenate(p) for p in zip(*self.parts))
        return localization_metrics(label, box, true_label, true_box)


def localize_json(outputs: np.ndarray, classes, size: int) -> list[dict]:
    """Per image {"class", "class_index", "score", "box": [x0, y0, x1, y1] px}."""
    label, score, box = decode_boxes(outputs, len(classes), size)
    return [{"class": str(classes[c]), "class_index": int(c), "score": round(float(s), 4),
             "box": [round(float(v), 2) for v in b]} for c, s, b in zip(label, score, box)]


def box_picture(image: np.ndarray, prediction: dict, truth: dict | None = None, scale: int = 4) -> np.ndarray:
    """The image, ``scale`` times larger, with the predicted box and its class and score
    (as :func:`localize_json` writes them) in red, and the ``truth`` box (same layout,
    "score" optional) in green; uint8 H x W x 3."""
    from PIL import ImageDraw

    from svertka.tasks.points import _enlarged

    pil = _enlarged(image, scale)
    draw = ImageDraw.Draw(pil)
    for box, colour, text in (((truth or {}).get("box"), (64, 255, 64), None),
                              (prediction["box"], (255, 64, 64), prediction)):
        if box is None:
            continue
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=max(1, scale // 2))
        if text is not None:
            draw.text((x0 + 2, max(0, y0 - 12)), f"{text['class']} {text['score']:.2f}", fill=(255, 255, 0))
    return np.asarray(pil)


def draw_box(image: np.ndarray, prediction: dict, out_path, scale: int = 4) -> None:
    """:func:`box_picture` written as PNG or JPEG (by the extension)."""
    from svertka.viz.image import write_image

    write_image(out_path, box_picture(image, prediction, scale=scale))


# ------------------------------------------------------------------ the task


@register_task
class LocalizeTask(Task):
    """`svertka train --task localize [MODEL]`: see the module's notes."""

    name = "localize"
    default_model = "localize_net"
    score = "correct_localization"
    higher_is_better = True
    augments = False  # a crop or flip moves the box
    shown = ("top1", "mean_iou", "correct_localization")
    options = {
        "box_loss": ("smooth_l1", choice(*BOX_LOSSES), "box_loss=smooth_l1|giou: the box's loss"),
        "canvases": (TRAIN_CANVASES, positive_int, "canvases=N: training canvases (test: 10,000)"),
        **canvas_options(TASK_PRESETS["localize"], ONE_ITEM),
    }

    def __init__(self, cfg):
        super().__init__(cfg)
        self.canvas = canvas_config(self, TASK_PRESETS["localize"])  # the geometry options, checked
        self.size = self.canvas.size

    def check_training(self) -> None:
        super().check_training()
        # localize_net's box head is an 8x8 conv over the 8x8 map of a 64 px canvas: one size only
        check_model_size(pick_model(self.cfg, self._check_model), self.canvas,
                         lambda out, s: len(out) == 1)

    def load(self):
        c = draw_canvases(self.cfg, self.canvas, self.opts["canvases"])
        self.opts["canvases"] = len(c["train"].images)  # recorded as drawn (after --limit-train)
        mean, std = pixel_stats(c["train"].images)
        classes = c["train"].classes
        return tuple(None if v is None else canvas_data(v, localize_targets(v), classes, mean, std)
                     for v in c.values())

    def load_test(self):
        test = draw_canvases(self.cfg, self.canvas, self.opts["canvases"], ("test",))["test"]
        return canvas_data(test, localize_targets(test), test.classes, (0.5,), (0.5,))

    def network(self, train):
        from svertka.zoo import create_model

        name = pick_model(self.cfg, self._check_model)
        h, w, c = train.image_shape
        return create_model(name, num_classes=train.num_classes, in_chans=c, input_size=h)

    def _check_model(self, name):
        from svertka.zoo import list_models

        ok = list_models("localize_*")
        if name not in ok:
            raise UsageError(f"task localize trains a class + box model ({', '.join(ok)}), not {name}; "
                             f"name one, or none for localize_net")

    def loss(self, F, out, targets):
        return localize_loss(F, as_float32(out), targets["labels"], targets["boxes"],
                             len(self._classes(out)), self.size, self.opts["box_loss"])

    def _classes(self, out):
        return range(out.shape[1] - 4)

    def evaluator(self):
        return _LazyLocalizeEvaluator(self.size)

    def decode(self, outputs, meta):
        classes = list(meta.get("classes") or [str(i) for i in range(outputs.shape[1] - 4)])
        return localize_json(outputs, classes, self.size)

    def draw(self, image, prediction, path):
        draw_box(image, prediction, path)


class _LazyLocalizeEvaluator(LocalizeEvaluator):
    """The class count read off the first batch's outputs (C + 4 columns)."""

    def __init__(self, size: int):
        super().__init__(0, size)

    def add(self, outputs, targets):
        self.num_classes = self.num_classes or outputs.shape[1] - 4
        super().add(outputs, targets)
