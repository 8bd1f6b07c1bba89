"""Value types for the command line's flags (argparse ``type=``): each turns a
bad value into argparse's one-line usage error, never a traceback."""
from __future__ import annotations

import argparse
import math


def _number(text, convert, ok, expected: str):
    try:
        v = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return v


def positive_int(text) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def nonneg_int(text) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def nonneg_float(text) -> float:
    return _number(text, float, lambda v: 0 <= v < math.inf, "a finite number >= 0")


def fraction(text) -> float:
    return _number(text, float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


class Range(tuple):
    """A (low, high) pair that prints as the text it was parsed from ("0.75,2.0"), so a
    saved setting (a checkpoint's task options) parses back to the same pair."""

    def __str__(self) -> str:
        return f"{self[0]!r},{self[1]!r}"


def float_range(text) -> Range:
    """LOW,HIGH as two finite numbers, e.g. a scale range 0.75,2."""
    try:
        lo, hi = (float(p) for p in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 0.75,2), got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return Range((lo, hi))
