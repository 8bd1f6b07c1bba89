"""The one tree walk both backends compile a spec with.

A backend fills a ``Builders`` table: one builder per spec leaf type (a
function ``(node, in_shape, **options) -> module``) and one constructor per
combinator. ``Builders.compile`` walks the spec once, reading each leaf's
input shape from ``svertka.spec.layer_shapes``, so a spec never repeats
in_channels and module names equal the spec's state_dict paths.
"""
from __future__ import annotations

from typing import Callable

from ..errors import ShapeError, SpecError
from ..spec import nodes as n
from ..spec.geometry import join_path
from ..spec.infer import layer_shapes


def compile_target(network_or_node, input_shape=None):
    """What both backends' ``compile`` start from: (root node, input shape,
    metadata) for a ``Network``, or for a bare spec node plus (C, H, W)."""
    if isinstance(network_or_node, n.Network):
        net = network_or_node
        shape = tuple(input_shape or net.input_shape)
        return net.root, shape, {"model": net.name, "num_classes": int(net.num_classes),
                                 "input_shape": list(shape)}
    if isinstance(network_or_node, n.Node):
        if input_shape is None:
            raise ShapeError(f"compiling a bare {network_or_node.type} needs input_shape=(C, H, W); "
                             f"pass it, or compile a Network")
        shape = tuple(input_shape)
        return network_or_node, shape, {"model": None, "num_classes": None, "input_shape": list(shape)}
    raise SpecError(f"compile() expects a Network or a spec node, got {type(network_or_node).__name__}")


class Builders:
    """One backend's table from spec types to its modules."""

    def __init__(self, backend: str):
        self.backend = backend
        self.leaves: dict[type, Callable] = {}
        self.sequential = self.residual = self.concat = self.gate = None

    def combinators(self, *, sequential, residual, concat, gate) -> None:
        """The backend's Sequential(children), Residual(body, shortcut, post, drop_path),
        Concat(branches) and Gate(children) module constructors."""
        self.sequential, self.residual, self.concat, self.gate = sequential, residual, concat, gate

    def register(self, spec_type: type):
        """Decorator: ``@TABLE.register(spec.Conv2d)`` on a builder function, or on
        a module class with a ``from_spec(node, in_shape, **options)`` classmethod."""
        def add(builder):
            if spec_type in self.leaves:
                raise SpecError(f"{self.backend} backend: {spec_type.__name__} registered twice")
            self.leaves[spec_type] = getattr(builder, "from_spec", builder)
            return builder
        return add

    def missing(self) -> list[str]:
        """Spec leaf types this backend cannot build."""
        return [name for name, cls in n.LEAF_TYPES.items() if cls not in self.leaves]

    def compile(self, network_or_node, input_shape=None, **options):
        """(module tree, metadata) for a Network or a bare node plus (C, H, W)."""
        root, shape, meta = compile_target(network_or_node, input_shape)
        shapes = layer_shapes(network_or_node, shape)
        return self._build(root, "", shapes, options), meta

    def _build(self, node, path, shapes, options):
        def kids(children):
            return [(name, self._build(c, join_path(path, name), shapes, options)) for name, c in children]

        if isinstance(node, n.Sequential):
            return self.sequential(kids(node.children()))
        if isinstance(node, n.Residual):
            shortcut = None if node.shortcut is None else kids([(node.shortcut_name, node.shortcut)])[0]
            post = None if node.post is None else kids([(node.post_name, node.post)])[0]
            return self.residual(kids(node.body_children()), shortcut, post, node.drop_path)
        if isinstance(node, n.Concat):
            return self.concat(kids(node.children()))
        if isinstance(node, n.Gate):
            return self.gate(kids(node.children()))
        builder = self.leaves.get(type(node))
        if builder is None:
            raise SpecError(f"the {self.backend} backend has no builder for layer type {node.type} "
                            f"(layer {path or '<root>'}); register one with "
                            f"@register({node.type}) in backends/{self.backend}")
        return builder(node, shapes[path][0], **options)


def check_taps(available, requested) -> list[str]:
    """The requested tap names as a list, each an existing module path; a
    SpecError names an unknown one and the closest paths."""
    import difflib

    if isinstance(requested, str):
        requested = [requested]
    names = [str(r) for r in requested]
    known = [p for p in available if p]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise SpecError(f"no layer named {name!r} to tap; {hint}taps are state_dict paths such as "
                            f"{', '.join(known[:3])} (`svertka summary` lists them)")
    return names
