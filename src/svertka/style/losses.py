"""The three terms of Gatys et al. 2016, written once for both backends.

Every function takes tensors of either backend (an engine ``Tensor`` or a
``torch.Tensor``) and uses only what the two share (``reshape``, ``@``,
``transpose``, ``**``, ``sum``, slicing), so the NumPy engine and torch run the
very same loss and each backend's autograd carries it back to the pixels.

Each layer's term is divided by its target's squared norm (a relative squared
error). Gatys et al. leave the per-layer weights free; this choice makes every
layer count alike whatever its activations' scale, which matters for random
weights, whose activations grow or shrink from layer to layer.
"""
from __future__ import annotations

import numpy as np


def gram_matrix(features):
    """G[i, j] = sum over positions of F_i * F_j, divided by the positions (H*W).
    ``features``: (1, C, H, W); returns (C, C)."""
    _, c, h, w = features.shape
    flat = features.reshape(c, h * w)
    return (flat @ flat.transpose(-2, -1)) * (1.0 / (h * w))


def squared_norm(array: np.ndarray) -> float:
    """sum(target**2) in float64; a target of zeros (a dead random layer) counts as 1."""
    value = float(np.sum(np.square(np.asarray(array, dtype=np.float64))))
    return value if value > 0 else 1.0


def relative_error(x, target, target_norm: float):
    """sum((x - target)**2) / sum(target**2), ``target_norm`` precomputed by squared_norm."""
    return ((x - target) ** 2).sum() * (1.0 / target_norm)


def total_variation(image):
    """Mean squared difference of neighbouring pixels, down and across ((1, C, H, W) image)."""
    down = image[:, :, 1:, :] - image[:, :, :-1, :]
    across = image[:, :, :, 1:] - image[:, :, :, :-1]
    n = 1
    for s in image.shape:
        n *= int(s)
    return ((down ** 2).sum() + (across ** 2).sum()) * (1.0 / n)
