"""Layers that grow a feature map without weights: interpolation and pixel shuffle.

Interpolation (nearest or bilinear) is a linear map along each axis that
does not depend on the data, so it is a matrix: output row o is a weighted sum
of input rows, with weights that only the sizes fix. Per image and channel

    forward:   y  = A_h @ x @ A_w.T          A_h (H_out, H), A_w (W_out, W)
    backward:  dx = A_h.T @ dy @ A_w         the same matrices, transposed

The matrices follow torch's ``F.interpolate`` index rules exactly (its
source-index formula, clamping and float32 nearest index), so both backends
give the same numbers. They are dense: simple to read and one BLAS call,
at the cost of H multiply-adds per output row instead of 2 (cheap at the map
sizes where these layers sit).

Pixel shuffle is a reshape, a permutation and a reshape; its backward is the
inverse permutation, which the Tensor's reshape and permute already provide.
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError, SvertkaError
from ...spec.geometry import fmt_shape, pair
from .tensor import Tensor

__all__ = ["interpolate", "pixel_shuffle", "interpolation_matrix"]


def interpolation_matrix(in_size: int, out_size: int, mode: str, align_corners: bool = False,
                         scale: int | None = None) -> np.ndarray:
    """The (out_size, in_size) float64 matrix of one axis. ``scale`` is the integer
    factor when the layer was given one (torch then uses 1/scale, else in/out)."""
    o = np.arange(out_size)
    A = np.zeros((out_size, in_size))
    if mode == "nearest":
        # torch: floor(o * s) with s = 1/scale or in/out, in float32
        s = np.float32(1.0 / scale) if scale else np.float32(in_size) / np.float32(out_size)
        src = np.minimum(np.floor(o.astype(np.float32) * s).astype(np.int64), in_size - 1)
        A[o, src] = 1.0
        return A
    if align_corners:
        ratio = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        x = ratio * o
    else:
        ratio = 1.0 / scale if scale else in_size / out_size
        x = np.maximum(ratio * (o + 0.5) - 0.5, 0.0)  # pixel centres; the left edge clamps
    i0 = np.minimum(np.floor(x).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)                  # the right edge repeats the last pixel
    w1 = np.clip(x - i0, 0.0, 1.0)
    np.add.at(A, (o, i0), 1.0 - w1)                       # i0 == i1 at the edge: weights add to 1
    np.add.at(A, (o, i1), w1)
    return A


def interpolate(x: Tensor, size=None, scale_factor=None, mode: str = "nearest",
                align_corners: bool | None = None, where: str = "interpolate") -> Tensor:
    """torch.nn.functional.interpolate for 4-d input, nearest or bilinear, with an
    output ``size`` or an integer ``scale_factor``."""
    if not isinstance(x, Tensor):
        raise SvertkaError(f"{where}: expects a Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ShapeError(f"{where}: input must be N x C x H x W, got shape {fmt_shape(x.shape)}")
    if mode not in ("nearest", "bilinear"):
        raise SvertkaError(f"{where}: mode {mode!r} is not nearest or bilinear")
    if (size is None) == (scale_factor is None):
        raise SvertkaError(f"{where}: give exactly one of size and scale_factor")
    N, C, H, W = x.shape
    scales = pair(scale_factor, f"{where}: scale_factor") if scale_factor is not None else (None, None)
    Ho, Wo = pair(size, f"{where}: size") if size is not None else (H * scales[0], W * scales[1])
    if min(Ho, Wo, *(s for s in scales if s is not None)) < 1:
        raise ShapeError(f"{where}: output {Ho}x{Wo} from input {fmt_shape(x.shape)} is empty")
    corners = bool(align_corners)
    Ah = interpolation_matrix(H, Ho, mode, corners, scales[0]).astype(x.dtype)
    Aw = interpolation_matrix(W, Wo, mode, corners, scales[1]).astype(x.dtype)
    out = Ah @ x.data @ Aw.T

    def backward(g):
        return Ah.T @ g @ Aw

    return Tensor._make(out, (x,), backward, "interpolate")


def pixel_shuffle(x: Tensor, upscale_factor: int, where: str = "pixel_shuffle") -> Tensor:
    """(N, C*r*r, H, W) -> (N, C, H*r, W*r): channel c*r*r + i*r + j fills output
    pixel (h*r + i, w*r + j), as torch.nn.functional.pixel_shuffle."""
    r = int(upscale_factor)
    if x.ndim != 4 or r < 1 or x.shape[1] % (r * r):
        raise ShapeError(f"{where}: input {fmt_shape(x.shape)} must be N x C x H x W with channels "
                         f"divisible by {r}*{r}")
    N, C, H, W = x.shape
    c = C // (r * r)
    return x.reshape(N, c, r, r, H, W).permute(0, 1, 4, 2, 5, 3).reshape(N, c, H * r, W * r)
