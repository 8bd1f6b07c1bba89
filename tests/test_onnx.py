"""ONNX export and import (issue 15, "What it must show" 6-8).

- Export: onnxruntime's outputs match the torch backend's, relative error
  max|ort - torch| / max|torch| < 1e-4, at batch 1 and 3 of one file written
  with --dynamic-batch, at the model's smallest input torch's exporter can write.
- Import: spec -> ONNX -> spec gives the same layers (paths, types, shapes,
  params, MACs, receptive fields), and the same outputs bit for bit on both
  backends with the same weights.
- A hand-written nn.Module exported by plain torch.onnx.export: `svertka
  summary` gives its totals, counted here independently with forward hooks.
- Bad files: one line, exit 2.

Every zoo model runs in the slow suite (CI); three run by default.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from svertka.backends import numpy as nb  # noqa: E402
from svertka.backends.torch import compile as compile_torch  # noqa: E402
from svertka.backends.torch import save_weights  # noqa: E402
from svertka.cli import main  # noqa: E402
from svertka.errors import DataError, SpecError  # noqa: E402
from svertka.export import export_module, load_onnx  # noqa: E402
from svertka.export.onnx_export import exportable_input_size  # noqa: E402
from svertka.spec import trace  # noqa: E402
from svertka.zoo import create_model, list_models  # noqa: E402

FAST = ["lenet5", "resnet18", "mobilenet_v2"]  # plain chain, residual + downsample, Clip + nested body
# Layers torch's exporter decomposes into Mul/Slice/Pad/Gather/If arithmetic that no common-operator
# importer can read back as one layer (ScaledTanh, Subsample, SelectChannels, RBFOutput, ShortcutA, and
# LocalResponseNorm, which torch writes as Pow/AveragePool instead of ONNX's LRN): import refuses them.
NOT_IMPORTABLE = {"lenet5_1998", "alexnet_2012", "googlenet_2014",
                  "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}


def _randomise_batchnorm(module, gen):
    """Fresh BatchNorm is the identity in eval mode; give it statistics so it is tested."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def _trained_like(module, shape, gen):
    """Weights under which a signal survives 100 layers, as in a trained net: He-normal
    convs and linears, and BatchNorm statistics measured on data (torch's default init
    with fresh statistics shrinks the signal about 3x a layer: deep nets would output
    their last bias for every image, and every comparison would be blind)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, generator=gen)
                if m.bias is not None:
                    m.bias.normal_(0, 0.01, generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # a plain average over the calibration batches
                m.weight.uniform_(0.2, 0.6, generator=gen)  # keeps a 50-block residual sum tame
                m.bias.normal_(0, 0.1, generator=gen)
        module.train()
        module(torch.randn(64, *shape, generator=gen))
        module.eval()
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                # normalise by (about) the root mean square, not the spread about a large mean: x - mean
                # cancels digits, and 1/std of a near-constant channel amplifies float32 rounding 1000x
                m.momentum = 0.1
                m.running_var.add_(0.99 * m.running_mean ** 2)
                m.running_mean.mul_(0.1)
                m.running_var.clamp_(min=0.1 * float(m.running_var.mean()))


def _rows(net, shape):
    _, rows = trace(net, shape)
    return {r.name: (r.type, r.in_shape, r.out_shape, r.params, r.buffers, r.macs, r.rf.as_dict())
            for r in rows}


def _export_zoo_model(net, side, tmp_path):
    shape = (net.input_shape[0], side, side)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    module = compile_torch(net, shape)
    _trained_like(module, shape, gen)
    path = export_module(module, shape, tmp_path / f"{net.name}-{side}.onnx", dynamic_batch=True,
                         metadata={"model": net.name, "classes": [str(i) for i in range(net.num_classes)]})
    rng = np.random.default_rng(0)
    xs = {b: rng.standard_normal((b, *shape)).astype(np.float32) for b in (1, 3)}
    with torch.no_grad():
        refs = {b: module(torch.from_numpy(x)).numpy() for b, x in xs.items()}
    return module, shape, path, xs, refs


def check_zoo_model(name, tmp_path):
    net = create_model(name)
    side = exportable_input_size(net)
    module, shape, path, xs, refs = _export_zoo_model(net, side, tmp_path)

    # 6. onnxruntime agrees with the torch backend, batch 1 and 3 from one file
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b, x in xs.items():
        got = session.run(None, {"input": x})[0]
        assert got.shape == refs[b].shape
        rel = np.abs(got - refs[b]).max() / np.abs(refs[b]).max()
        assert rel < 1e-4, f"{name} batch {b}: relative error {rel:.2e}"

    if name in NOT_IMPORTABLE:
        with pytest.raises(SpecError) as e:
            load_onnx(path)
        assert "node " in str(e.value) and "\n" not in str(e.value)
        return

    # 7. round trip: every layer the same (Dropout and Identity are identities at inference: the exporter
    # omits them, so an Identity branch of a Concat, a U-Net's skip, comes back under another name)
    if np.allclose(refs[3][0], refs[3][1]):
        # at 1x1 px some deep nets (MobileNet v1) output the same for every image, which would make
        # the output comparison below blind: the round trip then runs at 32 px
        module, shape, path, xs, refs = _export_zoo_model(net, max(side, 32), tmp_path)
    assert not np.allclose(refs[3][0], refs[3][1]), "the outputs do not depend on the input: a weak test"
    imported = load_onnx(path)
    before = {k: v for k, v in _rows(net, shape).items() if v[0] not in ("Dropout", "Identity")}
    for k, v in before.items():  # an adaptive pool to a size > 1 is written as the AveragePool it equals
        if v[0] == "AdaptiveAvgPool2d" and v[2][1:] != (1, 1):
            before[k] = ("AvgPool2d", *v[1:])
    after = {k: v for k, v in _rows(imported.network, shape).items() if v[0] != "Identity"}
    assert after == before
    assert imported.meta["classes"] == [str(i) for i in range(net.num_classes)]

    # ... and the same outputs on both backends, bit for bit, with the same weights
    back = compile_torch(imported.network, shape).eval()
    back.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in imported.state_dict.items()})
    with torch.no_grad():
        np.testing.assert_array_equal(back(torch.from_numpy(xs[3])).numpy(), refs[3])
    state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    ours, theirs = nb.compile(net, shape), nb.compile(imported.network, shape)
    ours.load_state_dict(state)
    theirs.load_state_dict(imported.state_dict)
    ours.eval(), theirs.eval()
    with nb.no_grad():  # one image: the engine runs VGG at 224 px for minutes per batch of 3 here
        y_ours, y_theirs = ours(nb.Tensor(xs[1])).data, theirs(nb.Tensor(xs[1])).data
    np.testing.assert_array_equal(y_theirs, y_ours)
    assert np.abs(y_ours - refs[1]).max() / np.abs(refs[1]).max() < 1e-4  # engine vs torch, as above


@pytest.mark.parametrize("name", FAST)
def test_zoo_model_exports_and_comes_back(name, tmp_path):
    check_zoo_model(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [m for m in list_models() if m not in FAST])
def test_every_zoo_model_exports_and_comes_back(name, tmp_path):
    check_zoo_model(name, tmp_path)


# ---------------------------------------------------------------- svertka export


def _metadata(path):
    return {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}


def test_export_cli_writes_a_checked_file_with_preprocessing_metadata(tmp_path, capsys):
    out = tmp_path / "lenet.onnx"
    assert main(["export", "lenet5", "--out", str(out), "--opset", "17"]) == 0
    assert "onnx.checker passed" in capsys.readouterr().out
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    meta = _metadata(out)
    net = create_model("lenet5")
    assert meta["svertka.mean"] == list(net.mean) and meta["svertka.std"] == list(net.std)
    assert meta["svertka.input_shape"] == [1, 28, 28] and len(meta["svertka.classes"]) == 10
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_value == 1  # fixed batch without --dynamic-batch


def test_export_of_a_run_folder_carries_its_weights_and_classes(tmp_path, capsys):
    from svertka.spec import save_network
    from svertka.train.checkpoint import save_checkpoint

    net = create_model("lenet5")
    torch.manual_seed(3)
    module = compile_torch(net).eval()
    run = tmp_path / "run"
    run.mkdir()
    save_network(net, run / "model.json")
    classes = [f"class{i}" for i in range(10)]
    save_checkpoint(run / "best.safetensors", {k: v.numpy() for k, v in module.state_dict().items()},
                    {"model": "lenet5", "num_classes": 10, "input_shape": [1, 28, 28], "backend": "torch",
                     "classes": classes, "mean": [0.25], "std": [0.5], "data": "fashion-mnist-mini"})
    out = tmp_path / "run.onnx"
    assert main(["export", str(run), "--out", str(out), "--dynamic-batch"]) == 0
    meta = _metadata(out)
    assert meta["svertka.classes"] == classes and meta["svertka.mean"] == [0.25]
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-4
    # and the import gives the run's preprocessing back
    imported = load_onnx(out)
    assert imported.network.mean == (0.25,) and imported.meta["classes"] == classes
    # svertka eval reads the run's dataset from the file and runs it on the engine
    capsys.readouterr()
    results = []
    for source in (out, run):  # the imported file and the run itself give the same accuracy
        argv = ["eval", str(source), "--backend", "numpy", "--limit", "200", "--json", "--png", "none"]
        assert main(argv) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["n"] == 200 and results[0] == results[1]


def test_export_errors_are_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for argv, needle in [
        (["export", "lenet5", "--out", str(tmp_path / "a.onnx"), "--opset", "30"], "--opset 30 is outside"),
        (["export", "nosuchnet", "--out", str(tmp_path / "a.onnx")], "unknown model 'nosuchnet'"),
        (["export", "lenet5", "--format", "tflite", "--out", "a"], "invalid choice: 'tflite'"),
        (["export", "lenet5"], "--out"),
        (["export", str(run), "--weights", "w.safetensors", "--out", "a.onnx"],
         "is a run folder with its own"),
        (["export", str(run), "--out", str(tmp_path / "a.onnx")], "holds no best.safetensors"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "a.onnx").exists()


def test_export_with_weights_file(tmp_path):
    net = create_model("cnn2")
    torch.manual_seed(5)
    module = compile_torch(net).eval()
    save_weights(module, tmp_path / "w.safetensors")
    out = tmp_path / "cnn2.onnx"
    assert main(["export", "cnn2", "--weights", str(tmp_path / "w.safetensors"), "--out", str(out)]) == 0
    imported = load_onnx(out)
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(imported.state_dict[k], v.numpy())


# ------------------------------------------------------ a model svertka did not write


class HandWritten(nn.Module):
    """Residual, concatenation, squeeze-and-excitation, a transposed conv, BN and a
    view(x.size(0), -1): the common CNN operators, written as anyone would."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.res = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU6(), nn.Conv2d(16, 16, 1))
        self.left, self.right = nn.Conv2d(16, 8, 1), nn.Conv2d(16, 8, 3, padding=2, dilation=2)
        self.fc1, self.fc2 = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.up = nn.ConvTranspose2d(16, 6, 2, stride=2)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(6 * 16 * 16, 5)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.res(x))
        x = torch.cat([self.left(x), F.max_pool2d(self.right(x), 3, 1, 1)], 1)
        x = x * F.hardsigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))  # MobileNetV3's SE
        x = self.pool(self.up(x))
        return self.head(x.view(x.size(0), -1))


def _hook_counts(module, x):
    """Params and MACs of a plain nn.Module, counted with forward hooks (conv and
    linear only, bias excluded), independently of svertka's spec rules."""
    macs = []

    def hook(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            macs.append(out.numel() // out.shape[0] * m.in_channels // m.groups
                        * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.ConvTranspose2d):
            macs.append(inputs[0].numel() // inputs[0].shape[0] * m.out_channels // m.groups
                        * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.Linear):
            macs.append(m.in_features * m.out_features)

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    with torch.no_grad():
        module(x)
    for h in handles:
        h.remove()
    return sum(p.numel() for p in module.parameters()), sum(macs)


def test_summary_of_a_plain_torch_export_of_a_hand_written_module(tmp_path, capsys):
    torch.manual_seed(0)
    model = HandWritten().eval()
    _randomise_batchnorm(model, torch.Generator().manual_seed(1))
    x = torch.randn(2, 3, 16, 16)
    path = tmp_path / "hand.onnx"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # plain export (dynamo=False: the default dynamo exporter needs onnxscript, not installed)
        torch.onnx.export(model, (x[:1],), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}})
    params, macs = _hook_counts(model, x[:1])
    # torch's default (eval) export folds the BatchNorm into the conv before it: the file has
    # the conv's 16 new biases and not the BatchNorm's 2 x 16 affine parameters
    assert not any(n.op_type == "BatchNormalization" for n in onnx.load(str(path)).graph.node)
    params_in_file = params - 2 * 16 + 16

    assert main(["summary", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["total"] == {**summary["total"], "params": params_in_file, "macs": macs}
    assert summary["output_shape"] == [5]
    types = {la["type"] for la in summary["layers"]}
    assert {"Conv2d", "ConvTranspose2d", "ReLU6", "HardSigmoid", "MaxPool2d", "AvgPool2d", "Flatten",
            "Linear"} <= types

    # the imported model runs on both backends and computes what the module computes
    imported = load_onnx(path)
    net = imported.network
    assert {type(nd).__name__ for _, nd in net.named_nodes()} >= {"Residual", "Concat", "Gate"}
    with torch.no_grad():
        ref = model(x).numpy()
    back = compile_torch(net).eval()
    back.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in imported.state_dict.items()})
    with torch.no_grad():
        np.testing.assert_allclose(back(x).numpy(), ref, rtol=1e-4, atol=1e-5)
    engine = nb.compile(net)
    engine.load_state_dict(imported.state_dict)
    engine.eval()
    with nb.no_grad():
        np.testing.assert_allclose(engine(nb.Tensor(x.numpy())).data, ref, rtol=1e-4, atol=1e-5)


def test_a_file_without_node_names_imports_with_numbered_layers(tmp_path):
    """Other tools name nodes differently (or not at all): the structure and the
    totals come from the graph alone; only the layer names fall back to numbers."""
    torch.manual_seed(0)
    model = HandWritten().eval()
    path = tmp_path / "named.onnx"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(path), dynamo=False)
    proto = onnx.load(str(path))
    for node in proto.graph.node:
        node.name = ""
    for t in proto.graph.initializer:  # and weights named by number, as many converters write them
        old = t.name
        t.name = f"w{abs(hash(old)) % 10**6}"
        for node in proto.graph.node:
            node.input[:] = [t.name if v == old else v for v in node.input]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    named, bare = load_onnx(path), load_onnx(tmp_path / "bare.onnx")
    _, rows_named = trace(named.network)
    _, rows_bare = trace(bare.network)
    def strip(rows):
        return [(r.type, r.out_shape, r.params, r.macs, r.rf.as_dict()) for r in rows if r.leaf]

    assert strip(rows_bare) == strip(rows_named)
    assert any(r.name == "stem" for r in rows_named) and not any(r.name == "stem" for r in rows_bare)
    x = torch.randn(2, 3, 16, 16)
    engine = nb.compile(bare.network)
    engine.load_state_dict(bare.state_dict)
    engine.eval()
    with torch.no_grad():
        ref = model(x).numpy()
    with nb.no_grad():
        np.testing.assert_allclose(engine(nb.Tensor(x.numpy())).data, ref, rtol=1e-4, atol=1e-5)


def test_a_file_with_an_open_image_size_takes_it_from_input(tmp_path, capsys):
    from svertka.analysis import analyze
    from svertka.spec import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, Network, ReLU, seq

    net = Network("open", seq(Conv2d(8, 3, 2, 1), BatchNorm2d(), ReLU(), AdaptiveAvgPool2d(1), Flatten(),
                              Linear(4)), (3, 32, 32), 4)
    path = tmp_path / "open.onnx"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(compile_torch(net).eval(), (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False,
                          training=torch.onnx.TrainingMode.PRESERVE, input_names=["x"],
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    assert main(["summary", str(path)]) == 2
    assert "leaves the image size open; give it, e.g. --input 3x224x224" in capsys.readouterr().err
    assert main(["summary", str(path), "--input", "3x40x40", "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    expected = analyze(net, (3, 40, 40))
    assert (total["params"], total["macs"]) == (expected.params, expected.macs)


def test_predict_runs_an_imported_model_on_both_backends(tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    out = tmp_path / "cnn2.onnx"
    assert main(["export", "cnn2", "--out", str(out)]) == 0
    image = tmp_path / "digit.png"
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save(image)
    probs = {}
    for backend in ("numpy", "torch"):
        capsys.readouterr()
        assert main(["predict", "-w", str(out), str(image), "--backend", backend, "--json", "-k", "10",
                     "--invert", "no"]) == 0
        top = json.loads(capsys.readouterr().out)[0]["top"]
        probs[backend] = {t["index"]: t["prob"] for t in top}
    assert probs["numpy"].keys() == probs["torch"].keys() == set(range(10))
    for i in range(10):
        assert probs["numpy"][i] == pytest.approx(probs["torch"][i], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("alpha,beta", [(1.0 / 6.0, 0.5), (0.2, 0.5)])
def test_hard_sigmoid_layer_agrees_between_backends(alpha, beta):
    """HardSigmoid, the spec layer ONNX's HardSigmoid maps to: torch's nn.Hardsigmoid
    (alpha 1/6) or a clamp, against the engine, forward and gradient."""
    from svertka.spec import HardSigmoid

    node = HardSigmoid(alpha, beta)
    x = np.linspace(-8, 8, 2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4) + 0.01  # off the kinks
    module = compile_torch(node, (3, 4, 4))
    assert isinstance(module, nn.Hardsigmoid) == (alpha == 1.0 / 6.0)
    xt = torch.from_numpy(x).requires_grad_()
    module(xt).sum().backward()
    xe = nb.Tensor(x, requires_grad=True)
    ye = nb.compile(node, (3, 4, 4))(xe)
    ye.sum().backward()
    np.testing.assert_allclose(ye.data, module(xt).detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(xe.grad, xt.grad.numpy(), rtol=1e-6, atol=1e-7)
    assert 0 < ye.data.min() < ye.data.max() < 1 or {0.0, 1.0} <= set(np.unique(ye.data))


# ----------------------------------------------------------------------- bad files


def _graph_file(tmp_path, name, nodes, outputs, initializers=(), opset=17, dims=(1, 3, 8, 8)):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))  # a str dim is left open
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["n", "c", "h", "w"]) for o in outputs]
    graph = helper.make_graph(nodes, name, [x], outs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _conv_weight():
    return onnx.numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "conv.weight")


def test_bad_files_get_one_line_and_exit_2(tmp_path, capsys):
    from onnx import helper

    lstm = _graph_file(tmp_path, "lstm", [
        helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="/conv/Conv"),
        helper.make_node("LSTM", ["c", "W", "R"], ["y"], name="/rnn/LSTM", hidden_size=2),
    ], ["y"], [_conv_weight(), onnx.numpy_helper.from_array(np.ones((1, 8, 6), np.float32), "W"),
               onnx.numpy_helper.from_array(np.ones((1, 8, 2), np.float32), "R")])
    two = _graph_file(tmp_path, "two", [
        helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="/conv/Conv"),
        helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
    ], ["c", "r"], [_conv_weight()])
    whole = export_module(compile_torch(create_model("lenet5")), (1, 28, 28), tmp_path / "whole.onnx")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")

    for path, needle in [(lstm, "node /rnn/LSTM (LSTM) is not an operator svertka maps"),
                         (two, "the graph has 2 outputs (c, r)"),
                         (cut, "is not a readable ONNX file"),
                         (empty, "holds no graph"),
                         (tmp_path / "missing.onnx", "no such ONNX file")]:
        for command in ("summary", "rf"):
            code = main([command, str(path)])
            err = capsys.readouterr().err
            assert code == 2, (path, err)
            assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_unmappable_graph_shapes_are_refused_naming_the_node(tmp_path):
    from onnx import helper

    w = _conv_weight()
    cases = {
        # a constant times the image is no layer (a scale would need its own spec type)
        "scale": ([helper.make_node("Mul", ["x", "k"], ["y"], name="/scale/Mul")], ["y"],
                  [w, onnx.numpy_helper.from_array(np.float32(2.0), "k")], "node /scale/Mul (Mul)"),
        # Clip to [0, 1] is neither ReLU nor ReLU6
        "clip": ([helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="/c/Conv"),
                  helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="/act/Clip")], ["y"],
                 [w, onnx.numpy_helper.from_array(np.float32(0), "lo"),
                  onnx.numpy_helper.from_array(np.float32(1), "hi")],
                 "node /act/Clip (Clip) clips to [0.0, 1.0]"),
        # asymmetric padding has no spec equivalent
        "pads": ([helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="/c/Conv", pads=[0, 0, 1, 1])],
                 ["y"], [w], "node /c/Conv (Conv) pads [0, 0, 1, 1]"),
        # two branches multiplied, neither of them the input itself
        "product": ([helper.make_node("Relu", ["x"], ["a"], name="/a/Relu"),
                     helper.make_node("Sigmoid", ["x"], ["b"], name="/b/Sigmoid"),
                     helper.make_node("Mul", ["a", "b"], ["y"], name="/m/Mul")], ["y"], [w],
                    "node /m/Mul (Mul) multiplies two computed branches"),
    }
    for name, (nodes, outs, inits, needle) in cases.items():
        path = _graph_file(tmp_path, name, nodes, outs, inits)
        with pytest.raises((SpecError, DataError)) as e:
            load_onnx(path)
        assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_branch_the_output_does_not_use_is_left_out(tmp_path):
    from onnx import helper

    path = _graph_file(tmp_path, "dead", [
        helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="/conv/Conv"),
        helper.make_node("Sigmoid", ["c"], ["unused"], name="/probe/Sigmoid"),
        helper.make_node("Relu", ["c"], ["y"], name="/relu/Relu"),
    ], ["y"], [_conv_weight()])
    imported = load_onnx(path)
    assert [(p, type(nd).__name__) for p, nd in imported.network.named_nodes()] == [
        ("", "Sequential"), ("conv", "Conv2d"), ("relu", "ReLU")]
    assert imported.state_dict["conv.weight"].shape == (4, 3, 3, 3)
