"""Modules: layers that own parameters, as in torch.nn.

A ``Module`` holds parameters (Tensors with requires_grad), buffers (plain
arrays such as BatchNorm's running statistics) and named child modules. Names
compose with dots exactly as in torch, so ``state_dict()`` of a compiled model
has the keys of the PyTorch backend's (``layer1.0.bn1.running_var``).

Initialisation follows torch's defaults per layer type. Each layer class is
registered as the engine's builder for its spec type (``@BUILDERS.register``),
with ``from_spec`` reading the spec node's fields.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Iterator

import numpy as np

from ...errors import ShapeError, SvertkaError, WeightsError
from ...spec import nodes as n
from ...spec.geometry import fmt_shape, pair
from ..build import Builders
from . import functional as F
from .tensor import Tensor

__all__ = [
    "BUILDERS", "Module", "Parameter", "Conv2d", "ConvTranspose2d", "Upsample", "PixelShuffle", "Linear",
    "BatchNorm2d",
    "LocalResponseNorm", "ReLU", "ReLU6",
    "SiLU", "Sigmoid", "Tanh", "GELU", "ScaledTanh", "Identity", "MaxPool2d", "AvgPool2d",
    "AdaptiveAvgPool2d", "Dropout", "Flatten", "ShortcutA", "SelectChannels", "Subsample",
    "RBFOutput", "Sequential", "Residual", "Concat", "Gate",
]


def Parameter(data) -> Tensor:
    return Tensor(data, requires_grad=True)


BUILDERS = Builders("numpy")


def _uniform(shape, bound, dtype):
    """U(-bound, bound), drawn directly in float32 when it can (VGG has 138M weights)."""
    dt = np.float32 if np.dtype(dtype) == np.float32 else np.float64
    u = F.get_rng().random(size=shape, dtype=dt)
    u *= 2 * bound
    u -= bound
    return u.astype(dtype, copy=False)


class Module:
    """Base class: parameters, buffers, children, train/eval, state_dict."""

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "path", "")
        object.__setattr__(self, "_tap_into", None)  # a dict while ``forward_with_taps`` runs

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        """The builder for this class's spec type; layers without fields need no more."""
        return cls()

    # registering by assignment, as in torch
    def __setattr__(self, name, value):
        if isinstance(value, Tensor) and value.requires_grad:
            self._params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def add_module(self, name: str, module: "Module") -> None:
        self._modules[name] = module
        object.__setattr__(self, name, module)

    def __call__(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x))
        out = self.forward(x)
        if self._tap_into is not None:
            self._tap_into[self.path] = out
        return out

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    # --------------------------------------------------------------- tree
    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        for path, m in self.named_modules(prefix):
            for name, p in m._params.items():
                yield (f"{path}.{name}" if path else name), p

    def parameters(self) -> list[Tensor]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for path, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                yield (f"{path}.{name}" if path else name), b

    def train(self, mode: bool = True) -> "Module":
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def astype(self, dtype) -> "Module":
        """Cast parameters and float buffers (float64 for gradient checks)."""
        for _, m in self.named_modules():
            for p in m._params.values():
                p.data = p.data.astype(dtype)
            for name, b in list(m._buffers.items()):
                if b.dtype.kind == "f":
                    m.register_buffer(name, b.astype(dtype))
        return self

    # ------------------------------------------------------------ weights
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters and buffers by dotted name, in torch's order (a module's
        parameters, then its buffers, then its children). The arrays are the
        live ones, as torch's tensors are; copy them to keep a snapshot."""
        out = OrderedDict()
        self._collect(out, "")
        return out

    def _collect(self, out, prefix):
        for name, p in self._params.items():
            out[prefix + name] = p.data
        for name, b in self._buffers.items():
            out[prefix + name] = b
        for name, m in self._modules.items():
            m._collect(out, f"{prefix}{name}.")

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy arrays (NumPy arrays, or anything with .numpy() such as torch
        tensors) into this model. Missing keys, unexpected keys and shape
        mismatches are reported together in one WeightsError."""
        own = self.state_dict()
        given = {k: _to_numpy(v) for k, v in state.items()}
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        wrong = [k for k in own if k in given and tuple(given[k].shape) != tuple(own[k].shape)]
        if wrong or (strict and (missing or unexpected)):
            problems = []
            if missing:
                problems.append(f"missing keys {_listing(missing)}")
            if unexpected:
                problems.append(f"unexpected keys {_listing(unexpected)}")
            if wrong:
                problems.append("wrong shapes " + ", ".join(
                    f"{k} {fmt_shape(given[k].shape)} (model has {fmt_shape(own[k].shape)})"
                    for k in wrong[:5])
                    + (f", ... {len(wrong) - 5} more" if len(wrong) > 5 else ""))
            raise WeightsError("state_dict does not fit the model: " + "; ".join(problems)
                               + "; is it for another model or configuration?")
        for path, m in self.named_modules():
            pre = f"{path}." if path else ""
            for name, p in m._params.items():
                if pre + name in given:
                    p.data = given[pre + name].astype(p.data.dtype, copy=True)
            for name, b in list(m._buffers.items()):
                if pre + name in given:
                    m.register_buffer(name, np.array(given[pre + name], dtype=b.dtype, copy=True))

    def __repr__(self):
        lines = [type(self).__name__ + "(" + self.extra_repr()]
        for name, m in self._modules.items():
            lines.append(f"  ({name}): " + repr(m).replace("\n", "\n  "))
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")

    def extra_repr(self) -> str:
        return ""


def _to_numpy(v) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor
        v = v.detach().cpu().numpy()
    elif isinstance(v, Tensor):
        v = v.data
    return np.asarray(v)


def _listing(keys, n=5):
    shown = ", ".join(keys[:n])
    return f"({len(keys)}: {shown}{', ...' if len(keys) > n else ''})"


# ------------------------------------------------------------------ layers


@BUILDERS.register(n.Conv2d)
class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, dtype=np.float32):
        super().__init__()
        kh, kw = pair(kernel_size, "Conv2d kernel_size")
        if in_channels % groups or out_channels % groups:
            raise SvertkaError(f"Conv2d: in_channels {in_channels} and out_channels {out_channels} "
                               f"must divide by groups {groups}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding, self.dilation = (kh, kw), stride, padding, dilation
        fan_in = in_channels // groups * kh * kw
        bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) reduces to this
        self.weight = Parameter(_uniform((out_channels, in_channels // groups, kh, kw), bound, dtype))
        self.bias = Parameter(_uniform((out_channels,), bound, dtype)) if bias else None

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(in_shape[0], node.out_channels, node.kernel_size, node.stride, node.padding,
                   node.dilation, node.groups, node.bias, dtype=dtype)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups, where=f"Conv2d {self.path or ''}".strip())

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}")


@BUILDERS.register(n.ConvTranspose2d)
class ConvTranspose2d(Module):
    """Weight (in, out/groups, kh, kw), as torch; torch's fan-in for it is out/groups*kh*kw."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, dtype=np.float32):
        super().__init__()
        kh, kw = pair(kernel_size, "ConvTranspose2d kernel_size")
        if in_channels % groups or out_channels % groups:
            raise SvertkaError(f"ConvTranspose2d: in_channels {in_channels} and out_channels "
                               f"{out_channels} must divide by groups {groups}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding = (kh, kw), stride, padding
        self.output_padding, self.dilation = output_padding, dilation
        bound = 1 / math.sqrt(out_channels // groups * kh * kw)
        self.weight = Parameter(_uniform((in_channels, out_channels // groups, kh, kw), bound, dtype))
        self.bias = Parameter(_uniform((out_channels,), bound, dtype)) if bias else None

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(in_shape[0], node.out_channels, node.kernel_size, node.stride, node.padding,
                   node.output_padding, node.groups, node.bias, node.dilation, dtype=dtype)

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation,
                                  where=f"ConvTranspose2d {self.path}".strip())

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, output_padding={self.output_padding}")


@BUILDERS.register(n.Upsample)
class Upsample(Module):
    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        self.size, self.scale_factor, self.mode, self.align_corners = size, scale_factor, mode, align_corners

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(node.size, node.scale_factor, node.mode, node.align_corners)

    def forward(self, x):
        return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                             where=f"Upsample {self.path}".strip())

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


@BUILDERS.register(n.PixelShuffle)
class PixelShuffle(Module):
    def __init__(self, upscale_factor):
        super().__init__()
        self.upscale_factor = upscale_factor

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(node.upscale_factor)

    def forward(self, x):
        return F.pixel_shuffle(x, self.upscale_factor, where=f"PixelShuffle {self.path}".strip())

    def extra_repr(self):
        return f"upscale_factor={self.upscale_factor}"


@BUILDERS.register(n.Linear)
class Linear(Module):
    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)
        self.weight = Parameter(_uniform((out_features, in_features), bound, dtype))
        self.bias = Parameter(_uniform((out_features,), bound, dtype)) if bias else None

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(in_shape[0], node.out_features, node.bias, dtype=dtype)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias, where=f"Linear {self.path}".strip())

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


@BUILDERS.register(n.BatchNorm2d)
class BatchNorm2d(Module):
    """weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0 (as torch)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype))
        self.bias = Parameter(np.zeros(num_features, dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype))
        self.register_buffer("num_batches_tracked", np.array(0, np.int64))

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(in_shape[0], node.eps, node.momentum, dtype=dtype)

    def forward(self, x):
        momentum = self.momentum
        if self.training:
            self.register_buffer("num_batches_tracked", self.num_batches_tracked + 1)
            if momentum is None:  # torch: cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            self.training, momentum, self.eps, where=f"BatchNorm2d {self.path}".strip())

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


@BUILDERS.register(n.LocalResponseNorm)
class LocalResponseNorm(Module):
    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(node.size, node.alpha, node.beta, node.k)

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k,
                                     where=f"LocalResponseNorm {self.path}".strip())


class _Elementwise(Module):
    fn = None

    def forward(self, x):
        return type(self).fn(x)


@BUILDERS.register(n.ReLU)
class ReLU(_Elementwise):
    fn = staticmethod(F.relu)


@BUILDERS.register(n.ReLU6)
class ReLU6(_Elementwise):
    fn = staticmethod(F.relu6)


@BUILDERS.register(n.SiLU)
class SiLU(_Elementwise):
    fn = staticmethod(F.silu)


@BUILDERS.register(n.Sigmoid)
class Sigmoid(_Elementwise):
    fn = staticmethod(F.sigmoid)


@BUILDERS.register(n.HardSigmoid)
class HardSigmoid(Module):
    def __init__(self, alpha=1.0 / 6.0, beta=0.5):
        super().__init__()
        self.alpha, self.beta = alpha, beta

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(node.alpha, node.beta)

    def forward(self, x):
        return F.hard_sigmoid(x, self.alpha, self.beta)


@BUILDERS.register(n.Tanh)
class Tanh(_Elementwise):
    fn = staticmethod(F.tanh)


@BUILDERS.register(n.GELU)
class GELU(_Elementwise):
    fn = staticmethod(F.gelu)


@BUILDERS.register(n.ScaledTanh)
class ScaledTanh(Module):
    def __init__(self, amplitude=1.7159, slope=2.0 / 3.0):
        super().__init__()
        self.amplitude, self.slope = amplitude, slope

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(node.amplitude, node.slope)

    def forward(self, x):
        return F.scaled_tanh(x, self.amplitude, self.slope)


@BUILDERS.register(n.Identity)
class Identity(Module):
    def forward(self, x):
        return x


@BUILDERS.register(n.MaxPool2d)
class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(node.kernel_size, node.stride, node.padding, node.dilation, node.ceil_mode)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, where=f"MaxPool2d {self.path}".strip())


@BUILDERS.register(n.AvgPool2d)
class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(node.kernel_size, node.stride, node.padding, node.ceil_mode, node.count_include_pad)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, where=f"AvgPool2d {self.path}".strip())


@BUILDERS.register(n.AdaptiveAvgPool2d)
class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size=1):
        super().__init__()
        self.output_size = output_size

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(node.output_size)

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size, where=f"AdaptiveAvgPool2d {self.path}".strip())


@BUILDERS.register(n.Dropout)
class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(node.p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)


@BUILDERS.register(n.Flatten)
class Flatten(Module):
    def forward(self, x):
        return x.flatten(1)


@BUILDERS.register(n.ShortcutA)
class ShortcutA(Module):
    def __init__(self, in_channels, out_channels, stride=2):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(in_shape[0], node.out_channels, node.stride)

    def forward(self, x):
        return F.shortcut_a(x, self.out_channels, self.stride)


@BUILDERS.register(n.SelectChannels)
class SelectChannels(Module):
    """Keep the listed channels; the indices are not part of the state_dict (as in torch)."""

    def __init__(self, indices):
        super().__init__()
        self.indices = tuple(indices)

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(node.indices)

    def forward(self, x):
        return F.select_channels(x, self.indices)


@BUILDERS.register(n.Subsample)
class Subsample(Module):
    def __init__(self, channels, kernel_size=2, dtype=np.float32):
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        bound = 1.0 / kernel_size  # torch's conv init with fan_in = k*k
        self.weight = Parameter(_uniform((channels,), bound, dtype))
        self.bias = Parameter(_uniform((channels,), bound, dtype))

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(in_shape[0], node.kernel_size, dtype=dtype)

    def forward(self, x):
        return F.subsample(x, self.weight, self.bias, self.kernel_size)


@BUILDERS.register(n.RBFOutput)
class RBFOutput(Module):
    def __init__(self, in_features, out_features, seed=0, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features, self.seed = in_features, out_features, seed
        self.register_buffer("centers", n.rbf_centers(out_features, in_features, seed).astype(dtype))

    @classmethod
    def from_spec(cls, node, in_shape, dtype=np.float32):
        return cls(in_shape[0], node.out_features, node.seed, dtype=dtype)

    def forward(self, x):
        return F.rbf_output(x, self.centers)


# ------------------------------------------------------------- combinators


class Sequential(Module):
    def __init__(self, children=()):
        super().__init__()
        for name, m in children:
            self.add_module(name, m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i):
        if isinstance(i, str):
            return self._modules[i]
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)


class Residual(Module):
    """out = post(drop_path(body(x)) + shortcut(x)); body children live in this
    module's namespace (torchvision's BasicBlock) or under one name."""

    def __init__(self, body, shortcut=None, post=None, drop_path=0.0):
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
        y = F.drop_path(y, self.drop_path, self.training)
        s = x if self._shortcut_name is None else self._modules[self._shortcut_name](x)
        if y.shape != s.shape:
            raise ShapeError(f"Residual {self.path or '<root>'}: body output {fmt_shape(y.shape)} and "
                             f"shortcut output {fmt_shape(s.shape)} differ; give it a shortcut that matches")
        y = y + s
        if self._post_name is not None:
            y = self._modules[self._post_name](y)
        return y


class Concat(Module):
    def __init__(self, branches):
        super().__init__()
        for name, m in branches:
            self.add_module(name, m)

    def forward(self, x):
        return F.concat([m(x) for m in self._modules.values()], axis=1,
                        where=f"Concat {self.path}".strip())


class Gate(Module):
    """x * branch(x): squeeze-and-excitation."""

    def __init__(self, branch):
        super().__init__()
        for name, m in branch:
            self.add_module(name, m)

    def forward(self, x):
        g = x
        for m in self._modules.values():
            g = m(g)
        return x * g


BUILDERS.combinators(sequential=Sequential, residual=Residual, concat=Concat, gate=Gate)
