"""Compile a spec to a ``torch.nn.Module``, and run it with taps.

The tree walk is the one both backends share (``svertka.backends.build``);
this file registers one builder per spec layer type (at the end) and holds the
few layers torch lacks. Module names equal the spec's paths, which follow
torchvision's module names, so a torchvision state_dict loads with no renaming
(``layer1.0.downsample.0.weight``, ``features.1.conv.0.0.weight``). Every layer
keeps torch's own default initialisation.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ...spec import nodes as n
from ..build import Builders, check_taps

__all__ = [
    "BUILDERS", "compile", "forward_with_taps", "Dropout", "Flatten", "HardSigmoid", "ScaledTanh",
    "ShortcutA", "SelectChannels", "Subsample", "RBFOutput", "SequentialModule", "ResidualModule",
    "ConcatModule", "GateModule", "drop_path",
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


class HardSigmoid(nn.Module):
    """max(0, min(1, alpha * x + beta)), for slopes other than nn.Hardsigmoid's 1/6."""

    def __init__(self, alpha: float, beta: float):
        super().__init__()
        self.alpha, self.beta = float(alpha), float(beta)

    def forward(self, x):
        return torch.clamp(self.alpha * x + self.beta, 0.0, 1.0)

    def extra_repr(self):
        return f"alpha={self.alpha}, beta={self.beta}"


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


class RBFOutput(nn.Module):
    """LeCun 1998's Euclidean RBF output: logit_i = -sum_j (x_j - c_ij)^2.
    The centres are a persistent buffer (saved, not trained)."""

    def __init__(self, in_features: int, out_features: int, seed: int = 0):
        super().__init__()
        self.in_features, self.out_features, self.seed = in_features, out_features, seed
        c = torch.tensor(n.rbf_centers(out_features, in_features, seed), dtype=torch.get_default_dtype())
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

BUILDERS = Builders("torch")
BUILDERS.combinators(sequential=lambda kids: SequentialModule(OrderedDict(kids)),
                     residual=ResidualModule, concat=ConcatModule, gate=GateModule)
register = BUILDERS.register


def compile(network_or_node, input_shape=None) -> nn.Module:  # noqa: A001 - the project's verb
    """Build a torch module from a ``Network`` (or a bare spec node plus
    ``input_shape`` = (C, H, W)). For a Network, ``input_shape`` defaults to the
    network's own; it sets the in_features of a Linear after Flatten.

    The returned module carries ``svertka_meta`` = {"model", "num_classes",
    "input_shape"}, which ``save_weights`` writes beside the tensors."""
    module, meta = BUILDERS.compile(network_or_node, input_shape)
    module.svertka_meta = meta
    return module


def forward_with_taps(model: nn.Module, x, layers) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model`` on ``x`` and also return the outputs of the named layers
    (state_dict paths such as ``features.3`` or ``layer2.1``), through forward
    hooks. The outputs keep their graph, so a loss on one backpropagates."""
    modules = dict(model.named_modules())
    names = check_taps(modules, layers)
    store: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(module, inputs, output):
            store[name] = output
        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, {name: store[name] for name in names}


# ------------------------------------------------------------ one builder per layer type
# (node, in_shape) -> nn.Module; in_shape[0] is the input's channels or features.


@register(n.Conv2d)
def _conv2d(node, in_shape):
    return nn.Conv2d(in_shape[0], node.out_channels, node.kernel_size, node.stride, node.padding,
                     node.dilation, node.groups, node.bias)


@register(n.ConvTranspose2d)
def _conv_transpose2d(node, in_shape):
    return nn.ConvTranspose2d(in_shape[0], node.out_channels, node.kernel_size, node.stride,
                              node.padding, node.output_padding, node.groups, node.bias, node.dilation)


@register(n.Upsample)
def _upsample(node, in_shape):
    return nn.Upsample(size=node.size, scale_factor=node.scale_factor, mode=node.mode,
                       align_corners=node.align_corners)


@register(n.PixelShuffle)
def _pixel_shuffle(node, in_shape):
    return nn.PixelShuffle(node.upscale_factor)


@register(n.Linear)
def _linear(node, in_shape):
    return nn.Linear(in_shape[0], node.out_features, node.bias)


@register(n.BatchNorm2d)
def _batch_norm(node, in_shape):
    return nn.BatchNorm2d(in_shape[0], eps=node.eps, momentum=node.momentum)


@register(n.LocalResponseNorm)
def _lrn(node, in_shape):
    return nn.LocalResponseNorm(node.size, node.alpha, node.beta, node.k)


@register(n.ReLU)
def _relu(node, in_shape):
    return nn.ReLU(inplace=False)


@register(n.ReLU6)
def _relu6(node, in_shape):
    return nn.ReLU6(inplace=False)


@register(n.SiLU)
def _silu(node, in_shape):
    return nn.SiLU()


@register(n.Sigmoid)
def _sigmoid(node, in_shape):
    return nn.Sigmoid()


@register(n.HardSigmoid)
def _hard_sigmoid(node, in_shape):
    if abs(node.alpha - 1.0 / 6.0) < 1e-7 and node.beta == 0.5:
        return nn.Hardsigmoid()
    return HardSigmoid(node.alpha, node.beta)


@register(n.Tanh)
def _tanh(node, in_shape):
    return nn.Tanh()


@register(n.GELU)
def _gelu(node, in_shape):
    return nn.GELU()


@register(n.ScaledTanh)
def _scaled_tanh(node, in_shape):
    return ScaledTanh(node.amplitude, node.slope)


@register(n.Identity)
def _identity(node, in_shape):
    return nn.Identity()


@register(n.MaxPool2d)
def _max_pool(node, in_shape):
    return nn.MaxPool2d(node.kernel_size, node.stride, node.padding, node.dilation, ceil_mode=node.ceil_mode)


@register(n.AvgPool2d)
def _avg_pool(node, in_shape):
    return nn.AvgPool2d(node.kernel_size, node.stride, node.padding, ceil_mode=node.ceil_mode,
                        count_include_pad=node.count_include_pad)


@register(n.AdaptiveAvgPool2d)
def _adaptive_avg_pool(node, in_shape):
    return nn.AdaptiveAvgPool2d(node.output_size)


@register(n.Dropout)
def _dropout(node, in_shape):
    return Dropout(node.p)


@register(n.Flatten)
def _flatten(node, in_shape):
    return Flatten()


@register(n.ShortcutA)
def _shortcut_a(node, in_shape):
    return ShortcutA(in_shape[0], node.out_channels, node.stride)


@register(n.SelectChannels)
def _select_channels(node, in_shape):
    return SelectChannels(node.indices)


@register(n.Subsample)
def _subsample(node, in_shape):
    return Subsample(in_shape[0], node.kernel_size)


@register(n.RBFOutput)
def _rbf_output(node, in_shape):
    return RBFOutput(in_shape[0], node.out_features, node.seed)
