"""Score segmentation runs and the connected-components baseline on the same test
canvases, and draw the grid picture (image, truth, predictions).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/eval_segment.py runs/seg-unet runs/seg-fcn \\
        --classifier runs/lenet5-fashion-mnist-... --n 2000 --json seg.json --grid docs/segment-grid.png

The test canvases are canvases 0..n-1 of seed 0 drawn from the test items (as
scripts/train_segment.py draws them). The baseline's classifier is any
classification run on 28x28 Fashion-MNIST (``--classifier``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from svertka.data.canvas import CanvasGenerator
from svertka.tasks.segment import (
    SEG_COLOURS,
    SEGMENT_CANVAS,
    ConfusionEvaluator,
    baseline_segment,
    pixel_labels,
    segment_classes,
)
from svertka.train.evaluate import load_trained


def scores_of(loaded, images: np.ndarray, batch: int = 128) -> np.ndarray:
    """The run's outputs for uint8 N x H x W x C images (float32, the run's normalisation)."""
    outs = []
    mean = np.asarray(loaded.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(loaded.std, np.float32).reshape(1, -1, 1, 1)
    for lo in range(0, len(images), batch):
        x = images[lo:lo + batch].transpose(0, 3, 1, 2).astype(np.float32) / 255
        outs.append(loaded.adapter.logits_of(np.ascontiguousarray((x - mean) / std)))
    return np.concatenate(outs)


def draw_grid(path, images, truth, preds: dict, classes, rows: int = 6) -> None:
    from matplotlib.patches import Patch

    from svertka.viz.figure import pyplot, save_as

    plt = pyplot()
    colours = SEG_COLOURS
    cols = 2 + len(preds)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.6))
    for r in range(rows):
        panels = [("canvas", np.repeat(images[r], 3, -1)), ("truth", colours[truth[r]])]
        panels += [(name, colours[p[r]]) for name, p in preds.items()]
        for c, (title, pic) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(pic, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title)
    handles = [Patch(color=colours[i] / 255, label=name) for i, name in enumerate(classes) if i]
    fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_as(fig, Path(path), Path(path).suffix.lstrip("."))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", help="segmentation run folders")
    p.add_argument("--classifier", required=True, help="a Fashion-MNIST classification run for the baseline")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    p.add_argument("--grid", help="PNG of the first canvases: image, truth, each prediction")
    a = p.parse_args(argv)

    gen = CanvasGenerator.from_dataset("auto", "test", SEGMENT_CANVAS)
    test = gen.generate(a.n, seed=0)
    classes = segment_classes(gen.classes)
    truth = pixel_labels(test)
    results, preds = {}, {}

    def record(name, pred, seconds):
        ev = ConfusionEvaluator(len(classes), classes)
        ev.add(pred, {"mask": truth})
        results[name] = {**ev.result(), "seconds": round(seconds, 2)}
        # touching items make one component: the baseline's weak spot
        for part, rows in (("separated", ~test.touching), ("touching", test.touching)):
            ev = ConfusionEvaluator(len(classes), classes)
            ev.add(pred[rows], {"mask": truth[rows]})
            results[name][f"miou_{part}"] = ev.result()["miou"]
        preds[name] = pred

    for run in a.runs:
        t = time.perf_counter()
        loaded = load_trained(run, threads=a.threads)
        pred = scores_of(loaded, test.images).argmax(1).astype(np.uint8)
        record(loaded.net.name, pred, time.perf_counter() - t)
    t = time.perf_counter()
    clf = load_trained(a.classifier, threads=a.threads)
    record("baseline", baseline_segment(test.images, lambda crops: scores_of(clf, crops)),
           time.perf_counter() - t)
    results["_about"] = {"canvases": a.n, "items": gen.name, "touching": float(test.touching.mean()),
                         "classifier": str(a.classifier)}

    names = [k for k in results if not k.startswith("_")]
    print(f"{a.n} test canvases ({gen.name}), {test.touching.mean():.0%} with touching items")
    print(f"{'':16}" + "".join(f"{n:>10}" for n in names))
    for key in ["miou", "miou_separated", "miou_touching", "pixel_acc"] + [f"iou_{c}" for c in classes]:
        print(f"{key[:16]:16}" + "".join(f"{results[n][key]:10.4f}" for n in names))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    if a.grid:
        draw_grid(a.grid, test.images, truth, preds, classes)


if __name__ == "__main__":
    main()
