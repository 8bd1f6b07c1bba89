"""Canvas generation: svertka's batched generator vs the per-item Pillow loop.

    OPENBLAS_NUM_THREADS=1 python benchmarks/canvas_speed.py [--n 2048] [--peer-n 512]

For the detect preset (96x96, 1-5 items, scale 0.75-2, IoU <= 0.3) and the
points preset (64x64, one item): canvases/s of CanvasGenerator.generate (all
the ground truth included: boxes, keypoints, masks, touching) and of the
obvious way, one canvas and one item at a time: Pillow's bilinear resize,
rejection sampling of the position item by item, numpy pastes and per-item
ground truth. The ratio is the figure; both run in this process, one after
the other, with the machine's load recorded. BLAS runs one thread (the
generator's resize is GEMMs; a multi-threaded BLAS on a loaded 2-core machine
only spins).

Then the classical detection baseline's boxes (svertka.tasks.baseline) on the
detect canvases: the share of canvases whose boxes equal the ground truth
exactly, for canvases with and without touching items, and canvases/s.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from PIL import Image

from machine import LoadMonitor, write_results
from svertka.data.canvas import ITEM, KEYPOINT_NAMES, TASK_PRESETS, CanvasGenerator
from svertka.tasks.baseline import find_components


def peer_canvases(gen: CanvasGenerator, n: int, seed: int):
    """The per-item loop: same rules as the generator (silhouette IoU cap, top wins,
    min_visible, the same ground truth), one canvas and one item at a time."""
    cfg = gen.config
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        count = int(rng.integers(cfg.min_items, cfg.max_items + 1))
        picks = rng.integers(0, len(gen.items), count)
        while True:  # redraw the canvas until every item fits and stays visible
            canvas = np.zeros((cfg.size, cfg.size), np.uint8)
            owner = np.zeros((cfg.size, cfg.size), np.uint8)
            placed, sil_px, ok = [], [], True
            for j, p in enumerate(picks):
                side = int(round(rng.uniform(*cfg.scale) * ITEM))
                item = np.asarray(Image.fromarray(gen.items[p]).resize((side, side), Image.BILINEAR))
                sil = item > cfg.threshold
                ys, xs = np.nonzero(sil)
                rel = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
                for _ in range(64):
                    top, left = rng.integers(0, cfg.size - side + 1, 2)
                    box = rel + [left, top, left, top]
                    if all(_iou(box, b) <= cfg.max_iou for b in placed):
                        break
                else:
                    ok = False
                    break
                placed.append(box)
                sil_px.append(sil.sum())
                win = np.s_[top:top + side, left:left + side]
                under = np.where(owner[win] > 0, canvas[win], np.maximum(canvas[win], item))
                canvas[win] = np.where(sil, item, under)
                owner[win] = np.where(sil, j + 1, owner[win])
            if ok and all((owner == j + 1).sum() >= cfg.min_visible * s for j, s in enumerate(sil_px)):
                break
        truth = []
        for j in range(count):
            ys, xs = np.nonzero(owner == j + 1)
            w = canvas[ys, xs].astype(float)
            truth.append({"box": [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                          "points": [((xs + .5) * w).sum() / w.sum(), ((ys + .5) * w).sum() / w.sum(),
                                     xs[ys == ys.min()].mean(), xs[ys == ys.max()].mean(),
                                     ys[xs == xs.min()].mean(), ys[xs == xs.max()].mean()]})
        out.append((canvas, owner, truth))
    return out


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def baseline_boxes(c) -> dict:
    """Share of canvases where connected components give exactly the true boxes."""
    t = time.perf_counter()
    comps = find_components(c.images, threshold=c.config.threshold)
    speed = len(c) / (time.perf_counter() - t)
    exact = np.zeros(len(c), bool)
    for i in range(len(c)):
        found = sorted(map(tuple, comps.boxes[comps.image == i].tolist()))
        exact[i] = found == sorted(map(tuple, c.boxes[i, :c.counts[i]].tolist()))
    out = {"canvases": len(c), "separated": int((~c.touching).sum()), "touching": int(c.touching.sum()),
           "exact_separated": float(exact[~c.touching].mean()),
           "exact_touching": float(exact[c.touching].mean()),
           "canvases_per_s": speed}
    print(f"baseline boxes (connected components): exact on {100 * out['exact_separated']:.1f}% of "
          f"{out['separated']} canvases without touching items, {100 * out['exact_touching']:.1f}% of "
          f"{out['touching']} with; {speed:.0f} canvases/s")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2048, help="canvases from svertka's generator per preset")
    ap.add_argument("--peer-n", type=int, default=512, help="canvases from the per-item loop per preset")
    ap.add_argument("--data", default="auto", help="item dataset (auto: full Fashion-MNIST when found)")
    args = ap.parse_args()
    rows = []
    with LoadMonitor() as load:
        for task in ("detect", "points"):
            gen = CanvasGenerator.from_dataset(args.data, split="test", config=TASK_PRESETS[task])
            gen.generate(16, seed=99)  # warm-up
            t = time.perf_counter()
            c = gen.generate(args.n, seed=1)
            ours = args.n / (time.perf_counter() - t)
            t = time.perf_counter()
            peer_canvases(gen, args.peer_n, seed=1)
            peer = args.peer_n / (time.perf_counter() - t)
            rows.append({"task": task, "items": gen.name, "size": gen.config.size,
                         "items_per_canvas": float(c.counts.mean()), "touching": float(c.touching.mean()),
                         "svertka_canvases_per_s": ours, "per_item_loop_canvases_per_s": peer,
                         "ratio": ours / peer})
            print(f"{task:7s} {gen.config.size}x{gen.config.size} ({gen.name}, "
                  f"{c.counts.mean():.2f} items/canvas, "
                  f"{100 * c.touching.mean():.0f}% touching): svertka {ours:8.0f} canvases/s, "
                  f"per-item Pillow loop {peer:6.0f} canvases/s, x{ours / peer:.1f}", flush=True)
        detect = CanvasGenerator.from_dataset(args.data, split="test", config=TASK_PRESETS["detect"])
        baseline = baseline_boxes(detect.generate(args.n, seed=2))
    flag = " CONTENDED" if load.contended else ""
    print(f"other processes used {load.other_cores:.2f} cores during the run{flag}")
    path = write_results("canvas_speed", {"rows": rows, "baseline": baseline, "load": load.as_dict(),
                                          "keypoints": list(KEYPOINT_NAMES),
                                          "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
