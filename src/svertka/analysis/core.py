"""Shapes, parameters, multiply-adds, activation memory and receptive field,
read off the spec. No weights are allocated, so VGG-16 takes milliseconds.

MACs count the multiply-accumulates of conv and linear layers at batch 1,
bias excluded (torchvision's "GFLOPS" column and the MobileNet paper's
"Mult-Adds" count them so). BatchNorm, activations, pooling and the residual
additions count zero. FLOPs = 2 x MACs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ShapeError
from ..spec import nodes as n
from ..spec.shapes import leaf_output_shape
from .receptive_field import RF, union

BYTES_PER_VALUE = 4  # float32 activations


@dataclass
class LayerInfo:
    name: str
    type: str
    depth: int
    in_shape: tuple
    out_shape: tuple
    params: int
    buffers: int
    macs: int
    activation_bytes: int
    rf: RF
    leaf: bool
    done: int = 0  # completion order: a container completes after its children

    def as_dict(self) -> dict:
        return {
            "name": self.name, "type": self.type, "depth": self.depth,
            "input_shape": list(self.in_shape), "output_shape": list(self.out_shape),
            "params": self.params, "macs": self.macs,
            "activation_bytes": self.activation_bytes, "rf": self.rf.as_dict(),
        }


@dataclass
class Analysis:
    name: str
    input_shape: tuple
    output_shape: tuple
    layers: list[LayerInfo] = field(default_factory=list)

    @property
    def leaves(self) -> list[LayerInfo]:
        return [l for l in self.layers if l.leaf]

    @property
    def params(self) -> int:
        return sum(l.params for l in self.leaves)

    @property
    def buffers(self) -> int:
        return sum(l.buffers for l in self.leaves)

    @property
    def macs(self) -> int:
        return sum(l.macs for l in self.leaves)

    @property
    def activation_bytes(self) -> int:
        return sum(l.activation_bytes for l in self.leaves)

    @property
    def feature_rf(self) -> RF:
        """Field of the last feature map before the network turns global
        (global pooling, flatten of a map, or the classifier)."""
        local = [l for l in self.layers if not l.rf.global_]
        return max(local, key=lambda l: l.done).rf if local else RF()

    def layer(self, name: str) -> LayerInfo:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "input": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "layers": [l.as_dict() for l in self.leaves],
            "total": {"params": self.params, "macs": self.macs,
                      "activation_bytes": self.activation_bytes},
            "rf": self.feature_rf.as_dict(),
        }


def leaf_counts(node: n.Node, in_shape, out_shape) -> tuple[int, int, int]:
    """(trainable params, buffer values, MACs) of one leaf."""
    if isinstance(node, n.Conv2d):
        kh, kw = node.kernel_size
        per_out = in_shape[0] // node.groups * kh * kw
        params = node.out_channels * per_out + (node.out_channels if node.bias else 0)
        return params, 0, math.prod(out_shape) * per_out
    if isinstance(node, n.Linear):
        fin = in_shape[0]
        return fin * node.out_features + (node.out_features if node.bias else 0), 0, fin * node.out_features
    if isinstance(node, n.BatchNorm2d):
        c = in_shape[0]
        return 2 * c, 2 * c + 1, 0  # running mean, var, num_batches_tracked
    if isinstance(node, n.Subsample):
        # one coefficient multiply per output; the window sum is additions
        return 2 * in_shape[0], 0, math.prod(out_shape)
    if isinstance(node, n.RBFOutput):
        return 0, in_shape[0] * node.out_features, in_shape[0] * node.out_features
    return 0, 0, 0


def _leaf_rf(node: n.Node, rf: RF, in_shape, out_shape, input_hw) -> RF:
    if isinstance(node, n.Conv2d):
        return rf.window(node.kernel_size, node.stride, node.padding, node.dilation)
    if isinstance(node, n.MaxPool2d):
        return rf.window(node.kernel_size, node.stride, node.padding, node.dilation)
    if isinstance(node, n.AvgPool2d):
        return rf.window(node.kernel_size, node.stride, node.padding)
    if isinstance(node, n.Subsample):
        k = node.kernel_size
        return rf.window((k, k), (k, k), (0, 0))
    if isinstance(node, n.ShortcutA):
        s = node.stride
        return rf.window((1, 1), (s, s), (0, 0))
    if isinstance(node, n.AdaptiveAvgPool2d):
        if len(in_shape) != 3:
            return rf
        (h, w), (oh, ow) = in_shape[1:], node.output_size
        if (oh, ow) == (h, w):
            return rf
        if (oh, ow) == (1, 1):
            return rf.to_global(input_hw)
        k = (-(-h // oh) + (h % oh > 0), -(-w // ow) + (w % ow > 0))
        out = rf.window(k, (max(h // oh, 1), max(w // ow, 1)), (0, 0))
        return out if (h % oh == 0 and w % ow == 0) else _inexact(out)
    if isinstance(node, n.Flatten):
        return rf if math.prod(in_shape[1:]) == 1 else rf.to_global(input_hw)
    if isinstance(node, (n.Linear, n.RBFOutput)):
        return rf.to_global(input_hw)
    return rf


def _inexact(rf: RF) -> RF:
    from dataclasses import replace
    return replace(rf, exact=False)


class _Tracer:
    def __init__(self, input_hw):
        self.rows: list[LayerInfo] = []
        self.input_hw = input_hw
        self.count = 0

    def visit(self, node: n.Node, path: str, shape, rf: RF, depth: int):
        start = len(self.rows)
        row = None
        if node.children() or isinstance(node, (n.Sequential, n.Residual, n.Concat, n.Gate)):
            row = LayerInfo(path, node.type, depth, tuple(shape), (), 0, 0, 0, 0, rf, False)
            self.rows.append(row)
            out, out_rf = self._container(node, path, shape, rf, depth)
            kids = [r for r in self.rows[start + 1:] if r.leaf]
            row.out_shape, row.rf = tuple(out), out_rf
            row.params = sum(k.params for k in kids)
            row.buffers = sum(k.buffers for k in kids)
            row.macs = sum(k.macs for k in kids)
            row.activation_bytes = sum(k.activation_bytes for k in kids)
            row.done = self._tick()
            return out, out_rf
        try:
            out = leaf_output_shape(node, shape)
        except ShapeError as e:
            raise ShapeError(f"layer {path or '<root>'} ({node.type}) with input {_fmt(shape)}: {e}") from None
        params, buffers, macs = leaf_counts(node, shape, out)
        out_rf = _leaf_rf(node, rf, shape, out, self.input_hw)
        self.rows.append(LayerInfo(path, node.type, depth, tuple(shape), tuple(out), params, buffers,
                                   macs, math.prod(out) * BYTES_PER_VALUE, out_rf, True,
                                   self._tick()))
        return out, out_rf

    def _tick(self) -> int:
        self.count += 1
        return self.count

    def _seq(self, children, path, shape, rf, depth):
        for name, child in children:
            shape, rf = self.visit(child, _join(path, name), shape, rf, depth + 1)
        return shape, rf

    def _container(self, node, path, shape, rf, depth):
        if isinstance(node, n.Sequential):
            return self._seq(node.children(), path, shape, rf, depth)
        if isinstance(node, n.Residual):
            b_shape, b_rf = self._seq(node.body_children(), path, shape, rf, depth)
            if node.shortcut is not None:
                s_shape, s_rf = self.visit(node.shortcut, _join(path, node.shortcut_name), shape, rf, depth + 1)
            else:
                s_shape, s_rf = tuple(shape), rf
            if tuple(b_shape) != tuple(s_shape):
                raise ShapeError(
                    f"residual block {path}: body gives {_fmt(b_shape)} but the shortcut gives "
                    f"{_fmt(s_shape)}; give the block a shortcut that matches (e.g. a strided 1x1 conv)")
            out, out_rf = tuple(b_shape), union([b_rf, s_rf])
            if node.post is not None:
                out, out_rf = self.visit(node.post, _join(path, node.post_name), out, out_rf, depth + 1)
            return out, out_rf
        if isinstance(node, n.Concat):
            outs = [self.visit(c, _join(path, name), shape, rf, depth + 1) for name, c in node.branches]
            spatial = {tuple(s[1:]) for s, _ in outs}
            if len(spatial) != 1 or any(len(s) != 3 for s, _ in outs):
                raise ShapeError(f"concat block {path}: branch outputs {[_fmt(s) for s, _ in outs]} "
                                 f"differ in spatial size; pad or stride the branches alike")
            return (sum(s[0] for s, _ in outs), *outs[0][0][1:]), union([r for _, r in outs])
        if isinstance(node, n.Gate):
            g_shape, _ = self._seq(node.children(), path, shape, rf, depth)
            if len(g_shape) != len(shape) or any(g not in (1, s) for g, s in zip(g_shape, shape)):
                raise ShapeError(f"gate {path}: branch output {_fmt(g_shape)} does not broadcast "
                                 f"against its input {_fmt(shape)}")
            from dataclasses import replace
            return tuple(shape), replace(rf, global_context=True)
        raise ShapeError(f"unknown container type {node.type} at {path}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _fmt(shape) -> str:
    return "x".join(str(v) for v in shape)


def analyze(model, input_shape=None) -> Analysis:
    """Analyse a Network (or a bare node with ``input_shape``) at batch 1."""
    root, name, default = _unpack(model)
    shape = tuple(int(v) for v in (input_shape or default))
    if len(shape) != 3 or min(shape) < 1:
        raise ShapeError(f"input shape must be C x H x W with positive sizes, got {shape}")
    tracer = _Tracer(shape[1:])
    try:
        out, _ = tracer.visit(root, "", shape, RF(), 0)
    except ShapeError as e:
        smallest = min_input_size(model, shape[0]) if input_shape else None
        if smallest and smallest > min(shape[1:]):
            raise ShapeError(f"{name}: input {_fmt(shape)} is too small ({e}); the smallest input "
                             f"this model takes is {shape[0]}x{smallest}x{smallest}") from None
        raise ShapeError(f"{name}: {e}") from None
    tracer.rows[0].name = tracer.rows[0].name or name
    return Analysis(name, shape, tuple(out), tracer.rows)


def _unpack(model):
    if isinstance(model, n.Network):
        return model.root, model.name, model.input_shape
    if isinstance(model, n.Node):
        return model, model.type, None
    raise TypeError(f"expected a Network or spec node, got {type(model).__name__}")


def fits(model, shape) -> bool:
    root, _, _ = _unpack(model)
    try:
        _Tracer(shape[1:]).visit(root, "", tuple(shape), RF(), 0)
        return True
    except ShapeError:
        return False


def min_input_size(model, channels: int, limit: int = 4096) -> int | None:
    """Smallest square input side the model accepts (None if none up to ``limit``).
    Assumes that a model taking size s also takes s + 1, as every conv net here does."""
    if not fits(model, (channels, limit, limit)):
        return None
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(model, (channels, mid, mid)):
            hi = mid
        else:
            lo = mid + 1
    return lo


def output_shape(model, input_shape=None) -> tuple:
    return analyze(model, input_shape).output_shape


def layer_shapes(model, input_shape=None) -> dict[str, tuple[tuple, tuple]]:
    """path -> (input shape, output shape) for every node; backends read
    in_channels / in_features from here."""
    a = analyze(model, input_shape)
    return {l.name if l.depth else "": (l.in_shape, l.out_shape) for l in a.layers}
