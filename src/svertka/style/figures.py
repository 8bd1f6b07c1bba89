"""Pictures of style transfer: the losses per iteration, and content | style | result.

``python -m svertka.style.figures docs/style [--size S] [--steps N] [--backend B]``
paints scikit-image's ``chelsea`` (a cat) in the styles of its ``brick``,
``grass`` and ``gravel`` photos with random VGG-19 weights, and writes ``panel.png``, the
results (``chelsea-brick.png`` ...), ``losses.png``/``.svg`` and ``runs.json``
(every iteration's losses).
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
            ax.plot(steps, [h[key] for h in r.history], label=label, color=f"C{i}")
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


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default="docs/style")
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--backend", default="torch")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    for path in make_figures(a.out, a.size, a.steps, a.backend, a.seed, log=lambda s: print(s, flush=True)):
        print(path)
