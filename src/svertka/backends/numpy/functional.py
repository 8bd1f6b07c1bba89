"""The engine's ops, each with its backward beside its forward (torch.nn.functional names).

Every function takes and returns ``Tensor``s; ``where`` names the layer in
error messages. Convolution lives in ``conv.py``.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import ShapeError, SvertkaError
from ...spec.geometry import fmt_shape, pair
from .conv import conv2d
from .conv_transpose import conv_transpose2d
from .resample import interpolate, pixel_shuffle
from .tensor import Tensor
from .window import Geometry, pad, unpad, window_view

__all__ = [
    "conv2d", "conv_transpose2d", "interpolate", "pixel_shuffle",
    "linear", "relu", "relu6", "silu", "sigmoid", "hard_sigmoid", "tanh",
    "gelu", "scaled_tanh", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "dropout",
    "drop_path",
    "concat", "flatten", "local_response_norm", "cross_entropy", "mse_loss", "shortcut_a",
    "select_channels", "subsample", "rbf_output", "manual_seed", "get_rng",
]

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the engine's random numbers (dropout, drop_path, initialisation)."""
    global _rng
    _rng = np.random.default_rng(seed)


def get_rng() -> np.random.Generator:
    return _rng


def _need4d(x: Tensor, where: str):
    if x.ndim != 4:
        raise ShapeError(f"{where}: input must be N x C x H x W, got shape {fmt_shape(x.shape)}")


# ------------------------------------------------------------------- linear


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, where: str = "linear") -> Tensor:
    """y = x @ W.T + b, W is (out_features, in_features) as in torch."""
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ShapeError(f"{where}: input {fmt_shape(x.shape)} does not fit weight "
                         f"{fmt_shape(weight.shape)}: expected N x {weight.shape[1]}")
    if x.dtype != weight.dtype:
        raise SvertkaError(f"{where}: dtype mismatch: input {x.dtype} {fmt_shape(x.shape)}, weight "
                           f"{weight.dtype} {fmt_shape(weight.shape)}")
    xd, wd = x.data, weight.data
    out = xd @ wd.T
    if bias is not None:
        out += bias.data

    need_x, need_w = x.requires_grad, weight.requires_grad

    def backward(g):
        dx = g @ wd if need_x else None
        dw = g.T @ xd if need_w else None
        if bias is None:
            return dx, dw
        return dx, dw, g.sum(0)
    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(out, parents, backward, "linear")


# -------------------------------------------------------------- activations


def relu(x: Tensor) -> Tensor:
    out = np.maximum(x.data, 0)
    return Tensor._make(out, (x,), lambda g: g * (out > 0), "relu")


def relu6(x: Tensor) -> Tensor:
    xd = x.data
    out = np.clip(xd, 0, 6)
    return Tensor._make(out, (x,), lambda g: g * ((xd > 0) & (xd < 6)), "relu6")


def _sigmoid(v: np.ndarray) -> np.ndarray:
    # 0.5 * (1 + tanh(v/2)) equals 1 / (1 + exp(-v)) and never overflows
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def sigmoid(x: Tensor) -> Tensor:
    out = _sigmoid(x.data)
    return Tensor._make(out, (x,), lambda g: g * out * (1 - out), "sigmoid")


def hard_sigmoid(x: Tensor, alpha: float = 1.0 / 6.0, beta: float = 0.5) -> Tensor:
    z = alpha * x.data + beta
    out = np.clip(z, 0, 1).astype(x.data.dtype, copy=False)
    return Tensor._make(out, (x,), lambda g: g * (alpha * ((z > 0) & (z < 1))), "hard_sigmoid")


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def silu(x: Tensor) -> Tensor:
    xd = x.data
    s = _sigmoid(xd)
    return Tensor._make(xd * s, (x,), lambda g: g * s * (1 + xd * (1 - s)), "silu")


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: Tensor) -> Tensor:
    """torch's default (exact) GELU: x * Phi(x), Phi the normal CDF via erf."""
    xd = x.data
    cdf = (0.5 * (1.0 + _erf(xd * (1 / math.sqrt(2))).astype(np.float64))).astype(xd.dtype)
    pdf = np.exp(-0.5 * xd * xd) * (1 / math.sqrt(2 * math.pi))
    return Tensor._make(xd * cdf, (x,), lambda g: g * (cdf + xd * pdf), "gelu")


def scaled_tanh(x: Tensor, amplitude: float = 1.7159, slope: float = 2.0 / 3.0) -> Tensor:
    """LeCun 1998: A tanh(S x)."""
    t = np.tanh(slope * x.data)
    return Tensor._make(amplitude * t, (x,), lambda g: g * (amplitude * slope) * (1 - t * t),
                        "scaled_tanh")


# ------------------------------------------------------------------ pooling


def _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode, where):
    _need4d(x, where)
    k = pair(kernel_size, f"{where}: kernel_size")
    s = k if stride is None else pair(stride, f"{where}: stride")
    p, d = pair(padding, f"{where}: padding"), pair(dilation, f"{where}: dilation")
    if min(k) < 1 or min(s) < 1 or min(d) < 1:
        raise SvertkaError(f"{where}: kernel {k}, stride {s}, dilation {d} must be positive")
    if any(2 * pp > kk for pp, kk in zip(p, k)) or min(p) < 0:
        raise SvertkaError(f"{where}: padding {p} must be between 0 and half the kernel {k}")
    g = Geometry(x.shape, k, s, p, d, ceil_mode)
    if g.Ho < 1 or g.Wo < 1:
        raise ShapeError(f"{where}: input {fmt_shape(x.shape)} is smaller than the pooling window: "
                         f"kernel {k} with dilation {d} and padding {p} gives output {g.Ho}x{g.Wo}")
    return g


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               where: str = "max_pool2d") -> Tensor:
    """Max over each window; the gradient goes to the first maximum (as torch).

    Forward is k*k elementwise maxima of strided views. Backward finds the
    winning tap again by equality with the max, in tap order, instead of
    tracking an argmax in forward: measured 5x faster on LeNet's pools."""
    g = _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode, where)
    xd = x.data
    flat = pad(xd, g, fill=-np.inf)  # padding never wins a max
    taps = [(i, j) for i in range(g.kh) for j in range(g.kw)]
    best = window_view(flat, g, g.N, 0, 0).copy()
    for i, j in taps[1:]:
        np.maximum(best, window_view(flat, g, g.N, i, j), out=best)
    out = np.ascontiguousarray(best[..., :g.Wo])
    del flat

    def backward(dout):
        flat = pad(xd, g, fill=-np.inf)
        dflat = np.zeros(g.N * g.C * g.plane + g.slack, dout.dtype)
        dwide = np.zeros(best.shape, dout.dtype)
        dwide[..., :g.Wo] = dout
        taken = np.zeros(best.shape, bool)  # outputs whose winning tap is already found
        for i, j in taps:
            won = window_view(flat, g, g.N, i, j) == best
            won &= ~taken  # ties: the first tap in row-major order wins, as in torch
            taken |= won
            window_view(dflat, g, g.N, i, j)[...] += dwide * won
        return unpad(dflat, g)
    return Tensor._make(out, (x,), backward, "max_pool2d")


def _avg_divisor(g: Geometry, count_include_pad: bool, dtype) -> np.ndarray:
    """torch's divisor per output position: the window clipped to the padded
    input (count_include_pad) or to the real input."""
    def axis(size, k, s, p, o):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, size + p)
        pool = end - start
        real = np.minimum(end, size) - np.maximum(start, 0)
        return pool if count_include_pad else real
    dh = axis(g.H, g.kh, g.sh, g.ph, g.Ho)
    dw = axis(g.W, g.kw, g.sw, g.pw, g.Wo)
    return np.outer(dh, dw).astype(dtype)


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, where: str = "avg_pool2d") -> Tensor:
    g = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode, where)
    flat = pad(x.data, g)
    taps = [(i, j) for i in range(g.kh) for j in range(g.kw)]
    acc = np.zeros((g.N, g.C, g.Ho, g.Wv), x.dtype)
    for i, j in taps:
        acc += window_view(flat, g, g.N, i, j)
    div = _avg_divisor(g, count_include_pad, x.dtype)
    out = acc[..., :g.Wo] / div
    del flat, acc

    def backward(dout):
        dflat = np.zeros(g.N * g.C * g.plane + g.slack, dout.dtype)
        dwide = np.zeros((g.N, g.C, g.Ho, g.Wv), dout.dtype)
        dwide[..., :g.Wo] = dout / div
        for i, j in taps:
            window_view(dflat, g, g.N, i, j)[...] += dwide
        return unpad(dflat, g)
    return Tensor._make(out, (x,), backward, "avg_pool2d")


def _adaptive_bins(size: int, out: int):
    # torch: start = floor(i * size / out), end = ceil((i + 1) * size / out)
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool2d(x: Tensor, output_size, where: str = "adaptive_avg_pool2d") -> Tensor:
    _need4d(x, where)
    oh, ow = pair(output_size, f"{where}: output_size")
    N, C, H, W = x.shape
    xd = x.data
    if (oh, ow) == (1, 1):  # global average pooling
        out = xd.mean(axis=(2, 3), keepdims=True)
        shape = xd.shape
        return Tensor._make(out, (x,), lambda g: np.broadcast_to(g / (H * W), shape).copy(),
                            "global_avg_pool")
    rows, cols = _adaptive_bins(H, oh), _adaptive_bins(W, ow)
    out = np.empty((N, C, oh, ow), xd.dtype)
    for a, (h0, h1) in enumerate(rows):
        for b, (w0, w1) in enumerate(cols):
            out[:, :, a, b] = xd[:, :, h0:h1, w0:w1].mean(axis=(2, 3))

    shape, dtype = xd.shape, xd.dtype

    def backward(g):
        dx = np.zeros(shape, dtype)
        for a, (h0, h1) in enumerate(rows):
            for b, (w0, w1) in enumerate(cols):
                dx[:, :, h0:h1, w0:w1] += (g[:, :, a, b] / ((h1 - h0) * (w1 - w0)))[:, :, None, None]
        return dx
    return Tensor._make(out, (x,), backward, "adaptive_avg_pool2d")


# -------------------------------------------------------------- normalisation


def batch_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: np.ndarray | None,
               running_var: np.ndarray | None, training: bool, momentum: float | None = 0.1,
               eps: float = 1e-5, where: str = "batch_norm") -> Tensor:
    """Per-channel normalisation over (N, H, W).

    training: normalise with the batch statistics and update the running ones
    in place, as torch: running = (1 - momentum) * running + momentum * batch,
    with the unbiased variance (n / (n - 1)) for running_var.
    eval: normalise with the running statistics."""
    _need4d(x, where)
    N, C, H, W = x.shape
    if weight is not None and weight.shape != (C,):
        raise ShapeError(f"{where}: input {fmt_shape(x.shape)} has {C} channels, weight has "
                         f"{fmt_shape(weight.shape)}")
    xd = x.data
    axes = (0, 2, 3)
    n = N * H * W
    if training:
        if n <= 1:
            raise ShapeError(f"{where}: training needs more than one value per channel, got input "
                             f"{fmt_shape(x.shape)}; use a batch larger than 1 or eval()")
        mean = xd.mean(axis=axes)
        xc = xd - mean.reshape(1, C, 1, 1)
        var = np.mean(xc * xc, axis=axes)
        if running_mean is not None:
            m = momentum
            running_mean *= 1 - m
            running_mean += m * mean
            running_var *= 1 - m
            running_var += m * var * (n / (n - 1))
    else:
        mean, var = running_mean, running_var
        xc = xd - mean.reshape(1, C, 1, 1).astype(xd.dtype)
    invstd = (1.0 / np.sqrt(var + eps)).astype(xd.dtype)
    xhat = xc * invstd.reshape(1, C, 1, 1)
    del xc
    need_x, wd = x.requires_grad, (weight.data if weight is not None else None)
    out = xhat * weight.data.reshape(1, C, 1, 1) if weight is not None else xhat.copy()
    if bias is not None:
        out += bias.data.reshape(1, C, 1, 1)

    def backward(g):
        dw = (g * xhat).sum(axis=axes) if weight is not None else None
        db = g.sum(axis=axes) if bias is not None else None
        scale = invstd * (wd if wd is not None else 1)
        if not need_x:
            dx = None
        elif training:
            # dx = scale * (g - mean(g) - xhat * mean(g * xhat))
            gsum = db if db is not None else g.sum(axis=axes)
            gxsum = dw if dw is not None else (g * xhat).sum(axis=axes)
            dx = g - (gsum / n).reshape(1, C, 1, 1)
            dx -= xhat * (gxsum / n).reshape(1, C, 1, 1)
            dx *= scale.reshape(1, C, 1, 1)
        else:
            dx = g * scale.reshape(1, C, 1, 1)
        grads = [dx]
        if weight is not None:
            grads.append(dw)
        if bias is not None:
            grads.append(db)
        return tuple(grads)
    parents = [x] + [t for t in (weight, bias) if t is not None]
    return Tensor._make(out, parents, backward, "batch_norm")


def local_response_norm(x: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                        where: str = "local_response_norm") -> Tensor:
    """torch's LRN across channels: y = x / (k + alpha/size * sum_window x^2)^beta,
    the window [c - size//2, c + (size-1)//2], zero outside the channels."""
    if x.ndim < 3:
        raise ShapeError(f"{where}: needs N x C x ... input, got {fmt_shape(x.shape)}")
    xd = x.data
    before, after = size // 2, (size - 1) // 2

    def window_sum(v, lo, hi):
        # sum over channels c-lo .. c+hi, zero-padded, via a cumulative sum
        pad = [(0, 0)] * v.ndim
        pad[1] = (lo + 1, hi)
        cs = np.cumsum(np.pad(v, pad), axis=1, dtype=np.float64)
        C = v.shape[1]
        return (cs[:, lo + hi + 1:lo + hi + 1 + C] - cs[:, :C]).astype(v.dtype)

    d = k + (alpha / size) * window_sum(xd * xd, before, after)
    dpow = d ** -beta
    out = xd * dpow

    def backward(g):
        # y_c = x_c d_c^-b ; d_c' depends on x_c for c' with c in window(c')
        t = g * xd * dpow / d
        return g * dpow - (2 * alpha * beta / size) * xd * window_sum(t, after, before)
    return Tensor._make(out, (x,), backward, "local_response_norm")


# ------------------------------------------------------------------ dropout


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: zero with probability p, scale the rest by 1/(1-p),
    so eval needs no rescaling and is the identity."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise SvertkaError(f"dropout p must be in [0, 1), got {p}")
    mask = (_rng.random(x.shape, dtype=np.float32) >= p).astype(x.dtype) * (1.0 / (1.0 - p))
    return Tensor._make(x.data * mask, (x,), lambda g: g * mask, "dropout")


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth (torchvision mode="row"): drop whole examples."""
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = (_rng.random((x.shape[0],) + (1,) * (x.ndim - 1)) < keep).astype(x.dtype) / keep
    return Tensor._make(x.data * mask, (x,), lambda g: g * mask, "drop_path")


# --------------------------------------------------------------- shape ops


def concat(tensors, axis: int = 1, where: str = "concat") -> Tensor:
    tensors = list(tensors)
    shapes = [t.shape for t in tensors]
    ref = shapes[0]
    for s in shapes:
        if len(s) != len(ref) or any(a != b for i, (a, b) in enumerate(zip(s, ref)) if i != axis % len(ref)):
            raise ShapeError(f"{where}: cannot concatenate shapes {', '.join(fmt_shape(s) for s in shapes)} "
                             f"along axis {axis}")
    out = np.concatenate([t.data for t in tensors], axis=axis)
    edges = np.cumsum([s[axis] for s in shapes])[:-1]

    def backward(g):
        return tuple(np.split(g, edges, axis=axis))
    return Tensor._make(out, tuple(tensors), backward, "concat")


def flatten(x: Tensor, start_dim: int = 1) -> Tensor:
    return x.flatten(start_dim)


def shortcut_a(x: Tensor, out_channels: int, stride: int = 2) -> Tensor:
    """ResNet option A: subsample by stride, zero-pad the new channels
    ((out - in) // 2 before, the rest after)."""
    N, C, H, W = x.shape
    before = (out_channels - C) // 2
    sub = x.data[:, :, ::stride, ::stride]
    out = np.zeros((N, out_channels) + sub.shape[2:], x.dtype)
    out[:, before:before + C] = sub
    shape = x.shape

    def backward(g):
        dx = np.zeros(shape, g.dtype)
        dx[:, :, ::stride, ::stride] = g[:, before:before + C]
        return dx
    return Tensor._make(out, (x,), backward, "shortcut_a")


def select_channels(x: Tensor, indices) -> Tensor:
    idx = np.asarray(indices)
    shape = x.shape

    def backward(g):
        dx = np.zeros(shape, g.dtype)
        np.add.at(dx, (slice(None), idx), g)  # an index may repeat
        return dx
    return Tensor._make(x.data[:, idx], (x,), backward, "select_channels")


def subsample(x: Tensor, weight: Tensor, bias: Tensor, kernel_size: int = 2) -> Tensor:
    """LeCun 1998: per channel, weight * (sum of the k x k window) + bias, stride k."""
    k = kernel_size
    pooled = avg_pool2d(x, k, k, where="subsample") * float(k * k)
    return pooled * weight.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)


def rbf_output(x: Tensor, centers: np.ndarray) -> Tensor:
    """logit_i = -sum_j (x_j - c_ij)^2 with fixed centres c (out, in)."""
    c = centers.astype(x.dtype, copy=False)
    diff = x.data[:, None, :] - c[None]  # (B, out, in)
    out = -(diff * diff).sum(-1)
    return Tensor._make(out, (x,), lambda g: -2 * np.einsum("bo,boi->bi", g, diff), "rbf_output")


# ------------------------------------------------------------------- losses


def cross_entropy(logits: Tensor, target, label_smoothing: float = 0.0, reduction: str = "mean") -> Tensor:
    """torch.nn.functional.cross_entropy with class indices and label smoothing:
    the target distribution is (1 - eps) * one_hot + eps / K. Stable: log-softmax
    subtracts the row maximum before exp."""
    if logits.ndim != 2:
        raise ShapeError(f"cross_entropy: logits must be N x K, got {fmt_shape(logits.shape)}")
    t = np.asarray(target.data if isinstance(target, Tensor) else target).astype(np.int64).reshape(-1)
    N, K = logits.shape
    if t.shape[0] != N:
        raise ShapeError(f"cross_entropy: {N} logits rows but {t.shape[0]} targets")
    if t.size and (t.min() < 0 or t.max() >= K):
        raise ShapeError(f"cross_entropy: target classes must be in [0, {K}), got {t.min()}..{t.max()}")
    z = logits.data - logits.data.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    eps = float(label_smoothing)
    q = np.full((N, K), eps / K, logits.dtype)
    q[np.arange(N), t] += 1 - eps
    per = -(q * logp).sum(axis=1)
    scale = 1.0 / N if reduction == "mean" else 1.0
    if reduction == "none":
        out = per
    else:
        out = np.asarray(per.sum() * scale, dtype=logits.dtype)

    dtype = logits.dtype

    def backward(g):
        p = np.exp(logp)
        gg = (g[:, None] if reduction == "none" else g * scale)
        return ((p - q) * gg).astype(dtype)
    return Tensor._make(out, (logits,), backward, "cross_entropy")


def mse_loss(pred: Tensor, target, reduction: str = "mean") -> Tensor:
    tgt = target.data if isinstance(target, Tensor) else np.asarray(target, pred.dtype)
    if tgt.shape != pred.shape:
        raise ShapeError(f"mse_loss: prediction {fmt_shape(pred.shape)} and target "
                         f"{fmt_shape(tgt.shape)} differ")
    diff = pred.data - tgt
    n = diff.size if reduction == "mean" else 1
    out = np.asarray((diff * diff).sum() / n, dtype=pred.dtype)

    two = isinstance(target, Tensor)

    def backward(g):
        d = g * (2.0 / n) * diff
        return (d, -d) if two else d
    parents = (pred, target) if two else (pred,)
    return Tensor._make(out, parents, backward, "mse_loss")
