"""Shape rules for each leaf layer: (C, H, W) or (F,) in, shape out.

A rule raises ShapeError with what went wrong; the traversal in
``svertka.analysis`` adds the layer's path to the message.
"""
from __future__ import annotations

import math

from ..errors import ShapeError
from . import nodes as n


def conv_out(size: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    """torch's output length for a sliding window (conv or pool)."""
    span = size + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    out = (math.ceil(span / s) if ceil else span // s) + 1
    # torch: with ceil_mode the last window must start inside the input or left padding
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _spatial(shape, what: str):
    if len(shape) != 3:
        raise ShapeError(f"{what} needs a (C, H, W) feature map, got shape {tuple(shape)}; "
                         f"put it before Flatten")
    return shape


def _window(shape, node, kind: str, ceil=False):
    c, h, w = _spatial(shape, kind)
    d = getattr(node, "dilation", (1, 1))
    outs = []
    for size, k, s, p, dd, axis in zip((h, w), node.kernel_size, node.stride, node.padding, d, "HW"):
        o = conv_out(size, k, s, p, dd, ceil)
        if o < 1:
            eff = dd * (k - 1) + 1
            dil = f" (dilation {dd})" if dd > 1 else ""
            raise ShapeError(f"{kind} kernel {eff}{dil} does not fit input {axis}={size} "
                             f"with padding {p}")
        outs.append(o)
    return outs


def leaf_output_shape(node: n.Node, shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(shape)
    if isinstance(node, n.Conv2d):
        c = _spatial(shape, "Conv2d")[0]
        if c % node.groups:
            raise ShapeError(f"Conv2d in_channels={c} is not divisible by groups={node.groups}")
        return (node.out_channels, *_window(shape, node, "Conv2d"))
    if isinstance(node, (n.MaxPool2d, n.AvgPool2d)):
        return (shape[0], *_window(shape, node, node.type, node.ceil_mode))
    if isinstance(node, n.Subsample):
        k = node.kernel_size
        c, h, w = _spatial(shape, "Subsample")
        if h < k or w < k:
            raise ShapeError(f"Subsample window {k} does not fit input {h}x{w}")
        return (c, h // k, w // k)
    if isinstance(node, n.AdaptiveAvgPool2d):
        c, _, _ = _spatial(shape, "AdaptiveAvgPool2d")
        return (c, *node.output_size)
    if isinstance(node, n.Flatten):
        return (math.prod(shape),)
    if isinstance(node, (n.Linear, n.RBFOutput)):
        if len(shape) != 1:
            raise ShapeError(f"{node.type} needs a flat (F,) input, got {shape}; add a Flatten before it")
        return (node.out_features,)
    if isinstance(node, (n.BatchNorm2d, n.LocalResponseNorm)):
        _spatial(shape, node.type)
        return shape
    if isinstance(node, n.ShortcutA):
        c, h, w = _spatial(shape, "ShortcutA")
        if node.out_channels < c:
            raise ShapeError(f"ShortcutA cannot shrink channels {c} -> {node.out_channels}")
        s = node.stride
        return (node.out_channels, -(-h // s), -(-w // s))
    if isinstance(node, n.SelectChannels):
        c = _spatial(shape, "SelectChannels")[0]
        if max(node.indices) >= c or min(node.indices) < 0:
            raise ShapeError(f"SelectChannels indices {node.indices} out of range for {c} channels")
        return (len(node.indices), *shape[1:])
    if isinstance(node, (n.Activation, n.Identity, n.Dropout)):
        return shape
    raise ShapeError(f"no shape rule for layer type {node.type}")
