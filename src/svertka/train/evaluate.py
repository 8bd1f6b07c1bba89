"""`svertka eval` and `svertka predict`: load trained weights, measure, classify."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError, WeightsError
from .checkpoint import read_checkpoint
from .config import TrainConfig
from .nets import resolve_model


class Loaded:
    """A model with weights, ready for inference, plus what it was trained on."""

    def __init__(self, adapter, net, meta, source):
        self.adapter, self.net, self.meta, self.source = adapter, net, meta, source
        self.mean = tuple(meta.get("mean") or net.mean)
        self.std = tuple(meta.get("std") or net.std)
        self.classes = list(meta.get("classes") or [str(i) for i in range(net.num_classes)])


def load_trained(path, model: str | None = None, num_classes: int | None = None, backend: str = "torch",
                 device: str = "auto") -> Loaded:
    """A run folder (uses best.safetensors, else last) or a weights file."""
    from ..spec import load_network
    from .backends import make_adapter

    path = Path(path)
    net = None
    if path.is_dir():
        weights_file = next((path / f for f in ("best.safetensors", "last.safetensors") if (path / f).is_file()), None)
        if weights_file is None:
            raise UsageError(f"{path} holds no best.safetensors or last.safetensors; is it a run folder of svertka train?")
        if model is None and (path / "model.json").is_file():
            net = load_network(path / "model.json")
    elif path.is_file():
        weights_file = path
    else:
        raise UsageError(f"{path} does not exist; pass a run folder or a weights file")
    weights, meta, _, _ = read_checkpoint(weights_file)  # meta typed and bounded there
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
        raise WeightsError(f"num_classes mismatch: the model has {net.num_classes} classes, you asked for {num_classes}")
    for key in ("mean", "std"):
        if meta.get(key) and len(meta[key]) not in (1, net.input_shape[0]):
            raise WeightsError(f"{weights_file}: metadata {key} has {len(meta[key])} values for a model of "
                               f"{net.input_shape[0]} input channels; the file is corrupt")
    cfg = TrainConfig(model=net.name, backend=backend, device=device if backend == "torch" else "auto")
    cfg.validate()
    mean = tuple(meta.get("mean") or net.mean)
    std = tuple(meta.get("std") or net.std)
    adapter = make_adapter(net, cfg, mean, std)
    adapter.load_model_state(weights, meta, str(weights_file.name))
    return Loaded(adapter, net, meta, weights_file)


def evaluate(loaded: Loaded, data: str | None = None, root=None, tta: str = "none", batch: int = 1024,
             limit: int | None = None) -> dict:
    """Top-1/top-5/per-class accuracy and the confusion matrix on the test split."""
    from ..data import load_dataset

    data = data or loaded.meta.get("data")
    if not data:
        raise UsageError("these weights do not say which data they were trained on; pass --data NAME")
    ds = load_dataset(data, root=root, split="test")
    if limit:
        ds.images, ds.labels = ds.images[:limit], ds.labels[:limit]
    if ds.num_classes != loaded.net.num_classes:
        raise WeightsError(f"num_classes mismatch: {data} has {ds.num_classes} classes, the model "
                           f"{loaded.net.num_classes}; evaluate on the data it was trained on")
    c, h, w = loaded.net.input_shape
    if ds.image_shape != (h, w, c):
        raise UsageError(f"{data} images are {ds.image_shape[2]}x{ds.image_shape[0]}x{ds.image_shape[1]}, the model "
                         f"takes {c}x{h}x{w}")
    a = loaded.adapter
    a.labels_np = {"test": ds.labels}
    a.set_data("test", ds.images, ds.labels)
    logits = np.concatenate([a.logits("test", np.arange(i, min(len(ds), i + batch)), tta)
                             for i in range(0, len(ds), batch)])
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


def confusion_png(conf, path, cell: int = 24) -> Path:
    """Rows = true class, columns = predicted; darker = more of the row's images."""
    from ..viz.png import write_png

    conf = np.asarray(conf, np.float64)
    frac = conf / np.maximum(1, conf.sum(1, keepdims=True))
    img = (255 * (1 - frac)).astype(np.uint8)
    img = np.kron(img, np.ones((cell, cell), np.uint8))
    for i in range(0, img.shape[0] + 1, cell):  # grid lines
        img[min(i, img.shape[0] - 1), :] = 160
        img[:, min(i, img.shape[1] - 1)] = 160
    return write_png(path, img)


def load_image(path, shape) -> np.ndarray:
    """Any PNG/JPEG -> uint8 H x W x C at the model's input size and channel count."""
    from ..data.formats import decode_image

    c, h, w = shape
    return decode_image(path, "L" if c == 1 else "RGB", size=(h, w)).reshape(h, w, c)


def predict(loaded: Loaded, images, k: int = 5) -> list[dict]:
    c, h, w = loaded.net.input_shape
    arrays = [load_image(p, (c, h, w)) for p in images]  # all read before any output
    x = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32) / 255
    x = (x - np.asarray(loaded.mean, np.float32).reshape(1, -1, 1, 1)) / np.asarray(loaded.std, np.float32).reshape(1, -1, 1, 1)
    logits = loaded.adapter.logits_of(np.ascontiguousarray(x, np.float32)).astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    k = min(k, p.shape[1])
    out = []
    for path, row in zip(images, p):
        top = np.argsort(-row)[:k]
        out.append({"image": str(path), "top": [{"class": loaded.classes[i] if i < len(loaded.classes) else str(i),
                                                 "index": int(i), "prob": float(row[i])} for i in top]})
    return out
