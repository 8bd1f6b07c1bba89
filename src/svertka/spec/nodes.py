"""The network spec: a network described once, as data.

Leaves are layers (Conv2d, Linear, BatchNorm2d, activations, pools, ...).
Combinators compose them: Sequential (named children in order), Residual
(body + shortcut, added), Concat (parallel branches, stacked on channels) and
Gate (x * branch(x), squeeze-and-excitation).

A spec holds no weights and does not repeat in_channels: shapes are inferred
(see ``shapes.py``). Child names follow torchvision's module names, so the
state_dict of a compiled model has torchvision's keys.

Shapes are per example: (C, H, W) for feature maps, (F,) after Flatten.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterator

from ..errors import SpecError


def pair(v, what: str = "value") -> tuple[int, int]:
    """Normalise an int or a 2-sequence to a pair of ints."""
    if isinstance(v, bool):
        raise SpecError(f"{what} must be an int or a pair of ints, got {v!r}")
    if isinstance(v, int):
        return (v, v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise SpecError(f"{what} must be an int or a pair of ints, got {v!r}") from None
    if not (isinstance(a, int) and isinstance(b, int)):
        raise SpecError(f"{what} must be an int or a pair of ints, got {v!r}")
    return (a, b)


class Node:
    """Base of every spec node. Leaves have no children."""

    def children(self) -> list[tuple[str, "Node"]]:
        return []

    @property
    def type(self) -> str:
        return type(self).__name__


# --------------------------------------------------------------------------- leaves


@dataclass
class Conv2d(Node):
    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    bias: bool = True

    def __post_init__(self):
        self.kernel_size = pair(self.kernel_size, "Conv2d kernel_size")
        self.stride = pair(self.stride, "Conv2d stride")
        self.padding = pair(self.padding, "Conv2d padding")
        self.dilation = pair(self.dilation, "Conv2d dilation")
        _positive(self, "out_channels", "groups")
        _positive_pair(self, "kernel_size", "stride", "dilation")
        if min(self.padding) < 0:
            raise SpecError(f"Conv2d padding must be >= 0, got {self.padding}")
        if self.out_channels % self.groups:
            raise SpecError(
                f"Conv2d out_channels={self.out_channels} is not divisible by groups={self.groups}"
            )


@dataclass
class Linear(Node):
    out_features: int
    bias: bool = True

    def __post_init__(self):
        _positive(self, "out_features")


@dataclass
class BatchNorm2d(Node):
    eps: float = 1e-5
    momentum: float = 0.1


@dataclass
class LocalResponseNorm(Node):
    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0


class Activation(Node):
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
class Identity(Node):
    pass


@dataclass
class MaxPool2d(Node):
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    ceil_mode: bool = False

    def __post_init__(self):
        _pool_post_init(self)
        self.dilation = pair(self.dilation, "MaxPool2d dilation")
        _positive_pair(self, "dilation")


@dataclass
class AvgPool2d(Node):
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    ceil_mode: bool = False
    count_include_pad: bool = True

    def __post_init__(self):
        _pool_post_init(self)


@dataclass
class AdaptiveAvgPool2d(Node):
    """torch's adaptive average pool; output_size 1 is global average pooling."""

    output_size: int | tuple[int, int] = 1

    def __post_init__(self):
        self.output_size = pair(self.output_size, "AdaptiveAvgPool2d output_size")
        _positive_pair(self, "output_size")


@dataclass
class Dropout(Node):
    p: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.p < 1.0:
            raise SpecError(f"Dropout p must be in [0, 1), got {self.p}")


@dataclass
class Flatten(Node):
    pass


@dataclass
class ShortcutA(Node):
    """He et al. 2015, option A: identity shortcut that subsamples by `stride`
    and zero-pads the new channels (split evenly before and after). No parameters."""

    out_channels: int
    stride: int = 2


@dataclass
class SelectChannels(Node):
    """Keep the listed input channels, in order (LeNet-5 1998's C3 connection table)."""

    indices: tuple[int, ...]

    def __post_init__(self):
        self.indices = tuple(int(i) for i in self.indices)
        if not self.indices:
            raise SpecError("SelectChannels needs at least one channel index")


@dataclass
class Subsample(Node):
    """LeCun 1998's trainable subsampling: per channel, the sum over a k x k
    window times a trainable coefficient plus a trainable bias (stride k)."""

    kernel_size: int = 2


@dataclass
class RBFOutput(Node):
    """LeCun 1998's output layer: y_i = -sum_j (x_j - c_ij)^2 with fixed (not
    trainable) +-1 centres c. The negated distance is the logit."""

    out_features: int
    seed: int = 0


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
        yield from walk(child, f"{prefix}.{name}" if prefix else name)


def seq(*nodes: Node) -> Sequential:
    return Sequential([(str(i), n) for i, n in enumerate(nodes)])


LEAF_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Conv2d, Linear, BatchNorm2d, LocalResponseNorm, ReLU, ReLU6, SiLU, Sigmoid, Tanh,
        GELU, ScaledTanh, Identity, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Dropout,
        Flatten, ShortcutA, SelectChannels, Subsample, RBFOutput,
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
