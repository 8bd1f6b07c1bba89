"""Where a sliding window (conv or pool) meets its input: the geometry of one
call, the padded input as a flat buffer, and the strided view of one kernel tap.
``conv.py`` (im2col) and the pools in ``functional.py`` read from here."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...spec.geometry import conv_out

__all__ = ["Geometry", "pad", "unpad", "window_view", "CHUNK_BYTES"]

# bytes of one im2col chunk: a few MB stays in L2/L3 between the copy and the GEMM
CHUNK_BYTES = 8 << 20
# "wide" rows (below) are used while the garbage columns stay under this share of a row
WIDE_MAX_WASTE = 0.25


class Geometry:
    """Sizes of one conv call, and the padded input as a flat buffer."""

    def __init__(self, x_shape, kernel, stride, padding, dilation, ceil_mode=False):
        self.N, self.C, self.H, self.W = x_shape
        self.kh, self.kw = kernel
        (self.sh, self.sw), (self.ph, self.pw), (self.dh, self.dw) = stride, padding, dilation
        self.Ho = conv_out(self.H, self.kh, self.sh, self.ph, self.dh, ceil_mode)
        self.Wo = conv_out(self.W, self.kw, self.sw, self.pw, self.dw, ceil_mode)
        # ceil_mode (pools): the last window may hang over the bottom/right edge
        self.Hp = max(self.H + 2 * self.ph, (self.Ho - 1) * self.sh + self.dh * (self.kh - 1) + 1)
        self.Wp = max(self.W + 2 * self.pw, (self.Wo - 1) * self.sw + self.dw * (self.kw - 1) + 1)
        # "wide" output: with stride 1 along W compute whole padded rows, crop later
        # (unless the garbage columns would exceed WIDE_MAX_WASTE of the row)
        self.Wv = self.Wp if self.sw == 1 and self.Wp - self.Wo <= WIDE_MAX_WASTE * self.Wo else self.Wo
        self.plane = self.Hp * self.Wp
        # the last wide window runs (kw-1)*dw elements past the buffer's end
        self.slack = (self.kw - 1) * self.dw if self.Wv == self.Wp else 0

    def chunk(self, rows: int, itemsize: int) -> int:
        """Examples per chunk, so one chunk of cols is about CHUNK_BYTES."""
        per_example = rows * self.Ho * self.Wv * itemsize
        return max(1, min(self.N, CHUNK_BYTES // max(per_example, 1)))


def pad(x: np.ndarray, g: Geometry, fill: float = 0.0) -> np.ndarray:
    """Padding: ``fill`` around each plane, in a flat buffer with some slack at the end."""
    if g.Hp == g.H and g.Wp == g.W and g.slack == 0 and x.flags.c_contiguous:
        return x.reshape(-1)
    if fill == 0.0:
        flat = np.zeros(g.N * g.C * g.plane + g.slack, x.dtype)
    else:
        flat = np.full(g.N * g.C * g.plane + g.slack, fill, x.dtype)
    xp = flat[: g.N * g.C * g.plane].reshape(g.N, g.C, g.Hp, g.Wp)
    xp[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W] = x
    return flat


def window_view(flat: np.ndarray, g: Geometry, n: int, i: int, j: int) -> np.ndarray:
    """The input pixels kernel tap (i, j) meets, for every output position:
    view[n, c, ho, wo] = x_pad[n, c, ho*sh + i*dh, wo*sw + j*dw], shape (n, C, Ho, Wv)."""
    e = flat.itemsize
    start = i * g.dh * g.Wp + j * g.dw  # dilation: how far apart the taps are
    return as_strided(flat[start:], (n, g.C, g.Ho, g.Wv),
                      (g.C * g.plane * e, g.plane * e, g.sh * g.Wp * e, g.sw * e))  # stride


def unpad(dflat: np.ndarray, g: Geometry) -> np.ndarray:
    dxp = dflat[: g.N * g.C * g.plane].reshape(g.N, g.C, g.Hp, g.Wp)
    return np.ascontiguousarray(dxp[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W])
