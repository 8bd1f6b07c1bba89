"""Transposed convolution: the backward pass of a conv, used as a layer that
grows a feature map (U-Net decoders, FCN upsampling).

A conv gathers a k x k patch into one output pixel; the transposed conv
scatters each input pixel, times the kernel, into a k x k patch of the output:

    forward:   cols = W.T @ x                    (O/g*kh*kw, N*H*W), one GEMM per group
               full = col2im(cols)               each tap's plane added at stride s, offset i*d
               out  = full cropped by padding    (output_padding rows stay at the bottom/right)
    backward:  dcols = im2col(pad(dout))         the same taps, gathered back
               dx = W @ dcols,  dW = x @ dcols.T

    output size = (in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1

Weights are laid out as torch's: (in_channels, out_channels / groups, kh, kw).
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError, SvertkaError
from ...spec.geometry import conv_transpose_out, fmt_shape, pair
from .tensor import Tensor

__all__ = ["conv_transpose2d"]


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1,
                     where: str = "conv_transpose2d") -> Tensor:
    """torch.nn.functional.conv_transpose2d: x (N, C, H, W), weight (C, O/groups, kh, kw)."""
    (sh, sw), (ph, pw) = pair(stride, f"{where}: stride"), pair(padding, f"{where}: padding")
    oph, opw = pair(output_padding, f"{where}: output_padding")
    dh, dw = pair(dilation, f"{where}: dilation")
    _check(x, weight, bias, groups, where)
    N, C, H, W = x.shape
    _, Og, kh, kw = weight.shape
    G, Cg = groups, C // groups
    O = Og * G
    Ho, Wo = conv_transpose_out(H, kh, sh, ph, dh, oph), conv_transpose_out(W, kw, sw, pw, dw, opw)
    if min(sh, sw, dh, dw) < 1 or min(ph, pw, oph, opw) < 0 or Ho < 1 or Wo < 1:
        raise ShapeError(f"{where}: stride {sh, sw}, padding {ph, pw}, output_padding {oph, opw} and "
                         f"dilation {dh, dw} give no output for input {fmt_shape(x.shape)}")
    Hf, Wf = Ho + 2 * ph, Wo + 2 * pw  # the full output, before padding is cropped

    def tap(i, j):
        """The output pixels kernel tap (i, j) writes: rows i*d + h*s for every input row h."""
        return (slice(None), slice(None), slice(i * dh, i * dh + (H - 1) * sh + 1, sh),
                slice(j * dw, j * dw + (W - 1) * sw + 1, sw))

    xg = x.data.reshape(N, G, Cg, H * W)
    wg = weight.data.reshape(G, Cg, Og * kh * kw)
    cols = np.matmul(wg.transpose(0, 2, 1), xg)          # (N, G, Og*kh*kw, H*W): W.T @ x
    cols = cols.reshape(N, O, kh, kw, H, W)
    full = np.zeros((N, O, Hf, Wf), x.dtype)
    for i in range(kh):                                    # col2im: scatter each tap's plane
        for j in range(kw):
            full[tap(i, j)] += cols[:, :, i, j]
    out = np.ascontiguousarray(full[:, :, ph:ph + Ho, pw:pw + Wo])
    if bias is not None:
        out += bias.data.reshape(1, -1, 1, 1)

    need_x, need_w, w_shape = x.requires_grad, weight.requires_grad, weight.shape
    xd = x.data

    def backward(dout):
        gfull = np.zeros((N, O, Hf, Wf), dout.dtype)
        gfull[:, :, ph:ph + Ho, pw:pw + Wo] = dout
        dcols = np.empty((N, O, kh, kw, H, W), dout.dtype)
        for i in range(kh):                                # im2col: gather the same taps
            for j in range(kw):
                dcols[:, :, i, j] = gfull[tap(i, j)]
        dcols = dcols.reshape(N, G, Og * kh * kw, H * W)
        dx = np.matmul(wg, dcols).reshape(N, C, H, W) if need_x else None          # W @ dcols
        dw = (np.matmul(xd.reshape(N, G, Cg, H * W), dcols.transpose(0, 1, 3, 2)).sum(0)
              .reshape(w_shape) if need_w else None)                             # x @ dcols.T
        if bias is None:
            return dx, dw
        return dx, dw, dout.sum(axis=(0, 2, 3))

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(out, parents, backward, "conv_transpose2d")


def _check(x, weight, bias, groups, where):
    if not isinstance(x, Tensor) or not isinstance(weight, Tensor):
        raise SvertkaError(f"{where}: expects Tensors, got {type(x).__name__} and {type(weight).__name__}")
    if x.ndim != 4 or weight.ndim != 4:
        raise ShapeError(f"{where}: input must be N x C x H x W and weight C x O/groups x kh x kw, got "
                         f"{fmt_shape(x.shape)} and {fmt_shape(weight.shape)}")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != x.dtype):
        raise SvertkaError(f"{where}: dtype mismatch: input {x.dtype}, weight {weight.dtype}; cast them "
                           f"to one dtype (float32 by default)")
    if not isinstance(groups, (int, np.integer)) or groups < 1 or x.shape[1] % groups:
        raise ShapeError(f"{where}: groups={groups!r} must be a positive int dividing the input's "
                         f"{x.shape[1]} channels")
    if weight.shape[0] != x.shape[1]:
        raise ShapeError(f"{where}: input {fmt_shape(x.shape)} has {x.shape[1]} channels but weight "
                         f"{fmt_shape(weight.shape)} expects {weight.shape[0]}")
    if bias is not None and bias.shape != (weight.shape[1] * groups,):
        raise ShapeError(f"{where}: bias shape {fmt_shape(bias.shape)} != ({weight.shape[1] * groups},)")
