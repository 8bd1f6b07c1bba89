"""How far a detector or segmenter can get when only the class is left to find.

Every item of the detection / segmentation test canvases gets its **true** box
and its **true** pixels, and a Fashion-MNIST classifier run names it, two ways:

* ``plain``: the classifier sees the item's own 28x28 test image, as in plain
  Fashion-MNIST (no canvas, no rescaling, no occlusion);
* ``canvas``: it sees the item as it lies on the canvas: its visible pixels
  only (from the true mask), cropped and resampled to 28x28 the way the
  classical baseline crops a component (``crop_components``).

``--canvas-train N`` adds a third classifier: the zoo's ``lenet5`` trained here
(torch, Adam) on the ``canvas`` view of the items of N **training** canvases
(training items, stream seed 1, the detect task's training seed), i.e. a
classifier that has seen occluded and rescaled items, scored on the test
canvases' ``canvas`` view.

Detection is scored twice per way: ``hard`` (one box per item, the top class,
scored by its probability) and ``soft`` (one box per item and class, scored by
that class's probability, as a detector with per-class heatmaps answers).
Segmentation colours each item's true pixels with the top class.

Nothing here is learnt from the canvases: these are the scores a perfect
localiser would reach with that classifier, i.e. the ceiling the class alone
puts on mAP and mIoU. The issue's goals (mAP@.5 >= 0.90, mAP >= 0.70,
mIoU >= 0.85) are read against them in benchmarks/README.md.

    OPENBLAS_NUM_THREADS=1 python benchmarks/task_ceilings.py CLASSIFIER_RUN [...] [--n 5000] [--n-seg 2000]
"""
from __future__ import annotations

import argparse

import numpy as np

from detect_map import classifier
from machine import LoadMonitor, write_results
from svertka.data.canvas import TASK_PRESETS, CanvasGenerator
from svertka.data.datasets import load_dataset
from svertka.tasks.baseline import Components, crop_components
from svertka.tasks.boxes import xyxy_to_xywh
from svertka.tasks.coco_eval import evaluate_detections
from svertka.tasks.segment import (
    SEGMENT_CANVAS,
    confusion_matrix,
    pixel_labels,
    segment_classes,
    segment_scores,
)


def true_components(canvases) -> Components:
    """The canvases' items as components: their true masks, boxes and pixel counts."""
    live = canvases.labels >= 0
    image, slot = np.nonzero(live)
    return Components(image, slot + 1, canvases.boxes[live], canvases.areas[live],
                      canvases.masks.astype(np.int64))


def detection_scores(canvases, probs, soft: bool, parts: dict) -> dict:
    live = canvases.labels >= 0
    image, _ = np.nonzero(live)
    gi, gc, gb = image + 1, canvases.labels[live], xyxy_to_xywh(canvases.boxes[live].astype(np.float64))
    k = probs.shape[1]
    if soft:  # every class, each with its own probability
        di, db = np.repeat(gi, k), np.repeat(gb, k, 0)
        dc, ds = np.tile(np.arange(k), len(gi)), probs.reshape(-1)
    else:
        di, db, dc, ds = gi, gb, probs.argmax(1), probs.max(1)
    out = {}
    for part, sel in parts.items():
        m = evaluate_detections(gi, gc, gb, di, dc, db, ds, image_ids=np.nonzero(sel)[0] + 1,
                                category_ids=np.arange(k))
        out[part] = {"map": m.map, "map50": m.map50, "map75": m.map75,
                     "per_class_ap50": [float(v) for v in m.per_class50]}
    return out


def segmentation_scores(canvases, probs, classes) -> dict:
    """Each item's true pixels take its top class; the item on top wins, as in the truth."""
    guessed = canvases.subset(slice(None))
    guessed.labels = canvases.labels.copy()
    live = canvases.labels >= 0
    guessed.labels[live] = probs.argmax(1)
    cm = confusion_matrix(pixel_labels(canvases), pixel_labels(guessed), len(classes))
    return segment_scores(cm, classes)


def training_canvases(n: int):
    """``n`` canvases of the training items, with the detect task's training seed."""
    gen = CanvasGenerator.from_dataset("fashion-mnist", split="train", config=SEGMENT_CANVAS)
    return gen.generate(n, seed=1)


def train_on_canvas(n: int, epochs: int, seed: int = 0):
    """lenet5 trained on the true-mask crops of ``n`` training canvases -> (classify, crops seen)."""
    train = training_canvases(n)
    crops = crop_components(train.images, true_components(train))
    return train_crop_classifier(crops, train.labels[train.labels >= 0], epochs, seed), len(crops)


def train_crop_classifier(crops: np.ndarray, labels: np.ndarray, epochs: int, seed: int = 0, cache=None):
    """The zoo's lenet5 trained (torch, AdamW, one-cycle, flips) on n x 28 x 28 x 1 uint8 crops;
    returns classify(crops) -> n x 10 probabilities. ``cache``: a .pt file holding the
    trained weights, read instead of training when it exists, written after training."""
    from pathlib import Path

    import torch

    from svertka.backends.torch import compile as compile_torch
    from svertka.zoo import create_model

    mean, std = 0.2860, 0.3530  # Fashion-MNIST's, as the plain runs use

    def tensor(c):
        return (torch.as_tensor(c.transpose(0, 3, 1, 2), dtype=torch.float32) / 255 - mean) / std
    torch.manual_seed(seed)
    model = compile_torch(create_model("lenet5", num_classes=10))
    if cache and Path(cache).is_file():
        model.load_state_dict(torch.load(cache))
        epochs = 0
    x, y = tensor(crops), torch.as_tensor(labels)
    steps = epochs * (-(-len(x) // 128))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=max(steps, 1))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            b = order[i:i + 128]
            xb = x[b]
            flip = torch.rand(len(b)) < 0.5  # horizontal flips, as the plain recipes
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = torch.nn.functional.cross_entropy(model(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    if cache and epochs:
        torch.save(model.state_dict(), cache)
    model.eval()

    def classify(c):
        with torch.no_grad():
            z = torch.cat([model(tensor(c[i:i + 1024])) for i in range(0, len(c), 1024)])
        return torch.softmax(z.double(), 1).numpy()
    return classify


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("classifiers", nargs="+", help="run folders of Fashion-MNIST classifiers")
    ap.add_argument("--n", type=int, default=5000, help="detection test canvases (the detect task's)")
    ap.add_argument("--n-seg", type=int, default=2000, help="segmentation test canvases (the segment task's)")
    ap.add_argument("--canvas-train", type=int, default=0, metavar="N",
                    help="also train lenet5 on the items of N training canvases (see above)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs of that training")
    args = ap.parse_args()
    assert TASK_PRESETS["detect"] == SEGMENT_CANVAS  # one set of canvases serves both tasks
    gen = CanvasGenerator.from_dataset("fashion-mnist", split="test", config=SEGMENT_CANVAS)
    canvases = gen.generate(max(args.n, args.n_seg), seed=0)
    det, seg = canvases.subset(slice(0, args.n)), canvases.subset(slice(0, args.n_seg))
    items = load_dataset("fashion-mnist", split="test").images  # the 28x28 images the canvases hold
    touching = det.touching
    parts = {"all": np.ones(len(det), bool), "touching": touching, "separate": ~touching}
    classes = list(canvases.classes)
    results = {"n": len(det), "n_seg": len(seg), "items": int((det.labels >= 0).sum()),
               "touching": int(touching.sum()), "classes": classes, "runs": {}}
    truth = canvases.labels[canvases.labels >= 0]  # items in canvas order: det's and seg's come first
    n_det_items, n_seg_items = int((det.labels >= 0).sum()), int((seg.labels >= 0).sum())

    def score(probs):
        return {"item_top1": float((probs.argmax(1) == truth).mean()),
                "detect_hard": detection_scores(det, probs[:n_det_items], False, parts),
                "detect_soft": detection_scores(det, probs[:n_det_items], True, parts),
                "segment": segmentation_scores(seg, probs[:n_seg_items], segment_classes(classes))}
    with LoadMonitor() as load:
        for run in args.classifiers:
            classify, clf = classifier(run)
            live = canvases.labels >= 0
            views = {"plain": classify(items[canvases.sources[live]].reshape(-1, 28, 28, 1)),
                     "canvas": classify(crop_components(canvases.images, true_components(canvases)))}
            results["runs"][run] = {"model": clf.net.name,
                                    **{view: score(probs) for view, probs in views.items()}}
        if args.canvas_train:
            classify, n_crops = train_on_canvas(args.canvas_train, args.epochs)
            probs = classify(crop_components(canvases.images, true_components(canvases)))
            results["runs"]["canvas-trained"] = {"model": f"lenet5 on {n_crops} canvas crops x {args.epochs}",
                                                 "canvas": score(probs)}
    print(f"{len(det)} detection canvases ({int(touching.sum())} with touching items, "
          f"{results['items']} items), the first {len(seg)} for segmentation; true boxes and masks, "
          f"classes from the classifier; other processes {load.other_cores:.2f} cores"
          f"{' CONTENDED' if load.contended else ''}")
    print("| classifier | view | item top-1 | mAP@.5 hard | mAP hard | mAP@.5 soft | mAP soft | "
          "mAP@.5 soft, touching | mIoU |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for res in results["runs"].values():
        views = [v for v in ("plain", "canvas") if v in res]
        for view in views:
            r = res[view]
            h, s = r["detect_hard"]["all"], r["detect_soft"]["all"]
            print(f"| {res['model']} | {view} | {r['item_top1']:.2%} | {h['map50']:.3f} | {h['map']:.3f} | "
                  f"{s['map50']:.3f} | {s['map']:.3f} | {r['detect_soft']['touching']['map50']:.3f} | "
                  f"{r['segment']['miou']:.3f} |")
        for view in views:
            iou = res[view]["segment"]["iou"]
            print(f"  {view} per-class IoU: " + ", ".join(f"{k} {v:.2f}" for k, v in iou.items()))
    results["load"] = load.as_dict()
    print(f"wrote {write_results('task_ceilings', results)}")


if __name__ == "__main__":
    main()
