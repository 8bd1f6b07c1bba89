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

from svertka.data.canvas import KEYPOINT_NAMES
from svertka.errors import ShapeError
from svertka.tasks.metrics import keypoint_metrics

__all__ = ["keypoint_targets", "predicted_xy", "soft_argmax", "points_loss", "decode_keypoints",
           "mean_keypoints", "PointsEvaluator", "keypoints_json", "keypoints_picture", "draw_keypoints",
           "KEYPOINT_NAMES"]

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
