"""Op parity with torch in float32 (rtol 1e-4, atol 1e-5 x max(1, max|torch|)): the forward output and
every input/parameter gradient, on fresh random inputs each run; and the
optimizers, step for step."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

from svertka.backends.numpy import Tensor, optim  # noqa: E402
from svertka.backends.numpy import functional as F  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
CASES = 20
rng = np.random.default_rng()  # fresh inputs every run, as the issue asks


def _close(ours, theirs, what):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    # atol scales with the tensor's magnitude: a weight gradient sums thousands of
    # float32 products of size ~100, and its small entries carry that round-off
    scale = max(1.0, float(np.abs(theirs).max())) if theirs.size else 1.0
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL * scale, err_msg=what)


def parity(ours_fn, torch_fn, arrays, grad=True):
    arrays = [np.asarray(a, np.float32) for a in arrays]
    ts = [torch.tensor(a, requires_grad=grad) for a in arrays]
    ns = [Tensor(a.copy(), requires_grad=grad) for a in arrays]
    yt, yn = torch_fn(*ts), ours_fn(*ns)
    _close(yn.data, yt, "forward")
    if grad:
        g = rng.standard_normal(yt.shape).astype(np.float32)
        yt.backward(torch.tensor(g))
        yn.backward(g)
        for i, (t, n) in enumerate(zip(ts, ns)):
            _close(n.grad, t.grad, f"gradient of input {i}")


def _rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_conv2d_parity():
    for i in range(CASES * 2):
        depthwise = i % 3 == 0
        G = int(rng.integers(2, 6)) if depthwise else int(rng.integers(1, 4))
        Cg, Og = (1, 1) if depthwise else (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        k = tuple(int(v) for v in rng.integers(1, 6, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        p = tuple(int(v) for v in rng.integers(0, 3, 2))
        Hs = [int(rng.integers(max(1, d[a] * (k[a] - 1) + 1 - 2 * p[a]), 14)) for a in (0, 1)]
        x, w, b = _rand(2, G * Cg, *Hs), _rand(G * Og, Cg, *k), _rand(G * Og)
        kw = dict(stride=s, padding=p, dilation=d, groups=G)
        parity(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw), [x, w, b])


def test_conv2d_lenet_and_dense_shapes():
    for x, w, p in [((4, 1, 28, 28), (6, 1, 5, 5), 2), ((4, 6, 14, 14), (16, 6, 5, 5), 0),
                    ((2, 16, 9, 9), (16, 16, 3, 3), 1), ((2, 8, 8, 8), (8, 1, 3, 3), 1)]:
        g = x[1] // w[1]
        parity(lambda a, b: F.conv2d(a, b, None, 1, p, 1, g), lambda a, b: TF.conv2d(a, b, None, 1, p, 1, g),
               [_rand(*x) * 0.5, _rand(*w) * 0.2])


def test_conv2d_stride1_input_gradient_as_flipped_conv():
    """At stride 1 with >= 16 channels per group the engine computes dx as a conv of
    dout with the flipped kernel; padding beyond the kernel's span falls back to col2im."""
    for _i in range(12):
        G, Cg, Og = int(rng.integers(1, 3)), int(rng.integers(16, 21)), int(rng.integers(1, 9))
        k = tuple(int(v) for v in rng.integers(1, 6, 2))
        d = tuple(int(v) for v in rng.integers(1, 4, 2))
        span = [d[a] * (k[a] - 1) for a in (0, 1)]
        p = tuple(int(rng.integers(0, span[a] + 2)) for a in (0, 1))  # + 1: the fallback too
        lo = [max(1, span[a] + 1 - 2 * p[a]) for a in (0, 1)]
        Hs = [int(rng.integers(lo[a], lo[a] + 8)) for a in (0, 1)]
        x, w, b = _rand(3, G * Cg, *Hs), _rand(G * Og, Cg, *k) * 0.2, _rand(G * Og)
        kw = dict(stride=1, padding=p, dilation=d, groups=G)
        parity(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw), [x, w, b])


def test_pool_parity():
    for i in range(CASES * 2):
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        ceil = bool(i % 2)
        x = _rand(2, 3, int(rng.integers(d[0] * (k[0] - 1) + 1, 13)),
                  int(rng.integers(d[1] * (k[1] - 1) + 1, 13)))
        parity(lambda x: F.max_pool2d(x, k, s, p, d, ceil), lambda x: TF.max_pool2d(x, k, s, p, d, ceil), [x])
        xa = _rand(2, 3, int(rng.integers(k[0], 13)), int(rng.integers(k[1], 13)))
        for cip in (True, False):
            parity(lambda x: F.avg_pool2d(x, k, s, p, ceil, cip),
                   lambda x: TF.avg_pool2d(x, k, s, p, ceil, cip), [xa])
        out = (int(rng.integers(1, 7)), int(rng.integers(1, 7)))
        parity(lambda x: F.adaptive_avg_pool2d(x, out), lambda x: TF.adaptive_avg_pool2d(x, out), [xa])


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
    """Small integers make many ties (as ReLU's zeros do); torch gives the gradient
    to the first maximum in row-major window order, and so must the engine."""
    for i in range(CASES):
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        s = tuple(int(v) for v in rng.integers(1, 3, 2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        x = rng.integers(-1, 2, (2, 3, int(rng.integers(k[0], 10)), int(rng.integers(k[1], 10))))
        parity(lambda x: F.max_pool2d(x, k, s, p, 1, bool(i % 2)),
               lambda x: TF.max_pool2d(x, k, s, p, 1, bool(i % 2)), [x])


def test_googlenet_ceil_mode_pool():
    x = _rand(2, 4, 14, 14)
    parity(lambda x: F.max_pool2d(x, 3, 2, 0, 1, True), lambda x: TF.max_pool2d(x, 3, 2, 0, 1, True), [x])
    parity(lambda x: F.max_pool2d(x, 3, 1, 1, 1, True), lambda x: TF.max_pool2d(x, 3, 1, 1, 1, True), [x])


def test_batch_norm_parity_and_running_stats():
    for i in range(CASES):
        N, C, H, W = 1 + int(rng.integers(1, 6)), *(int(v) for v in rng.integers(1, 6, 3))
        x, w, b = _rand(N, C, H, W) * 3 + 1, _rand(C), _rand(C)
        rm, rv = _rand(C), np.abs(_rand(C)) + 0.5
        for training in (True, False):
            mom = [0.1, 0.01, 0.5][i % 3]
            rm_n, rv_n, rm_t, rv_t = rm.copy(), rv.copy(), torch.tensor(rm), torch.tensor(rv)
            parity(lambda x, w, b: F.batch_norm(x, w, b, rm_n, rv_n, training, mom, 1e-3),
                   lambda x, w, b: TF.batch_norm(x, rm_t, rv_t, w, b, training, mom, 1e-3), [x, w, b])
            _close(rm_n, rm_t, "running_mean")
            _close(rv_n, rv_t, "running_var")


@pytest.mark.parametrize("name", ["relu", "relu6", "silu", "sigmoid", "tanh", "gelu"])
def test_activation_parity(name):
    tfn = {"relu": torch.relu, "relu6": TF.relu6, "silu": TF.silu, "sigmoid": torch.sigmoid,
           "tanh": torch.tanh, "gelu": TF.gelu}[name]
    for _ in range(5):
        parity(getattr(F, name), tfn, [_rand(3, 4, 5, 6) * 5])


def test_linear_concat_flatten_lrn_parity():
    for _ in range(CASES):
        n, i, o = (int(v) for v in rng.integers(1, 20, 3))
        parity(F.linear, TF.linear, [_rand(n, i), _rand(o, i), _rand(o)])
        a, b = _rand(2, 3, 4, 5), _rand(2, 2, 4, 5)
        parity(lambda a, b: F.concat([a, b]).flatten(1), lambda a, b: torch.cat([a, b], 1).flatten(1), [a, b])
        size, alpha, beta, k = int(rng.integers(1, 8)), float(rng.uniform(1e-4, 1e-2)), 0.75, 2.0
        parity(lambda x: F.local_response_norm(x, size, alpha, beta, k),
               lambda x: TF.local_response_norm(x, size, alpha, beta, k), [_rand(2, 9, 4, 4) * 3])


def test_losses_parity():
    for i in range(CASES):
        n, K = int(rng.integers(1, 30)), int(rng.integers(2, 20))
        y = rng.integers(0, K, n)
        eps = [0.0, 0.1, 0.25][i % 3]
        parity(lambda z: F.cross_entropy(z, y, label_smoothing=eps),
               lambda z: TF.cross_entropy(z, torch.tensor(y), label_smoothing=eps), [_rand(n, K) * 10])
        parity(F.mse_loss, TF.mse_loss, [_rand(n, K), _rand(n, K)])
    # stable for huge logits
    z = np.array([[1000.0, -1000.0, 0.0]], np.float32)
    parity(lambda z: F.cross_entropy(z, [0]), lambda z: TF.cross_entropy(z, torch.tensor([0])), [z])


def test_dropout_inverted_and_eval_noop():
    x = Tensor(np.ones((200, 100), np.float32), requires_grad=True)
    y = F.dropout(x, 0.3, training=True)
    kept = y.data != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y.data[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad != 0, kept)
    assert F.dropout(x, 0.3, training=False) is x


# ------------------------------------------------------------------ optimizers

OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=3e-3, weight_decay=0.1, betas=(0.5, 0.9))),
]


@pytest.mark.parametrize("name,kw", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZERS)])
def test_optimizer_parity(name, kw):
    shapes = [(5, 3), (7,), (2, 3, 3, 3)]
    init = [_rand(*s) for s in shapes]
    tp = [torch.tensor(a, requires_grad=True) for a in init]
    npar = [Tensor(a.copy(), requires_grad=True) for a in init]
    topt = getattr(torch.optim, name)(tp, **kw)
    nopt = getattr(optim, name)(npar, **kw)
    for step in range(6):
        grads = [_rand(*s) for s in shapes]
        topt.zero_grad()
        nopt.zero_grad()
        for t, n, g in zip(tp, npar, grads):
            t.grad = torch.tensor(g)
            n.grad = g.copy()
        topt.step()
        nopt.step()
        for t, n in zip(tp, npar):
            _close(n.data, t, f"{name} step {step}")
