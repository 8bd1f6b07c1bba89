"""One layer, one place: every spec layer type states every rule, both backends
build every type, and the layers added this way (ConvTranspose2d, Upsample,
PixelShuffle) are right in the spec, the analysis, the engine (gradcheck) and
against torch (parity). Taps return the same intermediate outputs from both backends."""
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
    PixelShuffle,
    ReLU,
    Sequential,
    Upsample,
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


# ------------------------------------------------------------------ Upsample, PixelShuffle: spec + analysis


def test_upsample_and_pixel_shuffle_shape_params_macs_by_hand():
    a = analyze(Upsample(scale_factor=2), (5, 7, 9))
    assert (a.output_shape, a.params, a.macs) == ((5, 14, 18), 0, 0)          # nearest copies
    a = analyze(Upsample(scale_factor=(3, 2), mode="bilinear"), (5, 7, 9))
    assert (a.output_shape, a.params, a.macs) == ((5, 21, 18), 0, 4 * 5 * 21 * 18)  # 4 neighbours each
    a = analyze(Upsample(size=(10, 4), mode="bilinear", align_corners=True), (2, 7, 9))
    assert (a.output_shape, a.macs) == ((2, 10, 4), 4 * 2 * 10 * 4)
    a = analyze(PixelShuffle(3), (18, 5, 6))
    assert (a.output_shape, a.params, a.macs) == ((2, 15, 18), 0, 0)
    # ESPCN's tail: conv to r*r channels, then shuffle; all MACs are the conv's
    a = analyze(seq(Conv2d(4, 3, padding=1), PixelShuffle(2)), (8, 10, 10))
    assert a.output_shape == (1, 20, 20) and a.macs == 10 * 10 * 4 * 8 * 9


def test_upsample_and_pixel_shuffle_reject_bad_fields():
    for kwargs, match in [(dict(), "exactly one"), (dict(scale_factor=2, size=4), "exactly one"),
                          (dict(scale_factor=0), "positive"), (dict(scale_factor=2, mode="bicubic"), "mode"),
                          (dict(scale_factor=2, align_corners=True), "only bilinear"),
                          (dict(scale_factor=1.5), "int")]:
        with pytest.raises(SpecError, match=match):
            Upsample(**kwargs)
    with pytest.raises(SpecError, match="positive"):
        PixelShuffle(0)
    with pytest.raises(ShapeError, match=r"PixelShuffle\(2\) needs channels divisible by 4, got 6"):
        analyze(PixelShuffle(2), (6, 4, 4))
    from svertka.spec import Flatten
    with pytest.raises(ShapeError, match="Flatten"):
        analyze(seq(Flatten(), Upsample(scale_factor=2)), (6, 2, 2))


def test_upsample_and_pixel_shuffle_survive_json():
    import json

    from svertka.spec import from_dict, to_dict
    net = seq(Upsample(scale_factor=(2, 3)), Upsample(size=(7, 5), mode="bilinear", align_corners=False),
              Conv2d(4, 1), PixelShuffle(2))
    back = from_dict(json.loads(json.dumps(to_dict(net))))
    assert back == net and analyze(back, (2, 3, 3)).output_shape == (1, 14, 10)
    for field, value in [("size", [0, 3]), ("scale_factor", "2"), ("align_corners", 1), ("mode", 3)]:
        d = {"type": "Upsample", "scale_factor": None, "size": None, field: value}
        with pytest.raises(SpecError, match=field):
            from_dict(d)


RESAMPLERS = [Upsample(scale_factor=2), Upsample(scale_factor=3), Upsample(scale_factor=2, mode="bilinear"),
              Upsample(scale_factor=3, mode="bilinear"), Upsample(scale_factor=4, mode="bilinear"),
              PixelShuffle(2), PixelShuffle(3)]
IRREGULAR = [Upsample(size=31, mode="bilinear"), Upsample(size=29), Upsample(size=29),
             Upsample(scale_factor=2, mode="bilinear", align_corners=True)]


@pytest.mark.parametrize("layer", RESAMPLERS + IRREGULAR, ids=lambda layer: str(layer))
def test_resampling_field_holds_the_gradient_support(layer):
    """After a strided conv (jump 2, field 3), every output unit's true field (the input
    pixels its gradient reaches) lies in the layer's affine window; at an integer scale
    the window is also tight: some phase reaches within a pixel of each of its ends."""
    r = getattr(layer, "upscale_factor", 1)  # PixelShuffle needs r*r channels in
    net = seq(Conv2d(r * r, 3, stride=2, padding=1, bias=False), layer)
    a = analyze(net, (1, 28, 28))
    rf = a.layer("1").rf
    assert not rf.exact
    manual_seed(0)
    model = np_compile(net, (1, 28, 28), dtype=np.float64)
    for p in model.parameters():
        p.data = np.abs(p.data) + 0.1  # positive weights: no accidental cancellation
    out_h = a.output_shape[1]
    gaps = []
    for o in range(out_h // 3, out_h // 3 + 6):  # interior units, more than one period of phases
        x = Tensor(np.ones((1, 1, 28, 28)), requires_grad=True)
        y = model(x)
        mask = np.zeros(y.shape)
        mask[0, :, o, o] = 1
        (y * Tensor(mask)).sum().backward()
        rows = np.nonzero(np.abs(x.grad[0, 0]).sum(1) > 1e-12)[0]
        start, end = rf.span(o, 0)
        assert start <= rows.min() and rows.max() <= end, (o, rows, (start, end))
        gaps.append((rows.min() - start, end - rows.max()))
    if layer in RESAMPLERS:
        # fractional jumps put the window's ends between pixels: tight means less than a pixel off
        assert min(g[0] for g in gaps) < 1 and min(g[1] for g in gaps) < 1, gaps


# ------------------------------------------------------------------ Upsample, PixelShuffle: engine


def _resample_case(rng):
    mode = str(rng.choice(["nearest", "bilinear"]))
    corners = None if mode == "nearest" else [None, True, False][int(rng.integers(3))]
    if rng.random() < 0.5:
        kw = dict(scale_factor=tuple(int(v) for v in rng.integers(1, 5, 2)), size=None)
    else:
        kw = dict(size=tuple(int(v) for v in rng.integers(1, 13, 2)), scale_factor=None)
    x = rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 4)),
                             *(int(v) for v in rng.integers(1, 8, 2))))
    return x, dict(kw, mode=mode, align_corners=corners)


def test_interpolate_and_pixel_shuffle_gradcheck_float64():
    for _ in range(50):
        x, kw = _resample_case(rng)
        gradcheck(lambda x_: F.interpolate(x_, **kw), [x], rng)
    for r in (1, 2, 3):
        x = rng.standard_normal((2, 2 * r * r, int(rng.integers(1, 6)), int(rng.integers(1, 6))))
        gradcheck(lambda x_: F.pixel_shuffle(x_, r), [x], rng)


def test_interpolate_and_pixel_shuffle_parity_with_torch_float32():
    torch = pytest.importorskip("torch")
    from test_engine_torch_parity import parity
    for _ in range(60):
        x, kw = _resample_case(rng)
        parity(lambda x_: F.interpolate(x_, **kw), lambda x_: torch.nn.functional.interpolate(x_, **kw), [x])
    for r in (1, 2, 3):
        x = rng.standard_normal((2, 3 * r * r, 4, 5))
        parity(lambda x_: F.pixel_shuffle(x_, r), lambda x_: torch.nn.functional.pixel_shuffle(x_, r), [x])


def test_resampling_modules_match_torch_modules():
    torch = pytest.importorskip("torch")
    from svertka.backends.torch import compile as torch_compile
    net = seq(Conv2d(8, 3, padding=1), Upsample(scale_factor=3, mode="bilinear"), ReLU(), Conv2d(12, 3),
              PixelShuffle(2), Upsample(size=(50, 41)))
    tm = torch_compile(net, (2, 6, 7))
    assert isinstance(tm[1], torch.nn.Upsample) and isinstance(tm[4], torch.nn.PixelShuffle)
    nm = np_compile(net, (2, 6, 7))
    nm.load_state_dict(tm.state_dict())
    x = rng.standard_normal((2, 2, 6, 7)).astype(np.float32)
    expect = tm(torch.tensor(x)).detach().numpy()
    assert expect.shape[1:] == analyze(net, (2, 6, 7)).output_shape == (3, 50, 41)
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
