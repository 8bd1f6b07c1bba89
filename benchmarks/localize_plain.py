"""A localize run on its test canvases and on plain Fashion-MNIST: the box's cost.

Issue 12's goal for localize is "correct localization within 1 point of the
classifier's own top-1 on plain Fashion-MNIST". This scores one trained
localizer (a run of `svertka train --task localize`) twice:

* on the task's test canvases (items at 0.75-2x, anywhere on 64x64): top-1,
  mean IoU and CorLoc (right class and IoU >= 0.5), as `svertka eval` does;
* on plain Fashion-MNIST: each of the 10,000 test images as it is (28x28,
  scale 1), pasted in the middle of a black 64x64 canvas, which is the input
  size the network takes; the true box is the tight box of its pixels above
  the canvases' threshold.

    OPENBLAS_NUM_THREADS=1 python benchmarks/localize_plain.py LOCALIZE_RUN
"""
from __future__ import annotations

import argparse

import numpy as np

from machine import LoadMonitor, write_results
from svertka.data.canvas import ITEM, TASK_PRESETS
from svertka.data.datasets import load_dataset
from svertka.train.evaluate import evaluate_task, load_trained


def plain_canvases(images: np.ndarray, size: int, threshold: int):
    """28x28 items in the middle of size x size black canvases, and their tight xyxy boxes."""
    n, off = len(images), (size - ITEM) // 2
    canvas = np.zeros((n, size, size, 1), np.uint8)
    canvas[:, off:off + ITEM, off:off + ITEM] = images.reshape(n, ITEM, ITEM, 1)
    fg = canvas[..., 0] > threshold
    rows, cols = fg.any(2), fg.any(1)
    first = lambda a: a.argmax(1)  # noqa: E731
    last = lambda a: a.shape[1] - 1 - a[:, ::-1].argmax(1)  # noqa: E731
    boxes = np.stack([first(cols), first(rows), last(cols) + 1, last(rows) + 1], 1).astype(np.float32)
    return canvas, boxes, fg.any((1, 2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="run folder of svertka train --task localize")
    args = ap.parse_args()
    loaded = load_trained(args.run, threads=1)
    if loaded.task.name != "localize":
        raise SystemExit(f"{args.run} is a {loaded.task.name} run, not a localize one")
    preset = TASK_PRESETS["localize"]
    with LoadMonitor() as load:
        on_canvases = evaluate_task(loaded)
        test = load_dataset(loaded.task.cfg.data, split="test")
        images, boxes, seen = plain_canvases(test.images, preset.size, preset.threshold)
        labels = np.asarray(test.labels, np.int64)
        images, boxes, labels = images[seen], boxes[seen], labels[seen]  # all-dark items have no box
        a = loaded.adapter
        a.add_split("plain", images, {"labels": labels, "boxes": boxes})
        ev = loaded.task.evaluator()
        for i in range(0, len(images), 256):
            idx = np.arange(i, min(len(images), i + 256))
            ev.add(a.logits("plain", idx), {"labels": labels[idx], "boxes": boxes[idx]})
        on_plain = ev.result()
    c, p = on_canvases["metrics"], on_plain
    print(f"{loaded.net.name} ({args.run}); other processes {load.other_cores:.2f} cores"
          f"{' CONTENDED' if load.contended else ''}")
    print("| test set | images | top-1 | mean IoU | CorLoc |")
    print("|---|---:|---:|---:|---:|")
    print(f"| the task's test canvases | {on_canvases['n']:,} | {c['top1']:.2%} | {c['mean_iou']:.3f} | "
          f"{c['correct_localization']:.2%} |")
    print(f"| plain Fashion-MNIST test, centred on 64x64 | {len(images):,} | {p['top1']:.2%} | "
          f"{p['mean_iou']:.3f} | {p['correct_localization']:.2%} |")
    print(f"CorLoc on the canvases minus top-1 on plain Fashion-MNIST: "
          f"{100 * (c['correct_localization'] - p['top1']):+.2f} points")
    path = write_results("localize_plain", {"run": args.run, "canvases": c, "n": on_canvases["n"], "plain": p,
                                            "n_plain": len(images), "load": load.as_dict()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
