"""Backends that compile a spec into something that runs: `numpy` (the
from-scratch engine) and `torch` (an nn.Module with torchvision's names)."""

from ..errors import ShapeError, SpecError
from ..spec import nodes as _n


def compile_target(network_or_node, input_shape=None):
    """What both backends' ``compile`` start from: (root node, input shape,
    metadata) for a ``Network``, or for a bare spec node plus (C, H, W)."""
    if isinstance(network_or_node, _n.Network):
        net = network_or_node
        shape = tuple(input_shape or net.input_shape)
        return net.root, shape, {"model": net.name, "num_classes": int(net.num_classes),
                                 "input_shape": list(shape)}
    if isinstance(network_or_node, _n.Node):
        if input_shape is None:
            raise ShapeError(f"compiling a bare {network_or_node.type} needs input_shape=(C, H, W); "
                             f"pass it, or compile a Network")
        shape = tuple(input_shape)
        return network_or_node, shape, {"model": None, "num_classes": None, "input_shape": list(shape)}
    raise SpecError(f"compile() expects a Network or a spec node, got {type(network_or_node).__name__}")
