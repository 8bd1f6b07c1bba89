"""Window geometry shared by the spec, the analysis and both backends:
int pairs, a sliding window's output length, shapes as text, dotted paths."""
from __future__ import annotations

import math
from numbers import Integral

from ..errors import SpecError


def pair(v, what: str = "value") -> tuple[int, int]:
    """An int or a 2-sequence of ints as a pair of Python ints."""
    if isinstance(v, Integral) and not isinstance(v, bool):
        return (int(v), int(v))
    try:
        a, b = v
    except (TypeError, ValueError):
        raise SpecError(f"{what} must be an int or a pair of ints, got {v!r}") from None
    if not all(isinstance(x, Integral) and not isinstance(x, bool) for x in (a, b)):
        raise SpecError(f"{what} must be an int or a pair of ints, got {v!r}")
    return (int(a), int(b))


def conv_out(size: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    """torch's output length for a sliding window (conv or pool); 0 if it does not fit."""
    span = size + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    out = (math.ceil(span / s) if ceil else span // s) + 1
    # torch: with ceil_mode the last window must start inside the input or left padding
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def conv_transpose_out(size: int, k: int, s: int, p: int, d: int = 1, output_padding: int = 0) -> int:
    """torch's output length of a transposed convolution (the inverse of ``conv_out``)."""
    return (size - 1) * s - 2 * p + d * (k - 1) + output_padding + 1


def fmt_shape(shape) -> str:
    """(3, 224, 224) -> '3x224x224' (a 0-d shape is 'scalar')."""
    return "x".join(str(v) for v in shape) or "scalar"


def join_path(path: str, name: str) -> str:
    """Dotted state_dict path of a child: join_path('layer1', '0') == 'layer1.0'."""
    return f"{path}.{name}" if path else name
