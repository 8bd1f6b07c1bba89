"""Receptive-field questions the lecture asks. The field itself (``RF``) and
each layer's step live in the spec (``svertka.spec.receptive_field``)."""
from __future__ import annotations

from ..spec.receptive_field import RF, union  # noqa: F401  (re-exported)


def stacked_convs_to_see(pixels: int, kernel: int = 3, stride: int = 1) -> int:
    """How many stacked k x k convolutions (stride 1) it takes for one output
    unit to see ``pixels`` input pixels across: r = 1 + n (k - 1) >= pixels."""
    from ..errors import UsageError

    if stride != 1:
        raise ValueError("stacked_convs_to_see assumes stride 1")
    if pixels < 1:
        raise UsageError(f"the object must be at least 1 pixel across, got {pixels}")
    if pixels == 1:
        return 0
    if kernel < 2:  # r = 1 + n*0 stays 1 forever: no number of 1x1 convs sees more than one pixel
        raise UsageError(f"a {kernel}x{kernel} convolution never grows the receptive field past 1 px, so no "
                         f"stack of them sees {pixels} px; use a kernel of 2 or more")
    return -(-(pixels - 1) // (kernel - 1))  # ceil((pixels - 1) / (kernel - 1)), without a loop
