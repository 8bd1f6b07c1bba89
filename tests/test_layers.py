"""One layer, one place: every spec layer type states every rule, both backends
build every type, and the first layer added this way (ConvTranspose2d) is right
in the spec, the analysis, the engine (gradcheck) and against torch (parity).
Taps return the same intermediate outputs from both backends."""
from __future__ import annotations

import math

import numpy as np
import pytest

from svertka.analysis import analyze
from svertka.backends.build import Builders
from svertka.backends.numpy import Tensor, forward_with_taps, manual_seed
from svertka.backends.numpy import compile as np_compile
from svertka.backends.numpy import functional as F
from svertka.backends.numpy.modules import BUILDERS as NUMPY_BUILDERS
from svertka.errors import ShapeError, SpecError
from svertka.spec import (
    LEAF_TYPES,
    BatchNorm2d,
    Concat,
    Conv2d,
    ConvTranspose2d,
    Leaf,
    Network,
    ReLU,
    Sequential,
    missing_rules,
    seq,
    trace,
)
from test_engine_gradcheck import gradcheck

rng = np.random.default_rng(7)


# ------------------------------------------------------------------ every rule, every table


def test_every_leaf_type_states_every_rule():
    missing = {name: missing_rules(cls) for name, cls in LEAF_TYPES.items() if missing_rules(cls)}
    assert not missing, f"layer types without a rule: {missing}"


def test_a_type_without_a_rule_is_named():
    class Half(Leaf):  # a new layer that states only its shape
        def output_shape(self, shape):
            return shape

    assert missing_rules(Half) == ["counts", "receptive_field"]
    with pytest.raises(SpecError, match="Half has no counts rule"):
        trace(Half(), (1, 4, 4))


def test_every_leaf_type_has_a_numpy_builder():
    assert NUMPY_BUILDERS.missing() == []


def test_every_leaf_type_has_a_torch_builder():
    pytest.importorskip("torch")
    from svertka.backends.torch.compile import BUILDERS as TORCH_BUILDERS
    assert TORCH_BUILDERS.missing() == []


def test_a_backend_without_a_builder_names_the_type_and_layer():
    table = Builders("toy")
    table.combinators(sequential=list, residual=None, concat=None, gate=None)
    assert "ConvTranspose2d" in table.missing() and "Conv2d" in table.missing()
    net = seq(Conv2d(4, 3))
    with pytest.raises(SpecError, match=r"toy backend has no builder for layer type Conv2d \(layer 0\)"):
        table.compile(net, (1, 8, 8))


def test_backends_do_not_import_the_analysis():
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1] / "src" / "svertka" / "backends"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if "analysis" in p.read_text()
                 and any(line.lstrip().startswith(("from", "import")) and "analysis" in line
                         for line in p.read_text().splitlines())]
    assert offenders == []


# ------------------------------------------------------------------ ConvTranspose2d: spec + analysis


def test_conv_transpose_shape_params_macs_by_hand():
    # 8 -> 4 channels, k=4, s=2, p=1 on 8x8: out (8-1)*2 - 2 + 3 + 1 = 16
    a = analyze(ConvTranspose2d(4, 4, stride=2, padding=1), (8, 8, 8))
    assert a.output_shape == (4, 16, 16)
    assert a.params == 8 * 4 * 16 + 4
    assert a.macs == 8 * 8 * 8 * 4 * 16     # every input value meets 4*4*4 weights
    a = analyze(ConvTranspose2d(6, 3, stride=2, output_padding=1, groups=2, bias=False), (4, 5, 7))
    assert a.output_shape == (6, 12, 16)    # (5-1)*2 + 2 + 1 + 1 = 12, (7-1)*2 + 4 = 16
    assert a.params == 4 * (6 // 2) * 9


def test_unet_style_decoder_shapes_and_macs_by_hand():
    """A two-level U-Net: encoder convs, pool, bottleneck, a transposed conv up,
    concatenated with the skip (Concat of identity and the down-up path)."""
    from svertka.spec import Identity, MaxPool2d
    inner = seq(MaxPool2d(2), Conv2d(16, 3, padding=1), ReLU(), ConvTranspose2d(8, 2, stride=2))
    net = Network("unet2", Sequential.named(
        enc=seq(Conv2d(8, 3, padding=1), ReLU()),
        skip=Concat([("identity", Identity()), ("down_up", inner)]),
        dec=seq(Conv2d(8, 3, padding=1), ReLU()),
        head=Conv2d(3, 1)), (1, 32, 32), 3)
    a = analyze(net)
    assert a.layer("skip.down_up.3").in_shape == (16, 16, 16)
    assert a.layer("skip.down_up.3").out_shape == (8, 32, 32)
    assert a.layer("skip").out_shape == (16, 32, 32)
    assert a.output_shape == (3, 32, 32)
    by_hand = {
        "enc.0": (8 * 9 + 8, 32 * 32 * 8 * 9),
        "skip.down_up.1": (16 * 8 * 9 + 16, 16 * 16 * 16 * 8 * 9),
        "skip.down_up.3": (16 * 8 * 4 + 8, 16 * 16 * 16 * 8 * 4),
        "dec.0": (8 * 16 * 9 + 8, 32 * 32 * 8 * 16 * 9),
        "head": (3 * 8 + 3, 32 * 32 * 3 * 8),
    }
    for name, (params, macs) in by_hand.items():
        assert (a.layer(name).params, a.layer(name).macs) == (params, macs), name
    assert a.params == sum(p for p, _ in by_hand.values())
    assert a.macs == sum(m for _, m in by_hand.values())
    # the field: 3 (enc); pool 2 -> 4 at jump 2; conv3 -> 8. The up conv (k2 s2) gives each output
    # one input unit: 8 pixels, but outputs 2i and 2i+1 share it, so the one affine window (jump 1)
    # that holds both phases is 9 wide: a bound, flagged inexact
    rf = a.layer("skip.down_up").rf
    assert rf.size == (9, 9) and rf.stride == (1, 1) and not rf.exact


def test_conv_transpose_rejects_bad_fields_and_sizes():
    with pytest.raises(SpecError, match="output_padding"):
        ConvTranspose2d(4, 3, stride=2, output_padding=2)
    with pytest.raises(ShapeError, match="crops input"):
        analyze(ConvTranspose2d(4, 3, padding=3), (2, 1, 1))


def test_transposed_field_matches_the_gradient_support():
    """The field of a transposed conv after a strided conv holds every input pixel
    whose gradient reaches a unit, for every output phase (checked by autograd)."""
    net = seq(Conv2d(1, 3, stride=2, padding=1, bias=False), ConvTranspose2d(1, 3, stride=2, padding=1,
                                                                               bias=False))
    a = analyze(net, (1, 24, 24))
    rf = a.layer("1").rf
    manual_seed(0)
    model = np_compile(net, (1, 24, 24), dtype=np.float64)
    for p in model.parameters():
        p.data = np.abs(p.data) + 0.1  # positive weights: no accidental cancellation
    for o in (10, 11, 12, 13):
        x = Tensor(np.ones((1, 1, 24, 24)), requires_grad=True)
        y = model(x)
        mask = np.zeros(y.shape)
        mask[0, 0, o, o] = 1
        (y * Tensor(mask)).sum().backward()
        rows = np.nonzero(np.abs(x.grad[0, 0]).sum(1))[0]
        start, end = rf.span(o, 0)
        assert start <= rows.min() and rows.max() <= end, (o, rows, (start, end))


# ------------------------------------------------------------------ ConvTranspose2d: engine


def _ct_case(rng):
    G = int(rng.integers(1, 3))
    Cg, Og = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    kh, kw = (int(v) for v in rng.integers(1, 5, 2))
    s = tuple(int(v) for v in rng.integers(1, 4, 2))
    d = tuple(int(v) for v in rng.integers(1, 3, 2))
    op = tuple(int(rng.integers(0, max(si, di))) for si, di in zip(s, d))
    H_, W_ = (int(v) for v in rng.integers(1, 7, 2))
    full = [(h - 1) * si + di * (k - 1) + o + 1 for h, si, di, k, o in zip((H_, W_), s, d, (kh, kw), op)]
    p = tuple(int(rng.integers(0, max(1, (f + 1) // 2))) for f in full)
    x = rng.standard_normal((int(rng.integers(1, 3)), G * Cg, H_, W_))
    w = rng.standard_normal((G * Cg, Og, kh, kw))
    b = rng.standard_normal(G * Og)
    return x, w, b, dict(stride=s, padding=p, output_padding=op, groups=G, dilation=d)


def test_conv_transpose_gradcheck_float64():
    for _ in range(40):
        x, w, b, kw = _ct_case(rng)
        gradcheck(lambda x_, w_, b_: F.conv_transpose2d(x_, w_, b_, **kw), [x, w, b], rng)
        gradcheck(lambda x_, w_: F.conv_transpose2d(x_, w_, None, **kw), [x, w], rng)


def test_conv_transpose_parity_with_torch_float32():
    torch = pytest.importorskip("torch")
    from test_engine_torch_parity import parity
    for _ in range(30):
        x, w, b, kw = _ct_case(rng)
        parity(lambda x_, w_, b_: F.conv_transpose2d(x_, w_, b_, **kw),
               lambda x_, w_, b_: torch.nn.functional.conv_transpose2d(x_, w_, b_, **kw), [x, w, b])


def test_conv_transpose_module_matches_torch_module():
    torch = pytest.importorskip("torch")
    from svertka.backends.torch import compile as torch_compile
    net = seq(ConvTranspose2d(6, 3, stride=2, padding=1, output_padding=1, groups=3, dilation=2), ReLU())
    tm = torch_compile(net, (3, 5, 6))
    assert isinstance(tm[0], torch.nn.ConvTranspose2d)
    nm = np_compile(net, (3, 5, 6))
    nm.load_state_dict(tm.state_dict())
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    expect = tm(torch.tensor(x)).detach().numpy()
    assert expect.shape[1:] == analyze(net, (3, 5, 6)).output_shape
    np.testing.assert_allclose(nm(Tensor(x)).data, expect, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ taps


def _tap_names(net):
    a = analyze(net)
    return [la.name for la in a.layers if la.depth and la.type in ("Conv2d", "Sequential", "Residual",
                                                                       "BatchNorm2d", "Gate")]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_taps_agree_between_backends(name):
    torch = pytest.importorskip("torch")
    from svertka.backends.torch import compile as torch_compile
    from svertka.backends.torch import forward_with_taps as torch_taps
    from svertka.zoo import create_model
    net = create_model(name, input_size=64)
    tm = torch_compile(net).eval()
    nm = np_compile(net).eval()
    nm.load_state_dict(tm.state_dict())
    names = _tap_names(net)
    assert len(names) > 40
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ty, ttaps = torch_taps(tm, torch.tensor(x), names)
    ny, ntaps = forward_with_taps(nm, Tensor(x), names)
    assert list(ttaps) == list(ntaps) == names
    for k in names:
        t = ttaps[k].numpy()
        np.testing.assert_allclose(ntaps[k].data, t, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(t).max()),
                                   err_msg=k)
    np.testing.assert_allclose(ny.data, ty.numpy(), rtol=1e-4, atol=1e-4)
    # the hooks are gone afterwards: a plain call records nothing
    assert all(m._tap_into is None for _, m in nm.named_modules())
    assert all(not m._forward_hooks for m in tm.modules())


def test_a_loss_on_a_tap_reaches_the_input_pixels():
    net = Network("tiny", Sequential.named(features=seq(Conv2d(4, 3, padding=1), BatchNorm2d(), ReLU(),
                                                        Conv2d(4, 3, padding=1)),
                                           head=seq(Conv2d(2, 1))), (1, 8, 8), 2)
    model = np_compile(net, dtype=np.float64).eval()
    x = Tensor(rng.standard_normal((1, 1, 8, 8)), requires_grad=True)
    _, taps = forward_with_taps(model, x, ["features.1"])
    loss = (taps["features.1"] * taps["features.1"]).sum()
    loss.backward()
    assert x.grad is not None and np.abs(x.grad).sum() > 0
    # numeric check of one pixel's gradient
    h, i = 1e-6, (0, 0, 3, 4)

    def L(delta):
        xd = x.data.copy()
        xd[i] += delta
        _, t = forward_with_taps(model, Tensor(xd), ["features.1"])
        return float((t["features.1"].data ** 2).sum())
    assert math.isclose((L(h) - L(-h)) / (2 * h), x.grad[i], rel_tol=1e-5, abs_tol=1e-8)


def test_an_unknown_tap_is_named_with_suggestions():
    from svertka.zoo import create_model
    model = np_compile(create_model("resnet20"))
    with pytest.raises(SpecError, match=r"no layer named 'layer2.9'.*did you mean"):
        forward_with_taps(model, np.zeros((1, 3, 32, 32), np.float32), ["layer2.9"])


def test_a_model_over_the_allocation_limit_is_refused_before_allocating():
    """Analysis reports any size; compiling refuses, naming the layer that crosses the limit."""
    from svertka.spec import MAX_VALUES, Flatten, Linear
    net = Network("big", Sequential.named(conv=Conv2d(32, 10 ** 9, padding=5 * 10 ** 8),
                                          flat=Flatten(), fc=Linear(10)), (1, 28, 28), 10)
    assert analyze(net).params > MAX_VALUES
    with pytest.raises(SpecError, match=r"layer conv \(Conv2d\) brings the model to .* shrink"):
        np_compile(net)
    torch = pytest.importorskip("torch")  # noqa: F841
    from svertka.backends.torch import compile as torch_compile
    with pytest.raises(SpecError, match=r"layer conv \(Conv2d\)"):
        torch_compile(net)
