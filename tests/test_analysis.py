"""Analysis read off the spec: receptive fields, shapes, bad input."""
import json

import pytest

from svertka.analysis import analyze, min_input_size, stacked_convs_to_see
from svertka.errors import ShapeError, SpecError
from svertka.spec import (
    Concat,
    Conv2d,
    MaxPool2d,
    Network,
    ReLU,
    Residual,
    from_dict,
    load_network,
    network_from_dict,
    network_to_dict,
    save_network,
    seq,
    to_dict,
)
from svertka.zoo import create_model, list_models


def rf(name):
    return analyze(create_model(name)).feature_rf


def test_rf_anchors_from_araujo_distill_2019():
    v = rf("vgg16")
    assert (v.size, v.stride, v.padding) == ((212, 212), (32, 32), (90, 90))
    a = rf("alexnet")
    assert (a.size[0], a.stride[0]) == (195, 32)
    m = rf("mobilenet_v1")
    assert (m.size[0], m.stride[0]) == (315, 32)


def test_lecture_cat_question():
    assert stacked_convs_to_see(100, 3) == 50
    # and the analysis agrees on a stack of 50 convs
    net = seq(*[Conv2d(1, 3, padding=1) for _ in range(50)])
    assert analyze(net, (1, 128, 128)).feature_rf.size == (101, 101)


def test_dilation_and_stride_recurrence():
    net = seq(Conv2d(4, 3, stride=2, padding=1), Conv2d(4, 3, dilation=2, padding=2),
              MaxPool2d(2))
    f = analyze(net, (1, 32, 32)).feature_rf
    # r: 1 + 2*1 = 3; + (5-1)*2 = 11; + (2-1)*2 = 13. S = 2*1*2 = 4. P = 1 + 2*2 = 5
    assert (f.size[0], f.stride[0], f.padding[0]) == (13, 4, 5)


def test_misaligned_paths_are_flagged():
    aligned = Concat([("a", Conv2d(2, 3, padding=1)), ("b", Conv2d(2, 1))])
    assert not analyze(aligned, (1, 8, 8)).feature_rf.misaligned
    skew = Concat([("a", Conv2d(2, 3, padding=0)), ("b", Conv2d(2, 1, padding=0))])
    with pytest.raises(ShapeError, match="differ in spatial size"):
        analyze(skew, (1, 8, 8))
    # 1x1/2 sees pixel 2i, 2x2/2 sees 2i..2i+1: same output size, centres half a pixel apart
    shifted = Concat([("a", Conv2d(2, 1, stride=2)), ("b", Conv2d(2, 2, stride=2))])
    f = analyze(shifted, (1, 8, 8)).feature_rf
    assert f.misaligned and (f.size, f.padding) == ((2, 2), (0, 0))  # the union of both paths
    res = Residual(seq(Conv2d(1, 3, padding=2), Conv2d(1, 3, padding=0)))
    f = analyze(res, (1, 8, 8)).feature_rf
    assert not f.misaligned and f.size == (5, 5)


def test_residual_shape_mismatch_explains():
    bad = Residual(seq(Conv2d(8, 3, stride=2, padding=1)))
    with pytest.raises(ShapeError, match="shortcut"):
        analyze(bad, (4, 8, 8))


def test_too_small_input_names_smallest_size():
    net = create_model("alexnet")
    with pytest.raises(ShapeError, match="smallest input this model takes is 3x63x63"):
        analyze(net, (3, 32, 32))
    assert min_input_size(net, 3) == 63
    analyze(net, (3, 63, 63))


def test_groups_must_divide_channels():
    with pytest.raises(ShapeError, match="not divisible by groups"):
        analyze(seq(Conv2d(4, 3, groups=2)), (3, 8, 8))
    with pytest.raises(SpecError):
        Conv2d(5, 3, groups=2)


def test_ceil_mode_matches_torch_rule():
    from svertka.spec import conv_out
    assert conv_out(112, 3, 2, 0, ceil=True) == 56   # googlenet maxpool1
    assert conv_out(14, 3, 2, 0, ceil=True) == 7
    assert conv_out(5, 2, 2, 1, ceil=True) == 3      # last window must start inside


@pytest.mark.parametrize("name", list_models())
def test_json_round_trip(name, tmp_path):
    net = create_model(name)
    back = network_from_dict(json.loads(json.dumps(network_to_dict(net))))
    assert to_dict(back.root) == to_dict(net.root)
    a, b = analyze(net), analyze(back)
    assert (a.params, a.macs, a.feature_rf) == (b.params, b.macs, b.feature_rf)


def test_load_network_file_and_errors(tmp_path):
    net = Network("tiny", seq(Conv2d(4, 3), ReLU()), (1, 8, 8), 0)
    save_network(net, tmp_path / "n.json")
    assert analyze(load_network(tmp_path / "n.json")).output_shape == (4, 6, 6)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_network(tmp_path / "bad.json")
    with pytest.raises(SpecError, match="unknown layer type 'Conv3d'"):
        from_dict({"type": "Conv3d"})
    with pytest.raises(SpecError, match="no field 'kernel'"):
        from_dict({"type": "Conv2d", "out_channels": 3, "kernel": 3})


def test_summary_json_layout():
    d = analyze(create_model("resnet18")).as_dict()
    assert set(d) >= {"name", "input", "layers", "total"}
    assert set(d["total"]) == {"params", "macs", "activation_bytes"}
    layer = d["layers"][0]
    assert set(layer) >= {"name", "type", "output_shape", "params", "macs", "rf"}
    assert d["layers"][0]["name"] == "conv1"
    assert sum(la["params"] for la in d["layers"]) == d["total"]["params"] == 11_689_512


def test_torchvision_names():
    names = {n for n, _ in create_model("resnet50").named_nodes()}
    assert "layer1.0.downsample.0" in names and "layer4.2.conv3" in names
    names = {n for n, _ in create_model("mobilenet_v2").named_nodes()}
    assert "features.1.conv.0.0" in names and "features.2.conv.0.0" in names
    names = {n for n, _ in create_model("efficientnet_b0").named_nodes()}
    assert "features.1.0.block.1.fc1" in names and "features.2.1.block.0.0" in names
    names = {n for n, _ in create_model("googlenet").named_nodes()}
    assert "inception3a.branch2.0.conv" in names
