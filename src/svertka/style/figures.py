"""Pictures of style transfer: the losses per iteration, and content | style | result.

``python -m svertka.style.figures docs/style [--size S] [--steps N] [--backend B]``
paints scikit-image's ``chelsea`` (a cat) in the styles of its ``brick``,
``grass`` and ``gravel`` photos with random VGG-19 weights, and writes ``panel.png``, the
results (``chelsea-brick.png`` ...), ``losses.png``/``.svg`` and ``runs.json``
(every iteration's losses). With ``--backends`` it runs one style on the NumPy
engine and on torch instead and overlays their losses (``backends.png``).
scikit-image is an optional extra (``pip install 'svertka[images]'``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..viz.figure import pyplot, save
from ..viz.image import write_image
from .settings import StyleSettings
from .transfer import StyleResult, stylize

STYLES = ("brick", "grass", "gravel")


def plot_losses(results: list[StyleResult], out, formats=("png", "svg"), labels=None) -> list[Path]:
    """Style and content loss against iteration, one line per run (log scale)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, r in enumerate(results):
        label = labels[i] if labels else f"{r.backend}, {r.weights}"
        steps = [h["step"] for h in r.history]
        for ax, key in zip(axes, ("style", "content")):
            ax.plot(steps, [h[key] for h in r.history], label=label, color=f"C{i}",
                    linestyle=("-", "--", ":")[i % 3])  # dashes show runs that coincide
    for ax, key in zip(axes, ("style", "content")):
        ax.set_title(f"{key} loss (relative squared error, mean over layers)" if key == "style"
                     else "content loss (relative squared error at relu4_2)")
        ax.set_xlabel("iteration")
        ax.set_yscale("symlog", linthresh=1e-3) if key == "content" else ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return save(fig, out, formats)


def plot_panel(content: np.ndarray, rows: list[tuple[str, np.ndarray, np.ndarray]], out, title: str = "",
               formats=("png",)) -> list[Path]:
    """The content image once, then a column per style: the style above, the result below
    (uint8 H x W x 3 images). ``rows``: (style name, style image, result) per style."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 1 + len(rows), figsize=(2.6 * (1 + len(rows)), 4.4), squeeze=False)
    axes[0, 0].imshow(content)
    axes[0, 0].set_title("content")
    for j, (name, style, result) in enumerate(rows, start=1):
        axes[0, j].imshow(style)
        axes[0, j].set_title(f"style: {name}")
        axes[1, j].imshow(result)
        axes[1, j].set_title(f"result ({name})")
    for ax in axes.ravel():
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, out, formats)


def skimage_photo(name: str, size: int) -> np.ndarray:
    """One of scikit-image's bundled photos as RGB uint8, longer side ``size``."""
    from PIL import Image

    try:
        from skimage import data
    except ImportError:
        raise UsageError("the example photos come with scikit-image: pip install 'svertka[images]'") from None
    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    w, h = image.size
    scale = size / max(w, h)
    return np.asarray(image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC))


def make_figures(out="docs/style", size: int = 192, steps: int = 200, backend: str = "torch",
                 seed: int = 0, log=print) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = StyleSettings(steps=steps)
    content = skimage_photo("chelsea", size)
    rows, results = [], []
    for name in STYLES:
        style = skimage_photo(name, size)
        t0 = time.perf_counter()
        r = stylize(content, style, settings, backend=backend, seed=seed)
        log(f"{name}: {time.perf_counter() - t0:.0f} s, style {r.history[0]['style']:.3g} -> "
            f"{r.history[-1]['style']:.3g}, content {r.history[0]['content']:.3g} -> "
            f"{r.history[-1]['content']:.3g}")
        rows.append((name, style, r.image))
        results.append(r)
        write_image(out / f"chelsea-{name}.png", r.image)  # the result at full size
    h, w = content.shape[:2]
    title = (f"VGG-19 with random weights (seed {seed}), {backend}, Adam {steps} steps, "
             f"style weight {settings.style_weight:g}, {w}x{h}")
    written = plot_panel(content, rows, out / "panel", title)
    written += [out / f"chelsea-{name}.png" for name in STYLES]
    written += plot_losses(results, out / "losses", labels=[f"chelsea + {n}" for n in STYLES])
    runs = [{"style": n, "backend": r.backend, "model": r.model, "weights": r.weights, "size": [h, w],
             "settings": vars(settings), "seconds_per_step": r.seconds_per_step(), "history": r.history}
            for n, r in zip(STYLES, results)]
    (out / "runs.json").write_text(json.dumps(runs, indent=1) + "\n")
    return written + [out / "runs.json"]


def backends_figure(out="docs/style", size: int = 64, steps: int = 60, style: str = "brick", seed: int = 0,
                    dtype=np.float32, log=print) -> list[Path]:
    """The same run (same weights, image and settings) on the NumPy engine and on torch: their
    loss curves overlaid (``backends.png``/``.svg``, float32) and how far apart they end
    (``backends.json``; ``backends-float64.json`` for float64, without a figure)."""
    out = Path(out)
    bits = np.dtype(dtype).itemsize * 8
    content, style_image = skimage_photo("chelsea", size), skimage_photo(style, size)
    results = [stylize(content, style_image, StyleSettings(steps=steps), backend=b, seed=seed, dtype=dtype)
               for b in ("numpy", "torch")]
    n, t = results

    def gap(a, b, key):  # relative difference of one loss between the backends
        return abs(a[key] - b[key]) / abs(b[key]) if b[key] else 0.0

    diff = np.abs(n.image.astype(int) - t.image.astype(int))
    facts = {"style": style, "size": list(content.shape[:2]), "steps": steps, "dtype": f"float{bits}",
             "largest_loss_gap": max(gap(a, b, k) for a, b in zip(n.history, t.history)
                                     for k in ("style", "content")),
             "final_style_gap": gap(n.history[-1], t.history[-1], "style"),
             "final_content_gap": gap(n.history[-1], t.history[-1], "content"),
             "pixel_diff_max": int(diff.max()), "pixel_diff_mean": float(diff.mean()),
             "share_of_values_off_by_more_than_2": float((diff > 2).mean()),
             "seconds_per_step": {"numpy": n.seconds_per_step(), "torch": t.seconds_per_step()}}
    name = "backends.json" if bits == 32 else f"backends-float{bits}.json"
    (out / name).write_text(json.dumps(facts, indent=1) + "\n")
    log(json.dumps(facts))
    if bits != 32:
        return [out / name]
    h, w = content.shape[:2]
    labels = [f"NumPy engine, float32, {w}x{h}", f"torch, float32, {w}x{h}"]
    return plot_losses(results, out / "backends", labels=labels) + [out / name]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default="docs/style")
    p.add_argument("--size", type=int, help="longer side in px (default: 192; 64 with --backends)")
    p.add_argument("--steps", type=int, help="Adam steps (default: 200; 60 with --backends)")
    p.add_argument("--backend", default="torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backends", action="store_true",
                   help="instead: the same run on both backends, loss curves overlaid")
    p.add_argument("--float64", action="store_true", help="with --backends: run in float64, no figure")
    a = p.parse_args()
    say = lambda s: print(s, flush=True)  # noqa: E731
    if a.backends:
        paths = backends_figure(a.out, a.size or 64, a.steps or 60, seed=a.seed,
                                dtype=np.float64 if a.float64 else np.float32, log=say)
    else:
        paths = make_figures(a.out, a.size or 192, a.steps or 200, a.backend, a.seed, log=say)
    for path in paths:
        print(path)
