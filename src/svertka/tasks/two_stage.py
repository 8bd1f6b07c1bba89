"""A second stage for the one-stage detector, as in R-CNN: keep its boxes, re-class them.

The CenterNet detector (:mod:`svertka.tasks.detect`) places its boxes well but
confuses the upper-body garments. Here its decoded detections are

1. merged across classes (:func:`merge_classes`): NMS over all classes at IoU 0.7,
   one box per item, remembering per class the best score of the peaks merged into it
   (the detector's own class "votes");
2. cropped from the canvas as they are and classed by a crop classifier (a run of
   `svertka train --task crops`, :mod:`svertka.tasks.crops`);
3. scored once per class (:func:`rescore`): the box's detector score times the
   fused class probability (:func:`fuse`), the renormalised geometric mean of the
   classifier's probability and the detector's votes (floored and normalised):
   two classifiers that err differently, combined.

The boxes are the detector's, unchanged; only the classes and scores change.
"""
from __future__ import annotations

import copy

import numpy as np

from .baseline import Detections, crop_boxes
from .boxes import box_iou
from .nms import nms

__all__ = ["MERGE_IOU", "VOTE_FLOOR", "merge_classes", "fuse", "top_per_image", "classed", "rescore",
           "rescored_evaluator"]

MERGE_IOU = 0.7  # boxes of any class overlapping above this are one item
VOTE_FLOOR = 0.01  # the detection evaluator's score floor: a class the detector did not name keeps a little


def merge_classes(image, boxes, scores, labels, num_classes: int, iou: float = MERGE_IOU):
    """Per image, NMS over all classes: one box per item (that of its best-scoring peak).

    Returns the kept indices (grouped by image, best first within each) and, per kept box,
    the detector's score for each class: the best score of that class's boxes that overlap
    the kept one with IoU above ``iou`` (0 where none does)."""
    image, labels = np.asarray(image), np.asarray(labels, np.int64)
    boxes, scores = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64)
    keep, votes = [], []
    order = np.argsort(image, kind="stable")
    starts = np.flatnonzero(np.r_[True, image[order][1:] != image[order][:-1]]) if len(order) else []
    for lo, hi in zip(starts, np.r_[starts[1:], len(order)]):
        idx = order[lo:hi]
        kept = idx[nms(boxes[idx], scores[idx], iou)]
        near = box_iou(boxes[kept], boxes[idx]) > iou  # kept x all boxes of the image
        of_class = labels[idx][None, :] == np.arange(num_classes)[:, None]  # classes x all boxes
        v = np.where(near[:, None, :] & of_class[None], scores[idx], 0.0).max(2)
        keep.append(kept)
        votes.append(v)
    if not keep:
        return np.zeros(0, np.int64), np.zeros((0, num_classes))
    return np.concatenate(keep), np.concatenate(votes)


def fuse(probs: np.ndarray, votes: np.ndarray, floor: float = VOTE_FLOOR) -> np.ndarray:
    """Per box, the classifier's probabilities ``probs`` (n x C) and the detector's class
    votes (n x C scores, floored at ``floor`` and normalised) combined: the geometric mean,
    renormalised."""
    own = np.maximum(np.asarray(votes, np.float64), floor)
    own /= own.sum(1, keepdims=True)
    fused = np.sqrt(np.asarray(probs, np.float64) * own)
    return fused / np.maximum(fused.sum(1, keepdims=True), np.finfo(np.float64).tiny)


def top_per_image(image: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores of each image, grouped by image, best first."""
    order = np.lexsort((-np.asarray(scores), np.asarray(image)))
    img = np.asarray(image)[order]
    first = np.r_[0, np.flatnonzero(img[1:] != img[:-1]) + 1] if len(img) else np.zeros(0, np.int64)
    rank = np.arange(len(img)) - np.repeat(first, np.diff(np.r_[first, len(img)]))
    return order[rank < k]


def classed(det: Detections, canvases: np.ndarray, classify, num_classes: int, iou: float = MERGE_IOU,
            floor: float = VOTE_FLOOR, fused: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The detections ``det`` (``det.image`` indexes ``canvases``, uint8 N x H x W (x 1))
    merged across classes, each kept box cropped (28 x 28) and classed by ``classify``
    (uint8 n x 28 x 28 x 1 crops -> n x C probabilities). Returns the kept indices into
    ``det`` and their class probabilities (n x C): :func:`fuse`d with the detector's votes,
    or the classifier's alone when ``fused`` is False."""
    keep, votes = merge_classes(det.image, det.boxes, det.scores, det.labels, num_classes, iou)
    if not len(keep):
        return keep, votes
    boxes = np.asarray(det.boxes).reshape(-1, 4)[keep]
    probs = np.asarray(classify(crop_boxes(canvases, np.asarray(det.image)[keep], boxes)), np.float64)
    if probs.shape != (len(keep), num_classes):
        raise ValueError(f"the second stage gave {probs.shape} probabilities for {len(keep)} boxes "
                         f"of {num_classes} classes")
    return keep, (fuse(probs, votes, floor) if fused else probs)


def rescore(det: Detections, canvases: np.ndarray, classify, num_classes: int, top_k: int = 100,
            **options) -> Detections:
    """The detections ``det`` re-classed by :func:`classed` (``options``: its iou, floor,
    fused), each kept box listed once per class with score = detector score x probability;
    the ``top_k`` best per canvas (COCO's maxDets), grouped by canvas, best first."""
    keep, p = classed(det, canvases, classify, num_classes, **options)
    k = num_classes
    image, scores = np.asarray(det.image)[keep], np.asarray(det.scores, np.float64)[keep]
    boxes = np.asarray(det.boxes, np.float32).reshape(-1, 4)[keep]
    every = Detections(np.repeat(image, k), np.repeat(boxes, k, 0), (scores[:, None] * p).reshape(-1),
                       np.tile(np.arange(k), len(keep)))
    top = top_per_image(every.image, every.scores, top_k)
    return Detections(every.image[top], every.boxes[top], every.scores[top], every.labels[top])


def rescored_evaluator(ev, canvases: np.ndarray, classify, **options):
    """A copy of a :class:`svertka.tasks.detect.DetectionEvaluator` that has seen the test
    ``canvases`` (in order), with its detections re-scored by :func:`rescore`: its
    ``result()`` is the two-stage detector's, and `--coco-results` writes them."""
    _, (ids, labels, boxes, scores) = ev.arrays()
    det = rescore(Detections(ids.astype(np.int64) - 1, boxes.reshape(-1, 4), scores, labels.astype(np.int64)),
                  canvases, classify, ev.num_classes, floor=ev.min_score, top_k=ev.top_k, **options)
    out = copy.copy(ev)
    out.dt = [(det.image + 1, det.labels, det.boxes, det.scores)]
    return out
