"""Scores of the point and localisation tasks.

* Points: the Euclidean error in pixels of each predicted keypoint, its mean,
  and PCK@t, the fraction of keypoints within t pixels (distance <= t).
* Localisation (one item per image, as the ImageNet localisation task): top-1
  accuracy of the class, mean IoU of the predicted box with the true one, and
  "correct localisation", the fraction with the right class AND IoU >= 0.5.
"""

from __future__ import annotations

import numpy as np

from svertka.errors import ShapeError
from svertka.tasks.boxes import iou

__all__ = ["keypoint_errors", "keypoint_metrics", "localization_metrics"]


def keypoint_errors(pred, true) -> np.ndarray:
    """Distances in pixels between predicted and true (..., K, 2) keypoints: (..., K)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.ndim < 2 or pred.shape[-1] != 2:
        raise ShapeError(f"keypoints must be (..., K, 2) arrays of one shape, "
                         f"got {pred.shape} and {true.shape}")
    return np.sqrt(((pred - true) ** 2).sum(-1))


def keypoint_metrics(pred, true, thresholds=(2, 4)) -> dict:
    """Mean pixel error, PCK at each threshold (in pixels), and the mean error of each
    keypoint (the last axis but one of the inputs)."""
    err = keypoint_errors(pred, true)
    out = {"mean_px_error": float(err.mean())}
    for t in thresholds:
        out[f"pck@{t:g}px"] = float((err <= t).mean())
    out["per_keypoint_px_error"] = err.reshape(-1, err.shape[-1]).mean(0).tolist()
    return out


def localization_metrics(pred_labels, pred_boxes, true_labels, true_boxes,
                         iou_threshold: float = 0.5) -> dict:
    """top-1, mean IoU and correct localisation (right class and IoU >= ``iou_threshold``)
    of one xyxy box and class per image."""
    pl, tl = np.asarray(pred_labels), np.asarray(true_labels)
    pb, tb = np.asarray(pred_boxes, np.float64), np.asarray(true_boxes, np.float64)
    if pl.shape != tl.shape or pl.ndim != 1 or pb.shape != tb.shape or pb.shape != (len(pl), 4):
        raise ShapeError(f"localisation needs N labels and N x 4 boxes, predicted and true alike: got "
                         f"{pl.shape}/{tl.shape} labels and {pb.shape}/{tb.shape} boxes")
    overlap = iou(pb, tb)
    right = pl == tl
    return {"top1": float(right.mean()), "mean_iou": float(overlap.mean()),
            "correct_localization": float((right & (overlap >= iou_threshold)).mean())}
