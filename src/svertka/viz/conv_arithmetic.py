"""The conv animation of the lecture, in the style of Dumoulin & Visin's "A guide
to convolution arithmetic": the kernel slides over the (padded) input, one frame
per output pixel, with the output size formula beside it.

The output size shown is ``svertka.spec.geometry.conv_out``, the same function
the analysis and both backends use, so the picture cannot disagree with them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..spec.geometry import conv_out
from .figure import FORMATS, output_paths, pyplot, rgb_frame, save

MAX_INPUT = 32       # a bigger grid's cells are too small to see
MAX_FRAMES = 400     # one frame per output pixel
FRAME_MS = 500
GIF_DPI = 72  # frames stay small; the PNG/SVG still is drawn at the usual resolution

# cell colours: input grid (padding, input, kernel over input, kernel over padding), output grid
_IN_COLOURS = ["#ffffff", "#9ecae1", "#08519c", "#969696"]
_OUT_COLOURS = ["#ffffff", "#a1d99b", "#006d2c"]  # not yet, done, current


@dataclass
class ConvAnimation:
    size: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    out: int
    formula: str
    frames: int
    paths: list[Path] = field(default_factory=list)


def formula_text(n: int, k: int, s: int, p: int, d: int) -> tuple[int, str]:
    """(output size, the formula with the numbers put in)."""
    out = conv_out(n, k, s, p, d)
    return out, (f"out = floor((in + 2p - d(k-1) - 1) / s) + 1 = "
                 f"floor(({n} + 2*{p} - {d}*({k}-1) - 1) / {s}) + 1 = {out}")


def check_geometry(n: int, k: int, s: int, p: int, d: int) -> int:
    for name, v, low in (("--in", n, 1), ("--kernel", k, 1), ("--stride", s, 1), ("--dilation", d, 1),
                         ("--padding", p, 0)):
        if v < low:
            raise UsageError(f"{name} must be at least {low}, got {v}")
    if n > MAX_INPUT:
        raise UsageError(f"--in {n} draws cells too small to see; use at most {MAX_INPUT}")
    out = conv_out(n, k, s, p, d)
    if out < 1:
        raise UsageError(f"a {k}x{k} kernel with dilation {d} spans {d * (k - 1) + 1} px, more than the "
                         f"{n} + 2*{p} px padded input; use a larger --in or --padding")
    if out * out > MAX_FRAMES:
        raise UsageError(f"{out}x{out} outputs make {out * out} frames; keep it at most {MAX_FRAMES} "
                         f"(a smaller --in or a larger --stride)")
    return out


def plot_conv(size: int = 5, kernel: int = 3, stride: int = 1, padding: int = 0, dilation: int = 1,
              out="conv", formats=FORMATS) -> ConvAnimation:
    """Write the GIF (one frame per output pixel) and a PNG/SVG of its first frame."""
    plt = pyplot()  # first: without matplotlib, a one-line error rather than an ImportError
    from matplotlib.colors import ListedColormap
    from PIL import Image  # a dependency of matplotlib

    o = check_geometry(size, kernel, stride, padding, dilation)
    _, formula = formula_text(size, kernel, stride, padding, dilation)
    n_pad = size + 2 * padding
    base = np.zeros((n_pad, n_pad), np.int64)
    base[padding:padding + size, padding:padding + size] = 1
    fig, (ax_in, ax_out) = plt.subplots(1, 2, figsize=(8.5, 4.9),
                                        gridspec_kw={"width_ratios": [n_pad, max(o, 3)]}, dpi=GIF_DPI)
    im_in = ax_in.imshow(base, cmap=ListedColormap(_IN_COLOURS), vmin=0, vmax=3)
    im_out = ax_out.imshow(np.zeros((o, o), np.int64), cmap=ListedColormap(_OUT_COLOURS), vmin=0, vmax=2)
    for ax, m, what in ((ax_in, n_pad,
                         f"input {size}x{size}" + (f" + padding {padding} (white)" if padding else "")),
                        (ax_out, o, f"output {o}x{o}")):
        ax.set_xticks(np.arange(-0.5, m, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, m, 1), minor=True)
        ax.grid(which="minor", color="#525252", lw=0.8)
        ax.tick_params(which="minor", length=0)
        ticks = range(0, m, max(1, m // 6))
        ax.set_xticks(ticks, [str(t - (padding if ax is ax_in else 0)) for t in ticks])
        ax.set_yticks(ticks, [str(t - (padding if ax is ax_in else 0)) for t in ticks])
        ax.set(title=what, xlabel="x (px)", ylabel="y (px)")
    fig.suptitle(f"Type: conv - Kernel: {kernel}x{kernel} - Stride: {stride} - Padding: {padding} - "
                 f"Dilation: {dilation}")
    fig.text(0.5, 0.02, formula, ha="center", fontsize=8, family="monospace")
    fig.subplots_adjust(bottom=0.16, top=0.86, wspace=0.25)

    taps = np.arange(kernel) * dilation
    frames, done = [], np.zeros((o, o), np.int64)
    for i in range(o):
        for j in range(o):
            grid = base.copy()
            rows, cols = np.ix_(i * stride + taps, j * stride + taps)
            grid[rows, cols] = np.where(base[rows, cols] == 1, 2, 3)
            state = done.copy()
            state[i, j] = 2
            im_in.set_data(grid)
            im_out.set_data(state)
            frames.append(Image.fromarray(rgb_frame(fig)))
            if not frames[1:]:
                still = [p for p in formats if p != "gif"]
                paths = save(fig, out, still, close=False)
            done[i, j] = 1
    plt.close(fig)
    gif = output_paths(out, ("gif",))[0]
    gif.parent.mkdir(parents=True, exist_ok=True)
    # disposal 1 and optimize off: every frame is kept whole, so the frame count is the output count
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0, optimize=False,
                   disposal=1)
    return ConvAnimation(size, kernel, stride, padding, dilation, o, formula, len(frames), [gif, *paths])

