"""The two optimisers of the image, both over a NumPy array of pixels.

Whichever backend computes the gradient, the update is this same code, so the
two backends run the same optimisation:

- ``adam``: the engine's own ``optim.Adam`` (torch's update rule) on a Tensor
  that holds the pixels; after each step the pixels are clipped to [0, 1].
- ``lbfgs``: limited-memory BFGS (Nocedal & Wright, Algorithm 7.4: the two-loop
  recursion) with a backtracking line search (Armijo's condition), as Gatys et
  al. used. It runs unconstrained; the caller clips the result.

``f(x) -> (loss, grad)`` is the objective; ``record(x, loss)`` is called once per
iteration with the image the loss belongs to.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..backends.numpy import Tensor
from ..backends.numpy.optim import Adam

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


def adam(f: Objective, x0: np.ndarray, steps: int, lr: float, record) -> np.ndarray:
    """``steps`` Adam updates; ``record`` sees the image before each and after the last."""
    pixels = Tensor(np.array(x0, copy=True), requires_grad=True)
    opt = Adam([pixels], lr=lr)
    for _ in range(steps):
        loss, grad = f(pixels.data)
        record(pixels.data, loss)
        pixels.grad = grad.astype(pixels.data.dtype, copy=False)
        opt.step()
        np.clip(pixels.data, 0.0, 1.0, out=pixels.data)
    record(pixels.data, f(pixels.data)[0])
    return pixels.data


def lbfgs(f: Objective, x0: np.ndarray, steps: int, lr: float, record, memory: int = 10,
          max_halvings: int = 20) -> np.ndarray:
    """``steps`` L-BFGS iterations. The first step moves the largest pixel by ``lr``;
    after that the curvature pairs scale it. Stops early when no step lowers the loss."""
    x = np.array(x0, dtype=np.float64, copy=True)
    loss, g = f(x)
    g = g.astype(np.float64).ravel()
    pairs: list[tuple[np.ndarray, np.ndarray, float]] = []  # (s, y, 1 / y.s)
    record(x, loss)
    for _ in range(steps):
        d = -_two_loop(g, pairs)
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction (bad curvature): start the memory again
            pairs.clear()
            d, slope = -g, float(-(g @ g))
        t = lr / max(float(np.abs(d).max()), 1e-30) if not pairs else 1.0
        for _ in range(max_halvings):
            x_new = x + t * d.reshape(x.shape)
            loss_new, g_new = f(x_new)
            if np.isfinite(loss_new) and loss_new <= loss + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            break  # no step along d lowers the loss: converged to float precision
        g_new = g_new.astype(np.float64).ravel()
        s, y = (x_new - x).ravel(), g_new - g
        sy = float(s @ y)
        if sy > 1e-12 * float(y @ y):  # keep the pair only where the curvature is positive
            pairs.append((s, y, 1.0 / sy))
            del pairs[:-memory]
        x, loss, g = x_new, loss_new, g_new
        record(x, loss)
    return x.astype(x0.dtype)


def _two_loop(g: np.ndarray, pairs) -> np.ndarray:
    """H g for the inverse-Hessian estimate of the stored pairs (H0 = s.y / y.y)."""
    q = g.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * float(s @ q)
        q -= a * y
        alphas.append(a)
    if pairs:
        s, y, rho = pairs[-1]
        q *= 1.0 / (rho * float(y @ y))
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * float(y @ q)
        q += (a - b) * s
    return q
