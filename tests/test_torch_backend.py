"""The PyTorch backend: every leaf and container compiles to the shapes and
parameter counts the analysis predicts; the layers torch lacks compute what
they should; state_dict keys follow the spec's (torchvision's) names; weights
round-trip through safetensors and .pth, and bad checkpoints fail clearly."""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from svertka.analysis import analyze  # noqa: E402
from svertka.backends.torch import (  # noqa: E402
    compile,
    load_weights,
    read_weights,
    save_weights,
)
from svertka.backends.torch.compile import drop_path  # noqa: E402
from svertka.errors import ShapeError, SvertkaError, WeightsError  # noqa: E402
from svertka.spec import nodes as n  # noqa: E402
from svertka.spec import rbf_centers  # noqa: E402


def _check(net_or_node, input_shape, batch=2, atol=None):
    """Compile, run a forward pass and compare with the analysis."""
    a = analyze(net_or_node, input_shape)
    model = compile(net_or_node, input_shape).eval()
    x = torch.randn(batch, *input_shape)
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape) == (batch, *a.output_shape)
    assert sum(p.numel() for p in model.parameters()) == a.params
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == a.params
    params = {id(p) for p in model.parameters()}
    buffers = sum(v.numel() for v in model.state_dict(keep_vars=True).values() if id(v) not in params)
    assert buffers == a.buffers
    return model, x, y


LEAVES = {
    "conv": (n.Conv2d(8, 3, padding=1), (3, 9, 9)),
    "conv_strided_rect": (n.Conv2d(4, (3, 5), stride=(2, 1), padding=(1, 2)), (2, 11, 8)),
    "conv_dilated": (n.Conv2d(6, 3, dilation=2, padding=2), (3, 10, 10)),
    "conv_depthwise_nobias": (n.Conv2d(8, 3, groups=8, bias=False), (8, 7, 7)),
    "conv_grouped": (n.Conv2d(6, 1, groups=2), (4, 5, 5)),
    "bn": (n.BatchNorm2d(eps=1e-3, momentum=0.01), (5, 4, 4)),
    "lrn": (n.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), (7, 4, 4)),
    "relu": (n.ReLU(), (3, 4, 4)),
    "relu6": (n.ReLU6(), (3, 4, 4)),
    "silu": (n.SiLU(), (3, 4, 4)),
    "sigmoid": (n.Sigmoid(), (3, 4, 4)),
    "tanh": (n.Tanh(), (3, 4, 4)),
    "gelu": (n.GELU(), (3, 4, 4)),
    "scaled_tanh": (n.ScaledTanh(), (3, 4, 4)),
    "identity": (n.Identity(), (3, 4, 4)),
    "maxpool": (n.MaxPool2d(2), (3, 8, 8)),
    "maxpool_ceil": (n.MaxPool2d(3, 2, ceil_mode=True), (3, 14, 14)),
    "maxpool_pad_dil": (n.MaxPool2d(3, 2, padding=1, dilation=2), (3, 13, 13)),
    "avgpool": (n.AvgPool2d(3, 2, padding=1, count_include_pad=False), (3, 9, 9)),
    "avgpool_ceil": (n.AvgPool2d(2, ceil_mode=True), (3, 7, 7)),
    "adaptive_global": (n.AdaptiveAvgPool2d(1), (4, 5, 5)),
    "adaptive_rect": (n.AdaptiveAvgPool2d((2, 3)), (4, 7, 7)),
    "dropout": (n.Dropout(0.3), (3, 4, 4)),
    "flatten": (n.Flatten(), (3, 4, 5)),
    "shortcut_a": (n.ShortcutA(16, 2), (6, 7, 7)),
    "select": (n.SelectChannels((2, 0, 2)), (3, 4, 4)),
    "subsample": (n.Subsample(2), (6, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_leaf_compiles_to_predicted_shape_and_params(name):
    node, shape = LEAVES[name]
    _check(node, shape)


@pytest.mark.parametrize("name", ["linear", "linear_nobias", "rbf"])
def test_flat_leaves(name):
    last = {"linear": n.Linear(7), "linear_nobias": n.Linear(7, bias=False), "rbf": n.RBFOutput(10)}[name]
    _check(n.seq(n.Flatten(), last), (2, 3, 4))


def test_leaf_modules_carry_the_spec_fields():
    bn = compile(n.BatchNorm2d(eps=1e-3, momentum=0.01), (4, 2, 2))
    assert (bn.num_features, bn.eps, bn.momentum) == (4, 1e-3, 0.01)
    mp = compile(n.MaxPool2d(3, 2, 1, ceil_mode=True), (1, 9, 9))
    assert isinstance(mp, torch.nn.MaxPool2d) and mp.ceil_mode and mp.padding == (1, 1)
    ap = compile(n.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 9, 9))
    assert isinstance(ap, torch.nn.AvgPool2d) and ap.ceil_mode and not ap.count_include_pad
    relu = compile(n.ReLU(), (1, 2, 2))
    assert isinstance(relu, torch.nn.ReLU) and not relu.inplace
    lrn = compile(n.LocalResponseNorm(5, 1e-4, 0.75, 2.0), (6, 2, 2))
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    conv = compile(n.Conv2d(8, 3, 2, 1, 1, groups=2, bias=False), (4, 9, 9))
    assert (conv.in_channels, conv.groups, conv.bias) == (4, 2, None)


def test_linear_in_features_follow_the_input_size():
    net = n.Network("tiny", n.seq(n.Conv2d(4, 3), n.Flatten(), n.Linear(5)), (1, 8, 8), 5)
    assert compile(net)[2].in_features == 4 * 6 * 6
    assert compile(net, (1, 10, 10))[2].in_features == 4 * 8 * 8


# --------------------------------------------------------------- layers torch lacks


def test_scaled_tanh():
    m = compile(n.ScaledTanh(), (1, 2, 2))
    x = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(m(x), 1.7159 * torch.tanh(x * 2 / 3))


def test_shortcut_a_subsamples_and_pads_channels_evenly():
    m = compile(n.ShortcutA(16, 2), (6, 7, 7))
    x = torch.randn(2, 6, 7, 7)
    y = m(x)
    assert y.shape == (2, 16, 4, 4)
    expect = np.zeros((2, 16, 4, 4), np.float32)
    expect[:, 5:11] = x.numpy()[:, :, ::2, ::2]  # (16 - 6) // 2 = 5 zero channels before
    np.testing.assert_array_equal(y.numpy(), expect)
    # odd padding: the extra zero channel goes after
    y = compile(n.ShortcutA(5, 1), (2, 3, 3))(x[:, :2, :3, :3])
    assert y[:, :1].abs().sum() == 0 and y[:, 3:].abs().sum() == 0
    torch.testing.assert_close(y[:, 1:3], x[:, :2, :3, :3])


def test_select_channels_is_index_select_and_not_in_state_dict():
    m = compile(n.SelectChannels((2, 0, 2)), (3, 4, 4))
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(m(x), x[:, [2, 0, 2]])
    assert m.state_dict() == {}
    assert m.indices.tolist() == [2, 0, 2]


def test_subsample_is_coefficient_times_window_sum_plus_bias():
    m = compile(n.Subsample(2), (3, 6, 5))
    assert sorted(k for k, _ in m.named_parameters()) == ["bias", "weight"]
    assert m.weight.shape == (3,) and m.bias.shape == (3,)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    m = m.double()
    xs = x.numpy()[:, :, :6, :4].reshape(2, 3, 3, 2, 2, 2).sum(axis=(3, 5))
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    expect = w[None, :, None, None] * xs + b[None, :, None, None]
    np.testing.assert_allclose(m(x).detach().numpy(), expect, rtol=1e-12)


def test_rbf_output_fixed_centres_and_negated_distance():
    net = n.seq(n.Flatten(), n.RBFOutput(10, seed=3))
    m = compile(net, (84, 1, 1))
    rbf = m[1]
    c = rbf.centers
    assert c.shape == (10, 84)
    assert set(c.unique().tolist()) == {-1.0, 1.0}
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(c.numpy(), 2 * rng.integers(0, 2, size=(10, 84)) - 1)
    np.testing.assert_array_equal(c.numpy(), rbf_centers(10, 84, 3))
    assert list(m.parameters()) == []                       # not trainable
    assert list(m.state_dict()) == ["1.centers"]            # but saved
    x = torch.randn(4, 84, 1, 1)
    d = ((x.reshape(4, 1, 84) - c.reshape(1, 10, 84)) ** 2).sum(-1)
    torch.testing.assert_close(m(x), -d)
    # the same seed gives the same centres in a fresh compile
    torch.testing.assert_close(compile(net, (84, 1, 1))[1].centers, c)


# ----------------------------------------------------------------------- containers


def basic_block(out, stride=1):
    shortcut = None
    if stride != 1:
        shortcut = n.seq(n.Conv2d(out, 1, stride, bias=False), n.BatchNorm2d())
    body = n.Sequential.named(conv1=n.Conv2d(out, 3, stride, 1, bias=False), bn1=n.BatchNorm2d(),
                              relu1=n.ReLU(), conv2=n.Conv2d(out, 3, 1, 1, bias=False),
                              bn2=n.BatchNorm2d())
    return body, shortcut


def test_residual_basic_block_keys_are_torchvisions():
    body, shortcut = basic_block(8, 2)
    block = n.Residual(body, shortcut, post=n.ReLU())
    net = n.Network("blk", n.Sequential.named(layer1=n.seq(block)), (4, 8, 8), 0)
    model, x, y = _check(net, (4, 8, 8))
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    expect = (["layer1.0.conv1.weight"] + [f"layer1.0.bn1.{k}" for k in bn]
              + ["layer1.0.conv2.weight"] + [f"layer1.0.bn2.{k}" for k in bn]
              + ["layer1.0.downsample.0.weight"] + [f"layer1.0.downsample.1.{k}" for k in bn])
    assert list(model.state_dict()) == expect
    # forward equals the direct computation
    b = model.layer1[0].eval()
    with torch.no_grad():
        direct = b.relu(b.bn2(b.conv2(b.relu1(b.bn1(b.conv1(x))))) + b.downsample(x))
    torch.testing.assert_close(y, direct)


def test_residual_identity_shortcut_and_nested_body():
    body = n.Sequential.named(conv=n.seq(n.Conv2d(4, 3, padding=1), n.BatchNorm2d()))
    block = n.Residual(body, body_name="block", drop_path=0.2)
    model, x, y = _check(block, (4, 5, 5))
    assert sorted(model.state_dict())[:2] == ["block.conv.0.bias", "block.conv.0.weight"]
    with torch.no_grad():
        torch.testing.assert_close(y, model.block(x) + x)


def test_residual_name_collision_is_reported():
    body = n.Sequential.named(relu=n.ReLU())
    with pytest.raises(SvertkaError, match="collide"):
        compile(n.Residual(body, post=n.ReLU()), (1, 2, 2))


def test_drop_path_is_per_example_and_scaled():
    x = torch.ones(4000, 3, 2, 2)
    assert drop_path(x, 0.25, training=False) is x
    torch.manual_seed(0)
    y = drop_path(x, 0.25, training=True)
    per = y.reshape(4000, -1)
    assert ((per == 0).all(1) | (per == 1 / 0.75).all(1)).all()  # whole examples kept or dropped
    kept = (per[:, 0] != 0).float().mean().item()
    assert abs(kept - 0.75) < 0.03
    # in a block: train mode drops, eval mode does not
    body = n.Sequential.named(c=n.Conv2d(3, 1, bias=False))
    m = compile(n.Residual(body, drop_path=0.5), (3, 2, 2))
    z = torch.randn(64, 3, 2, 2)
    with torch.no_grad():
        m.eval()
        torch.testing.assert_close(m(z), m.c(z) + z)
        m.train()
        out = m(z)
        dropped = torch.isclose(out, z).flatten(1).all(1)
        assert 0 < dropped.sum() < 64
        torch.testing.assert_close(out[~dropped], 2 * m.c(z)[~dropped] + z[~dropped])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_dropout_is_inverted_bernoulli_and_keeps_the_layout(dtype):
    from svertka.backends.torch.compile import Dropout

    m = compile(n.Dropout(0.25), (8, 16, 16))
    assert isinstance(m, Dropout) and isinstance(m, torch.nn.Dropout)
    x = (torch.rand(64, 8, 16, 16) + 0.5).to(dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    torch.manual_seed(3)
    y = m(x)
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    keep = y != 0
    # 131,072 draws: the kept fraction is within 5 standard deviations of 0.75
    assert abs(keep.float().mean().item() - 0.75) < 5 * (0.75 * 0.25 / keep.numel()) ** 0.5
    torch.testing.assert_close(y[keep], (x[keep] / 0.75).to(dtype))
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, keep.to(dtype) / 0.75)
    torch.manual_seed(3)
    assert torch.equal(m(x), y)  # seeded: the same mask again
    assert m.eval()(x) is x
    assert not Dropout(1.0)(x).any()  # torch allows p = 1 (the spec does not)


def test_flatten_sends_channels_last_gradients_back_in_channels_last():
    m = compile(n.Flatten(), (4, 3, 5))
    x = torch.randn(2, 4, 3, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = m(x)
    torch.testing.assert_close(y, x.detach().reshape(2, -1))
    g = torch.randn_like(y)
    y.backward(g)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x.grad, g.reshape(2, 4, 3, 5))
    plain = torch.randn(2, 4, 3, 5)
    torch.testing.assert_close(m(plain), plain.flatten(1))


def test_concat_stacks_branches():
    c = n.Concat([("branch1", n.Conv2d(3, 1)),
                  ("branch2", n.seq(n.Conv2d(2, 1), n.Conv2d(4, 3, padding=1))),
                  ("branch4", n.seq(n.MaxPool2d(3, 1, 1, ceil_mode=True), n.Conv2d(5, 1)))])
    model, x, y = _check(c, (6, 7, 7))
    assert y.shape == (2, 12, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(y, torch.cat([model.branch1(x), model.branch2(x), model.branch4(x)], 1))
    assert "branch2.1.weight" in model.state_dict()


def test_gate_is_squeeze_excitation_with_torchvision_keys():
    se = n.Gate(n.Sequential.named(avgpool=n.AdaptiveAvgPool2d(1), fc1=n.Conv2d(2, 1),
                                   activation=n.SiLU(), fc2=n.Conv2d(8, 1),
                                   scale_activation=n.Sigmoid()))
    model, x, y = _check(se, (8, 5, 5))
    assert list(model.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    with torch.no_grad():
        s = torch.sigmoid(model.fc2(torch.nn.functional.silu(model.fc1(x.mean((2, 3), keepdim=True)))))
        torch.testing.assert_close(y, x * s)


def test_sequential_names_and_module_paths_match_the_spec():
    net = n.Network("toy", n.Sequential.named(
        features=n.seq(n.Conv2d(4, 3), n.ReLU(), n.MaxPool2d(2)),
        avgpool=n.AdaptiveAvgPool2d(1), flatten=n.Flatten(),
        classifier=n.seq(n.Dropout(), n.Linear(3))), (3, 10, 10), 3)
    model, _, _ = _check(net, (3, 10, 10))
    spec_paths = [p for p, _ in net.named_nodes()]
    assert [p for p, _ in model.named_modules()] == spec_paths
    assert list(model.state_dict()) == ["features.0.weight", "features.0.bias",
                                        "classifier.1.weight", "classifier.1.bias"]
    assert model.svertka_meta == {"model": "toy", "num_classes": 3, "input_shape": [3, 10, 10]}


def test_bare_node_needs_an_input_shape():
    with pytest.raises(ShapeError, match="input_shape"):
        compile(n.Conv2d(3, 3))


def test_too_small_input_is_a_shape_error():
    with pytest.raises(ShapeError):
        compile(n.seq(n.Conv2d(3, 5), n.Conv2d(3, 5)), (1, 6, 6))


def test_float64_and_gradients_flow():
    body, shortcut = basic_block(4)
    net = n.seq(n.Residual(body, shortcut, post=n.ReLU(), post_name="out"), n.AdaptiveAvgPool2d(1),
                n.Flatten(), n.Linear(3))
    model = compile(net, (4, 6, 6)).double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())


# -------------------------------------------------------------------------- weights


def small_net(name="resnet18", num_classes=10):
    body, shortcut = basic_block(8, 2)
    root = n.Sequential.named(
        conv1=n.Conv2d(8, 3, padding=1, bias=False), bn1=n.BatchNorm2d(), relu=n.ReLU(),
        layer1=n.seq(n.Residual(body, shortcut, post=n.ReLU())),
        avgpool=n.AdaptiveAvgPool2d(1), flatten=n.Flatten(), fc=n.Linear(num_classes))
    return n.Network(name, root, (3, 16, 16), num_classes)


def _randomise(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for _k, v in model.state_dict().items():
            if v.is_floating_point():
                v.copy_(torch.rand_like(v) + 0.5)
            else:
                v.fill_(7)


def test_safetensors_round_trip(tmp_path):
    a = compile(small_net())
    _randomise(a)
    path = save_weights(a, tmp_path / "w.safetensors")
    assert os.listdir(tmp_path) == ["w.safetensors"]  # no temp file left
    b = compile(small_net())
    meta = load_weights(b, path)
    assert meta == {"model": "resnet18", "num_classes": 10, "input_shape": [3, 16, 16]}
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x))
    state, meta2 = read_weights(path)
    assert meta2 == meta and set(state) == set(a.state_dict())


def test_safetensors_keeps_rbf_centres(tmp_path):
    net = n.Network("rbf", n.seq(n.Flatten(), n.RBFOutput(4, seed=5)), (6, 1, 1), 4)
    a = compile(net)
    save_weights(a, tmp_path / "r.safetensors")
    state, _ = read_weights(tmp_path / "r.safetensors")
    assert torch.equal(state["1.centers"], a[1].centers)


def test_pth_round_trip_with_weights_only(tmp_path):
    a = compile(small_net())
    _randomise(a)
    torch.save(a.state_dict(), tmp_path / "w.pth")
    b = compile(small_net())
    assert load_weights(b, tmp_path / "w.pth") == {}
    for v, v2 in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(v, v2)


def test_pth_wrapped_and_ddp_prefixed(tmp_path):
    a = compile(small_net())
    _randomise(a)
    sd = {f"module.{k}": v for k, v in a.state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "w.pth")
    b = compile(small_net())
    load_weights(b, tmp_path / "w.pth")
    assert torch.equal(b.fc.weight, a.fc.weight)


class _Evil:
    def __reduce__(self):  # would run code if unpickled without weights_only
        return (os.system, ("echo pwned",))


def test_pth_with_objects_is_refused(tmp_path):
    torch.save({"fc.weight": torch.zeros(2), "x": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="refusing"):
        load_weights(compile(small_net()), tmp_path / "evil.pth")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_corrupt_and_truncated_files(tmp_path, suffix):
    model = compile(small_net())
    junk = tmp_path / f"junk{suffix}"
    junk.write_bytes(b"\x00not a weights file" * 10)
    with pytest.raises(WeightsError, match="cannot read|not a"):
        load_weights(model, junk)
    good = tmp_path / f"good{suffix}"
    if suffix == ".pth":
        torch.save(model.state_dict(), good)
    else:
        save_weights(model, good)
    data = good.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cannot read"):
        load_weights(model, cut)
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError):
        load_weights(model, empty)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights(compile(small_net()), tmp_path / "nope.safetensors")


def test_checkpoint_from_another_model(tmp_path):
    save_weights(compile(small_net("resnet34")), tmp_path / "r34.safetensors")
    with pytest.raises(WeightsError, match="checkpoint is for resnet34, not resnet18"):
        load_weights(compile(small_net("resnet18")), tmp_path / "r34.safetensors")


def test_num_classes_mismatch_from_metadata(tmp_path):
    save_weights(compile(small_net(num_classes=1000)), tmp_path / "w.safetensors")
    with pytest.raises(WeightsError) as e:
        load_weights(compile(small_net(num_classes=10)), tmp_path / "w.safetensors")
    assert ("num_classes mismatch: checkpoint has 1000 classes, model 10; pass --num-classes 1000"
            in str(e.value))


def test_num_classes_mismatch_without_metadata(tmp_path):
    torch.save(compile(small_net(num_classes=1000)).state_dict(), tmp_path / "tv.pth")
    with pytest.raises(WeightsError) as e:
        load_weights(compile(small_net(num_classes=10)), tmp_path / "tv.pth")
    assert ("num_classes mismatch: checkpoint has 1000 classes, model 10; pass --num-classes 1000"
            in str(e.value))


def test_missing_unexpected_and_shape_mismatch_in_one_error(tmp_path):
    model = compile(small_net())
    sd = dict(model.state_dict())
    del sd["bn1.weight"]
    sd["extra.weight"] = torch.zeros(1)
    sd["conv1.weight"] = torch.zeros(8, 3, 5, 5)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as e:
        load_weights(model, tmp_path / "bad.pth")
    msg = str(e.value)
    assert "\n" not in msg
    assert "1 missing (bn1.weight)" in msg and "1 unexpected (extra.weight)" in msg
    assert "conv1.weight 8x3x5x5 vs 8x3x3x3" in msg


def test_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="not a state_dict"):
        load_weights(compile(small_net()), tmp_path / "list.pth")


def test_weights_error_is_a_svertka_error():
    assert issubclass(WeightsError, SvertkaError)
