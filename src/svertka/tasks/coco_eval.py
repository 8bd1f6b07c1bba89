"""COCO box AP, written here: mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP.

It follows pycocotools' COCOeval (iouType "bbox") rule by rule, for area
range "all" and maxDets 100, with every ground truth iscrowd 0 (so nothing is
ignored); tests check it against COCOeval to 1e-6.

1. Per image and category, detections are sorted by score (ties keep their
   input order) and the first 100 kept.
2. IoU uses COCO's arithmetic on [x, y, w, h] boxes (as maskApi's bbIou).
3. Greedy matching per IoU threshold t in 0.50:0.05:0.95: in score order each
   detection takes the still-unmatched ground truth with the highest IoU >= t
   (on equal IoU, the later ground truth).
4. Per category, all its detections over all images are sorted by score
   (stable, images in id order); precision and recall are accumulated, the
   precision envelope made non-increasing, and read at 101 recall points
   0:0.01:1 (the first detection reaching each recall; 0 past the last).
5. AP is the mean of those 101 x 10 precisions; a category without ground
   truth has no AP (NaN) and is left out of the means.

The matching loops over detection *ranks* (at most 100), vectorised over
every (image, category) group and every IoU threshold at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from svertka.errors import ShapeError

__all__ = ["IOU_THRESHOLDS", "RECALL_THRESHOLDS", "DetectionMetrics", "coco_iou", "evaluate_detections",
           "evaluate_coco_files"]

# built exactly as pycocotools builds them, so 0.75 and friends compare equal
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = 100


@dataclass
class DetectionMetrics:
    map: float  # mAP@[.5:.95]
    map50: float
    map75: float
    category_ids: np.ndarray  # K
    per_class: np.ndarray  # K, AP@[.5:.95] per category, NaN without ground truth
    per_class50: np.ndarray  # K, AP@.5
    precision: np.ndarray  # T x R x K, -1 where a category has no ground truth
    recall: np.ndarray  # T x K, -1 likewise
    images: int = 0
    detections: int = 0
    ground_truths: int = 0

    def as_dict(self, names: dict | None = None) -> dict:
        names = names or {}

        def nan(v):
            return None if np.isnan(v) else round(float(v), 6)

        def by_name(values):
            return {names.get(int(c), str(int(c))): nan(v) for c, v in zip(self.category_ids, values)}

        return {"mAP": nan(self.map), "mAP50": nan(self.map50), "mAP75": nan(self.map75),
                "per_class_AP": by_name(self.per_class), "per_class_AP50": by_name(self.per_class50),
                "images": self.images, "detections": self.detections, "ground_truths": self.ground_truths}


def coco_iou(dt: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of xywh boxes, broadcasting, computed as pycocotools' C code does:
    w = min(x+w) - max(x), i = w*h, u = (area_d + area_g) - i."""
    w = np.minimum(dt[..., 0] + dt[..., 2], gt[..., 0] + gt[..., 2]) - np.maximum(dt[..., 0], gt[..., 0])
    h = np.minimum(dt[..., 1] + dt[..., 3], gt[..., 1] + gt[..., 3]) - np.maximum(dt[..., 1], gt[..., 1])
    inter = w * h
    union = dt[..., 2] * dt[..., 3] + gt[..., 2] * gt[..., 3] - inter
    hit = (w > 0) & (h > 0)
    return np.where(hit, inter / np.where(hit, union, 1.0), 0.0)


def _as(a, dtype, shape_tail, what):
    a = np.asarray(a, dtype)
    if a.ndim != 1 + len(shape_tail) or a.shape[1:] != shape_tail:
        raise ShapeError(f"{what} must have shape N{''.join(f' x {s}' for s in shape_tail)}, got {a.shape}")
    return a


def _groups(img, cat, order):
    """Group ids (cat, img) for rows in ``order``; returns keys and each row's group and rank."""
    keys = np.stack([cat[order], img[order]], 1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    # rank within the group, keeping ``order``: position minus the group's first position
    by_group = np.argsort(inverse, kind="stable")
    start = np.searchsorted(inverse[by_group], np.arange(len(uniq)))
    rank = np.empty(len(order), np.int64)
    rank[by_group] = np.arange(len(order)) - start[inverse[by_group]]
    return uniq, inverse, rank


def evaluate_detections(gt_image_ids, gt_category_ids, gt_boxes, dt_image_ids, dt_category_ids, dt_boxes,
                        dt_scores, image_ids=None, category_ids=None,
                        max_dets: int = MAX_DETS) -> DetectionMetrics:
    """COCO box AP of detections against ground truth; boxes are xywh (COCO's own form).

    ``image_ids`` (default: every image named in either) and ``category_ids``
    (default: every category named in either) are the images and categories scored;
    rows outside them are dropped, as COCOeval does with its params.
    """
    gi = _as(gt_image_ids, np.int64, (), "gt image ids")
    gc = _as(gt_category_ids, np.int64, (), "gt categories")
    gb = _as(gt_boxes, np.float64, (4,), "gt boxes")
    di = _as(dt_image_ids, np.int64, (), "detection image ids")
    dc = _as(dt_category_ids, np.int64, (), "detection categories")
    db = _as(dt_boxes, np.float64, (4,), "detection boxes")
    ds = _as(dt_scores, np.float64, (), "detection scores")
    if not (len(gi) == len(gc) == len(gb)) or not (len(di) == len(dc) == len(db) == len(ds)):
        raise ShapeError("ground truth and detection arrays must each have one row per box")
    images = np.unique(np.concatenate([gi, di]) if image_ids is None else np.asarray(image_ids, np.int64))
    cats = np.unique(np.concatenate([gc, dc]) if category_ids is None else np.asarray(category_ids, np.int64))
    keep_g, keep_d = np.isin(gi, images) & np.isin(gc, cats), np.isin(di, images) & np.isin(dc, cats)
    gi, gc, gb = gi[keep_g], gc[keep_g], gb[keep_g]
    di, dc, db, ds = di[keep_d], dc[keep_d], db[keep_d], ds[keep_d]

    # detections: by score within each (category, image), first max_dets of each
    order = np.argsort(-ds, kind="stable")
    dkeys, dgroup, drank = _groups(di, dc, order)
    top = drank < max_dets
    order, dgroup, drank = order[top], dgroup[top], drank[top]
    # ground truth in file order within each (category, image)
    gorder = np.arange(len(gi))
    gkeys, ggroup, grank = _groups(gi, gc, gorder)
    # the ground truth of each detection group, padded: G x gmax boxes
    span = int(max(gi.max(initial=0), di.max(initial=0)) - min(gi.min(initial=0), di.min(initial=0))) + 1
    # (cat, image) -> one int
    gcode, dcode = gkeys[:, 0] * span + gkeys[:, 1], dkeys[:, 0] * span + dkeys[:, 1]
    gt_of = np.full(len(dkeys), -1)  # the ground-truth group of each detection group, -1 if none
    if len(gkeys):
        at = np.minimum(np.searchsorted(gcode, dcode), len(gkeys) - 1)
        gt_of = np.where(gcode[at] == dcode, at, -1)
    n_groups, dmax = len(dkeys), int(drank.max()) + 1 if len(drank) else 0
    gmax = int(grank.max()) + 1 if len(grank) else 0
    gpad = np.zeros((len(gkeys) + 1, max(gmax, 1), 4))  # last row: no ground truth
    gvalid = np.zeros((len(gkeys) + 1, max(gmax, 1)), bool)
    gpad[ggroup, grank] = gb[gorder]
    gvalid[ggroup, grank] = True
    dpad = np.zeros((n_groups, max(dmax, 1), 4))
    dvalid = np.zeros((n_groups, max(dmax, 1)), bool)
    dpad[dgroup, drank] = db[order]
    dvalid[dgroup, drank] = True
    g_boxes, g_ok = gpad[gt_of], gvalid[gt_of]  # gt_of = -1 picks the empty last row
    ious = coco_iou(dpad[:, :, None, :], g_boxes[:, None, :, :])  # groups x dmax x gmax

    t = len(IOU_THRESHOLDS)
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[None, :, None]
    taken = np.zeros((n_groups, t, g_ok.shape[1]), bool)
    matched = np.zeros((n_groups, t, max(dmax, 1)), bool)
    rows = np.arange(n_groups)[:, None]
    for r in range(dmax):  # greedy in score order, every group and threshold at once
        cand = ious[:, r, None, :]  # groups x 1 x gmax
        ok = g_ok[:, None, :] & ~taken & (cand >= thr) & dvalid[:, r, None, None]
        best = ok.shape[2] - 1 - np.argmax(np.where(ok, cand, -1.0)[..., ::-1], axis=2)  # last of equal IoUs
        hit = ok.any(2)
        matched[:, :, r] = hit
        taken[rows, np.arange(t)[None, :], best] |= hit

    # per category: its detections over all images, images in id order, by score (stable)
    r_n = len(RECALL_THRESHOLDS)
    precision = -np.ones((t, r_n, len(cats)))
    recall = -np.ones((t, len(cats)))
    group_cat, group_img = dkeys[:, 0], dkeys[:, 1]
    flat_order = np.lexsort((drank, group_img[dgroup], group_cat[dgroup]))  # cat, image, rank
    f_group, f_rank = dgroup[flat_order], drank[flat_order]
    f_cat, f_score = group_cat[f_group], ds[order][flat_order]
    f_match = matched[f_group, :, f_rank]  # n x T
    n_gt = np.array([(gc == c).sum() for c in cats])
    for k, c in enumerate(cats):
        if n_gt[k] == 0:
            continue
        sel = np.flatnonzero(f_cat == c)
        by_score = sel[np.argsort(-f_score[sel], kind="stable")]
        tps = f_match[by_score].T  # T x nd
        tp = np.cumsum(tps, axis=1, dtype=np.float64)
        fp = np.cumsum(~tps, axis=1, dtype=np.float64)
        nd = tps.shape[1]
        rc = tp / n_gt[k]
        pr = tp / (fp + tp + np.spacing(1))
        recall[:, k] = rc[:, -1] if nd else 0
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # non-increasing envelope
        for ti in range(t):
            idx = np.searchsorted(rc[ti], RECALL_THRESHOLDS, side="left")
            q = np.zeros(r_n)
            inside = idx < nd
            q[inside] = pr[ti, idx[inside]]
            precision[ti, :, k] = q

    def mean(p):
        v = p[p > -1]
        return float(v.mean()) if v.size else float("nan")

    def at(x):
        return np.flatnonzero(IOU_THRESHOLDS == x)

    per_class = np.array([mean(precision[:, :, k]) for k in range(len(cats))])
    per_class50 = np.array([mean(precision[at(0.5), :, k]) for k in range(len(cats))])
    return DetectionMetrics(map=mean(precision), map50=mean(precision[at(0.5)]),
                            map75=mean(precision[at(0.75)]), category_ids=cats, per_class=per_class,
                            per_class50=per_class50, precision=precision,
                            recall=recall, images=len(images), detections=len(order), ground_truths=len(gi))


def evaluate_coco_files(gt_path, results_path) -> tuple[DetectionMetrics, dict]:
    """Score a COCO results file against a COCO ground-truth file; returns the
    metrics and the category names (id -> name)."""
    from svertka.data.coco import read_coco, read_coco_results

    gt = read_coco(gt_path)
    dt = read_coco_results(results_path, gt)
    m = evaluate_detections(gt.ann_image_ids, gt.ann_category_ids, gt.ann_boxes, dt.image_ids,
                            dt.category_ids, dt.boxes, dt.scores, image_ids=gt.image_ids,
                            category_ids=gt.category_ids)
    return m, gt.category_names
