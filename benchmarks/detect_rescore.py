"""Is the detector's class head what holds its mAP down? Re-class its boxes and see.

A second stage, as in R-CNN: the one-stage detector's boxes (a run of `svertka
train --task detect`) are merged across classes (NMS over all classes, IoU
``--nms``), each box is cropped from the canvas as it is (neighbours' pixels
included), resampled to 28x28 and classed by the zoo's ``lenet5`` trained here
on such crops of N training canvases (training items, the task's training seed;
the true boxes, each side moved by up to ``--jitter`` of the box's size, as a
detector's boxes are off). Each box then gives one detection per class, scored
by the detector's score times a class probability, two ways:

* ``classifier``: the second stage's probability alone;
* ``fused``: the geometric mean of it and the detector's own class distribution
  at that box (the scores of its peaks merged into the box, per class, floored
  at the evaluator's 0.01 and normalised), renormalised: two classifiers
  that err differently, combined.

All are scored on the same test canvases as `detect_map.py` (``--offset 0``) and,
as a check that the figures do not depend on the canvases, on the next ones
(``--offset 5000``: canvases 5,000-9,999 of the same stream, other layouts of the
same test items). The detector's boxes are unchanged, so any gain is the class's.
The second stage is svertka's (`svertka.tasks.two_stage`, as `svertka eval DETECT_RUN
--second-stage CROPS_RUN` runs it); this script trains its classifier and prints the table.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/detect_rescore.py DETECT_RUN \\
        [--n 5000] [--offset 0] [--train-canvases 40000] [--epochs 15] [--cache lenet5_crops.pt]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from detect_map import print_split_table, split_scores
from machine import LoadMonitor, write_results
from svertka.tasks.crops import JITTER_SEEDS, box_crops
from svertka.tasks.detect import DetectionEvaluator
from svertka.tasks.two_stage import merge_classes, rescored_evaluator
from svertka.train.evaluate import load_trained
from task_ceilings import train_crop_classifier, training_canvases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("detector", help="run folder of svertka train --task detect")
    ap.add_argument("--n", type=int, default=5000, help="test canvases")
    ap.add_argument("--train-canvases", type=int, default=40000)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--nms", type=float, default=0.7, help="IoU above which boxes of any class merge")
    ap.add_argument("--jitter", type=float, default=0.06)
    ap.add_argument("--offset", type=int, default=0, help="score test canvases offset .. offset + n - 1")
    ap.add_argument("--cache", help="the second stage's weights: read if the file exists, else written")
    args = ap.parse_args()
    det_run = load_trained(args.detector, threads=1)
    task = det_run.task
    task.opts["test_canvases"], task.cfg.limit_test = args.offset + args.n, None
    test = task.load_test()
    test = replace(test, images=test.images[args.offset:],
                   targets={k: v[args.offset:] for k, v in test.targets.items()})
    classes = list(test.classes)
    touching = test.targets["touching"].astype(bool)
    with LoadMonitor() as load:
        det_run.adapter.add_split("test", test.images, test.targets)
        ev = DetectionEvaluator(classes=classes)
        for i in range(0, len(test), 256):
            idx = np.arange(i, min(len(test), i + 256))
            ev.add(det_run.adapter.logits("test", idx), {k: v[idx] for k, v in test.targets.items()})
        one_stage = split_scores(ev.metrics, touching, classes)

        t = time.perf_counter()
        train = training_canvases(args.train_canvases)
        crops, labels = box_crops(train, args.jitter, np.random.default_rng(JITTER_SEEDS["train"]))
        classify = train_crop_classifier(crops, labels, args.epochs, cache=args.cache)
        train_s = time.perf_counter() - t

        _, (di, dl, db, ds) = ev.arrays()
        merged, _ = merge_classes(di, db, ds, dl, len(classes), args.nms)  # for the count printed below
        two_stage = {name: split_scores(rescored_evaluator(ev, test.images, classify, iou=args.nms,
                                                           fused=fused).metrics, touching, classes)
                     for name, fused in (("classifier", False), ("fused", True))}
    last = args.offset + len(test) - 1
    print(f"test canvases {args.offset:,}-{last:,} ({int(touching.sum())} with touching items); detector "
          f"{det_run.net.name} ({args.detector}); second stage lenet5 on {len(crops):,} box crops of "
          f"{args.train_canvases:,} training canvases x {args.epochs} ({train_s:.0f} s); "
          f"{len(di):,} detections -> {len(merged):,} boxes after merging classes at IoU {args.nms}; "
          f"other processes {load.other_cores:.2f} cores{' CONTENDED' if load.contended else ''}")
    print_split_table((("one-stage detector", one_stage),
                       ("+ lenet5 re-classing its boxes", two_stage["classifier"]),
                       ("+ lenet5 fused with the detector's classes", two_stage["fused"])))
    print("\n| class | one-stage AP@.5 | re-classed AP@.5 | fused AP@.5 |")
    print("|---|---:|---:|---:|")
    for c in classes:
        one, two, fus = (r["all"]["per_class_ap50"][c] for r in (one_stage, *two_stage.values()))
        print(f"| {c} | {one:.3f} | {two:.3f} | {fus:.3f} |")
    path = write_results("detect_rescore", {
        "n": len(test), "offset": args.offset, "detector": str(args.detector),
        "train_canvases": args.train_canvases,
        "epochs": args.epochs, "nms": args.nms, "jitter": args.jitter, "train_s": train_s,
        "one_stage": one_stage, "two_stage": two_stage, "load": load.as_dict()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
