"""Convolution as the lecture teaches it: im2col -> GEMM -> col2im.

A conv layer is "de jure a linear layer with loads of zeros, de facto im2col":
every output pixel is a dot product of the weights with one k x k patch of
every input channel. Lay the patches out as the columns of a matrix and the
whole layer is ONE matrix product.

    forward:   pad x  ->  cols = im2col(x_pad)      (C*kh*kw, N*Ho*Wo)
                          out  = W  @ cols          W is (O, C*kh*kw)
    backward:  dW    = dout @ cols.T
               dcols = W.T @ dout
               dx    = col2im(dcols)                adds each patch back where it came from
               (at stride 1, dx is the same as a conv of dout with the flipped
               kernel; that is one more im2col -> GEMM and cheaper than col2im)

Where each conv parameter enters (see ``window.window_view``):

- **padding**: zeros around x, once, before anything else (``window.pad``);
- **stride**:  the step between two output positions: the output axes of the
  strided view step ``stride * row`` / ``stride`` elements;
- **dilation**: the step between two kernel taps: the kernel axes of the view
  step ``dilation * row`` / ``dilation`` elements;
- **groups**:  channels split into ``groups`` independent convs: the weight
  reshapes to (groups, O/groups, C/groups*kh*kw) and the GEMM is batched over
  groups. Depthwise (groups = C) has 1 channel per group, so a GEMM has
  nothing to multiply; a shift-and-add loop over the k*k taps is faster there.

Two tricks keep the copies cheap (the GEMM itself is as fast as torch's):

- im2col is ONE ``as_strided`` view of the padded input; only the copy of that
  view into a contiguous matrix touches memory. With stride 1 along W the view
  covers whole padded rows ("wide" output, Wv = Wp columns, the last
  Wp - Wo of them garbage that is cropped): every column of cols is then one
  contiguous run of memory and the copy streams.
- the batch is processed in chunks so one chunk of cols stays in cache, and
  cols is never stored: backward rebuilds it from the padded input.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...errors import ShapeError, SvertkaError
from ...spec.geometry import fmt_shape, pair
from .tensor import Tensor
from .window import Geometry, pad, unpad, window_view

__all__ = ["conv2d", "im2col", "col2im"]

# below this many input channels per group the flipped-kernel GEMM for dx is too
# thin to beat col2im (LeNet conv2 has 6: measured 2x slower that way)
DX_BY_CONV_MIN_CHANNELS = 16


# --------------------------------------------------------------------- the layout


def im2col(flat: np.ndarray, g: Geometry, n: int) -> np.ndarray:
    """ONE strided view of the padded input, copied once into the matrix
    cols[(c, i, j), (n, ho, wo)] = x_pad[n, c, ho*sh + i*dh, wo*sw + j*dw]."""
    e = flat.itemsize
    view = as_strided(
        flat,
        (g.C, g.kh, g.kw, n, g.Ho, g.Wv),
        (g.plane * e,                       # next input channel
         g.dh * g.Wp * e, g.dw * e,         # next kernel tap: dilation
         g.C * g.plane * e,                 # next example
         g.sh * g.Wp * e, g.sw * e),        # next output position: stride
    )
    return np.ascontiguousarray(view).reshape(g.C * g.kh * g.kw, n * g.Ho * g.Wv)


def col2im(dcols: np.ndarray, dflat: np.ndarray, g: Geometry, n: int) -> None:
    """The adjoint of im2col: add every column back onto the pixels it was
    copied from. One strided add per kernel tap (k*k of them), no scatter."""
    d = dcols.reshape(g.C, g.kh, g.kw, n, g.Ho, g.Wv)
    for i in range(g.kh):
        for j in range(g.kw):
            window_view(dflat, g, n, i, j)[...] += d[:, i, j].transpose(1, 0, 2, 3)


# -------------------------------------------------------------------- the op


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1, where: str = "conv2d") -> Tensor:
    """torch.nn.functional.conv2d: x (N, C, H, W), weight (O, C/groups, kh, kw)."""
    stride = pair(stride, f"{where}: stride")
    padding = pair(padding, f"{where}: padding")
    dilation = pair(dilation, f"{where}: dilation")
    _check(x, weight, bias, stride, padding, dilation, groups, where)
    g = Geometry(x.shape, weight.shape[2:], stride, padding, dilation)
    g.O, g.Cg = weight.shape[:2]
    if groups == g.C and g.Cg == 1 and g.O == g.C and groups > 1:
        return _depthwise(x, weight, bias, g, where)

    G, Og, K = groups, g.O // groups, g.Cg * g.kh * g.kw
    xd = x.data
    wd = weight.data
    wmat = wd.reshape(G, Og, K)
    out = _forward(xd, wmat, g, None if bias is None else bias.data)

    need_x, need_w, w_shape = x.requires_grad, weight.requires_grad, weight.shape
    has_b, need_b = bias is not None, bias is not None and bias.requires_grad
    # stride 1: dx is itself a convolution (below); otherwise col2im adds the patches back.
    dx_by_conv = ((g.sh, g.sw) == (1, 1) and g.Cg >= DX_BY_CONV_MIN_CHANNELS
                  and g.ph <= g.dh * (g.kh - 1) and g.pw <= g.dw * (g.kw - 1))

    def backward(dout):
        dx = dw = db = None
        if need_b:
            db = dout.sum(axis=(0, 2, 3))
        if need_x and dx_by_conv:
            dx = _input_grad_by_conv(dout, wd, g, G)
        if need_w or (need_x and not dx_by_conv):
            dw, dx_col = _backward_im2col(xd, dout, wmat, g, need_w, need_x and not dx_by_conv)
            dx = dx if dx is not None else dx_col
        if dw is not None:
            dw = dw.reshape(w_shape)
        return (dx, dw, db) if has_b else (dx, dw)

    parents = (x, weight, bias) if bias is not None else (x, weight)
    return Tensor._make(out, parents, backward, "conv2d")


def _forward(xd: np.ndarray, wmat: np.ndarray, g: Geometry, bias: np.ndarray | None) -> np.ndarray:
    """im2col -> GEMM on raw arrays, chunked over the batch. wmat is (groups, O/groups, K)."""
    G, K = wmat.shape[0], wmat.shape[2]
    O = G * wmat.shape[1]
    flat = pad(xd, g)
    out = np.empty((g.N, O, g.Ho, g.Wo), xd.dtype)
    nb = g.chunk(g.C * g.kh * g.kw, xd.itemsize)
    for n0 in range(0, g.N, nb):
        n = min(nb, g.N - n0)
        cols = im2col(flat[n0 * g.C * g.plane:], g, n)                  # im2col
        res = np.matmul(wmat, cols.reshape(G, K, -1))                    # GEMM, per group
        res = res.reshape(O, n, g.Ho, g.Wv)[..., :g.Wo].transpose(1, 0, 2, 3)
        if bias is not None:  # added during the copy back to (N, O, Ho, Wo)
            np.add(res, bias.reshape(1, -1, 1, 1), out=out[n0:n0 + n])
        else:
            out[n0:n0 + n] = res
    return out  # the padded copy is dropped: backward pads x again, as torch saves x alone


def _input_grad_by_conv(dout: np.ndarray, w: np.ndarray, g: Geometry, G: int) -> np.ndarray:
    """At stride 1 the gradient of a conv's input is a conv of the output
    gradient with the flipped kernel, in/out channels swapped, padding
    d*(k-1) - p. One im2col + GEMM, and no col2im scatter."""
    O, Cg, kh, kw = w.shape
    Og = O // G
    wt = w.reshape(G, Og, Cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]  # flip the taps
    wmat = np.ascontiguousarray(wt).reshape(G, Cg, Og * kh * kw)
    gt = Geometry(dout.shape, (kh, kw), (1, 1),
                   (g.dh * (kh - 1) - g.ph, g.dw * (kw - 1) - g.pw), (g.dh, g.dw))
    return _forward(dout, wmat, gt, None)


def _backward_im2col(xd, dout, wmat, g: Geometry, need_w: bool, need_x: bool):
    """dW = dout @ cols.T, and (when asked) dx = col2im(W.T @ dout), chunked over the batch."""
    G, Og, K = wmat.shape
    O = G * Og
    nb = g.chunk(g.C * g.kh * g.kw, xd.itemsize)  # the forward's chunks
    flat = pad(xd, g) if need_w else None
    dw = np.zeros((G, Og, K), wmat.dtype) if need_w else None
    dflat = np.zeros(g.N * g.C * g.plane + g.slack, dout.dtype) if need_x else None
    for n0 in range(0, g.N, nb):
        n = min(nb, g.N - n0)
        # dout in the wide (O, n, Ho, Wv) layout; the garbage columns get zero gradient
        dmat = np.zeros((O, n, g.Ho, g.Wv), dout.dtype)
        dmat[..., :g.Wo] = dout[n0:n0 + n].transpose(1, 0, 2, 3)
        dmat = dmat.reshape(G, Og, -1)
        if need_w:
            cols = im2col(flat[n0 * g.C * g.plane:], g, n).reshape(G, K, -1)
            dw += np.matmul(dmat, cols.transpose(0, 2, 1))               # dW = dout @ cols.T
        if need_x:
            dcols = np.matmul(wmat.transpose(0, 2, 1), dmat)              # dcols = W.T @ dout
            col2im(dcols, dflat[n0 * g.C * g.plane:], g, n)              # col2im
    return dw, (unpad(dflat, g) if need_x else None)


def _depthwise(x: Tensor, weight: Tensor, bias: Tensor | None, g: Geometry, where: str) -> Tensor:
    """groups = C: each channel convolved with its own k x k filter.

    Shift-and-add: out = sum over taps (i, j) of w[:, i, j] * window(i, j).
    k*k broadcast multiply-adds, chunked over the batch so they run in cache."""
    flat = pad(x.data, g)
    w = weight.data.reshape(g.C, g.kh * g.kw)
    taps = [(i, j) for i in range(g.kh) for j in range(g.kw)]
    nb = g.chunk(3 * g.C, x.data.itemsize)  # ~3 planes per channel live at once
    out = np.empty((g.N, g.C, g.Ho, g.Wo), x.dtype)
    for n0 in range(0, g.N, nb):
        n = min(nb, g.N - n0)
        sub = flat[n0 * g.C * g.plane:]
        acc = np.zeros((n, g.C, g.Ho, g.Wv), x.dtype)
        tmp = np.empty_like(acc)
        for t, (i, j) in enumerate(taps):
            np.multiply(window_view(sub, g, n, i, j), w[:, t].reshape(1, -1, 1, 1), out=tmp)
            acc += tmp
        acc = acc[..., :g.Wo]
        if bias is not None:
            np.add(acc, bias.data.reshape(1, -1, 1, 1), out=out[n0:n0 + n])
        else:
            out[n0:n0 + n] = acc

    xd = x.data
    del flat  # backward pads x again
    need_x, need_w, w_shape = x.requires_grad, weight.requires_grad, weight.shape
    has_b, need_b = bias is not None, bias is not None and bias.requires_grad

    def backward(dout):
        dx = dw = db = None
        if need_b:
            db = dout.sum(axis=(0, 2, 3))
        flat = pad(xd, g) if need_w else None
        if need_w:
            dw = np.zeros((g.C, len(taps)), w.dtype)
        dflat = np.zeros(g.N * g.C * g.plane + g.slack, dout.dtype) if need_x else None
        for n0 in range(0, g.N, nb):
            n = min(nb, g.N - n0)
            sub = flat[n0 * g.C * g.plane:] if need_w else None
            dwide = np.zeros((n, g.C, g.Ho, g.Wv), dout.dtype)
            dwide[..., :g.Wo] = dout[n0:n0 + n]
            tmp = np.empty_like(dwide)
            for t, (i, j) in enumerate(taps):
                if dw is not None:  # dw[c, tap] = sum over (n, ho, wo) of dout * window
                    np.multiply(dwide, window_view(sub, g, n, i, j), out=tmp)
                    dw[:, t] += tmp.sum(axis=(0, 2, 3))
                if dflat is not None:  # dx: add dout * w back where each tap read
                    np.multiply(dwide, w[:, t].reshape(1, -1, 1, 1), out=tmp)
                    window_view(dflat[n0 * g.C * g.plane:], g, n, i, j)[...] += tmp
        if dflat is not None:
            dx = unpad(dflat, g)
        if dw is not None:
            dw = dw.reshape(w_shape)
        return (dx, dw, db) if has_b else (dx, dw)

    parents = (x, weight, bias) if bias is not None else (x, weight)
    return Tensor._make(out, parents, backward, "conv2d_depthwise")


def _check(x, weight, bias, stride, padding, dilation, groups, where):
    if not isinstance(x, Tensor) or not isinstance(weight, Tensor):
        raise SvertkaError(f"{where}: expects Tensors, got {type(x).__name__} and {type(weight).__name__}")
    if x.ndim != 4:
        raise ShapeError(f"{where}: input must be N x C x H x W, got shape {fmt_shape(x.shape)}")
    if weight.ndim != 4:
        raise ShapeError(f"{where}: weight must be O x C/groups x kh x kw, got {fmt_shape(weight.shape)}")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != x.dtype):
        raise SvertkaError(f"{where}: dtype mismatch: input {x.dtype} {fmt_shape(x.shape)}, weight "
                           f"{weight.dtype} {fmt_shape(weight.shape)}"
                           + (f", bias {bias.dtype}" if bias is not None else "")
                           + "; cast them to one dtype (float32 by default)")
    N, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise SvertkaError(f"{where}: groups must be a positive int, got {groups!r}")
    if C % groups or O % groups:
        raise ShapeError(f"{where}: channels must divide by groups={groups}: input {fmt_shape(x.shape)} "
                         f"has {C} channels, weight {fmt_shape(weight.shape)} has {O} filters")
    if Cg * groups != C:
        raise ShapeError(f"{where}: input {fmt_shape(x.shape)} has {C} channels but weight "
                         f"{fmt_shape(weight.shape)} expects {Cg} x groups {groups} = {Cg * groups}")
    if bias is not None and bias.shape != (O,):
        raise ShapeError(f"{where}: bias shape {fmt_shape(bias.shape)} != ({O},) for weight "
                         f"{fmt_shape(weight.shape)}")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise SvertkaError(f"{where}: stride {stride} and dilation {dilation} must be >= 1 and "
                           f"padding {padding} >= 0")
    for axis, size, k, _s, p, d in (("H", H, kh, *[v[0] for v in (stride, padding, dilation)]),
                                   ("W", W, kw, *[v[1] for v in (stride, padding, dilation)])):
        if size + 2 * p < d * (k - 1) + 1:
            raise ShapeError(f"{where}: input {fmt_shape(x.shape)} is smaller than the kernel: {axis}="
                             f"{size} with padding {p} is {size + 2 * p}, kernel {k} with dilation "
                             f"{d} spans {d * (k - 1) + 1}")
