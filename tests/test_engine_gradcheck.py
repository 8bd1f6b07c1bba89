"""Gradient checks of every engine op in float64, by central finite differences.

For an op f and a random cotangent R, the analytic gradient of L = sum(f * R)
must match (L(x + h v) - L(x - h v)) / 2h = <grad, v> along random directions
v, for every input and parameter. Each op runs on >= 50 random cases drawn
from a seeded generator: odd sizes, stride > 1, dilation > 1, padding >= 1,
groups > 1 and depthwise, ceil_mode.
"""
from __future__ import annotations

import numpy as np
import pytest

from svertka.backends.numpy import Tensor
from svertka.backends.numpy import functional as F

CASES = 50
H = 1e-6


def gradcheck(fn, arrays, rng, directions=2, rtol=1e-5, atol=1e-7):
    """fn(*tensors) -> Tensor. Checks every array's gradient along random directions."""
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*tensors)
    R = rng.standard_normal(out.shape)
    (out * Tensor(R)).sum().backward()
    for k, (a, t) in enumerate(zip(arrays, tensors)):
        assert t.grad is not None and t.grad.shape == a.shape, f"input {k}: no gradient"
        for _ in range(directions):
            v = rng.standard_normal(a.shape)

            def L(sign):
                args = [Tensor(b.copy()) for b in arrays]
                args[k] = Tensor(a + sign * H * v)
                return float((fn(*args).data * R).sum())
            numeric = (L(1) - L(-1)) / (2 * H)
            analytic = float((t.grad * v).sum())
            assert abs(numeric - analytic) <= atol + rtol * max(abs(numeric), abs(analytic), 1.0), \
                f"input {k}: finite differences {numeric} vs backward {analytic}"


def _conv_case(rng, depthwise=False, wide=False):
    G = int(rng.integers(1, 4))
    Cg, Og = (1, 1) if depthwise else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    if depthwise:
        G = int(rng.integers(2, 6))
    if wide:  # >= 16 channels per group at stride 1: dx is computed as a flipped-kernel conv
        G, Cg = int(rng.integers(1, 3)), int(rng.integers(16, 19))
    kh, kw = (int(v) for v in rng.integers(1, 5, 2))
    s = (1, 1) if wide else tuple(int(v) for v in rng.integers(1, 4, 2))
    d = tuple(int(v) for v in rng.integers(1, 3, 2))
    p = tuple(int(v) for v in rng.integers(0, 3, 2))
    H_ = int(rng.integers(max(1, d[0] * (kh - 1) + 1 - 2 * p[0]), 10))
    W_ = int(rng.integers(max(1, d[1] * (kw - 1) + 1 - 2 * p[1]), 10))
    N = int(rng.integers(1, 3))
    x = rng.standard_normal((N, G * Cg, H_, W_))
    w = rng.standard_normal((G * Og, Cg, kh, kw))
    b = rng.standard_normal(G * Og)
    return x, w, b, dict(stride=s, padding=p, dilation=d, groups=G)


@pytest.mark.parametrize("depthwise,wide", [(False, False), (True, False), (False, True)],
                         ids=["dense_grouped", "depthwise", "wide_stride1"])
def test_conv2d(depthwise, wide):
    rng = np.random.default_rng(1 + depthwise + 2 * wide)
    for _ in range(CASES):
        x, w, b, kw = _conv_case(rng, depthwise, wide)
        gradcheck(lambda x, w, b: F.conv2d(x, w, b, **kw), [x, w, b], rng)
        gradcheck(lambda x, w: F.conv2d(x, w, None, **kw), [x, w], rng, directions=1)


def _pool_case(rng, dilation=True):
    k = tuple(int(v) for v in rng.integers(1, 4, 2))
    s = tuple(int(v) for v in rng.integers(1, 4, 2))
    p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
    d = tuple(int(v) for v in rng.integers(1, 3, 2)) if dilation else (1, 1)
    ceil = bool(rng.integers(0, 2))
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)),
             int(rng.integers(d[0] * (k[0] - 1) + 1, 10)), int(rng.integers(d[1] * (k[1] - 1) + 1, 10)))
    return rng.standard_normal(shape), k, s, p, d, ceil


def test_max_pool2d():
    rng = np.random.default_rng(3)
    for _ in range(CASES):
        x, k, s, p, d, ceil = _pool_case(rng)
        gradcheck(lambda x: F.max_pool2d(x, k, s, p, d, ceil), [x], rng)


def test_avg_pool2d():
    rng = np.random.default_rng(4)
    for i in range(CASES):
        x, k, s, p, _, ceil = _pool_case(rng, dilation=False)
        cip = bool(i % 2)
        gradcheck(lambda x: F.avg_pool2d(x, k, s, p, ceil, cip), [x], rng)


def test_adaptive_avg_pool2d():
    rng = np.random.default_rng(5)
    for _ in range(CASES):
        shape = (2, 3, int(rng.integers(1, 12)), int(rng.integers(1, 12)))
        out = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        gradcheck(lambda x: F.adaptive_avg_pool2d(x, out), [rng.standard_normal(shape)], rng)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm(training):
    rng = np.random.default_rng(6 + training)
    for _ in range(CASES):
        N, C, H_, W_ = (int(v) for v in rng.integers(1, 5, 4))
        N += 1
        x, w, b = rng.standard_normal((N, C, H_, W_)), rng.standard_normal(C), rng.standard_normal(C)
        rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)

        def f(x, w, b):  # fresh copies: training updates the running stats in place
            return F.batch_norm(x, w, b, rm.copy(), rv.copy(), training, 0.1, 1e-5)
        gradcheck(f, [x, w, b], rng)


@pytest.mark.parametrize("name", ["relu", "relu6", "silu", "sigmoid", "tanh", "gelu", "scaled_tanh"])
def test_activations(name):
    fn = getattr(F, name)
    rng = np.random.default_rng(len(name))
    for _ in range(CASES):
        x = rng.standard_normal(tuple(int(v) for v in rng.integers(1, 6, 3))) * 4
        if name in ("relu", "relu6"):  # keep away from the kinks
            x = x[np.isfinite(x)]
            x = np.where(np.abs(x) < 1e-3, 0.5, x)
            x = np.where(np.abs(x - 6) < 1e-3, 5.5, x)
        gradcheck(fn, [x], rng)


def test_linear():
    rng = np.random.default_rng(8)
    for _ in range(CASES):
        n, i, o = (int(v) for v in rng.integers(1, 8, 3))
        gradcheck(F.linear, [rng.standard_normal((n, i)), rng.standard_normal((o, i)),
                             rng.standard_normal(o)], rng)


def test_local_response_norm():
    rng = np.random.default_rng(9)
    for _ in range(CASES):
        size = int(rng.integers(1, 7))
        x = rng.standard_normal((2, int(rng.integers(1, 9)), 3, 2))
        alpha, beta, k = rng.uniform(1e-4, 1.0), rng.uniform(0.5, 1.0), rng.uniform(1, 2)
        gradcheck(lambda x: F.local_response_norm(x, size, alpha, beta, k), [x], rng)


def test_cross_entropy_and_mse():
    rng = np.random.default_rng(10)
    for i in range(CASES):
        n, K = int(rng.integers(1, 6)), int(rng.integers(2, 8))
        y = rng.integers(0, K, n)
        eps = [0.0, 0.1, 0.3][i % 3]
        gradcheck(lambda z: F.cross_entropy(z, y, label_smoothing=eps), [rng.standard_normal((n, K)) * 3],
                  rng)
        gradcheck(lambda a, b: F.mse_loss(a, b), [rng.standard_normal((n, K)), rng.standard_normal((n, K))],
                  rng)


def test_tensor_ops_broadcasting():
    rng = np.random.default_rng(11)
    ops = [
        lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / (b * b + 1),
        lambda a, b: (a * b).sum(1, keepdims=True), lambda a, b: (a + b).mean(),
        lambda a, b: (a - b).mean(axis=(0, 2)), lambda a, b: (a * b).max(axis=1),
    ]
    for _i in range(CASES):
        shape = tuple(int(v) for v in rng.integers(1, 5, 3))
        bshape = tuple(s if rng.random() < 0.5 else 1 for s in shape)[int(rng.integers(0, 2)):]
        for op in ops:
            gradcheck(op, [rng.standard_normal(shape), rng.standard_normal(bshape)], rng, directions=1)
        a = rng.standard_normal((2, shape[0], shape[1]))
        b = rng.standard_normal((shape[1], 3))
        gradcheck(lambda a, b: a @ b, [a, b], rng, directions=1)
        gradcheck(lambda a: (a.reshape(-1) ** 2).exp().log().reshape(a.shape).permute(2, 0, 1),
                  [rng.standard_normal(shape)], rng, directions=1)
        gradcheck(lambda a: a.abs().sqrt()[:, 1:], [rng.standard_normal(shape) + 5], rng, directions=1)


def test_concat_shortcut_select_subsample_rbf():
    rng = np.random.default_rng(12)
    for _ in range(CASES):
        N, H_, W_ = 2, int(rng.integers(2, 7)), int(rng.integers(2, 7))
        c1, c2 = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        a, b = rng.standard_normal((N, c1, H_, W_)), rng.standard_normal((N, c2, H_, W_))
        gradcheck(lambda a, b: F.concat([a, b, a]), [a, b], rng, directions=1)
        st = int(rng.integers(1, 3))
        gradcheck(lambda a: F.shortcut_a(a, c1 + 2 * c2, st), [a], rng, directions=1)
        idx = tuple(int(v) for v in rng.integers(0, c1, 3))
        gradcheck(lambda a: F.select_channels(a, idx), [a], rng, directions=1)
        gradcheck(lambda a, w, bb: F.subsample(a, w, bb, 2), [a, rng.standard_normal(c1),
                                                             rng.standard_normal(c1)], rng, directions=1)
        centers = np.sign(rng.standard_normal((4, 5)))
        gradcheck(lambda z: F.rbf_output(z, centers), [rng.standard_normal((3, 5))], rng, directions=1)
