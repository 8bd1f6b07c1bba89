"""Bad input raises the project's errors, naming the layer and the shapes;
never a NumPy traceback from deep inside an op."""
from __future__ import annotations

import numpy as np
import pytest

from svertka.backends.numpy import Tensor, compile
from svertka.backends.numpy import functional as F
from svertka.errors import ShapeError, SvertkaError, WeightsError
from svertka.spec import nodes as n
from svertka.zoo import create_model


def _t(*shape, dtype=np.float32):
    return Tensor(np.zeros(shape, dtype))


def test_channels_not_divisible_by_groups():
    with pytest.raises(ShapeError, match=r"conv2d.*groups=2.*2x3x8x8"):
        F.conv2d(_t(2, 3, 8, 8), _t(4, 1, 3, 3), groups=2)


def test_channels_do_not_match_weight():
    with pytest.raises(ShapeError, match=r"2x5x8x8.*4x3x3x3"):
        F.conv2d(_t(2, 5, 8, 8), _t(4, 3, 3, 3))


def test_input_smaller_than_kernel_after_padding():
    with pytest.raises(ShapeError, match=r"smaller than the kernel.*H=2 with padding 1 is 4.*kernel 5"):
        F.conv2d(_t(1, 1, 2, 9), _t(1, 1, 5, 5), padding=1)
    with pytest.raises(ShapeError, match="smaller than the kernel"):
        F.conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), dilation=3)
    with pytest.raises(ShapeError, match="max_pool2d.*1x1x1x1"):
        F.max_pool2d(_t(1, 1, 1, 1), 2)


def test_dtype_mismatch():
    with pytest.raises(SvertkaError, match=r"dtype mismatch.*float64 2x3x8x8.*float32 4x3x3x3"):
        F.conv2d(_t(2, 3, 8, 8, dtype=np.float64), _t(4, 3, 3, 3))
    with pytest.raises(SvertkaError, match="dtype mismatch"):
        F.linear(_t(2, 3, dtype=np.float64), _t(4, 3))


def test_model_errors_name_the_layer():
    model = compile(create_model("lenet5"))
    with pytest.raises(ShapeError, match=r"Conv2d features\.0.*2x3x28x28"):
        model(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(SvertkaError, match=r"Conv2d features\.0: dtype mismatch"):
        model(np.zeros((2, 1, 28, 28), np.float64))
    with pytest.raises(ShapeError, match=r"Linear classifier\.0.*2x256.*120x400"):
        model(np.zeros((2, 1, 24, 24), np.float32))
    with pytest.raises(ShapeError, match=r"Conv2d features\.3.*smaller than the kernel"):
        model(np.zeros((2, 1, 8, 8), np.float32))


def test_bad_shapes_in_other_ops():
    with pytest.raises(ShapeError, match="batch_norm"):
        F.batch_norm(_t(2, 3), None, None, None, None, True)
    with pytest.raises(ShapeError, match="more than one value"):
        F.batch_norm(_t(1, 3, 1, 1), None, None, None, None, True)
    with pytest.raises(ShapeError, match=r"concat.*2x3x4x4.*2x3x5x4"):
        F.concat([_t(2, 3, 4, 4), _t(2, 3, 5, 4)])
    with pytest.raises(ShapeError, match="do not broadcast"):
        _t(2, 3) + _t(3, 2)
    with pytest.raises(ShapeError, match="cross_entropy"):
        F.cross_entropy(_t(2, 3), [0, 5])
    with pytest.raises(ShapeError, match="Residual"):
        body = n.Sequential.named(conv=n.Conv2d(4, 3, padding=1, bias=False))
        m = compile(n.Residual(body), (4, 5, 5))
        m.conv.weight.data = np.zeros((5, 4, 3, 3), np.float32)  # simulate a broken body
        m(np.zeros((1, 4, 5, 5), np.float32))


def test_state_dict_missing_extra_and_wrong_shapes():
    model = compile(create_model("resnet20"))
    sd = {k: v.copy() for k, v in model.state_dict().items()}
    del sd["layer1.0.bn1.running_var"]
    sd["layer9.weight"] = np.zeros(3)
    sd["fc.weight"] = np.zeros((11, 64), np.float32)
    with pytest.raises(WeightsError) as e:
        model.load_state_dict(sd)
    msg = str(e.value)
    assert "missing keys (1: layer1.0.bn1.running_var)" in msg
    assert "unexpected keys (1: layer9.weight)" in msg
    assert "fc.weight 11x64 (model has 10x64)" in msg
