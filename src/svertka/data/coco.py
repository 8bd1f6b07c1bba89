"""The COCO layout: write canvases as PNG files plus ``annotations.json``, and
read COCO ground truth and result files back (checked, with one-line errors).

Layout written by :func:`export_canvases` (and ``svertka data export canvas``)::

    DIR/annotations.json    images, annotations, categories (+ info)
    DIR/images/000001.png   one grey PNG per canvas; image ids count from 1

Annotations follow the COCO object-detection format: ``bbox`` is [x, y, w, h]
in pixels (the tight box of the item's visible pixels), ``area`` the number of
visible pixels (as COCO's area is the mask's), ``iscrowd`` 0, ``segmentation``
the visible mask as uncompressed RLE, ``category_id`` = class index + 1. With
keypoints, each annotation carries the five points of ``KEYPOINT_NAMES`` as
[x, y, 2, ...] (2: labelled and visible) and the categories name them.
Each image entry also says whether its items ``touching``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from svertka.data.canvas import KEYPOINT_NAMES, Canvases
from svertka.errors import DataError, UsageError
from svertka.fileio import atomic_write_text

__all__ = ["canvases_to_coco", "check_export_dir", "export_canvases", "coco_results", "CocoSet",
           "CocoResults", "read_coco", "coco_from_dict", "read_coco_results", "mask_to_rle"]


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a boolean H x W mask: run lengths over the
    column-major pixels, starting with a run of zeros (possibly empty)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


def canvases_to_coco(canvases: Canvases, keypoints: bool = False, info: dict | None = None,
                     first_image: int = 1, first_annotation: int = 1) -> dict:
    """The COCO dict of ``canvases``: image ids from ``first_image`` (files
    ``NNNNNN.png``), annotation ids from ``first_annotation``."""
    n, h, w = canvases.masks.shape
    images, anns = [], []
    for i in range(n):
        image_id = first_image + i
        images.append({"id": image_id, "file_name": f"{image_id:06d}.png", "width": w, "height": h,
                       "touching": bool(canvases.touching[i])})
        for k in range(int(canvases.counts[i])):
            x0, y0, x1, y1 = (float(v) for v in canvases.boxes[i, k])
            ann = {"id": first_annotation + len(anns), "image_id": image_id,
                   "category_id": int(canvases.labels[i, k]) + 1,
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(canvases.areas[i, k]), "iscrowd": 0,
                   "segmentation": mask_to_rle(canvases.masks[i] == k + 1)}
            if keypoints:
                pts = canvases.keypoints[i, k]
                ann["keypoints"] = [v for x, y in pts.tolist() for v in (x, y, 2)]
                ann["num_keypoints"] = len(pts)
            anns.append(ann)
    categories = []
    for c, name in enumerate(canvases.classes):
        cat = {"id": c + 1, "name": name, "supercategory": canvases.dataset.split("/")[0] or "item"}
        if keypoints:
            cat["keypoints"] = list(KEYPOINT_NAMES)
            cat["skeleton"] = []
        categories.append(cat)
    return {"info": info or {}, "images": images, "annotations": anns, "categories": categories}


def check_export_dir(out) -> Path:
    """``out`` as a Path if it is new or an empty folder (and Pillow is there), else a UsageError."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise UsageError("writing PNG canvases needs Pillow: pip install 'svertka[images]'") from None
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder; pass a new --out folder")
    return out


def export_canvases(canvases, out, keypoints: bool = False, info: dict | None = None) -> Path:
    """Write ``out/images/*.png`` and ``out/annotations.json``; ``out`` must be new or empty.

    ``canvases`` is one Canvases or an iterable of them (written one part at a
    time, so a large export never holds all its canvases in memory)."""
    from PIL import Image

    out = check_export_dir(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    coco = None
    for part in [canvases] if isinstance(canvases, Canvases) else canvases:
        if coco is None:
            coco = canvases_to_coco(part, keypoints, info)
        else:
            more = canvases_to_coco(part, keypoints, first_image=len(coco["images"]) + 1,
                                    first_annotation=len(coco["annotations"]) + 1)
            coco["images"] += more["images"]
            coco["annotations"] += more["annotations"]
        for entry, image in zip(coco["images"][-len(part):], part.images):
            Image.fromarray(image[..., 0], mode="L").save(out / "images" / entry["file_name"])
    atomic_write_text(out / "annotations.json", json.dumps(coco))
    return out / "annotations.json"


def coco_results(image_ids, boxes_xyxy, scores, labels) -> list[dict]:
    """Detections as a COCO results list: {image_id, category_id (label + 1, as
    exported), bbox [x, y, w, h], score}; any COCO tool scores it against an export."""
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    return [{"image_id": int(i), "category_id": int(c) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
             "score": float(s)}
            for i, (x0, y0, x1, y1), s, c in zip(np.asarray(image_ids).tolist(), boxes.tolist(),
                                                  np.asarray(scores).tolist(), np.asarray(labels).tolist())]


# ------------------------------------------------------------------- reading


@dataclass
class CocoSet:
    """COCO ground truth as arrays (one row per annotation); boxes are xywh as in the file."""

    image_ids: np.ndarray  # int64, every image in the file, sorted
    category_ids: np.ndarray  # int64, sorted
    category_names: dict[int, str]
    ann_image_ids: np.ndarray  # int64 A
    ann_category_ids: np.ndarray  # int64 A
    ann_boxes: np.ndarray  # float64 A x 4, xywh
    ann_areas: np.ndarray  # float64 A
    images: list[dict]
    keypoints: np.ndarray | None = None  # float64 A x K x 3 when every annotation has them


@dataclass
class CocoResults:
    """Detections in COCO results format as arrays; boxes xywh."""

    image_ids: np.ndarray
    category_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


def _load_json(path, what: str):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        message = f"{path}: not a readable JSON {what} file ({type(exc).__name__}: {exc})"
        raise DataError(message.split("\n")[0]) from None


def _box(path, where: str, value) -> list[float]:
    if (not isinstance(value, list) or len(value) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                       for v in value)):
        raise DataError(f"{path}: {where} has bbox {value!r}; "
                        f"a bbox is [x, y, width, height], four finite numbers")
    if value[2] < 0 or value[3] < 0:
        raise DataError(f"{path}: {where} has a negative width or height in bbox {value!r}")
    return [float(v) for v in value]


def _int_field(path, where, obj, key) -> int:
    v = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(v, int) or isinstance(v, bool):
        raise DataError(f"{path}: {where} needs an integer {key!r}, got {v!r}")
    return v


def read_coco(path) -> CocoSet:
    """Read and check a COCO ground-truth file (object detection; iscrowd 0 only)."""
    return coco_from_dict(_load_json(path, "COCO annotations"), path)


def coco_from_dict(d, path="COCO data") -> CocoSet:
    """Check a COCO ground-truth dict (as :func:`canvases_to_coco` makes) and turn it into arrays."""
    if not isinstance(d, dict):
        raise DataError(f"{path}: a COCO file is a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(d.get(key), list):
            raise DataError(f"{path}: missing or malformed {key!r} list; is this a COCO annotations file?")
    images = d["images"]
    image_ids = [_int_field(path, f"images[{i}]", im, "id") for i, im in enumerate(images)]
    if len(set(image_ids)) != len(image_ids):
        raise DataError(f"{path}: image ids repeat; each image needs its own id")
    names = {}
    for i, cat in enumerate(d["categories"]):
        cid = _int_field(path, f"categories[{i}]", cat, "id")
        if cid in names:
            raise DataError(f"{path}: category id {cid} appears twice")
        names[cid] = str(cat.get("name", cid))
    known_images = set(image_ids)
    rows, boxes, areas, kps = [], [], [], []
    for i, ann in enumerate(d["annotations"]):
        where = f"annotations[{i}]"
        image_id = _int_field(path, where, ann, "image_id")
        cat = _int_field(path, where, ann, "category_id")
        if image_id not in known_images:
            raise DataError(f"{path}: {where} refers to image {image_id}, which is not in 'images'")
        if cat not in names:
            raise DataError(f"{path}: {where} has category {cat}, which is not in 'categories'")
        if ann.get("iscrowd", 0) not in (0, False):
            raise DataError(f"{path}: {where} is a crowd region (iscrowd 1); svertka scores only iscrowd 0")
        box = _box(path, where, ann.get("bbox"))
        area = ann.get("area", box[2] * box[3])
        if (not isinstance(area, (int, float)) or isinstance(area, bool)
                or not math.isfinite(area) or area < 0):
            raise DataError(f"{path}: {where} has area {area!r}; it must be a non-negative number")
        rows.append((image_id, cat))
        boxes.append(box)
        areas.append(float(area))
        kp = ann.get("keypoints")
        if kp is not None:
            if (not isinstance(kp, list) or len(kp) % 3
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in kp)):
                raise DataError(f"{path}: {where} has malformed keypoints; "
                                f"COCO writes [x1, y1, v1, x2, y2, v2, ...]")
            kps.append(kp)
    keypoints = None
    if kps and len(kps) == len(rows) and len({len(k) for k in kps}) == 1:
        keypoints = np.asarray(kps, np.float64).reshape(len(kps), -1, 3)
    rows = np.asarray(rows, np.int64).reshape(-1, 2)
    return CocoSet(image_ids=np.sort(np.asarray(image_ids, np.int64)),
                   category_ids=np.sort(np.asarray(list(names), np.int64)),
                   category_names=names, ann_image_ids=rows[:, 0], ann_category_ids=rows[:, 1],
                   ann_boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
                   ann_areas=np.asarray(areas, np.float64),
                   images=images, keypoints=keypoints)


def read_coco_results(path, gt: CocoSet | None = None) -> CocoResults:
    """Read and check a COCO detection results file: a list of
    {image_id, category_id, bbox [x, y, w, h], score}. With ``gt``, every image
    and category must be one of its."""
    d = _load_json(path, "COCO results")
    if not isinstance(d, list):
        raise DataError(f"{path}: COCO results are a JSON list of "
                        f"{{image_id, category_id, bbox, score}} objects")
    images = set(gt.image_ids.tolist()) if gt is not None else None
    cats = set(gt.category_ids.tolist()) if gt is not None else None
    rows, boxes, scores = [], [], []
    for i, r in enumerate(d):
        where = f"result[{i}]"
        image_id, cat = _int_field(path, where, r, "image_id"), _int_field(path, where, r, "category_id")
        if images is not None and image_id not in images:
            raise DataError(f"{path}: {where} is for image {image_id}, which the ground truth does not have")
        if cats is not None and cat not in cats:
            raise DataError(f"{path}: {where} has category {cat}, which the ground truth does not have")
        score = r.get("score")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            raise DataError(f"{path}: {where} needs a finite number 'score', got {score!r}")
        rows.append((image_id, cat))
        boxes.append(_box(path, where, r.get("bbox")))
        scores.append(float(score))
    rows = np.asarray(rows, np.int64).reshape(-1, 2)
    return CocoResults(rows[:, 0], rows[:, 1], np.asarray(boxes, np.float64).reshape(-1, 4),
                       np.asarray(scores, np.float64))
