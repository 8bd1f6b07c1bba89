"""Receptive-field questions the lecture asks. The field itself (``RF``) and
each layer's step live in the spec (``svertka.spec.receptive_field``)."""
from __future__ import annotations

from ..spec.receptive_field import RF, union  # noqa: F401  (re-exported)


def stacked_convs_to_see(pixels: int, kernel: int = 3, stride: int = 1) -> int:
    """How many stacked k x k convolutions (stride 1) it takes for one output
    unit to see ``pixels`` input pixels across: r = 1 + n (k - 1) >= pixels."""
    if stride != 1:
        raise ValueError("stacked_convs_to_see assumes stride 1")
    n, r = 0, 1
    while r < pixels:
        n, r = n + 1, r + kernel - 1
    return n
