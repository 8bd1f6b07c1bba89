"""Detection figures: the CNN detector (a run of `svertka train --task detect`) against
the classical baseline (connected components, each crop named by a Fashion-MNIST
classifier run) on the same test canvases, overall and split into canvases where
items touch and where they do not.

    OPENBLAS_NUM_THREADS=1 nice -n 10 python benchmarks/detect_map.py DETECT_RUN CLASSIFIER_RUN \\
        [--n 5000] [--grid docs/detect_grid.png]

Test canvases are the task's: test items, stream seed 0, so canvas i is image i + 1
of `svertka data export canvas --task detect --n N`. Prints a table of mAP@[.5:.95],
mAP@.5 and per-class AP, the time each method took (as a ratio), and the load of
other processes; writes the JSON to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from machine import LoadMonitor, write_results
from svertka.tasks.baseline import detect_components
from svertka.tasks.boxes import xyxy_to_xywh
from svertka.tasks.coco_eval import evaluate_detections
from svertka.tasks.detect import DetectionEvaluator, decode_detections, draw_boxes
from svertka.train.evaluate import load_trained


def classifier(run):
    """crops (n x 28 x 28 x 1 uint8) -> class probabilities, from a classification run."""
    loaded = load_trained(run, threads=1)
    mean, std = np.float32(loaded.mean[0]), np.float32(loaded.std[0])

    def classify(crops):
        x = (crops.transpose(0, 3, 1, 2).astype(np.float32) / 255 - mean) / std
        z = np.concatenate([loaded.adapter.logits_of(np.ascontiguousarray(x[i:i + 1024]))
                            for i in range(0, len(x), 1024)]).astype(np.float64)
        p = np.exp(z - z.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)
    return classify, loaded


def scores(m, names):
    return {"map": m.map, "map50": m.map50, "map75": m.map75,
            "per_class_ap": {n: float(v) for n, v in zip(names, m.per_class)},
            "per_class_ap50": {n: float(v) for n, v in zip(names, m.per_class50)}}


def split_scores(evaluate, touching, names):
    """Scores over all canvases, those with touching items and those without."""
    ids = np.arange(1, len(touching) + 1)
    return {part: scores(evaluate(ids[sel]), names)
            for part, sel in (("all", np.ones(len(touching), bool)), ("touching", touching),
                              ("separate", ~touching))}


def print_split_table(rows) -> None:
    """A markdown table of mAP, mAP@.5 and mAP@.75 per method (name, split_scores result) and split."""
    print("| method | canvases | mAP@[.5:.95] | mAP@.5 | mAP@.75 |")
    print("|---|---|---|---|---|")
    for name, res in rows:
        for part in ("all", "touching", "separate"):
            r = res[part]
            print(f"| {name} | {part} | {r['map']:.3f} | {r['map50']:.3f} | {r['map75']:.3f} |")


def grid(path, images, det, boxes, labels, classes, n=16, cols=4):
    from PIL import Image

    tiles = []
    for i in range(min(n, len(images))):
        b, s, k = det.of(i, 0.3)
        truth = boxes[i][labels[i] >= 0]
        tiles.append(draw_boxes(images[i], b, [f"{classes[j]} {v:.2f}" for j, v in zip(k, s)],
                                colors=None, truth=truth))
    w, h = tiles[0].size
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * (w + 4) + 4, rows * (h + 4) + 4), (40, 40, 40))
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet.paste(t, (4 + c * (w + 4), 4 + r * (h + 4)))
    sheet.save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("detector", help="run folder of svertka train --task detect")
    ap.add_argument("classifier", help="run folder of a Fashion-MNIST classifier (for the baseline)")
    ap.add_argument("--n", type=int, default=5000, help="test canvases")
    ap.add_argument("--grid", help="also draw the first 16 test canvases with predicted (colour) and "
                    "true (dashed white) boxes into this PNG")
    args = ap.parse_args()
    det_run = load_trained(args.detector, threads=1)
    task = det_run.task
    task.opts["test_canvases"], task.cfg.limit_test = args.n, None
    test = task.load_test()
    classes = list(test.classes)
    boxes, labels = test.targets["boxes"], test.targets["labels"]
    touching = test.targets["touching"].astype(bool)
    classify, clf = classifier(args.classifier)
    with LoadMonitor() as load:
        t = time.perf_counter()
        det_run.adapter.add_split("test", test.images, test.targets)
        outs = np.concatenate([det_run.adapter.logits("test", np.arange(i, min(len(test), i + 256)))
                               for i in range(0, len(test), 256)])
        ev = DetectionEvaluator(classes=classes)
        ev.add(outs, test.targets)
        cnn_s = time.perf_counter() - t
        t = time.perf_counter()
        base = detect_components(test.images, classify)
        base_s = time.perf_counter() - t
    cnn = split_scores(ev.metrics, touching, classes)
    live = labels >= 0
    gi = np.broadcast_to(np.arange(1, len(test) + 1)[:, None], labels.shape)[live]

    def baseline_metrics(images):
        return evaluate_detections(gi, labels[live], xyxy_to_xywh(boxes[live].astype(np.float64)),
                                   base.image + 1, base.labels, xyxy_to_xywh(base.boxes.astype(np.float64)),
                                   base.scores, image_ids=images, category_ids=np.arange(len(classes)))
    baseline = split_scores(baseline_metrics, touching, classes)
    flag = " CONTENDED" if load.contended else ""
    print(f"{len(test)} test canvases ({int(touching.sum())} with touching items), {int(live.sum())} items; "
          f"detector {det_run.net.name} ({args.detector}), "
          f"baseline classifier {clf.net.name} ({args.classifier})")
    print_split_table((("CNN detector", cnn), ("baseline", baseline)))
    print("\n| class | detector AP | detector AP@.5 | baseline AP | baseline AP@.5 |")
    print("|---|---|---|---|---|")
    for c in classes:
        print(f"| {c} | {cnn['all']['per_class_ap'][c]:.3f} | {cnn['all']['per_class_ap50'][c]:.3f} | "
              f"{baseline['all']['per_class_ap'][c]:.3f} | {baseline['all']['per_class_ap50'][c]:.3f} |")
    print(f"\ninference + decoding: detector {cnn_s:.1f} s, baseline {base_s:.1f} s (x{cnn_s / base_s:.2f}); "
          f"other processes used {load.other_cores:.2f} cores{flag}")
    if args.grid:
        grid(args.grid, test.images, decode_detections(outs[:16], len(classes)), boxes, labels, classes)
        print(f"wrote {args.grid}")
    path = write_results("detect_map", {
        "n": len(test), "touching": int(touching.sum()), "items": int(live.sum()),
        "detector": str(args.detector), "classifier": str(args.classifier),
        "cnn": cnn, "baseline": baseline, "cnn_s": cnn_s, "baseline_s": base_s, "load": load.as_dict()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
