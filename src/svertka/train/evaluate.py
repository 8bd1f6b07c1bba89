"""`svertka eval` and `svertka predict`: load trained weights, measure, predict.

Classification has its own richer report (top-5, per class, confusion); any
other task is measured by its evaluator and decoded by its ``decode``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError, WeightsError
from ..zoo import resolve_model
from .checkpoint import read_checkpoint
from .config import TrainConfig
from .feed import eval_outputs, hold, streams


class Loaded:
    """A model with weights, ready for inference, plus what it was trained on."""

    def __init__(self, adapter, net, meta, source):
        self.adapter, self.net, self.meta, self.source = adapter, net, meta, source
        self.task = adapter.task
        self.mean = tuple(meta.get("mean") or net.mean)
        self.std = tuple(meta.get("std") or net.std)
        self.classes = list(meta.get("classes") or [str(i) for i in range(net.num_classes)])


def load_trained(path, model: str | None = None, num_classes: int | None = None, backend: str | None = None,
                 device: str | None = None, threads: int | None = None) -> Loaded:
    """A run folder (uses best.safetensors, else last), a weights file or an .onnx file.

    ``backend`` None: the one the weights were trained with (torch if they do not say)."""
    from ..spec import load_network
    from ..tasks.task import task_of_meta
    from .backends import make_adapter

    path = Path(path)
    net = None
    if path.is_dir():
        weights_file = next((path / f for f in ("best.safetensors", "last.safetensors")
                             if (path / f).is_file()), None)
        if weights_file is None:
            raise UsageError(f"{path} holds no best.safetensors or last.safetensors; "
                             f"is it a run folder of svertka train?")
        if model is None and (path / "model.json").is_file():
            net = load_network(path / "model.json")
    elif path.is_file():
        weights_file = path
    else:
        raise UsageError(f"{path} does not exist; pass a run folder or a weights file")
    if weights_file.suffix.lower() == ".onnx":  # an imported model brings its own spec and weights
        from ..export import load_onnx

        if model:
            raise UsageError(f"{weights_file} holds its own model; drop --model {model}")
        imported = load_onnx(weights_file)
        net, weights = imported.network, imported.state_dict
        meta = {k: imported.meta[k] for k in ("classes", "mean", "std", "data") if k in imported.meta}
    else:
        weights, meta, _, _ = read_checkpoint(weights_file)
    bad = next((k for k, v in weights.items() if v.dtype.kind == "f" and not np.isfinite(v).all()), None)
    if bad is not None:  # every prediction would be NaN: say so instead of printing garbage
        raise WeightsError(f"{weights_file}: tensor {bad} holds NaN or infinite values (a diverged run or a "
                           "corrupt file); use another checkpoint")
    if net is None:
        name = model or meta.get("model")
        if not name:
            raise UsageError(f"{weights_file} does not say which model it is for; pass --model NAME")
        nc = num_classes or meta.get("num_classes")
        shape = meta.get("input_shape")
        net = resolve_model(name, num_classes=int(nc) if nc else None,
                            in_chans=shape[0] if shape else None, input_size=shape[1] if shape else None)
    if num_classes and num_classes != net.num_classes:
        raise WeightsError(f"num_classes mismatch: the model has {net.num_classes} classes, "
                           f"you asked for {num_classes}")
    for key in ("mean", "std"):
        if meta.get(key) and len(meta[key]) not in (1, net.input_shape[0]):
            raise WeightsError(f"{weights_file}: metadata {key} has {len(meta[key])} values for a model of "
                               f"{net.input_shape[0]} input channels; the file is corrupt")
    if backend is None:
        from .config import BACKENDS

        backend = meta.get("backend") if meta.get("backend") in BACKENDS else "torch"
        if backend == "numpy" and device not in (None, "auto", "cpu"):
            raise UsageError(f"{weights_file} was trained with the numpy backend, which runs on the CPU; "
                             f"add --backend torch to use --device {device}")
    cfg = TrainConfig(model=net.name, backend=backend, device=device or "auto", threads=threads)
    if isinstance(meta.get("data"), str):
        cfg.data = meta["data"]
    task = task_of_meta(meta, cfg)
    cfg.validate()
    mean = tuple(meta.get("mean") or net.mean)
    std = tuple(meta.get("std") or net.std)
    adapter = make_adapter(net, cfg, mean, std, task)
    adapter.load_model_state(weights, meta, str(weights_file.name))
    return Loaded(adapter, net, meta, weights_file)


def require_classifier(loaded: Loaded, what: str) -> None:
    from ..tasks.task import ClassifyTask

    if not isinstance(loaded.task, ClassifyTask):  # classify, or a task whose data only differs (crops)
        raise UsageError(f"{loaded.source} is a {loaded.task.name} model, and {what} is for classifiers; "
                         f"use `svertka eval` / `svertka predict`, which follow the run's task")


def evaluate_task(loaded: Loaded, root=None, batch: int = 256, limit: int | None = None) -> dict:
    """The task's metrics on its test split (any task but classification's report); the
    evaluator comes back too, for what else it gathered (e.g. detections to write)."""
    task, a = loaded.task, loaded.adapter
    task.cfg.root, task.cfg.limit_test = root, limit
    test = task.load_test()
    a.add_split("test", test.images, test.targets)
    ev = task.evaluator()
    for i in range(0, len(test), batch):
        idx = np.arange(i, min(len(test), i + batch))
        ev.add(a.logits("test", idx), {k: v[idx] for k, v in test.targets.items()})
    return {"task": task.name, "metrics": ev.result(), "n": len(test), "data": task.cfg.data, "evaluator": ev,
            "split": test}


def predict_task(loaded: Loaded, images, out: str | None = None, decode=None) -> list[dict]:
    """The task's predictions (boxes, points, ...) for image files, at the model's
    input size; with ``out``, the first image's predictions drawn into that PNG.
    ``decode(outputs, images)``, if given, replaces the task's decode (a second stage)."""
    c, h, w = loaded.net.input_shape
    arrays = [load_image(p, (c, h, w)) for p in images]  # all read before any output
    x = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32) / 255
    x = ((x - np.asarray(loaded.mean, np.float32).reshape(1, -1, 1, 1))
         / np.asarray(loaded.std, np.float32).reshape(1, -1, 1, 1))
    outputs = loaded.adapter.logits_of(np.ascontiguousarray(x, np.float32))
    preds = decode(outputs, arrays) if decode else loaded.task.decode(outputs, loaded.meta)
    if out is not None:
        loaded.task.draw(arrays[0], preds[0], out)
    return [{"image": str(p), **pred} for p, pred in zip(images, preds)]


def evaluate(loaded: Loaded, data: str | None = None, root=None, tta: str = "none", batch: int = 1024,
             limit: int | None = None) -> dict:
    """Top-1/top-5/per-class accuracy and the confusion matrix on the test split."""
    from ..data import load_dataset

    require_classifier(loaded, "this report")
    data = data or loaded.meta.get("data")
    if not data:
        raise UsageError("these weights do not say which data they were trained on; pass --data NAME")
    stream = loaded.meta.get("stream")
    if stream and data == "imagefolder":  # trained on streamed data: evaluate it the same way
        from ..data.streaming import stream_splits
        ds = stream_splits(root, stream["image_size"], stream["crop_pct"], limit_test=limit)[2]
    else:
        ds = load_dataset(data, root=root, split="test")
        if limit:
            ds.images, ds.labels = ds.images[:limit], ds.labels[:limit]
    if ds.num_classes != loaded.net.num_classes:
        raise WeightsError(f"num_classes mismatch: {data} has {ds.num_classes} classes, the model "
                           f"{loaded.net.num_classes}; evaluate on the data it was trained on")
    c, h, w = loaded.net.input_shape
    if ds.image_shape != (h, w, c):
        raise UsageError(f"{data} images are {ds.image_shape[2]}x{ds.image_shape[0]}x{ds.image_shape[1]}, "
                         f"the model takes {c}x{h}x{w}")
    a = loaded.adapter
    if streams(ds):
        hold(a, "test", ds)
    else:
        a.add_split("test", ds.images, {"label": np.asarray(ds.labels, np.int64)})
    logits = np.concatenate([out for out, _ in eval_outputs(a, "test", ds, len(ds), batch, tta)])
    y = ds.labels
    k = min(5, logits.shape[1])
    topk = np.argsort(-logits, axis=1)[:, :k]
    top1 = float((topk[:, 0] == y).mean())
    top5 = float((topk == y[:, None]).any(1).mean())
    n_cls = loaded.net.num_classes
    conf = np.zeros((n_cls, n_cls), np.int64)
    np.add.at(conf, (y, topk[:, 0]), 1)
    per_class = {name: (float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None)
                 for i, name in enumerate(ds.classes or loaded.classes)}
    return {"top1": top1, "top5": top5, "per_class": per_class, "n": int(len(y)),
            "confusion": conf.tolist(), "classes": list(ds.classes), "data": data, "tta": tta}


def confusion_png(conf, path, classes=None) -> Path:
    """The labelled confusion matrix (svertka.viz.runs) as a PNG at ``path``."""
    from ..viz.figure import save_as
    from ..viz.runs import confusion_figure

    return save_as(confusion_figure(conf, classes), path, "png")


def load_image(path, shape, stream: dict | None = None) -> np.ndarray:
    """Any PNG/JPEG -> uint8 H x W x C at the model's input size and channel count; for a model
    trained with --stream (``stream``: its crop settings), the centre crop its evaluation saw."""
    from ..data.formats import decode_image, read_bytes

    c, h, w = shape
    if stream and c == 3 and h == w == stream.get("image_size"):
        from ..data.streaming import CenterCrop, decode_crop
        if not Path(path).is_file():
            raise DataError(f"{path}: no such image file")
        return decode_crop(read_bytes(path), str(path), CenterCrop(h, stream.get("crop_pct", 0.875)))
    return decode_image(path, "L" if c == 1 else "RGB", size=(h, w)).reshape(h, w, c)


def invert_choice(loaded: Loaded, image: np.ndarray, invert: str = "auto") -> tuple[bool, str]:
    """Whether to invert one uint8 H x W x C image, and why (empty when nothing was decided).

    MNIST-family models learnt light objects on black; a product photo is a dark
    object on white. ``auto`` inverts when the model's data is light-on-dark and
    the image's border (where the background is) is light on average."""
    from ..data.registry import REGISTRY

    if invert in ("yes", "no"):
        return invert == "yes", ""
    if invert != "auto":
        raise UsageError(f"unknown --invert {invert!r}; choose auto, yes or no")
    info = REGISTRY.get(str(loaded.meta.get("data", "")).lower())
    if info is None or not info.light_on_dark:
        return False, ""
    h, w = image.shape[:2]
    b = max(1, min(h, w) // 14)  # 2 px of a 28x28 input
    frame = np.concatenate([image[:b].ravel(), image[-b:].ravel(),
                            image[:, :b].ravel(), image[:, -b:].ravel()])
    mean = float(frame.mean())
    if mean > 127.5:
        return True, f"inverted: light border (mean {mean:.0f}/255), the model expects light on black"
    return False, f"as is: dark border (mean {mean:.0f}/255)"


def predict(loaded: Loaded, images, k: int = 5, invert: str = "no") -> list[dict]:
    """Top-k classes of image files; ``invert`` is auto, yes or no (see invert_choice)."""
    require_classifier(loaded, "top-k class prediction")
    c, h, w = loaded.net.input_shape
    arrays = [load_image(p, (c, h, w), loaded.meta.get("stream")) for p in images]  # all read before output
    choices = [invert_choice(loaded, a, invert) for a in arrays]
    arrays = [255 - a if inv else a for a, (inv, _) in zip(arrays, choices)]
    x = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32) / 255
    x = ((x - np.asarray(loaded.mean, np.float32).reshape(1, -1, 1, 1))
         / np.asarray(loaded.std, np.float32).reshape(1, -1, 1, 1))
    logits = loaded.adapter.logits_of(np.ascontiguousarray(x, np.float32)).astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    k = min(k, p.shape[1])
    out = []
    for path, row, (inv, why) in zip(images, p, choices):
        top = np.argsort(-row)[:k]
        out.append({"image": str(path), "inverted": inv, "invert_reason": why,
                    "top": [{"class": loaded.classes[i] if i < len(loaded.classes) else str(i),
                             "index": int(i), "prob": float(row[i])} for i in top]})
    return out
