"""The one walk over a spec: shapes, counts and receptive fields, node by node.

Each leaf's rules live on its class (``nodes.py``); this file holds only what
the combinators do with them:

- Sequential: children in order;
- Residual:   body and shortcut on the same input, added (shapes must match),
              then the optional post layer; fields united;
- Concat:     branches on the same input, stacked on channels; fields united;
- Gate:       x * branch(x); the branch must broadcast against x.

The analysis and both backends read the result (``trace`` / ``layer_shapes``);
nothing here allocates a weight.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from numbers import Integral

from ..errors import ShapeError, SpecError
from . import nodes as n
from .geometry import fmt_shape, join_path
from .receptive_field import RF, union

# Largest model a backend will allocate: 2**31 parameter + buffer values (8 GiB
# in float32). Analysis still reports bigger specs; compiling one is refused.
MAX_VALUES = 2 ** 31


@dataclass
class Traced:
    """One node of a traced spec (a container's counts are its leaves' sums)."""

    name: str            # state_dict path ("" for the root)
    node: n.Node
    depth: int
    in_shape: tuple
    out_shape: tuple = ()
    params: int = 0
    buffers: int = 0
    macs: int = 0
    rf: RF = RF()
    leaf: bool = True
    done: int = 0        # completion order: a container completes after its children

    @property
    def type(self) -> str:
        return self.node.type


class _Walk:
    def __init__(self, input_hw):
        self.rows: list[Traced] = []
        self.input_hw = tuple(input_hw)
        self.count = 0

    def visit(self, node: n.Node, path: str, shape, rf: RF, depth: int):
        if isinstance(node, n.Leaf):
            return self._leaf(node, path, shape, rf, depth)
        if not isinstance(node, (n.Sequential, n.Residual, n.Concat, n.Gate)):
            raise SpecError(f"layer {path or '<root>'}: {type(node).__name__} is not a spec layer "
                            f"or combinator")
        start = len(self.rows)
        row = Traced(path, node, depth, tuple(shape), rf=rf, leaf=False)
        self.rows.append(row)
        out, out_rf = self._container(node, path, shape, rf, depth)
        kids = [r for r in self.rows[start + 1:] if r.leaf]
        row.out_shape, row.rf = tuple(out), out_rf
        row.params = sum(k.params for k in kids)
        row.buffers = sum(k.buffers for k in kids)
        row.macs = sum(k.macs for k in kids)
        row.done = self._tick()
        return out, out_rf

    def _leaf(self, node: n.Leaf, path, shape, rf, depth):
        shape = tuple(shape)
        try:
            out = tuple(node.output_shape(shape))
        except ShapeError as e:
            raise ShapeError(f"layer {path or '<root>'} ({node.type}) with input {fmt_shape(shape)}: "
                             f"{e}") from None
        counts = node.counts(shape, out)
        out_rf = node.receptive_field(rf, shape, self.input_hw)
        self.rows.append(Traced(path, node, depth, shape, out, *counts, out_rf, True, self._tick()))
        return out, out_rf

    def _tick(self) -> int:
        self.count += 1
        return self.count

    def _seq(self, children, path, shape, rf, depth):
        for name, child in children:
            if not name or "." in name:
                raise SpecError(f"layer {path or '<root>'}: child name {name!r} must be non-empty "
                                f"and without dots (it becomes a state_dict path)")
            shape, rf = self.visit(child, join_path(path, name), shape, rf, depth + 1)
        return shape, rf

    def _container(self, node, path, shape, rf, depth):
        if isinstance(node, n.Sequential):
            return self._seq(node.children(), path, shape, rf, depth)
        if isinstance(node, n.Residual):
            names = [name for name, _ in node.children()]
            if len(set(names)) != len(names):
                raise SpecError(f"residual block {path or '<root>'}: child names {names} collide; "
                                f"rename the shortcut/post or nest the body with body_name")
            b_shape, b_rf = self._seq(node.body_children(), path, shape, rf, depth)
            if node.shortcut is not None:
                s_shape, s_rf = self._seq([(node.shortcut_name, node.shortcut)], path, shape, rf, depth)
            else:
                s_shape, s_rf = tuple(shape), rf
            if tuple(b_shape) != tuple(s_shape):
                raise ShapeError(
                    f"residual block {path}: body gives {fmt_shape(b_shape)} but the shortcut gives "
                    f"{fmt_shape(s_shape)}; give the block a shortcut that matches (e.g. a strided "
                    f"1x1 conv)")
            out, out_rf = tuple(b_shape), union([b_rf, s_rf])
            if node.post is not None:
                out, out_rf = self._seq([(node.post_name, node.post)], path, out, out_rf, depth)
            return out, out_rf
        if isinstance(node, n.Concat):
            outs = [self._seq([(name, c)], path, shape, rf, depth) for name, c in node.branches]
            spatial = {tuple(s[1:]) for s, _ in outs}
            if len(spatial) != 1 or any(len(s) != 3 for s, _ in outs):
                raise ShapeError(f"concat block {path}: branch outputs "
                                 f"{[fmt_shape(s) for s, _ in outs]} differ in spatial size; pad or "
                                 f"stride the branches alike")
            return (sum(s[0] for s, _ in outs), *outs[0][0][1:]), union([r for _, r in outs])
        # Gate
        g_shape, _ = self._seq(node.children(), path, shape, rf, depth)
        if len(g_shape) != len(shape) or any(g not in (1, s) for g, s in zip(g_shape, shape)):
            raise ShapeError(f"gate {path}: branch output {fmt_shape(g_shape)} does not broadcast "
                             f"against its input {fmt_shape(shape)}")
        return tuple(shape), replace(rf, global_context=True)


def _root_of(model, input_shape=None):
    """(root node, name, input shape) of a Network, or of a bare node plus a shape."""
    if isinstance(model, n.Network):
        return model.root, model.name, tuple(input_shape or model.input_shape)
    if isinstance(model, n.Node):
        if input_shape is None:
            raise ShapeError(f"a bare {model.type} needs an input shape (C, H, W); pass one, or use "
                             f"a Network")
        return model, model.type, tuple(input_shape)
    raise SpecError(f"expected a Network or a spec node, got {type(model).__name__}")


def _check_input(shape):
    if len(shape) != 3 or any(isinstance(v, bool) or not isinstance(v, Integral) or v < 1 for v in shape):
        raise ShapeError(f"input shape must be C x H x W with positive sizes, got {shape}")


def trace(model, input_shape=None) -> tuple[tuple, list[Traced]]:
    """(output shape, every node in walk order) of a Network or a bare node at
    batch 1. A ShapeError names the model and the layer, and the smallest input
    the model takes when the given one is too small."""
    root, name, shape = _root_of(model, input_shape)
    shape = tuple(int(v) if isinstance(v, Integral) and not isinstance(v, bool) else v for v in shape)
    _check_input(shape)
    walk = _Walk(shape[1:])
    try:
        out, _ = walk.visit(root, "", shape, RF(), 0)
    except ShapeError as e:
        smallest = min_input_size(root, shape[0])
        if smallest and smallest > min(shape[1:]):
            raise ShapeError(f"{name}: input {fmt_shape(shape)} is too small ({e}); the smallest "
                             f"input this model takes is {shape[0]}x{smallest}x{smallest}") from None
        raise ShapeError(f"{name}: {e}") from None
    return tuple(out), walk.rows


def fits(model, shape) -> bool:
    root, _, shape = _root_of(model, tuple(shape))
    try:
        _Walk(shape[1:]).visit(root, "", tuple(shape), RF(), 0)
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


def layer_shapes(model, input_shape=None) -> dict[str, tuple[tuple, tuple]]:
    """path -> (input shape, output shape) for every node; the backends read
    in_channels / in_features here. Refuses a model over ``MAX_VALUES``,
    naming the layer that crosses it, before anything is allocated."""
    _, rows = trace(model, input_shape)
    total = 0
    for r in rows:
        if r.leaf:
            total += r.params + r.buffers
            if total > MAX_VALUES:
                raise SpecError(f"layer {r.name} ({r.type}) brings the model to {total:,} parameter "
                                f"values, over the {MAX_VALUES:,} a backend allocates "
                                f"({MAX_VALUES * 4 / 2**30:.0f} GiB in float32); shrink its kernel or "
                                f"channels")
    return {r.name: (r.in_shape, r.out_shape) for r in rows}

