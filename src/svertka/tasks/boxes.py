"""Box geometry: formats, areas, IoU and GIoU.

Boxes are ``(..., 4)`` arrays. The working format is ``xyxy``: (x0, y0, x1, y1)
in continuous pixel coordinates, where pixel column ``c`` spans [c, c + 1), so
a box around columns 3..7 is x0 = 3, x1 = 8. COCO writes ``xywh`` (x0, y0,
width, height); centre-size is ``cxcywh``.

The elementwise functions (``iou``, ``giou``) broadcast like arithmetic and
take NumPy arrays or torch tensors alike (only slicing, arithmetic, ``clip``
and the array module's ``maximum``/``minimum``), so a GIoU loss can use them
on torch tensors with autograd.
"""

from __future__ import annotations

import numpy as np

__all__ = ["xyxy_to_xywh", "xywh_to_xyxy", "xyxy_to_cxcywh", "cxcywh_to_xyxy", "box_area",
           "iou", "giou", "box_iou", "generalized_box_iou"]


def _xp(x):
    """The array module of ``x``: torch for tensors, else NumPy."""
    if type(x).__module__.startswith("torch"):
        import torch
        return torch
    return np


def _stack(parts, like):
    xp = _xp(like)
    return xp.stack(parts, -1) if xp is not np else np.stack(parts, axis=-1)


def xyxy_to_xywh(b):
    return _stack([b[..., 0], b[..., 1], b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], b)


def xywh_to_xyxy(b):
    return _stack([b[..., 0], b[..., 1], b[..., 0] + b[..., 2], b[..., 1] + b[..., 3]], b)


def xyxy_to_cxcywh(b):
    return _stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2,
                   b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], b)


def cxcywh_to_xyxy(b):
    return _stack([b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2,
                   b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2], b)


def box_area(b):
    """Area of xyxy boxes; a box with x1 < x0 or y1 < y0 has area 0."""
    return (b[..., 2] - b[..., 0]).clip(min=0) * (b[..., 3] - b[..., 1]).clip(min=0)


def _inter_union(a, b):
    xp = _xp(a)
    w = (xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0])).clip(min=0)
    h = (xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1])).clip(min=0)
    inter = w * h
    return inter, box_area(a) + box_area(b) - inter


def iou(a, b, eps: float = 1e-12):
    """Elementwise IoU of xyxy boxes (broadcasting); two empty boxes give 0."""
    inter, union = _inter_union(a, b)
    return inter / (union + eps)


def giou(a, b, eps: float = 1e-12):
    """Elementwise generalised IoU (Rezatofighi et al. 2019): IoU - (hull - union) / hull,
    in [-1, 1]; 1 - giou is the GIoU loss, which has a gradient even for disjoint boxes."""
    xp = _xp(a)
    inter, union = _inter_union(a, b)
    hull = ((xp.maximum(a[..., 2], b[..., 2]) - xp.minimum(a[..., 0], b[..., 0])).clip(min=0)
            * (xp.maximum(a[..., 3], b[..., 3]) - xp.minimum(a[..., 1], b[..., 1])).clip(min=0))
    return inter / (union + eps) - (hull - union) / (hull + eps)


def box_iou(a, b):
    """Pairwise IoU: (N, 4) x (M, 4) -> (N, M)."""
    return iou(a[:, None, :], b[None, :, :])


def generalized_box_iou(a, b):
    """Pairwise GIoU: (N, 4) x (M, 4) -> (N, M)."""
    return giou(a[:, None, :], b[None, :, :])
