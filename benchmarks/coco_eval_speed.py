"""COCO box AP: svertka.tasks.coco_eval against pycocotools' COCOeval, same input.

    OPENBLAS_NUM_THREADS=1 python benchmarks/coco_eval_speed.py [--images 1000] [--per-image 30]

Ground truth: detect canvases (96x96, 1-5 items). Predictions: every true box
jittered by about a pixel, plus ``--per-image`` random boxes of random classes
per image, random scores. Prints both mAPs (they must agree to 1e-6) and the
time of each, the ratio being the figure.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from machine import LoadMonitor, write_results
from svertka.data.canvas import TASK_PRESETS, CanvasGenerator
from svertka.data.coco import canvases_to_coco, coco_from_dict
from svertka.tasks.coco_eval import evaluate_detections


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--per-image", type=int, default=30, help="random false positives per image")
    args = ap.parse_args()
    c = CanvasGenerator.from_dataset("auto", split="test", config=TASK_PRESETS["detect"]).generate(
        args.images, seed=0)
    gt = canvases_to_coco(c)
    rng = np.random.default_rng(0)
    res = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        res.append({"image_id": a["image_id"], "category_id": a["category_id"],
                    "bbox": [x + rng.normal(), y + rng.normal(), w, h], "score": float(rng.random())})
    for im in range(1, args.images + 1):
        xy, wh = rng.uniform(0, 80, (args.per_image, 2)), rng.uniform(5, 50, (args.per_image, 2))
        res += [{"image_id": im, "category_id": int(rng.integers(1, 11)), "bbox": [*p, *s],
                 "score": float(rng.random())}
                for p, s in zip(xy.tolist(), wh.tolist())]
    g = coco_from_dict(gt)
    r = np.array([[x["image_id"], x["category_id"]] for x in res])
    with LoadMonitor() as load:
        t = time.perf_counter()
        m = evaluate_detections(g.ann_image_ids, g.ann_category_ids, g.ann_boxes, r[:, 0], r[:, 1],
                                np.array([x["bbox"] for x in res]), np.array([x["score"] for x in res]),
                                image_ids=g.image_ids, category_ids=g.category_ids)
        ours = time.perf_counter() - t
        with contextlib.redirect_stdout(io.StringIO()):
            t = time.perf_counter()
            cg = COCO()
            cg.dataset = gt
            cg.createIndex()
            e = COCOeval(cg, cg.loadRes(res), "bbox")
            e.evaluate()
            e.accumulate()
            e.summarize()
            ref = time.perf_counter() - t
    flag = " CONTENDED" if load.contended else ""
    print(f"{args.images} images, {len(res)} detections: svertka {ours:.2f} s, pycocotools {ref:.2f} s, "
          f"x{ref / ours:.1f}; mAP {m.map:.6f} vs {e.stats[0]:.6f}, mAP@.5 {m.map50:.6f} vs {e.stats[1]:.6f}")
    print(f"other processes used {load.other_cores:.2f} cores during the run{flag}")
    path = write_results("coco_eval_speed", {"images": args.images, "detections": len(res), "svertka_s": ours,
                                             "pycocotools_s": ref, "ratio": ref / ours,
                                             "map": [m.map, e.stats[0]], "map50": [m.map50, e.stats[1]],
                                             "load": load.as_dict()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
