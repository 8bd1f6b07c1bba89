"""Receptive field, read off the spec with the standard recurrences.

Per axis, for a layer with kernel k, stride s, padding p and dilation d
(effective kernel k' = d(k-1)+1), with the field so far (r, S, P):

    r <- r + (k' - 1) * S      size, in input pixels
    P <- P + p * S             effective padding: output unit i starts at i*S - P
    S <- S * s                 effective stride (jump)

Multi-path blocks (Residual, Concat) take the union of their paths' fields,
which is exactly the support of d out / d in at an interior unit, and flag
the block when the paths' centres differ (misaligned).
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RF:
    size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    global_: bool = False          # every input pixel reaches each output unit
    global_context: bool = False   # a gate (SE) mixed in a global summary upstream
    misaligned: bool = False       # a multi-path block whose paths' centres differ
    exact: bool = True             # False after an adaptive pool with uneven bins

    def window(self, k, s, p, d=(1, 1)) -> "RF":
        size, stride, pad = [], [], []
        for r, S, P, kk, ss, pp, dd in zip(self.size, self.stride, self.padding, k, s, p, d):
            size.append(r + (dd * (kk - 1)) * S)
            pad.append(P + pp * S)
            stride.append(S * ss)
        return replace(self, size=tuple(size), stride=tuple(stride), padding=tuple(pad))

    def to_global(self, input_hw: tuple[int, int]) -> "RF":
        return replace(self, global_=True, size=tuple(input_hw))

    def span(self, index: int, axis: int) -> tuple[int, int]:
        """First and last input pixel (unclipped) seen by output unit ``index``."""
        start = index * self.stride[axis] - self.padding[axis]
        return start, start + self.size[axis] - 1

    def as_dict(self) -> dict:
        def one(v):
            return v[0] if v[0] == v[1] else list(v)

        d = {"size": one(self.size), "stride": one(self.stride), "padding": one(self.padding)}
        if self.global_:
            d["global"] = True
        if self.global_context:
            d["global_context"] = True
        if self.misaligned:
            d["misaligned"] = True
        if not self.exact:
            d["exact"] = False
        return d

    def label(self) -> str:
        if self.global_:
            return "global"
        d = self.as_dict()
        text = f"{d['size']}"
        return text + ("*" if self.misaligned else "")


def union(fields: list[RF]) -> RF:
    """The field of a block whose output sums or stacks several paths."""
    first = fields[0]
    size, pad, misaligned = [], [], any(f.misaligned for f in fields)
    stride = first.stride
    for axis in (0, 1):
        starts = [-f.padding[axis] for f in fields]
        ends = [f.size[axis] - 1 - f.padding[axis] for f in fields]
        centres = {s + e for s, e in zip(starts, ends)}
        if len(centres) > 1 or len({f.stride[axis] for f in fields}) > 1:
            misaligned = True
        start, end = min(starts), max(ends)
        pad.append(-start)
        size.append(end - start + 1)
    return RF(
        size=tuple(size), stride=stride, padding=tuple(pad),
        global_=any(f.global_ for f in fields),
        global_context=any(f.global_context for f in fields),
        misaligned=misaligned, exact=all(f.exact for f in fields),
    )


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
