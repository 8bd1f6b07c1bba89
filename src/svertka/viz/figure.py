"""What every plot shares: headless matplotlib, and writing a figure as PNG and SVG.

matplotlib is the optional extra ``plots``; without it a plot fails with one
line that says how to install it, never an ImportError traceback.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..fileio import atomic_write

FORMATS = ("png", "svg")
DPI = 100


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError("plots need matplotlib: pip install 'svertka[plots]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "figure.dpi": DPI, "axes.titlesize": 11,
                         "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
                         "legend.fontsize": 8, "svg.hashsalt": "svertka"})  # SVG ids stable across runs
    return plt


def plots_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def output_paths(out, formats=FORMATS) -> list[Path]:
    """``out`` without its extension, once per format: 'docs/curves' -> curves.png, curves.svg."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix.lower() in (".png", ".svg", ".gif") else out
    for fmt in formats:
        if fmt not in ("png", "svg", "gif"):
            raise UsageError(f"unknown image format {fmt!r}; choose png, svg or gif")
    return [stem.with_name(f"{stem.name}.{fmt}") for fmt in formats]


def save(fig, out, formats=FORMATS, close: bool = True) -> list[Path]:
    """Write ``fig`` once per format (OUT.png, OUT.svg) and close it; return the paths."""
    paths = output_paths(out, formats)
    try:
        for path in paths:
            save_as(fig, path, path.suffix[1:], close=False)
    finally:
        if close:
            pyplot().close(fig)
    return paths


def save_as(fig, path, fmt: str, close: bool = True) -> Path:
    """Write ``fig`` to exactly ``path`` in format ``fmt``, atomically."""
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight"))
    finally:
        if close:
            pyplot().close(fig)


def rgb_frame(fig):
    """The rendered figure as a uint8 H x W x 3 array (for GIF frames)."""
    import numpy as np

    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
