"""Greedy non-maximum suppression, per class.

Boxes are sorted by score (highest first; equal scores keep their input
order); each kept box removes every later box whose IoU with it is above the
threshold. The IoU matrix is computed once; the loop only reads its rows.
"""

from __future__ import annotations

import numpy as np

from svertka.errors import ShapeError
from svertka.tasks.boxes import box_iou

__all__ = ["nms", "batched_nms"]


def _check(boxes, scores, classes=None):
    boxes, scores = np.asarray(boxes, np.float64), np.asarray(scores, np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (len(boxes),):
        raise ShapeError(f"nms needs N x 4 boxes and N scores, got {boxes.shape} and {scores.shape}")
    if classes is not None and np.shape(classes) != (len(boxes),):
        raise ShapeError(f"nms needs one class per box, got {np.shape(classes)} for {len(boxes)} boxes")
    return boxes, scores


def nms(boxes, scores, iou_threshold: float = 0.5, classes=None) -> np.ndarray:
    """Indices of the kept xyxy boxes, by decreasing score. With ``classes``,
    only boxes of the same class suppress each other."""
    boxes, scores = _check(boxes, scores, classes)
    order = np.argsort(-scores, kind="stable")
    overlap = box_iou(boxes[order], boxes[order]) > iou_threshold
    if classes is not None:
        cls = np.asarray(classes)[order]
        overlap &= cls[:, None] == cls[None, :]
    removed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        removed |= overlap[i]
    return order[np.asarray(keep, np.intp)]


def batched_nms(boxes, scores, classes, iou_threshold: float = 0.5) -> np.ndarray:
    """NMS within each class (torchvision's name for it): ``nms`` with ``classes``."""
    return nms(boxes, scores, iou_threshold, classes)
