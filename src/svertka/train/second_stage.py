"""`svertka eval|predict DETECT_RUN --second-stage CROPS_RUN`: a detection run whose boxes
are re-classed by a crop classifier (:mod:`svertka.tasks.two_stage`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..tasks.baseline import Detections
from ..tasks.crops import ITEM_SHAPE
from ..tasks.task import ClassifyTask
from ..tasks.two_stage import classed, rescored_evaluator
from .evaluate import Loaded, load_trained

__all__ = ["load_second_stage", "classifier_of", "evaluate_two_stage", "decode_two_stage"]


def load_second_stage(detector: Loaded, path, backend=None, device=None, threads=None) -> Loaded:
    """The crop classifier at ``path`` for ``detector``, checked: a one-line UsageError unless
    the detector is a detection run and ``path`` a 28x28 one-channel classifier of its classes."""
    if detector.task.name != "detect":
        raise UsageError(f"--second-stage re-classes a detector's boxes; {detector.source} is a "
                         f"{detector.task.name} model")
    if not Path(path).exists():
        raise UsageError(f"--second-stage {path} does not exist; pass a run folder of "
                         f"`svertka train --task crops`")
    second = load_trained(path, backend=backend, device=device, threads=threads)
    what = f"--second-stage {path}"
    if not isinstance(second.task, ClassifyTask):
        raise UsageError(f"{what} is a {second.task.name} model; the second stage must be a classifier "
                         f"of box crops (`svertka train --task crops`)")
    c, h, w = second.net.input_shape
    if (h, w, c) != ITEM_SHAPE:
        raise UsageError(f"{what} takes {c}x{h}x{w} inputs; the second stage classes 1x28x28 box crops "
                         f"(`svertka train --task crops`)")
    if list(second.classes) != list(detector.classes):
        n, k = len(second.classes), len(detector.classes)
        diff = f"{n} classes, the detector {k}" if n != k else \
            f"classes {', '.join(second.classes)}, the detector {', '.join(detector.classes)}"
        raise UsageError(f"{what} has {diff}; train the second stage on the detector's items")
    return second


def classifier_of(second: Loaded):
    """classify(uint8 n x 28 x 28 x 1 crops) -> n x C class probabilities."""
    def classify(crops: np.ndarray, batch: int = 1024) -> np.ndarray:
        parts = [second.adapter.logits_u8(crops[i:i + batch]) for i in range(0, len(crops), batch)]
        z = np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, second.net.num_classes))
        p = np.exp(z - z.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)
    return classify


def evaluate_two_stage(r: dict, second: Loaded) -> dict:
    """The result of ``evaluate_task`` of a detection run, re-scored by the second stage."""
    ev = rescored_evaluator(r["evaluator"], r["split"].images, classifier_of(second))
    return {**r, "metrics": ev.result(), "evaluator": ev}


def decode_two_stage(detector: Loaded, second: Loaded):
    """A decode(outputs, images) for ``predict_task``: per image, the boxes the detector
    scores above its min_score, merged across classes and classed by the second stage; each
    box with its best fused class, score = detector score x fused probability (what eval
    ranks by), and the detector's own score and class."""
    from ..tasks.detect import decode_detections
    from ..zoo.detect import BOX_CHANNELS

    classes = list(detector.classes)

    def name(i):
        return classes[i] if i < len(classes) else str(i)

    def decode(outputs, images):
        k = outputs.shape[1] - BOX_CHANNELS
        det = decode_detections(outputs, k)
        sure = det.scores > detector.task.opts["min_score"]
        image = np.broadcast_to(np.arange(len(outputs))[:, None], sure.shape)[sure]
        flat = Detections(image, det.boxes[sure], det.scores[sure], det.labels[sure])
        keep, p = classed(flat, np.stack(images), classifier_of(second), k)
        preds = [{"detections": [], "second_stage": str(second.source)} for _ in range(len(outputs))]
        for j, row in zip(keep, p):  # best detector score first within each image
            c = int(row.argmax())
            box_p = row[c]
            preds[int(flat.image[j])]["detections"].append({
                "class": name(c), "index": c, "score": round(float(flat.scores[j] * box_p), 4),
                "prob": round(float(box_p), 4), "detector_class": name(int(flat.labels[j])),
                "detector_score": round(float(flat.scores[j]), 4),
                "box": [round(float(v), 2) for v in flat.boxes[j]]})
        return preds
    return decode
