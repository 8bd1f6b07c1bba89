"""The network spec: a network described once, as data.

Leaves are layers (Conv2d, Linear, BatchNorm2d, activations, pools, ...).
Combinators compose them: Sequential (named children in order), Residual
(body + shortcut, added), Concat (parallel branches, stacked on channels) and
Gate (x * branch(x), squeeze-and-excitation).

A layer type is one unit: its class here owns its three rules,

- ``output_shape(shape)``: (C, H, W) or (F,) in, shape out (raises ShapeError);
- ``counts(in_shape, out_shape)``: trainable parameters, buffer values, MACs;
- ``receptive_field(rf, in_shape, input_hw)``: how it grows the field (``RF``).

The walk over combinators that applies them is ``infer.py``; the analysis and
both backends read its result. A spec holds no weights and does not repeat
in_channels. Child names follow torchvision's module names, so the state_dict
of a compiled model has torchvision's keys. Shapes are per example.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from typing import Iterator, NamedTuple

from ..errors import ShapeError, SpecError
from .geometry import conv_out, conv_transpose_out, fmt_shape, join_path, pair
from .receptive_field import RF


class Counts(NamedTuple):
    params: int    # trainable values
    buffers: int   # saved, not trained (running statistics, fixed centres)
    macs: int      # multiply-accumulates at batch 1 (conv and linear; bias excluded)


NO_COUNTS = Counts(0, 0, 0)
RULES = ("output_shape", "counts", "receptive_field")


class Node:
    """Base of every spec node. Leaves have no children."""

    def children(self) -> list[tuple[str, "Node"]]:
        return []

    @property
    def type(self) -> str:
        return type(self).__name__


class Leaf(Node):
    """A layer. Each subclass states every rule in ``RULES``; a missing one is
    reported by ``missing_rules`` (and a test) instead of silently counting 0."""

    def output_shape(self, shape: tuple) -> tuple:
        raise SpecError(f"layer type {self.type} has no output_shape rule")

    def counts(self, in_shape: tuple, out_shape: tuple) -> Counts:
        raise SpecError(f"layer type {self.type} has no counts rule")

    def receptive_field(self, rf: RF, in_shape: tuple, input_hw: tuple) -> RF:
        raise SpecError(f"layer type {self.type} has no receptive_field rule")


def missing_rules(cls: type) -> list[str]:
    """The rules a leaf class inherits from ``Leaf`` instead of stating."""
    return [r for r in RULES if getattr(cls, r) is getattr(Leaf, r)]


class SameShape(Leaf):
    """Rules of a layer that keeps its input's shape and field and has no
    parameters (activations, Identity, Dropout)."""

    def output_shape(self, shape):
        return shape

    def counts(self, in_shape, out_shape):
        return NO_COUNTS

    def receptive_field(self, rf, in_shape, input_hw):
        return rf


def spatial(shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{what} needs a (C, H, W) feature map, got shape {tuple(shape)}; "
                         f"put it before Flatten")
    return shape


def flat(shape, what: str) -> int:
    if len(shape) != 1:
        raise ShapeError(f"{what} needs a flat (F,) input, got {tuple(shape)}; add a Flatten before it")
    return shape[0]


def window_out(shape, node, ceil: bool = False) -> list[int]:
    """Output H and W of a sliding window (conv or pool); ShapeError if it does not fit."""
    _, h, w = spatial(shape, node.type)
    d = getattr(node, "dilation", (1, 1))
    outs = []
    for size, k, s, p, dd, axis in zip((h, w), node.kernel_size, node.stride, node.padding, d, "HW"):
        o = conv_out(size, k, s, p, dd, ceil)
        if o < 1:
            dil = f" (dilation {dd})" if dd > 1 else ""
            raise ShapeError(f"{node.type} kernel {dd * (k - 1) + 1}{dil} does not fit input "
                             f"{axis}={size} with padding {p}")
        outs.append(o)
    return outs


# --------------------------------------------------------------------------- leaves


@dataclass
class Conv2d(Leaf):
    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    bias: bool = True

    def __post_init__(self):
        _conv_post_init(self)

    def output_shape(self, shape):
        c = spatial(shape, "Conv2d")[0]
        if c % self.groups:
            raise ShapeError(f"Conv2d in_channels={c} is not divisible by groups={self.groups}")
        return (self.out_channels, *window_out(shape, self))

    def counts(self, in_shape, out_shape):
        per_out = in_shape[0] // self.groups * math.prod(self.kernel_size)
        params = self.out_channels * per_out + (self.out_channels if self.bias else 0)
        return Counts(params, 0, math.prod(out_shape) * per_out)

    def receptive_field(self, rf, in_shape, input_hw):
        return rf.window(self.kernel_size, self.stride, self.padding, self.dilation)


@dataclass
class ConvTranspose2d(Leaf):
    """The gradient of a conv with respect to its input, used as a layer that
    grows the map: out = (in - 1) * stride - 2 * padding + dilation * (k - 1)
    + output_padding + 1 (torch's ``nn.ConvTranspose2d``)."""

    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    output_padding: int | tuple[int, int] = 0
    groups: int = 1
    bias: bool = True
    dilation: int | tuple[int, int] = 1

    def __post_init__(self):
        _conv_post_init(self)
        self.output_padding = pair(self.output_padding, "ConvTranspose2d output_padding")
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op < 0 or (op >= s and op >= d):
                raise SpecError(f"ConvTranspose2d output_padding {self.output_padding} must be >= 0 "
                                f"and smaller than stride {self.stride} or dilation {self.dilation}")

    def output_shape(self, shape):
        c, h, w = spatial(shape, "ConvTranspose2d")
        if c % self.groups:
            raise ShapeError(f"ConvTranspose2d in_channels={c} is not divisible by groups={self.groups}")
        outs = [conv_transpose_out(size, k, s, p, d, op) for size, k, s, p, d, op in zip(
            (h, w), self.kernel_size, self.stride, self.padding, self.dilation, self.output_padding)]
        if min(outs) < 1:
            raise ShapeError(f"ConvTranspose2d padding {self.padding} crops input {h}x{w} to nothing "
                             f"(output {fmt_shape(outs)}); lower the padding")
        return (self.out_channels, *outs)

    def counts(self, in_shape, out_shape):
        # every input value meets out_channels/groups * kh * kw weights (as fvcore counts it)
        per_in = self.out_channels // self.groups * math.prod(self.kernel_size)
        params = in_shape[0] * per_in + (self.out_channels if self.bias else 0)
        return Counts(params, 0, math.prod(in_shape) * per_in)

    def receptive_field(self, rf, in_shape, input_hw):
        return rf.transposed_window(self.kernel_size, self.stride, self.padding, self.dilation)


UPSAMPLE_MODES = ("nearest", "bilinear")


@dataclass
class Upsample(Leaf):
    """torch's ``nn.Upsample``: grow the map by an integer ``scale_factor`` or to a
    fixed ``size`` (one of the two), by copying the nearest input pixel or by
    bilinear interpolation. ``align_corners`` (bilinear only, None = False) maps
    the corner pixels' centres onto each other instead of the corners' edges."""

    scale_factor: int | tuple[int, int] | None = None
    size: int | tuple[int, int] | None = None
    mode: str = "nearest"
    align_corners: bool | None = None

    def __post_init__(self):
        if (self.scale_factor is None) == (self.size is None):
            raise SpecError("Upsample needs exactly one of scale_factor and size")
        for name in ("scale_factor", "size"):
            if getattr(self, name) is not None:
                setattr(self, name, pair(getattr(self, name), f"Upsample {name}"))
                _positive_pair(self, name)
        if self.mode not in UPSAMPLE_MODES:
            raise SpecError(f"Upsample mode {self.mode!r} is not one of {', '.join(UPSAMPLE_MODES)}")
        if self.align_corners is not None and (self.mode != "bilinear" or not isinstance(self.align_corners,
                                                                                            bool)):
            raise SpecError(f"Upsample align_corners={self.align_corners!r}: only bilinear mode takes it, "
                            f"as true or false (leave it unset for nearest)")

    def output_shape(self, shape):
        c, h, w = spatial(shape, "Upsample")
        if self.size is not None:
            return (c, *self.size)
        return (c, h * self.scale_factor[0], w * self.scale_factor[1])

    def counts(self, in_shape, out_shape):
        # nearest copies; bilinear weighs 4 neighbours per output value (a fixed-weight
        # sum, counted as RBFOutput's fixed centres are)
        return Counts(0, 0, 4 * math.prod(out_shape) if self.mode == "bilinear" else 0)

    def receptive_field(self, rf, in_shape, input_hw):
        ins, outs = in_shape[1:], self.output_shape(in_shape)[1:]
        factors = [o // i if o % i == 0 else None for i, o in zip(ins, outs)]
        if None not in factors and not self.align_corners:
            # an integer scale is a fixed depthwise transposed conv: nearest copies one unit
            # (kernel s, stride s); bilinear's tent spans 2s - s % 2 taps, centred (padding s // 2)
            if self.mode == "nearest":
                return rf.transposed_window(factors, factors, (0, 0))
            return rf.transposed_window([2 * s - s % 2 for s in factors], factors, [s // 2 for s in factors])
        # any other ratio: output o reads around x = ratio * o + offset (torch's source index)
        if self.align_corners:
            ratio = [Fraction(i - 1, o - 1) if o > 1 else Fraction(0) for i, o in zip(ins, outs)]
            offset = [Fraction(0)] * 2
        else:
            ratio = [Fraction(i, o) for i, o in zip(ins, outs)]
            offset = [q / 2 - Fraction(1, 2) if self.mode == "bilinear" else Fraction(0) for q in ratio]
        # nearest reads floor(x), in (x - 1, x]; bilinear floor(x) and the unit after, in [x - 1, x + 1]
        hi = (1, 1) if self.mode == "bilinear" else (0, 0)
        return rf.resampled(ratio, offset, (1, 1), hi)


@dataclass
class PixelShuffle(Leaf):
    """Shi et al. 2016's sub-pixel convolution step (torch's ``nn.PixelShuffle``):
    (C * r * r, H, W) -> (C, H * r, W * r); input channel c * r * r + i * r + j
    becomes output pixel (h * r + i, w * r + j) of channel c."""

    upscale_factor: int

    def __post_init__(self):
        _positive(self, "upscale_factor")

    def output_shape(self, shape):
        c, h, w = spatial(shape, "PixelShuffle")
        r = self.upscale_factor
        if c % (r * r):
            raise ShapeError(f"PixelShuffle({r}) needs channels divisible by {r * r}, got {c}; give the conv "
                             f"before it {r * r} x the output channels")
        return (c // (r * r), h * r, w * r)

    def counts(self, in_shape, out_shape):
        return NO_COUNTS  # a reshuffle: no arithmetic

    def receptive_field(self, rf, in_shape, input_hw):
        # output pixel o comes from input unit o // r, as nearest upsampling by r
        r = self.upscale_factor
        return rf.transposed_window((r, r), (r, r), (0, 0))


@dataclass
class Linear(Leaf):
    out_features: int
    bias: bool = True

    def __post_init__(self):
        _positive(self, "out_features")

    def output_shape(self, shape):
        flat(shape, "Linear")
        return (self.out_features,)

    def counts(self, in_shape, out_shape):
        fin = in_shape[0]
        return Counts(fin * self.out_features + (self.out_features if self.bias else 0), 0,
                      fin * self.out_features)

    def receptive_field(self, rf, in_shape, input_hw):
        return rf.to_global(input_hw)


@dataclass
class BatchNorm2d(Leaf):
    eps: float = 1e-5
    momentum: float = 0.1

    def output_shape(self, shape):
        return spatial(shape, "BatchNorm2d")

    def counts(self, in_shape, out_shape):
        c = in_shape[0]
        return Counts(2 * c, 2 * c + 1, 0)  # running mean, var, num_batches_tracked

    def receptive_field(self, rf, in_shape, input_hw):
        return rf


@dataclass
class LocalResponseNorm(Leaf):
    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0

    def output_shape(self, shape):
        return spatial(shape, "LocalResponseNorm")

    def counts(self, in_shape, out_shape):
        return NO_COUNTS

    def receptive_field(self, rf, in_shape, input_hw):
        return rf  # mixes channels, not pixels


class Activation(SameShape):
    """Elementwise nonlinearity; no parameters."""


@dataclass
class ReLU(Activation):
    pass


@dataclass
class ReLU6(Activation):
    pass


@dataclass
class SiLU(Activation):
    pass


@dataclass
class HardSigmoid(Activation):
    """max(0, min(1, alpha * x + beta)); torch's nn.Hardsigmoid is alpha 1/6,
    beta 1/2 (ONNX's HardSigmoid defaults to alpha 0.2)."""

    alpha: float = 1.0 / 6.0
    beta: float = 0.5


@dataclass
class Sigmoid(Activation):
    pass


@dataclass
class Tanh(Activation):
    pass


@dataclass
class GELU(Activation):
    pass


@dataclass
class ScaledTanh(Activation):
    """LeCun et al. 1998: f(a) = A tanh(S a) with A = 1.7159, S = 2/3."""

    amplitude: float = 1.7159
    slope: float = 2.0 / 3.0


@dataclass
class Identity(SameShape):
    pass


@dataclass
class Dropout(SameShape):
    p: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.p < 1.0:
            raise SpecError(f"Dropout p must be in [0, 1), got {self.p}")


class _Pool(Leaf):
    def output_shape(self, shape):
        return (shape[0], *window_out(shape, self, self.ceil_mode))

    def counts(self, in_shape, out_shape):
        return NO_COUNTS  # comparisons and additions, not multiply-accumulates


@dataclass
class MaxPool2d(_Pool):
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    ceil_mode: bool = False

    def __post_init__(self):
        _pool_post_init(self)
        self.dilation = pair(self.dilation, "MaxPool2d dilation")
        _positive_pair(self, "dilation")

    def receptive_field(self, rf, in_shape, input_hw):
        return rf.window(self.kernel_size, self.stride, self.padding, self.dilation)


@dataclass
class AvgPool2d(_Pool):
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    ceil_mode: bool = False
    count_include_pad: bool = True

    def __post_init__(self):
        _pool_post_init(self)

    def receptive_field(self, rf, in_shape, input_hw):
        return rf.window(self.kernel_size, self.stride, self.padding)


@dataclass
class AdaptiveAvgPool2d(Leaf):
    """torch's adaptive average pool; output_size 1 is global average pooling."""

    output_size: int | tuple[int, int] = 1

    def __post_init__(self):
        self.output_size = pair(self.output_size, "AdaptiveAvgPool2d output_size")
        _positive_pair(self, "output_size")

    def output_shape(self, shape):
        return (spatial(shape, "AdaptiveAvgPool2d")[0], *self.output_size)

    def counts(self, in_shape, out_shape):
        return NO_COUNTS

    def receptive_field(self, rf, in_shape, input_hw):
        (h, w), (oh, ow) = in_shape[1:], self.output_size
        if (oh, ow) == (h, w):
            return rf
        if (oh, ow) == (1, 1):
            return rf.to_global(input_hw)
        # torch's bins: start floor(i*h/oh), end ceil((i+1)*h/oh); the widest is this kernel
        k = (-(-h // oh) + (h % oh > 0), -(-w // ow) + (w % ow > 0))
        out = rf.window(k, (max(h // oh, 1), max(w // ow, 1)), (0, 0))
        return out if (h % oh == 0 and w % ow == 0) else replace(out, exact=False)


@dataclass
class Flatten(Leaf):
    def output_shape(self, shape):
        return (math.prod(shape),)

    def counts(self, in_shape, out_shape):
        return NO_COUNTS

    def receptive_field(self, rf, in_shape, input_hw):
        return rf if math.prod(in_shape[1:]) == 1 else rf.to_global(input_hw)


@dataclass
class ShortcutA(Leaf):
    """He et al. 2015, option A: identity shortcut that subsamples by `stride`
    and zero-pads the new channels (split evenly before and after). No parameters."""

    out_channels: int
    stride: int = 2

    def output_shape(self, shape):
        c, h, w = spatial(shape, "ShortcutA")
        if self.out_channels < c:
            raise ShapeError(f"ShortcutA cannot shrink channels {c} -> {self.out_channels}")
        s = self.stride
        return (self.out_channels, -(-h // s), -(-w // s))

    def counts(self, in_shape, out_shape):
        return NO_COUNTS

    def receptive_field(self, rf, in_shape, input_hw):
        return rf.window((1, 1), (self.stride, self.stride), (0, 0))


@dataclass
class SelectChannels(Leaf):
    """Keep the listed input channels, in order (LeNet-5 1998's C3 connection table)."""

    indices: tuple[int, ...]

    def __post_init__(self):
        self.indices = tuple(int(i) for i in self.indices)
        if not self.indices:
            raise SpecError("SelectChannels needs at least one channel index")

    def output_shape(self, shape):
        c = spatial(shape, "SelectChannels")[0]
        if max(self.indices) >= c or min(self.indices) < 0:
            raise ShapeError(f"SelectChannels indices {self.indices} out of range for {c} channels")
        return (len(self.indices), *shape[1:])

    def counts(self, in_shape, out_shape):
        return NO_COUNTS

    def receptive_field(self, rf, in_shape, input_hw):
        return rf


@dataclass
class Subsample(Leaf):
    """LeCun 1998's trainable subsampling: per channel, the sum over a k x k
    window times a trainable coefficient plus a trainable bias (stride k)."""

    kernel_size: int = 2

    def output_shape(self, shape):
        k = self.kernel_size
        c, h, w = spatial(shape, "Subsample")
        if h < k or w < k:
            raise ShapeError(f"Subsample window {k} does not fit input {h}x{w}")
        return (c, h // k, w // k)

    def counts(self, in_shape, out_shape):
        # one coefficient multiply per output; the window sum is additions
        return Counts(2 * in_shape[0], 0, math.prod(out_shape))

    def receptive_field(self, rf, in_shape, input_hw):
        k = self.kernel_size
        return rf.window((k, k), (k, k), (0, 0))


@dataclass
class RBFOutput(Leaf):
    """LeCun 1998's output layer: y_i = -sum_j (x_j - c_ij)^2 with fixed (not
    trainable) +-1 centres c (``rbf_centers``). The negated distance is the logit."""

    out_features: int
    seed: int = 0

    def output_shape(self, shape):
        flat(shape, "RBFOutput")
        return (self.out_features,)

    def counts(self, in_shape, out_shape):
        return Counts(0, in_shape[0] * self.out_features, in_shape[0] * self.out_features)

    def receptive_field(self, rf, in_shape, input_hw):
        return rf.to_global(input_hw)


def rbf_centers(out_features: int, in_features: int, seed: int = 0):
    """RBFOutput's fixed +-1 centres, (out, in) float64, drawn as
    2 * default_rng(seed).integers(0, 2) - 1 so every backend agrees."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return (2 * rng.integers(0, 2, size=(out_features, in_features)) - 1).astype(np.float64)


# ----------------------------------------------------------------------- combinators


@dataclass
class Sequential(Node):
    """Named children applied in order. Build with ``seq(a, b, ...)`` for
    index names "0", "1", ... or ``Sequential.named(conv=..., bn=...)``."""

    layers: list[tuple[str, Node]] = field(default_factory=list)

    def __post_init__(self):
        self.layers = [(str(n), c) for n, c in self.layers]
        names = [n for n, _ in self.layers]
        if len(set(names)) != len(names):
            raise SpecError(f"Sequential has duplicate child names: {names}")
        for n, c in self.layers:
            if not isinstance(c, Node):
                raise SpecError(f"Sequential child {n!r} is not a spec node: {c!r}")

    @classmethod
    def named(cls, **children: Node) -> "Sequential":
        return cls(list(children.items()))

    def children(self):
        return list(self.layers)


@dataclass
class Residual(Node):
    """out = post(drop_path(body(x)) + shortcut(x)); shortcut None is identity.

    ``body_name`` None splices the body's children into this node's namespace
    (torchvision's BasicBlock: conv1, bn1, ...); a name nests it (MBConv's
    ``block``). ``drop_path`` is stochastic depth, per example, as torchvision's
    StochasticDepth(mode="row")."""

    body: Sequential
    shortcut: Node | None = None
    post: Node | None = None
    drop_path: float = 0.0
    body_name: str | None = None
    shortcut_name: str = "downsample"
    post_name: str = "relu"

    def __post_init__(self):
        if self.body_name is None and not isinstance(self.body, Sequential):
            raise SpecError("Residual body must be a Sequential when body_name is None")
        if not 0.0 <= self.drop_path < 1.0:
            raise SpecError(f"Residual drop_path must be in [0, 1), got {self.drop_path}")

    def body_children(self) -> list[tuple[str, Node]]:
        return [(self.body_name, self.body)] if self.body_name else self.body.children()

    def children(self):
        out = self.body_children()
        if self.shortcut is not None:
            out.append((self.shortcut_name, self.shortcut))
        if self.post is not None:
            out.append((self.post_name, self.post))
        return out


@dataclass
class Concat(Node):
    """Parallel branches on the same input, concatenated along channels."""

    branches: list[tuple[str, Node]]

    def __post_init__(self):
        self.branches = [(str(n), c) for n, c in self.branches]
        if not self.branches:
            raise SpecError("Concat needs at least one branch")

    def children(self):
        return list(self.branches)


@dataclass
class Gate(Node):
    """out = x * branch(x): squeeze-and-excitation. The branch's children are
    this node's children (torchvision's SqueezeExcitation: avgpool, fc1, ...)."""

    branch: Sequential

    def children(self):
        return self.branch.children()


# ---------------------------------------------------------------------------- network


@dataclass
class Network:
    """A whole model: the root node plus what it expects as input."""

    name: str
    root: Node
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.input_shape = tuple(int(v) for v in self.input_shape)

    def named_nodes(self) -> Iterator[tuple[str, Node]]:
        return walk(self.root)


def walk(node: Node, prefix: str = "") -> Iterator[tuple[str, Node]]:
    """Every node under ``node`` with its dotted path, parents before children."""
    yield prefix, node
    for name, child in node.children():
        yield from walk(child, join_path(prefix, name))


def seq(*nodes: Node) -> Sequential:
    return Sequential([(str(i), n) for i, n in enumerate(nodes)])


LEAF_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Conv2d, ConvTranspose2d, Upsample, PixelShuffle, Linear, BatchNorm2d, LocalResponseNorm, ReLU,
        ReLU6, SiLU, Sigmoid, HardSigmoid, Tanh, GELU, ScaledTanh, Identity, MaxPool2d, AvgPool2d,
        AdaptiveAvgPool2d, Dropout, Flatten, ShortcutA, SelectChannels, Subsample, RBFOutput,
    )
}
CONTAINER_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (Sequential, Residual, Concat, Gate)
}


def _positive(obj, *names):
    for n in names:
        v = getattr(obj, n)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpecError(f"{type(obj).__name__} {n} must be a positive int, got {v!r}")


def _positive_pair(obj, *names):
    for n in names:
        if min(getattr(obj, n)) < 1:
            raise SpecError(f"{type(obj).__name__} {n} must be positive, got {getattr(obj, n)}")


def _conv_post_init(obj):
    cls = type(obj).__name__
    for name in ("kernel_size", "stride", "padding", "dilation"):
        setattr(obj, name, pair(getattr(obj, name), f"{cls} {name}"))
    _positive(obj, "out_channels", "groups")
    _positive_pair(obj, "kernel_size", "stride", "dilation")
    if min(obj.padding) < 0:
        raise SpecError(f"{cls} padding must be >= 0, got {obj.padding}")
    if obj.out_channels % obj.groups:
        raise SpecError(f"{cls} out_channels={obj.out_channels} is not divisible by groups={obj.groups}")


def _pool_post_init(obj):
    cls = type(obj).__name__
    obj.kernel_size = pair(obj.kernel_size, f"{cls} kernel_size")
    obj.stride = obj.kernel_size if obj.stride is None else pair(obj.stride, f"{cls} stride")
    obj.padding = pair(obj.padding, f"{cls} padding")
    _positive_pair(obj, "kernel_size", "stride")
    if min(obj.padding) < 0 or any(2 * p > k for p, k in zip(obj.padding, obj.kernel_size)):
        raise SpecError(
            f"{cls} padding must be between 0 and half the kernel, got padding "
            f"{obj.padding} for kernel {obj.kernel_size}"
        )


def leaf_fields(node: Node) -> dict:
    """The constructor arguments of a leaf, as plain values."""
    return {f.name: getattr(node, f.name) for f in fields(node)}
