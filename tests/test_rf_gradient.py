"""The receptive field, verified independently of the recurrences.

For every zoo model, build the torch model in float64 and make it a positive
linear map: positive weights, BatchNorm and activations replaced by identity,
max-pool replaced by average pooling of the same geometry, dropout and
drop-path off (eval), and each squeeze-and-excitation gate made constant
(its fc2 weight zeroed, so the gate carries no gradient; the analysis reports
the conv path's field and flags ``global_context``). Then the nonzero support
of d(feature map at a central unit) / d(input) is exactly the receptive field:
unit i spans [i*S - P, i*S - P + r - 1] (``RF.span``), clipped to the image.

Two passes per model:

* the zoo model itself, at an input that keeps the test fast (for the biggest
  models the central unit's field is clipped by the image; the clipped
  prediction is still exact);
* the same geometry one channel wide (every conv 1 -> 1), which is cheap
  enough to run at an input where the central unit's field is unclipped, so
  the field's full size is measured for every model, ResNet-152 and
  EfficientNet-B7 included. Channel counts do not enter the field.
"""
from __future__ import annotations

import functools
import math
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from svertka.analysis import analyze, min_input_size  # noqa: E402
from svertka.backends.torch import compile  # noqa: E402
from svertka.backends.torch.compile import GateModule, ScaledTanh, SelectChannels, Subsample  # noqa: E402
from svertka.spec import nodes as n  # noqa: E402
from svertka.zoo import create_model, list_models  # noqa: E402

# the classifiers (no task models): the test measures the final feature map, where the field turns global
MODELS = [m for m in list_models()
          if "task" not in create_model(m).meta and create_model(m).meta.get("family") != "tasks"]
nn = torch.nn

_POINTWISE = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU, ScaledTanh,
              nn.LocalResponseNorm)


# ------------------------------------------------------------------ the linear model


def _set(model, path, module):
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def positive_linear(model: nn.Module, seed: int = 0) -> nn.Module:
    """Make a compiled model a positive linear map (see the module docstring)."""
    for path, m in list(model.named_modules()):
        if isinstance(m, _POINTWISE):
            _set(model, path, nn.Identity())
        elif isinstance(m, nn.MaxPool2d):
            assert m.dilation in (1, (1, 1)), f"{path}: dilated max-pool has no average-pool twin"
            _set(model, path, nn.AvgPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode))
    gen = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):  # Linear layers come after the field turns global
                fan_in = m.weight[0].numel()
                m.weight.copy_(0.5 + 0.5 * torch.rand(m.weight.shape, generator=gen, dtype=torch.float64))
                m.weight.div_(fan_in)
                if m.bias is not None:
                    m.bias.fill_(0.1)
            elif isinstance(m, Subsample):
                m.weight.copy_(0.5 + 0.5 * torch.rand(m.weight.shape, generator=gen, dtype=torch.float64))
                m.weight.div_(m.kernel_size ** 2)
                m.bias.fill_(0.1)
        for m in model.modules():
            if isinstance(m, GateModule):
                fc2 = [c for c in m.modules() if isinstance(c, nn.Conv2d)][-1]
                fc2.weight.zero_()
                fc2.bias.fill_(1.0)  # a constant, positive gate
    for p in model.parameters():
        p.requires_grad_(False)  # gradients w.r.t. the input only
    return model


# ------------------------------------------------------------------ the measurement


def feature_leaf(a):
    """(leaf, glob): the last leaf with an exact local field and a (C, H, W)
    output, and the leaf where the network turns global, whose input is the
    final feature map (the map ``Analysis.feature_rf`` describes)."""
    leaves = a.leaves
    last = max(i for i, la in enumerate(leaves) if not la.rf.global_)
    exact = [la for la in leaves[: last + 1] if len(la.out_shape) == 3 and la.rf.exact]
    return exact[-1], leaves[last + 1]


class _Stop(Exception):
    pass


def measure(model, leaf_path, global_path, size, want_map=True):
    """Supports of d(out)/d(x) for the central unit of two tensors: the output of
    ``leaf_path`` and the input of ``global_path`` (the final feature map).
    Each support is ((first row, last row), (first col, last col)), or None."""
    seen = {}

    def keep_out(_m, _i, out):
        seen["leaf"] = out

    def keep_in(_m, inp):
        seen["map"] = inp[0]
        raise _Stop

    if not want_map:
        def keep_in(_m, inp):
            raise _Stop
    h1 = model.get_submodule(leaf_path).register_forward_hook(keep_out)
    h2 = model.get_submodule(global_path).register_forward_pre_hook(keep_in)
    x = torch.ones(1, model.svertka_meta["input_shape"][0], size, size, dtype=torch.float64,
                   requires_grad=True)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        h1.remove()
        h2.remove()
    out = {}
    for key, t in seen.items():
        if t.ndim == 2:  # a flattened 1x1 map
            t = t[:, :, None, None]
        _, _, h, w = t.shape
        central = _support(t[0, :, h // 2, w // 2].sum(), x)
        # what the map reads at all: floor-mode windows can skip the last input
        # rows/cols, so near the bottom/right border a field is clipped there
        reach = _support(t[0].sum(), x)
        out[key] = (*central, (h // 2, w // 2), (reach[0][1], reach[1][1]))
    return out


def _support(y, x):
    (g,) = torch.autograd.grad(y, x, retain_graph=True)
    nz = g[0].abs().sum(0) > 0
    rows = torch.nonzero(nz.any(1)).flatten().tolist()
    cols = torch.nonzero(nz.any(0)).flatten().tolist()
    return ((rows[0], rows[-1]), (cols[0], cols[-1])) if rows else (None, None)


def predicted(rf, unit, size, last=None):
    """RF.span of ``unit``, clipped to the image (and to the last row/col the
    network reads, ``last``)."""
    spans = []
    for axis in (0, 1):
        a, b = rf.span(unit[axis], axis)
        end = size - 1 if last is None or b <= size - 1 else min(size - 1, last[axis])
        spans.append((max(a, 0), min(b, end)))
    return tuple(spans)


# ------------------------------------------------------------------ thin geometry twin


def thin(node: n.Node) -> n.Node:
    """The same spatial geometry, one channel wide."""
    if isinstance(node, n.Conv2d):
        return replace(node, out_channels=1, groups=1)
    if isinstance(node, n.ShortcutA):
        return replace(node, out_channels=1)
    if isinstance(node, n.SelectChannels):
        return n.SelectChannels((0,))
    if isinstance(node, (n.Linear, n.RBFOutput)):
        return replace(node, out_features=1)
    if isinstance(node, n.Sequential):
        return n.Sequential([(k, thin(c)) for k, c in node.layers])
    if isinstance(node, n.Concat):
        return n.Concat([(k, thin(c)) for k, c in node.branches])
    if isinstance(node, n.Gate):
        return n.Gate(thin(node.branch))
    if isinstance(node, n.Residual):
        return replace(node, body=thin(node.body),
                       shortcut=None if node.shortcut is None else thin(node.shortcut),
                       post=None if node.post is None else thin(node.post))
    assert not node.children(), node.type
    return node


def thin_network(net: n.Network) -> n.Network:
    return n.Network(net.name + "_thin", thin(net.root), (1, *net.input_shape[1:]), 1)


# ------------------------------------------------------------------ sizes and the tests

FULL_BUDGET_MACS = 3e7  # the zoo model's own pass: at most this many MACs (one channel)


def _map_hw(a, glob):
    shape = glob.in_shape
    return shape[1:] if len(shape) == 3 else (1, 1)


def unclipped(net):
    return _unclipped(net.name)


@functools.lru_cache(maxsize=None)
def _unclipped(name):
    net = create_model(name, num_classes=10, in_chans=1)
    return _search_unclipped(net)


def _search_unclipped(net):
    """The smallest square input, from a first guess upward, at which the central
    unit of the final feature map sees its whole field inside the image."""
    c = net.input_shape[0]
    rf = analyze(net).feature_rf
    s = max(min_input_size(net, c), rf.size[0])
    for _ in range(8 * rf.stride[0] + 8):
        a = analyze(net, (c, s, s))
        leaf, glob = feature_leaf(a)
        h, w = _map_hw(a, glob)
        unclip = [a.feature_rf.span(i, ax) for ax, i in ((0, h // 2), (1, w // 2))]
        if a.feature_rf.exact and all(lo >= 0 and hi <= s - 1 for lo, hi in unclip):
            return s
        s += 1
    raise AssertionError(f"{net.name}: no input up to {s} leaves the central unit unclipped")


def affordable(net, s_max):
    """The largest input <= s_max whose MACs (one channel) fit FULL_BUDGET_MACS."""
    c = net.input_shape[0]
    lo = min_input_size(net, c)
    s = s_max
    macs = analyze(net, (c, s, s)).macs
    if macs > FULL_BUDGET_MACS:
        s = max(lo, int(s * math.sqrt(FULL_BUDGET_MACS / macs)))
        while s > lo and analyze(net, (c, s, s)).macs > FULL_BUDGET_MACS:
            s -= 1
    return s


def check(net, size, what):
    """Measure both supports and compare them with the analysis."""
    c = net.input_shape[0]
    a = analyze(net, (c, size, size))
    leaf, glob = feature_leaf(a)
    with torch.device("meta"):
        model = compile(net, (c, size, size))
    model = model.double().to_empty(device="cpu")  # the classifier stays unset: never run
    nodes = dict(net.named_nodes())
    for path, m in model.named_modules():  # to_empty left the index buffers unset too
        if isinstance(m, SelectChannels):
            m.indices = torch.tensor(nodes[path].indices, dtype=torch.long)
    model = positive_linear(model)
    checks = [("leaf", leaf.name, leaf.rf)]
    if a.feature_rf.exact:  # an adaptive pool with uneven bins makes the field approximate
        checks.append(("map", f"input of {glob.name}", a.feature_rf))
    got = measure(model, leaf.name, glob.name, size, want_map=len(checks) == 2)
    problems = []
    for key, where, rf in checks:
        rows, cols, unit, last = got[key]
        want_rows, want_cols = predicted(rf, unit, size, last)
        if (rows, cols) != (want_rows, want_cols):
            problems.append(f"{what} {net.name} at {size}x{size}: {where} central unit {unit}: "
                            f"gradient support rows {rows} cols {cols}, analysis predicts rows "
                            f"{want_rows} cols {want_cols} (rf {rf.as_dict()})")
    assert not problems, "; ".join(problems)
    return a, got


@pytest.mark.parametrize("name", MODELS)
def test_zoo_model_gradient_support_equals_analysis(name):
    net = create_model(name, num_classes=10, in_chans=1)
    check(net, affordable(net, unclipped(net)), "zoo model")


@pytest.mark.parametrize("name", MODELS)
def test_full_field_on_one_channel_twin(name):
    net = create_model(name, num_classes=10, in_chans=1)
    twin = thin_network(net)
    size = unclipped(net)
    shape = (1, size, size)
    assert analyze(twin, shape).feature_rf == analyze(net, shape).feature_rf
    a, got = check(twin, size, "one-channel twin")
    rows, cols, _, _ = got["map"]
    assert (rows[1] - rows[0] + 1, cols[1] - cols[0] + 1) == a.feature_rf.size  # unclipped


@pytest.mark.parametrize("name, size, stride, padding", [
    ("vgg16", 212, 32, 90), ("alexnet", 195, 32, None), ("mobilenet_v1", 315, 32, None)])
def test_published_anchors(name, size, stride, padding):
    """Araujo et al., Distill 2019 (Google's receptive_field library)."""
    net = create_model(name, in_chans=1)
    rf = analyze(net).feature_rf
    assert rf.size == (size, size) and rf.stride == (stride, stride)
    if padding is not None:
        assert rf.padding == (padding, padding)
    s = unclipped(net)
    _, got = check(thin_network(net), s, "anchor")
    rows, cols, (i, j), _ = got["map"]
    assert rows[1] - rows[0] + 1 == size and cols[1] - cols[0] + 1 == size
    if padding is not None:
        assert rows[0] == i * stride - padding
