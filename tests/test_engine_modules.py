"""Modules compiled from the spec: torch's names and init, train/eval, no_grad,
state_dict round trips, and a training step that learns."""
from __future__ import annotations

import numpy as np
import pytest

from svertka.analysis import analyze
from svertka.backends.numpy import Tensor, compile, manual_seed, no_grad, optim
from svertka.backends.numpy import functional as F
from svertka.spec import nodes as n
from svertka.zoo import create_model


@pytest.mark.parametrize("name", ["lenet5", "lenet5_1998", "resnet20", "mobilenet_v2", "googlenet",
                                  "efficientnet_b0", "alexnet"])
def test_params_match_analysis(name):
    net = create_model(name)
    model = compile(net)
    assert sum(p.size for p in model.parameters()) == analyze(net).params


def test_torchvision_names():
    keys = compile(create_model("resnet18")).state_dict()
    assert "layer1.0.conv1.weight" in keys and "layer2.0.downsample.0.weight" in keys
    assert [k for k in keys if k.startswith("bn1.")] == [
        "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"]
    assert "features.1.conv.0.0.weight" in compile(create_model("mobilenet_v2")).state_dict()


def test_init_follows_torch_defaults():
    manual_seed(0)
    m = compile(n.seq(n.Conv2d(64, 3), n.Flatten(), n.Linear(10)), (32, 10, 10))
    w, b = m[0].weight.data, m[0].bias.data
    bound = 1 / np.sqrt(32 * 9)  # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert np.abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound
    assert np.abs(b).max() <= bound
    lw = m[2].weight.data
    assert np.abs(lw).max() <= 1 / np.sqrt(64 * 8 * 8)
    bn = compile(n.BatchNorm2d(), (3, 4, 4))
    assert (bn.weight.data == 1).all() and (bn.bias.data == 0).all()
    assert (bn.running_var == 1).all() and bn.num_batches_tracked == 0


def test_train_eval_and_batchnorm_buffers():
    manual_seed(1)
    m = compile(n.seq(n.Conv2d(4, 3), n.BatchNorm2d(), n.ReLU(), n.Dropout(0.5)), (2, 6, 6))
    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6)).astype(np.float32)
    m.train()
    m(x)
    assert m[1].num_batches_tracked == 1 and not np.allclose(m[1].running_mean, 0)
    m.eval()
    assert not m[3].training
    y1, y2 = m(x).data, m(x).data
    np.testing.assert_array_equal(y1, y2)  # eval: deterministic, no dropout
    assert m[1].num_batches_tracked == 1


def test_no_grad_records_nothing():
    m = compile(create_model("lenet5"))
    with no_grad():
        y = m(np.zeros((2, 1, 28, 28), np.float32))
    assert not y.requires_grad and y._node is None


def test_state_dict_round_trip_and_copy():
    a, b = compile(create_model("resnet20")), compile(create_model("resnet20"))
    b.load_state_dict(a.state_dict())
    for (k, va), (k2, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(va, vb)
        assert va is not vb  # loading copies
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(a.eval()(x).data, b.eval()(x).data)


def test_a_training_step_learns():
    manual_seed(0)
    rng = np.random.default_rng(0)
    model = compile(create_model("lenet5"))
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(model(Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]  # 32 random images: memorised
