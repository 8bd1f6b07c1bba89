"""Compile a spec to a ``torch.nn.Module``.

Module names equal the spec's paths (``svertka.spec.walk``), which follow
torchvision's module names, so a torchvision state_dict loads with no
renaming (``layer1.0.downsample.0.weight``, ``features.1.conv.0.0.weight``).

Channel and feature counts come from the analysis
(``svertka.analysis.layer_shapes``): the spec never repeats in_channels.
Every layer keeps torch's own default initialisation.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...analysis import layer_shapes
from .. import compile_target
from ...errors import SpecError
from ...spec import nodes as n

__all__ = [
    "compile", "Dropout", "Flatten", "DropPath", "ScaledTanh", "ShortcutA", "SelectChannels", "Subsample", "RBFOutput",
    "SequentialModule", "ResidualModule", "ConcatModule", "GateModule", "rbf_centers",
    "drop_path",
]


# ------------------------------------------------------------------ layers torch lacks


class ScaledTanh(nn.Module):
    """f(a) = A tanh(S a) (LeCun et al. 1998: A = 1.7159, S = 2/3)."""

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0):
        super().__init__()
        self.amplitude, self.slope = float(amplitude), float(slope)

    def forward(self, x):
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self):
        return f"amplitude={self.amplitude}, slope={self.slope}"


class ShortcutA(nn.Module):
    """He et al. 2015 option A: subsample by ``stride`` and zero-pad the new
    channels, (out - in) // 2 before and the rest after. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x):
        s = self.stride
        if s > 1:
            x = x[:, :, ::s, ::s]
        extra = self.out_channels - x.shape[1]
        if extra:
            before = extra // 2
            x = F.pad(x, (0, 0, 0, 0, before, extra - before))
        return x

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class SelectChannels(nn.Module):
    """Keep the listed channels, in order (LeNet-5's C3 connection table).
    The indices are a non-persistent buffer: they move with ``.to(device)``
    but stay out of the state_dict."""

    def __init__(self, indices):
        super().__init__()
        self.register_buffer("indices", torch.tensor(list(indices), dtype=torch.long),
                             persistent=False)

    def forward(self, x):
        return x.index_select(1, self.indices)

    def extra_repr(self):
        return f"indices={tuple(self.indices.tolist())}"


class Subsample(nn.Module):
    """LeCun 1998's trainable subsampling, per channel c:
    out[c] = weight[c] * (sum of the k x k window of x[c]) + bias[c], stride k.

    Initialised as torch initialises a conv with fan_in = k*k:
    uniform(-1/k, 1/k) for both weight and bias."""

    def __init__(self, channels: int, kernel_size: int = 2):
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / self.kernel_size
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        k = self.kernel_size
        window_sum = F.avg_pool2d(x, k, k) * (k * k)
        return window_sum * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self):
        return f"{self.channels}, kernel_size={self.kernel_size}"


def rbf_centers(out_features: int, in_features: int, seed: int = 0) -> np.ndarray:
    """The fixed +-1 centres of RBFOutput, shape (out, in), float64.
    Drawn as ``2 * numpy.random.default_rng(seed).integers(0, 2, (out, in)) - 1``;
    any backend that compiles RBFOutput must draw them the same way."""
    rng = np.random.default_rng(seed)
    return (2 * rng.integers(0, 2, size=(out_features, in_features)) - 1).astype(np.float64)


class RBFOutput(nn.Module):
    """LeCun 1998's Euclidean RBF output: logit_i = -sum_j (x_j - c_ij)^2.
    The centres are a persistent buffer (saved, not trained)."""

    def __init__(self, in_features: int, out_features: int, seed: int = 0):
        super().__init__()
        self.in_features, self.out_features, self.seed = in_features, out_features, seed
        c = torch.tensor(rbf_centers(out_features, in_features, seed), dtype=torch.get_default_dtype())
        self.register_buffer("centers", c)

    def forward(self, x):
        diff = x.unsqueeze(1) - self.centers.unsqueeze(0)  # (B, out, in)
        return -(diff * diff).sum(-1)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, seed={self.seed}"


def drop_path(x, p: float, training: bool):
    """torchvision's stochastic_depth(mode="row"): drop whole examples with
    probability p and scale the survivors by 1 / (1 - p); identity in eval."""
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
    mask.bernoulli_(keep)
    if keep > 0.0:
        mask.div_(keep)
    return x * mask


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        return drop_path(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


# -------------------------------------------------- faster CPU versions of torch layers


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU keep-mask comes from ``torch.rand`` rather than
    ``bernoulli_``, about twice as fast fwd+bwd here; the output keeps the
    input's memory format. Other devices use torch's fused kernel."""

    def forward(self, x):
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        if self.p >= 1.0:
            return x * 0.0
        keep = torch.rand_like(x, dtype=torch.float32) >= self.p
        return x * keep * (1.0 / (1.0 - self.p))


class _FlattenKeepFormat(torch.autograd.Function):
    """Flatten whose gradient goes back in the input's channels_last layout, so
    the layer before (often a max pool) skips its slow mixed-layout backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return torch.flatten(x, 1)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


class Flatten(nn.Flatten):
    def __init__(self):
        super().__init__(1)

    def forward(self, x):
        if (x.dim() == 4 and x.requires_grad and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            return _FlattenKeepFormat.apply(x)
        return torch.flatten(x, 1)


# ----------------------------------------------------------------------- combinators


class SequentialModule(nn.Sequential):
    """nn.Sequential whose children carry the spec's names (``conv``, ``bn``, or "0", "1", ...)."""


class ResidualModule(nn.Module):
    """out = post(drop_path(body(x)) + shortcut(x)). The body's children live in
    this module's namespace (``conv1``, ``bn1``, ...) or under ``body_name``."""

    def __init__(self, body: list[tuple[str, nn.Module]], shortcut: tuple[str, nn.Module] | None,
                 post: tuple[str, nn.Module] | None, drop_path: float = 0.0):
        super().__init__()
        self._body_names = [name for name, _ in body]
        for name, m in body:
            self.add_module(name, m)
        self._shortcut_name = shortcut[0] if shortcut else None
        if shortcut:
            self.add_module(*shortcut)
        self._post_name = post[0] if post else None
        if post:
            self.add_module(*post)
        self.drop_path = float(drop_path)

    def forward(self, x):
        y = x
        for name in self._body_names:
            y = self._modules[name](y)
        y = drop_path(y, self.drop_path, self.training)
        s = x if self._shortcut_name is None else self._modules[self._shortcut_name](x)
        y = y + s
        if self._post_name is not None:
            y = self._modules[self._post_name](y)
        return y

    def extra_repr(self):
        return f"drop_path={self.drop_path}" if self.drop_path else ""


class ConcatModule(nn.Module):
    """Parallel branches on the same input, concatenated on channels."""

    def __init__(self, branches: list[tuple[str, nn.Module]]):
        super().__init__()
        for name, m in branches:
            self.add_module(name, m)

    def forward(self, x):
        return torch.cat([m(x) for m in self._modules.values()], dim=1)


class GateModule(nn.Module):
    """out = x * branch(x) (squeeze-and-excitation); the branch's children are
    this module's children (torchvision's avgpool, fc1, activation, fc2, scale_activation)."""

    def __init__(self, branch: list[tuple[str, nn.Module]]):
        super().__init__()
        for name, m in branch:
            self.add_module(name, m)

    def forward(self, x):
        g = x
        for m in self._modules.values():
            g = m(g)
        return x * g


# -------------------------------------------------------------------------- compile


def compile(network_or_node, input_shape=None) -> nn.Module:  # noqa: A001 - the project's verb
    """Build a torch module from a ``Network`` (or a bare spec node plus
    ``input_shape`` = (C, H, W)). For a Network, ``input_shape`` defaults to the
    network's own; it sets the in_features of a Linear after Flatten.

    The returned module carries ``svertka_meta`` = {"model", "num_classes",
    "input_shape"}, which ``save_weights`` writes beside the tensors."""
    root, shape, meta = compile_target(network_or_node, input_shape)
    shapes = layer_shapes(network_or_node, shape)
    module = _build(root, "", shapes)
    module.svertka_meta = meta
    return module


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _named(node, path, shapes, children) -> list[tuple[str, nn.Module]]:
    out = []
    for name, child in children:
        if not name or "." in name:
            raise SpecError(f"{node.type} at {path or '<root>'}: child name {name!r} cannot be a "
                            f"torch module name; use a non-empty name without dots")
        out.append((name, _build(child, _join(path, name), shapes)))
    return out


def _build(node: n.Node, path: str, shapes) -> nn.Module:
    if isinstance(node, n.Sequential):
        return SequentialModule(OrderedDict(_named(node, path, shapes, node.children())))
    if isinstance(node, n.Residual):
        names = [name for name, _ in node.children()]
        if len(set(names)) != len(names):
            raise SpecError(f"Residual at {path or '<root>'}: child names {names} collide; "
                            f"rename the shortcut/post or nest the body with body_name")
        body = _named(node, path, shapes, node.body_children())
        shortcut = post = None
        if node.shortcut is not None:
            shortcut = _named(node, path, shapes, [(node.shortcut_name, node.shortcut)])[0]
        if node.post is not None:
            post = _named(node, path, shapes, [(node.post_name, node.post)])[0]
        return ResidualModule(body, shortcut, post, node.drop_path)
    if isinstance(node, n.Concat):
        return ConcatModule(_named(node, path, shapes, node.children()))
    if isinstance(node, n.Gate):
        return GateModule(_named(node, path, shapes, node.children()))
    if path not in shapes:
        raise SpecError(f"no shape for layer {path or '<root>'} ({node.type})")
    in_shape, _ = shapes[path]
    return _leaf(node, in_shape)


def _leaf(node: n.Node, in_shape) -> nn.Module:
    c = in_shape[0]
    if isinstance(node, n.Conv2d):
        return nn.Conv2d(c, node.out_channels, node.kernel_size, node.stride, node.padding,
                         node.dilation, node.groups, node.bias)
    if isinstance(node, n.Linear):
        return nn.Linear(c, node.out_features, node.bias)
    if isinstance(node, n.BatchNorm2d):
        return nn.BatchNorm2d(c, eps=node.eps, momentum=node.momentum)
    if isinstance(node, n.LocalResponseNorm):
        return nn.LocalResponseNorm(node.size, node.alpha, node.beta, node.k)
    if isinstance(node, n.ReLU):
        return nn.ReLU(inplace=False)
    if isinstance(node, n.ReLU6):
        return nn.ReLU6(inplace=False)
    if isinstance(node, n.SiLU):
        return nn.SiLU()
    if isinstance(node, n.Sigmoid):
        return nn.Sigmoid()
    if isinstance(node, n.Tanh):
        return nn.Tanh()
    if isinstance(node, n.GELU):
        return nn.GELU()
    if isinstance(node, n.ScaledTanh):
        return ScaledTanh(node.amplitude, node.slope)
    if isinstance(node, n.Identity):
        return nn.Identity()
    if isinstance(node, n.MaxPool2d):
        return nn.MaxPool2d(node.kernel_size, node.stride, node.padding, node.dilation,
                            ceil_mode=node.ceil_mode)
    if isinstance(node, n.AvgPool2d):
        return nn.AvgPool2d(node.kernel_size, node.stride, node.padding, ceil_mode=node.ceil_mode,
                            count_include_pad=node.count_include_pad)
    if isinstance(node, n.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool2d(node.output_size)
    if isinstance(node, n.Dropout):
        return Dropout(node.p)
    if isinstance(node, n.Flatten):
        return Flatten()
    if isinstance(node, n.ShortcutA):
        return ShortcutA(c, node.out_channels, node.stride)
    if isinstance(node, n.SelectChannels):
        return SelectChannels(node.indices)
    if isinstance(node, n.Subsample):
        return Subsample(c, node.kernel_size)
    if isinstance(node, n.RBFOutput):
        return RBFOutput(c, node.out_features, node.seed)
    raise SpecError(f"the torch backend has no layer for spec type {node.type}")
