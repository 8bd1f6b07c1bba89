"""Plots of a training run: learning curves, confusion matrix, first-layer
filters and the feature maps of one image.

Weights are read into the NumPy engine whatever backend trained them (the
state_dict keys are the same), so these plots need neither torch nor a GPU.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError
from .figure import FORMATS, pyplot, save

ACCURACY_KEYS = (("train_acc", "train", ":"), ("val_acc", "validation", "--"), ("test_acc", "test", "-"))


# ------------------------------------------------------------------ loading


def read_metrics(run) -> list[dict]:
    """The per-epoch records of a run folder's metrics.jsonl."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise UsageError(f"{run} has no metrics.jsonl; pass a run folder of `svertka train`")
    rows = []
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path} line {i} is not JSON; the file is damaged "
                            f"(re-run training, or delete the line)") from None
        if not isinstance(row, dict) or "epoch" not in row:
            raise DataError(f"{path} line {i} is not an epoch record; "
                            f"is it a metrics.jsonl of `svertka train`?")
        rows.append(row)
    if not rows:
        raise DataError(f"{path} holds no epochs yet; plot it after the first epoch ends")
    return rows


def load_engine_model(run):
    """(Loaded, NumPy engine module in eval mode) for a run folder or weights file."""
    from ..train.evaluate import load_trained

    loaded = load_trained(run, backend="numpy")
    return loaded, loaded.adapter.model.eval()


def normalized_image(loaded, image_path, invert: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 H x W x C as the model sees it, float32 1 x C x H x W normalised input)."""
    from ..train.evaluate import invert_choice, load_image

    img = load_image(image_path, loaded.net.input_shape)
    if invert_choice(loaded, img, invert)[0]:
        img = 255 - img
    x = img.transpose(2, 0, 1)[None].astype(np.float32) / 255
    mean = np.asarray(loaded.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(loaded.std, np.float32).reshape(1, -1, 1, 1)
    return img, np.ascontiguousarray((x - mean) / std, np.float32)


def conv_paths(model) -> list[str]:
    """The state_dict paths of every Conv2d in the engine model, in forward order."""
    from ..backends.numpy.modules import Conv2d

    return [path for path, m in model.named_modules() if isinstance(m, Conv2d)]


def conv_weight(model, layer: str | None) -> tuple[str, np.ndarray]:
    """(path, O x I x kh x kw weights) of ``layer``, or of the first conv."""
    from ..backends.numpy.modules import Conv2d

    convs = conv_paths(model)
    if not convs:
        raise UsageError("this model has no Conv2d layer, so it has no filters to draw")
    if layer is None:
        layer = convs[0]
    modules = dict(model.named_modules())
    if layer not in modules:
        raise UsageError(f"no layer named {layer!r}; its conv layers are {', '.join(convs[:6])}"
                         + (" ..." if len(convs) > 6 else ""))
    if not isinstance(modules[layer], Conv2d):
        raise UsageError(f"{layer} is a {type(modules[layer]).__name__}, not a conv layer; pick one of "
                         f"{', '.join(convs[:6])}" + (" ..." if len(convs) > 6 else ""))
    return layer, modules[layer].weight.data


def run_label(run) -> str:
    return Path(run).resolve().name


# ------------------------------------------------------------------ curves


def plot_curves(runs, out="curves", formats=FORMATS) -> list[Path]:
    """Training loss and accuracy per epoch, one colour per run."""
    if not runs:
        raise UsageError("plot curves needs at least one run folder")
    data = [(run_label(r), read_metrics(r)) for r in runs]
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, rows) in enumerate(data):
        colour = colours[i % len(colours)]
        epochs = [r["epoch"] for r in rows]
        ax_loss.plot(epochs, [r.get("train_loss") for r in rows], "o-", ms=3, color=colour, label=label)
        for key, split, style in ACCURACY_KEYS:
            if any(r.get(key) is not None for r in rows):
                ax_acc.plot(epochs, [100 * r[key] if r.get(key) is not None else np.nan for r in rows],
                            style, marker="o", ms=3, color=colour, label=f"{label} ({split})")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="cross-entropy (nats per image)")
    ax_acc.set(title="accuracy", xlabel="epoch", ylabel="top-1 accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    fig.suptitle("learning curves: " + ", ".join(label for label, _ in data))
    return save(fig, out, formats)


# ------------------------------------------------------------------ confusion


def confusion_figure(conf, classes=None, title: str = "confusion matrix"):
    """A labelled confusion matrix: counts in the cells, colour = share of the true class."""
    plt = pyplot()
    conf = np.asarray(conf, np.int64)
    n = conf.shape[0]
    if conf.ndim != 2 or conf.shape != (n, n) or n == 0:
        raise UsageError(f"a confusion matrix must be square and non-empty, got shape {conf.shape}")
    classes = list(classes) if classes else [str(i) for i in range(n)]
    if len(classes) != n:
        raise UsageError(f"{len(classes)} class names for a {n} x {n} confusion matrix")
    share = 100 * conf / np.maximum(1, conf.sum(1, keepdims=True))
    size = max(4.5, 0.55 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class's images (%)")
    if n <= 40:  # beyond that the numbers are unreadable; the colours still are
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7 if n <= 12 else 5,
                        color="white" if share[i, j] > 60 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted class", ylabel="true class")
    total, right = int(conf.sum()), int(np.trace(conf))
    ax.set_title(f"{title}\n{right:,} of {total:,} images right ({100 * right / max(1, total):.2f}%)")
    return fig


def plot_confusion(run, out="confusion", formats=FORMATS, data=None, root=None, limit=None) -> list[Path]:
    """Evaluate a run on its test split and draw the confusion matrix."""
    from ..train.evaluate import evaluate, load_trained

    pyplot()  # without matplotlib, fail before evaluating
    loaded = load_trained(run)  # on the backend it was trained with: the whole test split, so the fast one
    r = evaluate(loaded, data, root, limit=limit)
    fig = confusion_figure(r["confusion"], r["classes"] or loaded.classes,
                           f"{loaded.net.name} on {r['data']} test ({run_label(run)})")
    return save(fig, out, formats)


# ------------------------------------------------------------------ filters


def filter_mosaic(weight: np.ndarray, max_out: int = 64, max_in: int = 16) -> tuple[np.ndarray, str]:
    """Kernels laid out as one image with one-pixel gaps (NaN), and how to read it.

    3 input channels: one RGB tile per filter, each scaled to [0, 1]. One input
    channel: one tile per filter. Otherwise a filters x input-channels matrix
    of kernels (the first ``max_out`` x ``max_in``)."""
    o, i, kh, kw = weight.shape
    o = min(o, max_out)
    if i == 3:
        w = weight[:o].transpose(0, 2, 3, 1).astype(np.float64)  # O x kh x kw x 3
        lo = w.min(axis=(1, 2, 3), keepdims=True)
        hi = w.max(axis=(1, 2, 3), keepdims=True)
        tiles = (w - lo) / np.maximum(hi - lo, 1e-12)
        cols = int(np.ceil(np.sqrt(o)))
        rows, layout = -(-o // cols), "rgb"
    elif i == 1:
        tiles = weight[:o, 0, :, :, None].astype(np.float64)
        cols = int(np.ceil(np.sqrt(o)))
        rows, layout = -(-o // cols), "grid"
    else:
        i = min(i, max_in)
        tiles = weight[:o, :i, :, :, None].reshape(o * i, kh, kw, 1).astype(np.float64)
        rows, cols, layout = o, i, "matrix"
    c = tiles.shape[-1]
    mosaic = np.full((rows * (kh + 1) - 1, cols * (kw + 1) - 1, c), np.nan)
    for t, tile in enumerate(tiles):
        r, k = divmod(t, cols)
        mosaic[r * (kh + 1): r * (kh + 1) + kh, k * (kw + 1): k * (kw + 1) + kw] = tile
    return (mosaic if c == 3 else mosaic[..., 0]), layout


def plot_filters(run, layer=None, out="filters", formats=FORMATS) -> list[Path]:
    """A grid of one conv layer's kernels (the first conv's by default)."""
    loaded, model = load_engine_model(run)
    layer, weight = conv_weight(model, layer)
    o, i, kh, kw = weight.shape
    mosaic, layout = filter_mosaic(weight)
    plt = pyplot()
    rows, cols = (mosaic.shape[0] + 1) // (kh + 1), (mosaic.shape[1] + 1) // (kw + 1)
    scale = max(0.25, min(0.6, 8 / max(rows, cols)))
    fig, ax = plt.subplots(figsize=(max(4.0, cols * scale + 2), max(3.0, rows * scale + 1.2)))
    if layout == "rgb":
        rgb = np.where(np.isnan(mosaic), 1.0, mosaic)
        ax.imshow(rgb, interpolation="nearest")
        what = "each filter's RGB weights scaled to [0, 1] (per filter)"
    else:
        bound = float(np.nanmax(np.abs(mosaic))) or 1.0
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="white")
        im = ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=-bound, vmax=bound,
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="weight value")
        what = "blue negative, red positive"
    if layout == "matrix":
        ax.set_xticks([k * (kw + 1) + (kw - 1) / 2 for k in range(cols)], range(cols))
        ax.set_yticks([r * (kh + 1) + (kh - 1) / 2 for r in range(rows)], range(rows))
        ax.set(xlabel="input channel", ylabel="filter (output channel)")
    else:
        ax.set_xticks([k * (kw + 1) + (kw - 1) / 2 for k in range(cols)], [str(k) for k in range(cols)])
        ax.set_yticks([r * (kh + 1) + (kh - 1) / 2 for r in range(rows)],
                      [str(r * cols) for r in range(rows)])
        ax.set(xlabel="filter index (+ column)", ylabel="filter index (row start)")
    shown = f"{min(o, 64)} of {o} filters" if o > 64 else f"{o} filters"
    if layout == "matrix" and i > 16:
        shown += f", 16 of {i} input channels"
    ax.set_title(f"{loaded.net.name} {layer}: {shown}, {kh}x{kw} px each, "
                 f"{i} input channel{'s' * (i > 1)}\n({what})")
    return save(fig, out, formats)


# ------------------------------------------------------------------ features


def feature_stages(model, shapes: dict[str, tuple]) -> list[str]:
    """One conv per resolution: the last conv before the feature map shrinks
    (or every conv, for a net with at most 8 of them)."""
    convs = conv_paths(model)
    if len(convs) <= 8:
        return convs
    stages = [p for p, nxt in zip(convs, convs[1:]) if shapes[p][1:] != shapes[nxt][1:]] + [convs[-1]]
    return stages[-8:]


def plot_features(run, image, out="features", formats=FORMATS, channels: int = 8,
                  invert: str = "auto") -> list[Path]:
    """The feature maps of one image at every conv stage: per stage, the
    ``channels`` maps with the largest mean activation."""
    from ..backends.numpy import Tensor, forward_with_taps, no_grad

    loaded, model = load_engine_model(run)
    img, x = normalized_image(loaded, image, invert)
    convs = conv_paths(model)
    if not convs:
        raise UsageError(f"{loaded.net.name} has no Conv2d layer, so it has no feature maps to draw")
    with no_grad():
        logits, taps = forward_with_taps(model, Tensor(x), convs)
    shapes = {p: taps[p].shape[1:] for p in convs}
    stages = feature_stages(model, shapes)
    probs = np.exp(logits.data[0] - logits.data[0].max())
    probs /= probs.sum()
    top = int(np.argmax(probs))
    top_name = loaded.classes[top] if top < len(loaded.classes) else str(top)
    plt = pyplot()
    cols = channels + 1
    fig, axes = plt.subplots(len(stages), cols, figsize=(1.3 * cols, 1.45 * len(stages) + 0.6), squeeze=False)
    for row, path in zip(axes, stages):
        maps = taps[path].data[0]
        order = np.argsort(-maps.mean(axis=(1, 2)))[:channels]
        show = img[..., 0] if img.shape[2] == 1 else img
        row[0].imshow(show, cmap="gray" if img.shape[2] == 1 else None, vmin=0, vmax=255)
        row[0].set_title("input", fontsize=7)
        row[0].set_ylabel(f"{path}\n{maps.shape[0]}x{maps.shape[1]}x{maps.shape[2]}", fontsize=7)
        for ax, ch in zip(row[1:], order):
            ax.imshow(maps[ch], cmap="viridis", interpolation="nearest")
            ax.set_title(f"ch {ch}, mean {maps[ch].mean():.2g}", fontsize=6)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in row[1 + len(order):]:
            ax.axis("off")
    fig.suptitle(f"{loaded.net.name}: feature maps of {Path(image).name} (conv outputs, "
                 f"channels with the largest mean; colour per map, yellow high)\n"
                 f"prediction: {top_name} ({100 * probs[top]:.1f}%); "
                 f"row label: layer and channels x height x width in px", fontsize=8)
    fig.tight_layout()
    return save(fig, out, formats)
