"""Compile a spec to a tree of engine modules.

Module names equal the spec's paths (``svertka.spec.walk``), which follow
torchvision's names, so ``state_dict()`` has exactly the keys and shapes of
the PyTorch backend's model for the same spec and weights move both ways.
Channel and feature counts come from the analysis: a spec never repeats
in_channels.
"""
from __future__ import annotations

import numpy as np

from ...analysis import layer_shapes
from .. import compile_target
from ...errors import SpecError
from ...spec import nodes as n
from . import modules as M

__all__ = ["compile"]


def compile(network_or_node, input_shape=None, dtype=np.float32) -> M.Module:  # noqa: A001
    """Build an engine module from a ``Network`` (or a bare spec node plus
    ``input_shape`` = (C, H, W)). Parameters are initialised as torch does;
    seed them with ``svertka.backends.numpy.manual_seed``."""
    root, shape, meta = compile_target(network_or_node, input_shape)
    shapes = layer_shapes(network_or_node, shape)
    module = _build(root, "", shapes, np.dtype(dtype))
    for path, m in module.named_modules():
        object.__setattr__(m, "path", path)
    object.__setattr__(module, "svertka_meta", meta)
    return module


def _named(node, path, shapes, children, dtype):
    out = []
    for name, child in children:
        if not name or "." in name:
            raise SpecError(f"{node.type} at {path or '<root>'}: child name {name!r} must be "
                            f"non-empty and without dots")
        out.append((name, _build(child, f"{path}.{name}" if path else name, shapes, dtype)))
    return out


def _build(node, path, shapes, dtype):
    if isinstance(node, n.Sequential):
        return M.Sequential(_named(node, path, shapes, node.children(), dtype))
    if isinstance(node, n.Residual):
        names = [name for name, _ in node.children()]
        if len(set(names)) != len(names):
            raise SpecError(f"Residual at {path or '<root>'}: child names {names} collide")
        body = _named(node, path, shapes, node.body_children(), dtype)
        shortcut = post = None
        if node.shortcut is not None:
            shortcut = _named(node, path, shapes, [(node.shortcut_name, node.shortcut)], dtype)[0]
        if node.post is not None:
            post = _named(node, path, shapes, [(node.post_name, node.post)], dtype)[0]
        return M.Residual(body, shortcut, post, node.drop_path)
    if isinstance(node, n.Concat):
        return M.Concat(_named(node, path, shapes, node.children(), dtype))
    if isinstance(node, n.Gate):
        return M.Gate(_named(node, path, shapes, node.children(), dtype))
    if path not in shapes:
        raise SpecError(f"no shape for layer {path or '<root>'} ({node.type})")
    return _leaf(node, shapes[path][0], dtype)


def _leaf(node, in_shape, dtype):
    c = in_shape[0]
    if isinstance(node, n.Conv2d):
        return M.Conv2d(c, node.out_channels, node.kernel_size, node.stride, node.padding,
                        node.dilation, node.groups, node.bias, dtype=dtype)
    if isinstance(node, n.Linear):
        return M.Linear(c, node.out_features, node.bias, dtype=dtype)
    if isinstance(node, n.BatchNorm2d):
        return M.BatchNorm2d(c, node.eps, node.momentum, dtype=dtype)
    if isinstance(node, n.LocalResponseNorm):
        return M.LocalResponseNorm(node.size, node.alpha, node.beta, node.k)
    simple = {n.ReLU: M.ReLU, n.ReLU6: M.ReLU6, n.SiLU: M.SiLU, n.Sigmoid: M.Sigmoid,
              n.Tanh: M.Tanh, n.GELU: M.GELU, n.Identity: M.Identity, n.Flatten: M.Flatten}
    if type(node) in simple:
        return simple[type(node)]()
    if isinstance(node, n.ScaledTanh):
        return M.ScaledTanh(node.amplitude, node.slope)
    if isinstance(node, n.MaxPool2d):
        return M.MaxPool2d(node.kernel_size, node.stride, node.padding, node.dilation, node.ceil_mode)
    if isinstance(node, n.AvgPool2d):
        return M.AvgPool2d(node.kernel_size, node.stride, node.padding, node.ceil_mode,
                           node.count_include_pad)
    if isinstance(node, n.AdaptiveAvgPool2d):
        return M.AdaptiveAvgPool2d(node.output_size)
    if isinstance(node, n.Dropout):
        return M.Dropout(node.p)
    if isinstance(node, n.ShortcutA):
        return M.ShortcutA(c, node.out_channels, node.stride)
    if isinstance(node, n.SelectChannels):
        return M.SelectChannels(node.indices)
    if isinstance(node, n.Subsample):
        return M.Subsample(c, node.kernel_size, dtype=dtype)
    if isinstance(node, n.RBFOutput):
        return M.RBFOutput(c, node.out_features, node.seed, dtype=dtype)
    raise SpecError(f"the NumPy engine has no layer for spec type {node.type}")
