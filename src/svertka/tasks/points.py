"""The points task: the K = 5 keypoints of one Fashion-MNIST item on a 64x64 canvas
(centre of mass, top-, bottom-, left- and right-most pixel; svertka.data.canvas),
regressed two ways.

* **Direct regression** (``points_direct``): the net ends in a Linear to 2K
  numbers, read as (x, y) per keypoint in fractions of the canvas side, plus 0.5
  (so an untrained net guesses the centre).
* **Heatmaps** (``points_heatmap``): one map per keypoint (32x32, stride 2),
  decoded by **soft-argmax**: the expected cell centre under the softmax of the
  map (the "integral regression" of Sun et al. 2018). Chosen over argmax + a
  sub-pixel offset because (1) it is differentiable, so the net trains on the
  coordinates themselves with the same loss as direct regression and needs no
  Gaussian target maps or offset head; (2) it is sub-pixel by construction, a
  weighted mean, not a cell index; (3) where several pixels tie for an extreme
  (a flat top edge), the ground truth is the centre of the tied pixels
  (ExtremeNet's rule), which is exactly the mean of a map spread evenly over them.
  Its known weakness: a broad map is pulled towards the centre of the canvas;
  training on the coordinates is what makes the maps sharp.

Which head a model has is read off its output: (N, 2K) numbers are direct, (N,
K, h, w) maps are heatmaps. Loss, for both: L1 on the coordinates in fractions
of the side (mean over x and y of every keypoint). The loss is written once
with ops both backends have (reshape, slicing, + - * /, abs, exp, sum), so it
runs on torch tensors and on the NumPy engine's alike.

Scores (svertka.tasks.metrics): mean error in pixels, PCK@2 px and @4 px, the
mean error of each keypoint, and the baseline beside them on the same canvases:
every canvas answered with the training canvases' mean keypoints.
"""
from __future__ import annotations

import numpy as np

from svertka.data.canvas import KEYPOINT_NAMES, TASK_PRESETS, CanvasGenerator
from svertka.errors import ShapeError, UsageError
from svertka.tasks.canvas_options import (
    ONE_ITEM,
    canvas_config,
    canvas_options,
    check_memory,
    check_model_size,
)
from svertka.tasks.metrics import keypoint_metrics
from svertka.tasks.task import Task, TaskData, register_task

from ..argtypes import positive_int

__all__ = ["keypoint_targets", "predicted_xy", "soft_argmax", "points_loss", "decode_keypoints",
           "mean_keypoints", "PointsEvaluator", "keypoints_json", "keypoints_picture", "draw_keypoints",
           "KEYPOINT_NAMES", "PointsTask", "draw_canvases", "canvas_data", "pixel_stats"]

# one colour per keypoint in drawings: centre, top, bottom, left, right
COLOURS = ((255, 255, 0), (255, 64, 64), (64, 160, 255), (64, 255, 64), (255, 128, 255))


def keypoint_targets(canvases) -> np.ndarray:
    """(N, K, 2) float32 (x, y) in pixels of the first item of each canvas."""
    return np.ascontiguousarray(canvases.keypoints[:, 0], dtype=np.float32)


def mean_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """The baseline's answer for every canvas: the mean (K, 2) keypoints of a split."""
    return np.asarray(keypoints, np.float64).mean(0)


# ------------------------------------------------------------ both backends


def _const(like, values: np.ndarray):
    """``values`` as a constant beside the backend tensor ``like`` (a torch tensor on
    its device and dtype; the NumPy engine takes arrays as they are)."""
    if type(like).__module__.startswith("torch"):
        import torch
        return torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return values.astype(like.dtype, copy=False)


def _detached_max(x):
    """The last axis's maximum with no gradient (keepdims): the shift that keeps exp
    finite; softmax does not change under it, so no gradient is lost."""
    m = x.detach().max(-1, keepdims=True)
    return getattr(m, "values", m)  # torch returns (values, indices)


def soft_argmax(maps, size: int):
    """(x, y), each (N, K), of (N, K, h, w) maps over a ``size`` px canvas: the
    expected position of a cell centre under the softmax of each map, in fractions
    of the side. Cell (i, j) covers the input pixels [j s, (j + 1) s) with s = size / w,
    so its centre is at ((j + 0.5) s, (i + 0.5) s)."""
    n, k, h, w = maps.shape
    flat = maps.reshape(n, k, h * w)
    e = (flat - _detached_max(flat)).exp()
    p = (e / e.sum(axis=-1, keepdims=True)).reshape(n, k, h, w)
    xs = _const(maps, ((np.arange(w) + 0.5) / w).astype(np.float32))
    ys = _const(maps, ((np.arange(h) + 0.5) / h).astype(np.float32))
    return (p.sum(axis=2) * xs).sum(axis=-1), (p.sum(axis=3) * ys).sum(axis=-1)


def predicted_xy(out, num_keypoints: int | None = None):
    """The model's keypoints (x, y), each (N, K), in fractions of the canvas side:
    soft-argmax of (N, K, h, w) maps, or (N, 2K) numbers + 0.5 (x0, y0, x1, y1, ...)."""
    if len(out.shape) == 4:
        n, k, h, w = out.shape
        if h != w:
            raise ShapeError(f"keypoint heatmaps must be square, got {h}x{w}")
        return soft_argmax(out, h)
    if len(out.shape) != 2 or out.shape[1] % 2 or (num_keypoints and out.shape[1] != 2 * num_keypoints):
        want = f"2 x {num_keypoints}" if num_keypoints else "2K"
        raise ShapeError(f"a points model gives (N, {want}) coordinates or (N, K, h, w) heatmaps, "
                         f"got {tuple(out.shape)}")
    xy = out.reshape(out.shape[0], out.shape[1] // 2, 2)
    return xy[:, :, 0] + 0.5, xy[:, :, 1] + 0.5


def points_loss(out, keypoints, size: int):
    """(mean L1 loss on the coordinates in fractions of the side, {"px_error": the
    mean keypoint error in pixels of each image, summed over the batch}) for the
    model output ``out`` and the (N, K, 2) pixel ``keypoints``; backend tensors in,
    backend scalars out."""
    k = keypoints.shape[1]
    x, y = predicted_xy(out, k)
    dx, dy = x - keypoints[:, :, 0] * (1.0 / size), y - keypoints[:, :, 1] * (1.0 / size)
    loss = (dx.abs() + dy.abs()).mean() * 0.5
    dxd, dyd = dx.detach() * size, dy.detach() * size
    px = (dxd * dxd + dyd * dyd).sqrt().sum() * (1.0 / k)
    return loss, {"px_error": px}


# ---------------------------------------------------------------- NumPy side


def decode_keypoints(outputs: np.ndarray, size: int) -> np.ndarray:
    """(N, K, 2) float64 keypoints in pixels from a points model's NumPy outputs."""
    from svertka.backends.numpy.tensor import Tensor, no_grad

    with no_grad():
        x, y = predicted_xy(Tensor(np.asarray(outputs, np.float64)))
    return np.stack([x.data, y.data], -1) * size


class PointsEvaluator:
    """Streaming scores: ``add(outputs, {"keypoints": ...})`` per batch, then ``result()``."""

    def __init__(self, size: int, baseline: np.ndarray | None = None, names=KEYPOINT_NAMES):
        self.size, self.names = size, tuple(names)
        self.baseline = None if baseline is None else np.asarray(baseline, np.float64)
        self.pred, self.true = [], []

    def add(self, outputs: np.ndarray, targets: dict) -> None:
        true = np.asarray(targets["keypoints"], np.float64)
        pred = decode_keypoints(outputs, self.size)
        if pred.shape != true.shape:
            raise ShapeError(f"points: the model gives {pred.shape[1]} keypoints, the data "
                             f"{true.shape[1]}")
        self.pred.append(pred)
        self.true.append(true)

    def result(self) -> dict:
        pred, true = np.concatenate(self.pred), np.concatenate(self.true)
        m = keypoint_metrics(pred, true)
        out = {k: v for k, v in m.items() if k != "per_keypoint_px_error"}
        out.update({f"px_error_{n}": v for n, v in zip(self.names, m["per_keypoint_px_error"])})
        if self.baseline is not None:
            base = keypoint_metrics(np.broadcast_to(self.baseline, true.shape), true)
            out.update({f"baseline_{k}": v for k, v in base.items() if k != "per_keypoint_px_error"})
        return out


def keypoints_json(keypoints: np.ndarray, names=KEYPOINT_NAMES) -> list[dict]:
    """Per image {"keypoints": {name: [x, y]}} in pixels, rounded to 0.01 px."""
    return [{"keypoints": {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in zip(names, kps)}}
            for kps in np.asarray(keypoints)]


def _enlarged(image: np.ndarray, scale: int):
    """A uint8 H x W (x 1) image as an RGB Pillow image ``scale`` times larger (nearest)."""
    from PIL import Image

    img = np.asarray(image)
    img = img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img
    pil = Image.fromarray(np.ascontiguousarray(img)).convert("RGB")
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)


def keypoints_picture(image: np.ndarray, prediction: dict, truth: dict | None = None,
                      scale: int = 4) -> np.ndarray:
    """The image, ``scale`` times larger, with each keypoint of ``prediction`` (as
    :func:`keypoints_json` writes it) as a cross in its keypoint's colour, and those of
    ``truth`` as small white circles; uint8 H x W x 3."""
    from PIL import ImageDraw

    pil = _enlarged(image, scale)
    draw = ImageDraw.Draw(pil)
    width, r = max(1, scale // 2), max(2, scale)
    for x, y in (truth or {"keypoints": {}})["keypoints"].values():
        draw.ellipse([x * scale - r, y * scale - r, x * scale + r, y * scale + r], outline=(255, 255, 255))
    for i, (x, y) in enumerate(prediction["keypoints"].values()):
        cx, cy, colour = x * scale, y * scale, COLOURS[i % len(COLOURS)]
        draw.line([(cx - r, cy), (cx + r, cy)], fill=colour, width=width)
        draw.line([(cx, cy - r), (cx, cy + r)], fill=colour, width=width)
    return np.asarray(pil)


def draw_keypoints(image: np.ndarray, prediction: dict, out_path, scale: int = 4) -> None:
    """:func:`keypoints_picture` written as PNG or JPEG (by the extension)."""
    from svertka.viz.image import write_image

    write_image(out_path, keypoints_picture(image, prediction, scale=scale))


# ------------------------------------------------------------ canvas splits
# (shared with svertka.tasks.localize: one item on a 64x64 canvas)

TRAIN_CANVASES, TEST_CANVASES = 20_000, 10_000
SEEDS = {"train": 0, "val": 1, "test": 0}  # val: training items again, another stream


def choice(*names):
    """A --task-opt parser that accepts one of ``names``."""
    def parse(text):
        if text not in names:
            raise ValueError(f"expected one of {', '.join(names)}, got {text!r}")
        return text
    return parse


def canvas_generator(cfg, config, split: str):
    return CanvasGenerator.from_dataset(cfg.data, split, config, root=cfg.root)


def canvas_counts(cfg, canvases: int) -> dict:
    """How many canvases each split gets: ``canvases`` for training (capped by
    --limit-train), --val-fraction of that for validation, 10,000 for the test
    (capped by --limit-test)."""
    train = min(canvases, cfg.limit_train) if cfg.limit_train else canvases
    val = round(train * cfg.val_fraction) if cfg.val_fraction > 0 else 0
    test = min(TEST_CANVASES, cfg.limit_test) if cfg.limit_test else TEST_CANVASES
    return {"train": train, "val": val, "test": test}


def draw_canvases(cfg, config, canvases: int, splits=("train", "val", "test")) -> dict:
    """{split: Canvases} of geometry ``config`` for ``splits``: training and validation
    canvases from the training items (two seeds), test canvases from the test items."""
    n = canvas_counts(cfg, canvases)
    check_memory(config, sum(n[split] for split in splits))
    gens, out = {}, {}
    for split in splits:
        if not n[split]:
            out[split] = None
            continue
        items = "test" if split == "test" else "train"
        if items not in gens:
            gens[items] = canvas_generator(cfg, config, items)
        out[split] = gens[items].generate(n[split], seed=SEEDS[split])
    return out


def canvas_data(c, targets: dict, classes, mean, std) -> TaskData:
    return TaskData(c.images, targets, tuple(classes), tuple(mean), tuple(std),
                    f"{c.dataset} items on {c.images.shape[1]}x{c.images.shape[2]} canvases")


def pixel_stats(images: np.ndarray) -> tuple[tuple[float], tuple[float]]:
    """Mean and std of the training canvases (mostly black: Fashion-MNIST's own
    statistics would leave the inputs far from zero mean)."""
    x = images.astype(np.float32) / 255
    return (float(x.mean()),), (float(x.std()) or 1.0,)


def pick_model(cfg, family_check) -> str:
    """The model to train (named, or the task's default, see Task.model_for);
    ``family_check(name)`` raises for a model of the wrong kind."""
    family_check(cfg.model)
    return cfg.model


def as_float32(out):
    """A torch output under bf16 autocast, as float32: soft-argmax and box sums need the bits."""
    if type(out).__module__.startswith("torch") and str(out.dtype) != "torch.float32":
        return out.float()
    return out


# ------------------------------------------------------------------ the task

HEADS = {"heatmap": "points_heatmap", "direct": "points_direct"}


def heads_fit(out: tuple, size: int) -> bool:
    """Whether a points model's output shape suits a ``size`` px canvas: 2K numbers, or
    square maps whose cells tile the canvas exactly (soft-argmax places cell centres so)."""
    return len(out) == 1 or (len(out) == 3 and out[1] == out[2] and size % out[1] == 0)


@register_task
class PointsTask(Task):
    """`svertka train --task points [MODEL]`: see the module's notes."""

    name = "points"

    @classmethod
    def model_for(cls, options: dict) -> str:
        return HEADS.get(options.get("head", cls.options["head"][0]), HEADS["heatmap"])
    score = "mean_px_error"
    higher_is_better = False
    augments = False  # a flip or a crop moves the keypoints; image-only augmentation would lie
    shown = ("mean_px_error", "pck@2px")
    options = {
        "head": ("heatmap", choice(*HEADS), "head=heatmap|direct: the model when none is named "
                 "(points_heatmap or points_direct)"),
        "canvases": (TRAIN_CANVASES, positive_int, "canvases=N: training canvases (test: 10,000)"),
        **canvas_options(TASK_PRESETS["points"], ONE_ITEM),
    }

    def __init__(self, cfg):
        super().__init__(cfg)
        self.canvas = canvas_config(self, TASK_PRESETS["points"])  # the geometry options, checked
        self.size = self.canvas.size
        self.baseline = None

    def check_training(self) -> None:
        super().check_training()
        check_model_size(pick_model(self.cfg, self._check_model), self.canvas,
                         heads_fit)

    def load(self):
        c = draw_canvases(self.cfg, self.canvas, self.opts["canvases"])
        # the count drawn (after --limit-train) goes into the checkpoint's task options, so
        # `svertka eval` redraws the same training canvases for the same baseline
        self.opts["canvases"] = len(c["train"].images)
        kp = keypoint_targets(c["train"])
        self.baseline = mean_keypoints(kp)
        mean, std = pixel_stats(c["train"].images)
        return tuple(None if v is None else canvas_data(v, {"keypoints": keypoint_targets(v)}, KEYPOINT_NAMES,
                                                        mean, std) for v in c.values())

    def load_test(self):
        c = draw_canvases(self.cfg, self.canvas, self.opts["canvases"], ("train", "test"))
        self.baseline = mean_keypoints(keypoint_targets(c["train"]))
        test = c["test"]
        return canvas_data(test, {"keypoints": keypoint_targets(test)}, KEYPOINT_NAMES, (0.5,), (0.5,))

    def network(self, train):
        from svertka.zoo import create_model

        name = pick_model(self.cfg, self._check_model)
        h, w, c = train.image_shape
        net = create_model(name, num_classes=len(KEYPOINT_NAMES), in_chans=c, input_size=h)
        return net

    def _check_model(self, name):
        from svertka.zoo import list_models

        ok = list_models("points_*")
        if name not in ok:
            raise UsageError(f"task points trains a keypoint model ({', '.join(ok)}), not {name}; "
                             f"name one, or none for --task-opt head=heatmap|direct")
        given = self.cfg.task_options.get("head")
        if given and HEADS[given] != name.removesuffix("_small"):
            raise UsageError(f"--task-opt head={given} picks the model when none is named, and {name} "
                             f"is named; drop one of them")

    def loss(self, F, out, targets):
        return points_loss(as_float32(out), targets["keypoints"], self.size)

    def evaluator(self):
        return PointsEvaluator(self.size, self.baseline)

    def decode(self, outputs, meta):
        names = tuple(meta.get("classes") or KEYPOINT_NAMES)
        return keypoints_json(decode_keypoints(outputs, self.size), names)

    def draw(self, image, prediction, path):
        draw_keypoints(image, prediction, path)
