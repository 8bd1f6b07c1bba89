"""The receptive field (RF) of a unit, and the recurrences a layer applies to it.

Per axis, for a layer with kernel k, stride s, padding p and dilation d
(effective kernel k' = d(k-1)+1), with the field so far (r, S, P):

    r <- r + (k' - 1) * S      size, in input pixels
    P <- P + p * S             effective padding: output unit i starts at i*S - P
    S <- S * s                 effective stride (jump)

A transposed convolution divides the jump by its stride; its field is a bound
(see ``RF.transposed_window``). Multi-path blocks (Residual, Concat) take the
union of their paths' fields, which is exactly the support of d out / d in at
an interior unit, and flag the block when the paths' centres differ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction


@dataclass(frozen=True)
class RF:
    size: tuple[int, int] = (1, 1)
    stride: tuple = (1, 1)           # ints, or Fractions after a transposed conv
    padding: tuple = (0, 0)
    global_: bool = False          # every input pixel reaches each output unit
    global_context: bool = False   # a gate (SE) mixed in a global summary upstream
    misaligned: bool = False       # a multi-path block whose paths' centres differ
    exact: bool = True             # False: a bound (uneven adaptive bins, transposed conv)

    def window(self, k, s, p, d=(1, 1)) -> "RF":
        size, stride, pad = [], [], []
        for r, S, P, kk, ss, pp, dd in zip(self.size, self.stride, self.padding, k, s, p, d):
            size.append(_whole(r + (dd * (kk - 1)) * S))
            pad.append(_whole(P + pp * S))
            stride.append(_whole(S * ss))
        return replace(self, size=tuple(size), stride=tuple(stride), padding=tuple(pad))

    def transposed_window(self, k, s, p, d=(1, 1)) -> "RF":
        """A transposed conv: output o takes input i where o = i*s - p + j*d for a
        kernel tap j. The jump becomes S/s; with s > 1 the inputs an output sees
        depend on o mod s, so the field is the smallest affine window that holds
        every phase's true field (exact=False)."""
        size, stride, pad = [], [], []
        for r, S, P, kk, ss, pp, dd in zip(self.size, self.stride, self.padding, k, s, p, d):
            if ss == 1:  # a stride-1 transposed conv is a conv with padding d(k-1) - p
                size.append(_whole(r + dd * (kk - 1) * S))
                pad.append(_whole(P + (dd * (kk - 1) - pp) * S))
                stride.append(S)
                continue
            starts, ends = [], []
            for o in range(ss):  # one period of output phases
                taps = [(o + pp - j * dd) // ss for j in range(kk) if (o + pp - j * dd) % ss == 0]
                if taps:
                    starts.append(min(taps) * S - P - Fraction(o) * S / ss)
                    ends.append(max(taps) * S - P + r - 1 - Fraction(o) * S / ss)
            first, last = (min(starts), max(ends)) if starts else (0, r - 1)
            pad.append(_whole(-first))
            size.append(math.ceil(last - first + 1))
            stride.append(_whole(Fraction(S) / ss))
        return replace(self, size=tuple(size), stride=tuple(stride), padding=tuple(pad),
                       exact=self.exact and max(s) == 1)

    def resampled(self, ratio, offset, lo, hi) -> "RF":
        """A resampling layer (Upsample at a non-integer ratio or with align_corners):
        per axis, output o reads the input units in [x - lo, x + hi] around the
        source position x = ratio * o + offset (Fractions). One affine window
        holds them for every o, with the jump times ``ratio``; a bound (exact=False)."""
        size, stride, pad = [], [], []
        for r, S, P, q, c, a, b in zip(self.size, self.stride, self.padding, ratio, offset, lo, hi):
            pad.append(_whole(P - (c - a) * S))
            size.append(math.ceil((a + b) * S + r))
            stride.append(_whole(Fraction(S) * q))
        return replace(self, size=tuple(size), stride=tuple(stride), padding=tuple(pad), exact=False)

    def to_global(self, input_hw: tuple[int, int]) -> "RF":
        return replace(self, global_=True, size=tuple(input_hw))

    def span(self, index: int, axis: int) -> tuple[int, int]:
        """First and last input pixel (unclipped) seen by output unit ``index``."""
        start = index * self.stride[axis] - self.padding[axis]
        return start, start + self.size[axis] - 1

    def as_dict(self) -> dict:
        def one(v):
            v = [_plain(x) for x in v]
            return v[0] if v[0] == v[1] else v

        d = {"size": one(self.size), "stride": one(self.stride), "padding": one(self.padding)}
        for key, flag in (("global", self.global_), ("global_context", self.global_context),
                          ("misaligned", self.misaligned)):
            if flag:
                d[key] = True
        if not self.exact:
            d["exact"] = False
        return d

    def label(self) -> str:
        if self.global_:
            return "global"
        return f"{self.as_dict()['size']}" + ("*" if self.misaligned else "")


def _whole(v):
    """A Fraction that is a whole number back to int, so integer fields stay ints."""
    return int(v) if isinstance(v, Fraction) and v.denominator == 1 else v


def _plain(v):
    return float(v) if isinstance(v, Fraction) else v


def union(fields: list[RF]) -> RF:
    """The field of a block whose output sums or stacks several paths."""
    first = fields[0]
    size, pad, misaligned = [], [], any(f.misaligned for f in fields)
    for axis in (0, 1):
        starts = [-f.padding[axis] for f in fields]
        ends = [f.size[axis] - 1 - f.padding[axis] for f in fields]
        centres = {s + e for s, e in zip(starts, ends)}
        if len(centres) > 1 or len({f.stride[axis] for f in fields}) > 1:
            misaligned = True
        start, end = min(starts), max(ends)
        pad.append(_whole(-start))
        size.append(math.ceil(end - start + 1))
    return RF(
        size=tuple(size), stride=first.stride, padding=tuple(pad),
        global_=any(f.global_ for f in fields),
        global_context=any(f.global_context for f in fields),
        misaligned=misaligned, exact=all(f.exact for f in fields),
    )
