"""Compile a spec to a tree of engine modules, and run it with taps.

The tree walk is the one both backends share (``svertka.backends.build``); the
engine's builders are its layer classes (``modules.py``, ``@BUILDERS.register``).
Module names equal the spec's paths, which follow torchvision's names, so
``state_dict()`` has exactly the keys and shapes of the PyTorch backend's model
for the same spec and weights move both ways.
"""
from __future__ import annotations

import numpy as np

from ..build import check_taps
from . import modules as M
from .tensor import Tensor

__all__ = ["compile", "forward_with_taps"]


def compile(network_or_node, input_shape=None, dtype=np.float32) -> M.Module:  # noqa: A001
    """Build an engine module from a ``Network`` (or a bare spec node plus
    ``input_shape`` = (C, H, W)). Parameters are initialised as torch does;
    seed them with ``svertka.backends.numpy.manual_seed``."""
    module, meta = M.BUILDERS.compile(network_or_node, input_shape, dtype=np.dtype(dtype))
    for path, m in module.named_modules():
        object.__setattr__(m, "path", path)
    object.__setattr__(module, "svertka_meta", meta)
    return module


def forward_with_taps(model: M.Module, x, layers) -> tuple[Tensor, dict[str, Tensor]]:
    """Run ``model`` on ``x`` and also return the outputs of the named layers
    (state_dict paths such as ``features.3`` or ``layer2.1``). The tapped
    outputs are part of the graph: a loss on one backpropagates to ``x``."""
    modules = dict(model.named_modules())
    names = check_taps(modules, layers)
    store: dict[str, Tensor] = {}
    try:
        for name in names:
            object.__setattr__(modules[name], "_tap_into", store)
        out = model(x)
    finally:
        for name in names:
            object.__setattr__(modules[name], "_tap_into", None)
    return out, {name: store[name] for name in names}
