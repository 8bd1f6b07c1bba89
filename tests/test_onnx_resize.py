"""ONNX Resize (and the old Upsample op) -> the spec's Upsample (issue 13, part 1).

- torch's nn.Upsample, every mode svertka has, exported with torch's exporter at
  the opsets that write it differently (Upsample-9, Resize-11's roi input,
  Resize-13/18): the import gives the expected leaf, and onnxruntime on the file,
  the torch module, and the imported model on both backends give the same output.
- A spec with Upsample layers, exported by svertka and imported back, is the same spec.
- What torch's Upsample cannot compute (cubic, antialias, other coordinate or
  nearest modes, scales on channels, computed scales, non-integer scales on an
  open size) is refused in one line naming the node.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import helper  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402
from torch import nn  # noqa: E402

from svertka.backends import numpy as nb  # noqa: E402
from svertka.backends.torch import compile as compile_torch  # noqa: E402
from svertka.errors import SpecError  # noqa: E402
from svertka.export import export_module, load_onnx  # noqa: E402
from svertka.spec import Conv2d, Network, ReLU, Sequential, Upsample, to_dict  # noqa: E402
from test_onnx import _graph_file  # noqa: E402

SHAPE = (3, 4, 6)  # (C, H, W): a non-square map catches a swapped H and W


def _upsample_leaves(net):
    return [nd for _, nd in net.named_nodes() if isinstance(nd, Upsample)]


def _ort(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _both_backends(imported, x):
    """The imported model's output on the torch backend and on the NumPy engine."""
    net = imported.network
    back = compile_torch(net).eval()
    back.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in imported.state_dict.items()})
    engine = nb.compile(net)
    engine.load_state_dict(imported.state_dict)
    engine.eval()
    with torch.no_grad():
        y_torch = back(torch.from_numpy(x)).numpy()
    with nb.no_grad():
        y_engine = engine(nb.Tensor(x)).data
    return y_torch, y_engine


# torch's nn.Upsample, the opset torch writes it at, and the leaf it must come back as
VARIANTS = {
    "nearest-x2-upsample9": (dict(scale_factor=2), 9, Upsample(scale_factor=2)),
    "nearest-x2x3-resize11": (dict(scale_factor=(2, 3)), 11, Upsample(scale_factor=(2, 3))),
    "nearest-x3-resize18": (dict(scale_factor=3), 18, Upsample(scale_factor=3)),
    "nearest-size-resize13": (dict(size=(7, 9)), 13, Upsample(size=(7, 9))),
    "nearest-x1.5-fixed-size": (dict(scale_factor=1.5), 18, Upsample(size=(6, 9))),
    "bilinear-x2x3-resize11": (dict(scale_factor=(2, 3), mode="bilinear"), 11,
                               Upsample(scale_factor=(2, 3), mode="bilinear")),
    "bilinear-x3-resize18": (dict(scale_factor=3, mode="bilinear", align_corners=False), 18,
                             Upsample(scale_factor=3, mode="bilinear")),
    "bilinear-corners-x2-resize13": (dict(scale_factor=2, mode="bilinear", align_corners=True), 13,
                                     Upsample(scale_factor=2, mode="bilinear", align_corners=True)),
    "bilinear-size-resize18": (dict(size=(9, 13), mode="bilinear"), 18,
                               Upsample(size=(9, 13), mode="bilinear")),
    "bilinear-corners-size-resize18": (dict(size=(10, 11), mode="bilinear", align_corners=True), 18,
                                       Upsample(size=(10, 11), mode="bilinear", align_corners=True)),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_torch_upsample_imports_and_computes_what_onnxruntime_computes(name, tmp_path):
    kwargs, opset, expected = VARIANTS[name]
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(**kwargs),
                           nn.Conv2d(4, 2, 3, padding=1)).eval()
    path = export_module(module, SHAPE, tmp_path / f"{name}.onnx", dynamic_batch=True, opset=opset)
    ops = {nd.op_type for nd in onnx.load(str(path)).graph.node}
    assert ("Upsample" if opset < 10 else "Resize") in ops

    imported = load_onnx(path)
    assert _upsample_leaves(imported.network) == [expected]

    x = np.random.default_rng(0).standard_normal((2, *SHAPE)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    got_ort = _ort(path, x)
    y_torch, y_engine = _both_backends(imported, x)
    assert ref.shape == (2, 2, *expected.output_shape(SHAPE)[1:])
    for got in (got_ort, y_torch, y_engine):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y_engine, got_ort, rtol=1e-5, atol=1e-5)


def test_a_spec_with_upsample_layers_comes_back_the_same(tmp_path):
    root = Sequential([
        ("stem", Conv2d(4, 3, padding=1)),
        ("up1", Upsample(scale_factor=2)),
        ("act", ReLU()),
        ("up2", Upsample(size=(13, 17), mode="bilinear")),
        ("mid", Conv2d(3, 3, padding=1)),
        ("up3", Upsample(scale_factor=(2, 1), mode="bilinear", align_corners=True)),
        ("up4", Upsample(size=(30, 20))),
        ("head", Conv2d(2, 1)),
    ])
    net = Network("ups", root, SHAPE, 2)
    torch.manual_seed(1)
    module = compile_torch(net).eval()
    path = export_module(module, SHAPE, tmp_path / "ups.onnx", dynamic_batch=True)
    imported = load_onnx(path)
    assert to_dict(imported.network.root) == to_dict(root)
    assert imported.network.input_shape == SHAPE

    x = np.random.default_rng(1).standard_normal((3, *SHAPE)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    y_torch, y_engine = _both_backends(imported, x)
    np.testing.assert_array_equal(y_torch, ref)  # the same layers and weights: the same numbers
    ours = nb.compile(net)
    ours.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})
    with nb.no_grad():
        np.testing.assert_array_equal(y_engine, ours(nb.Tensor(x)).data)
    np.testing.assert_allclose(_ort(path, x), ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------- forms torch does not write, built by hand


def _f32(name, values):
    return nh.from_array(np.asarray(values, np.float32), name)


def _i64(name, values):
    return nh.from_array(np.asarray(values, np.int64), name)


HAND_BUILT = {
    # opset 18's axes: scales for H and W only
    "axes": (18, dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor",
                      axes=[2, 3]), ["x", "", "s"], [_f32("s", [2, 3])], Upsample(scale_factor=(2, 3))),
    # pytorch_half_pixel is half_pixel where no output side is 1
    "pytorch-half-pixel": (13, dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
                           ["x", "", "", "z"], [_i64("z", [1, 3, 5, 12])],
                           Upsample(size=(5, 12), mode="bilinear")),
    # Resize-10: inputs (X, scales), nearest is floor(o / scale)
    "resize10": (10, dict(mode="nearest"), ["x", "s"], [_f32("s", [1, 1, 3, 2])],
                 Upsample(scale_factor=(3, 2))),
}


@pytest.mark.parametrize("name", HAND_BUILT)
def test_hand_built_resize_forms_agree_with_onnxruntime(name, tmp_path):
    opset, attrs, inputs, inits, expected = HAND_BUILT[name]
    node = helper.make_node("Resize", inputs, ["y"], name="/up/Resize", **attrs)
    path = _graph_file(tmp_path, name, [node], ["y"], inits, opset=opset)
    imported = load_onnx(path)
    assert _upsample_leaves(imported.network) == [expected]
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    got = _ort(path, x)
    assert got.shape == (1, *expected.output_shape((3, 8, 8)))
    for y in _both_backends(imported, x):
        np.testing.assert_allclose(y, got, rtol=1e-5, atol=1e-5)


REFUSED = {
    "cubic": (17, "Resize", dict(mode="cubic"), ["x", "", "s"], [_f32("s", [1, 1, 2, 2])], {},
              "has mode cubic, coordinate_transformation_mode half_pixel; svertka maps torch's nn.Upsample"),
    "open-size-non-integer": (
        17, "Resize", dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        ["x", "", "s"], [_f32("s", [1, 1, 1.5, 1.5])], dict(dims=(1, 3, "h", "w")),
        "scales H, W by [1.5, 1.5] on an image size the file leaves open"),
    "channels": (17, "Resize", dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                                    nearest_mode="floor"),
                 ["x", "", "s"], [_f32("s", [1, 2, 2, 2])], {},
                 "scales (N, C, H, W) by [1.0, 2.0, 2.0, 2.0]; svertka's Upsample scales H and W only"),
    "computed-sizes": (17, "Resize", dict(mode="linear"), ["x", "", "", "z"], [], {},
                       "computes its sizes from the image; svertka maps constant scales or sizes"),
    "computed-scales": (17, "Resize", dict(mode="linear"), ["x", "", "s"], [], {},
                        "computes its scales from the image; svertka maps constant scales or sizes"),
    "non-whole": (17, "Resize", dict(mode="linear"), ["x", "", "s"], [_f32("s", [1, 1, 1.3, 1.5])], {},
                  "scales H, W by [1.3, 1.5], which turns the 8x8 map into 10.4 x 12 pixels"),
    "zero": (17, "Resize", dict(mode="linear"), ["x", "", "s"], [_f32("s", [1, 1, 0, 2])], {},
             "scales H, W by [0.0, 2.0]; svertka maps positive scales"),
    "antialias": (18, "Resize", dict(mode="linear", antialias=1), ["x", "", "s"], [_f32("s", [1, 1, 2, 2])],
                  {}, "sets antialias=1"),
    "nearest-mode": (17, "Resize", dict(mode="nearest", coordinate_transformation_mode="asymmetric"),
                     ["x", "", "s"], [_f32("s", [1, 1, 2, 2])], {},
                     "has mode nearest, nearest_mode round_prefer_floor, coordinate_transformation_mode "
                     "asymmetric"),
    "crop": (17, "Resize", dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"),
             ["x", "r", "s"], [_f32("r", [0, 0, 0, 0, 1, 1, 1, 1]), _f32("s", [1, 1, 2, 2])], {},
             "coordinate_transformation_mode tf_crop_and_resize"),
    "to-one-row": (17, "Resize", dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
                   ["x", "", "", "z"], [_i64("z", [1, 3, 1, 16])], {},
                   "to a side of 1 with pytorch_half_pixel"),
    "old-linear": (9, "Upsample", dict(mode="linear"), ["x", "s"], [_f32("s", [1, 1, 2, 2])], {},
                   "has mode linear with Upsample-9's coordinates o / scale"),
}


def _computed(name):
    """Arithmetic on the image's shape, not a constant: sizes = (N, C) ++ 2 * (H, W), or
    scales = (1, 1, 16, 16) / shape, as converters write a resize to a target size."""
    if name == "computed-sizes":
        return [helper.make_node("Shape", ["x"], ["shape"], name="/up/Shape"),
                helper.make_node("Slice", ["shape", "lo", "mid"], ["nc"], name="/up/Slice"),
                helper.make_node("Slice", ["shape", "mid", "hi"], ["hw"], name="/up/Slice_1"),
                helper.make_node("Mul", ["hw", "two"], ["hw2"], name="/up/Mul"),
                helper.make_node("Concat", ["nc", "hw2"], ["z"], name="/up/Concat", axis=0)], [
            _i64("lo", [0]), _i64("mid", [2]), _i64("hi", [4]), _i64("two", [2])]
    if name == "computed-scales":
        return [helper.make_node("Shape", ["x"], ["shape"], name="/up/Shape"),
                helper.make_node("Cast", ["shape"], ["fshape"], name="/up/Cast", to=onnx.TensorProto.FLOAT),
                helper.make_node("Div", ["target", "fshape"], ["s"], name="/up/Div")], [
            _f32("target", [1, 3, 16, 16])]
    return [], []


@pytest.mark.parametrize("name", REFUSED)
def test_what_torch_upsample_cannot_compute_is_refused_in_one_line(name, tmp_path):
    opset, op_type, attrs, inputs, inits, graph_kwargs, needle = REFUSED[name]
    nodes, extra = _computed(name)
    nodes = nodes + [helper.make_node(op_type, inputs, ["y"], name=f"/up/{op_type}", **attrs)]
    path = _graph_file(tmp_path, name, nodes, ["y"], inits + extra, opset=opset, **graph_kwargs)
    with pytest.raises(SpecError) as e:
        load_onnx(path, input_size=8)
    message = str(e.value)
    assert f"node /up/{op_type} ({op_type}) " in message and needle in message, message
    assert "\n" not in message


def test_sizes_from_the_image_size_are_refused_where_the_file_leaves_it_open(tmp_path):
    """torch writes size=(7, 9) as Concat(Shape(x)[:2], [7, 9]): fine at any size. sizes taken
    from the image's own H and W would be a different model at another size: refused."""
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="/up/Shape"),
             helper.make_node("Slice", ["shape", "lo", "hi"], ["hw"], name="/up/Slice"),  # (H, W)
             helper.make_node("Concat", ["nc", "hw"], ["z"], name="/up/Concat", axis=0),
             helper.make_node("Resize", ["x", "", "", "z"], ["y"], name="/up/Resize", mode="linear")]
    inits = [_i64("lo", [2]), _i64("hi", [4]), _i64("nc", [1, 3])]
    fixed = _graph_file(tmp_path, "fixed", nodes, ["y"], inits)
    assert _upsample_leaves(load_onnx(fixed).network) == [Upsample(size=(8, 8), mode="bilinear")]
    open_ = _graph_file(tmp_path, "open", nodes, ["y"], inits, dims=(1, 3, "h", "w"))
    with pytest.raises(SpecError) as e:
        load_onnx(open_, input_size=8)
    assert "computes its sizes from the image size, which the file leaves open" in str(e.value)
    assert "\n" not in str(e.value)
