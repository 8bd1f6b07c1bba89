"""A convolution is "de jure just a linear layer, with loads of zeros": the
matrix M with y.ravel() = M @ x.ravel() for a single-channel input x and
kernel w. Each row is one output pixel; its nonzeros are the kernel's taps,
placed at the input pixels the window covers (taps on the padding drop out).
im2col is the same matrix read "de facto": gather the windows, then one GEMM.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..spec.geometry import conv_out
from .figure import FORMATS, pyplot, save

MAX_PIXELS = 400  # input pixels (columns of the matrix); beyond that the cells vanish


@dataclass
class ConvMatrix:
    matrix: np.ndarray          # (OH*OW) x (H*W)
    kernel: np.ndarray          # k x k
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    paths: list[Path] = field(default_factory=list)

    @property
    def zero_fraction(self) -> float:
        return float((self.matrix == 0).mean())


def conv_matrix(in_hw, kernel: np.ndarray, stride: int = 1, padding: int = 0,
                dilation: int = 1) -> ConvMatrix:
    """The matrix of a single-channel conv (cross-correlation, as torch) with ``kernel``."""
    h, w = in_hw
    k = kernel.shape[0]
    oh, ow = conv_out(h, k, stride, padding, dilation), conv_out(w, k, stride, padding, dilation)
    m = np.zeros((oh * ow, h * w), kernel.dtype)
    for i in range(oh):
        for j in range(ow):
            for a in range(k):
                r = i * stride - padding + a * dilation
                if not 0 <= r < h:
                    continue
                for b in range(k):
                    c = j * stride - padding + b * dilation
                    if 0 <= c < w:
                        m[i * ow + j, r * w + c] += kernel[a, b]
    return ConvMatrix(m, kernel, (h, w), (oh, ow))


def parse_hw(text: str) -> tuple[int, int]:
    """'4x4' or '4' -> (4, 4)."""
    parts = str(text).lower().replace(" ", "").split("x")
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() for p in parts) or min(int(p) for p in parts) < 1:
        raise UsageError(f"malformed --in {text!r}; write HxW (4x4) or one size (4)")
    h, w = int(parts[0]), int(parts[-1])
    return h, w


def plot_toeplitz(in_hw=(4, 4), kernel: int = 3, stride: int = 1, padding: int = 0, dilation: int = 1,
                  seed: int = 0, out="toeplitz", formats=FORMATS) -> ConvMatrix:
    """Draw the conv as its matrix, beside the kernel it is built from."""
    h, w = in_hw
    for name, v, low in (("--kernel", kernel, 1), ("--stride", stride, 1), ("--dilation", dilation, 1),
                         ("--padding", padding, 0)):
        if v < low:
            raise UsageError(f"{name} must be at least {low}, got {v}")
    if h * w > MAX_PIXELS:
        raise UsageError(f"--in {h}x{w} makes a matrix {h * w} columns wide, too small to read; use at most "
                         f"{MAX_PIXELS} pixels (e.g. 6x6)")
    if min(conv_out(h, kernel, stride, padding, dilation),
           conv_out(w, kernel, stride, padding, dilation)) < 1:
        raise UsageError(f"a {kernel}x{kernel} kernel with dilation {dilation} does not fit a {h}x{w} input "
                         f"with padding {padding}; use a larger --in or --padding")
    # small integers, so the matrix can be read cell by cell
    weights = np.random.default_rng(seed).integers(1, 10, size=(kernel, kernel)).astype(np.float32)
    cm = conv_matrix((h, w), weights, stride, padding, dilation)
    oh, ow = cm.out_hw
    plt = pyplot()
    rows, cols = cm.matrix.shape
    fig = plt.figure(figsize=(min(16, 2.8 + 0.32 * cols), min(14, 1.6 + 0.32 * rows + 0.4)))
    grid = fig.add_gridspec(1, 2, width_ratios=[max(kernel, 2), cols], wspace=0.5)
    ax_k, ax_m = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    ax_k.imshow(weights, cmap=cmap, vmin=0, vmax=9)
    for (a, b), v in np.ndenumerate(weights):
        ax_k.text(b, a, f"{v:.0f}", ha="center", va="center", color="black" if v > 5 else "white", fontsize=8)
    ax_k.set(title=f"kernel {kernel}x{kernel}", xlabel="kernel x", ylabel="kernel y",
             xticks=range(kernel), yticks=range(kernel))
    im = ax_m.imshow(np.ma.masked_equal(cm.matrix, 0), cmap=cmap, vmin=0, vmax=9, interpolation="nearest",
                     aspect="equal")
    if rows * cols <= 2500:
        for (r, c), v in np.ndenumerate(cm.matrix):
            if v:
                ax_m.text(c, r, f"{v:.0f}", ha="center", va="center", color="black" if v > 5 else "white",
                          fontsize=6)
    ax_m.set_xticks(np.arange(-0.5, cols, 1), minor=True)
    ax_m.set_yticks(np.arange(-0.5, rows, 1), minor=True)
    ax_m.grid(which="minor", color="#d9d9d9", lw=0.5)
    ax_m.tick_params(which="minor", length=0)
    step = max(1, cols // 16)
    ax_m.set_xticks(range(0, cols, step), [f"{c // w},{c % w}" for c in range(0, cols, step)], rotation=90)
    step = max(1, rows // 16)
    ax_m.set_yticks(range(0, rows, step), [f"{r // ow},{r % ow}" for r in range(0, rows, step)])
    ax_m.set(xlabel=f"input pixel (y,x), {h}x{w} flattened row by row",
             ylabel=f"output pixel (y,x), {oh}x{ow} flattened")
    fig.colorbar(im, ax=ax_m, fraction=0.03, pad=0.02, label="weight (blank = 0)")
    ax_m.set_title(f"conv as a matrix: y = M x, M is {rows}x{cols}, {100 * cm.zero_fraction:.0f}% zeros "
                   f"(stride {stride}, padding {padding}, dilation {dilation})")
    cm.paths = save(fig, out, formats)
    return cm
