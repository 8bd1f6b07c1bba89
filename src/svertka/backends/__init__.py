"""Backends that compile a spec into something that runs: `numpy` (the
from-scratch engine) and `torch` (an nn.Module with torchvision's names)."""

from __future__ import annotations

from ..errors import ShapeError, SpecError, UsageError
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


# ------------------------------------------------------------ the one switch
# Everything that picks a backend by name (training, evaluation) or by the
# array it holds (augmentation) asks here.

NAMES = ("torch", "numpy")


def get_backend(name: str):
    """The backend package for ``name``: ``svertka.backends.numpy`` (the
    engine) or ``svertka.backends.torch``. A missing torch is a one-line error."""
    if name == "numpy":
        from . import numpy as engine
        return engine
    if name == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise UsageError("--backend torch needs PyTorch: pip install 'svertka[torch]', "
                             "or use --backend numpy") from None
        from . import torch as backend
        return backend
    raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")


def backend_of(x) -> str | None:
    """'numpy' or 'torch' for an array of that backend, else None. Never
    imports torch: a torch tensor exists only where torch is loaded."""
    import sys

    import numpy as np

    if isinstance(x, np.ndarray):
        return "numpy"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    return None
