"""The `svertka` command: output, JSON layout and one-line errors."""
import json
import subprocess
import sys

import pytest

import svertka
from svertka.cli import build_parser, main, parse_shape, use_numpy_without_torch
from svertka.errors import UsageError


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json(capsys):
    code, out, _ = run(capsys, "models", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["vgg16"]["params"] == 138_357_544 and rows["vgg16"]["macs"] == 15_470_264_320
    assert rows["vgg16"]["rf"] == {"size": 212, "stride": 32, "padding": 90}
    assert rows["mobilenet_v2"]["input"] == [3, 224, 224]
    assert rows["alexnet"]["reference"]["source"].startswith("torchvision")
    assert isinstance(rows["lenet5"]["params"], int)


def test_models_pattern(capsys):
    code, out, _ = run(capsys, "models", "vgg1[13]*")
    assert code == 0 and "vgg11_bn" in out and "vgg16" not in out and "FLOPs = 2 x MACs" in out


def test_summary_json(capsys):
    code, out, _ = run(capsys, "summary", "lenet5", "--input", "1x32x32", "--json")
    d = json.loads(out)
    assert d["input"] == [1, 32, 32]
    assert d["layers"][0]["output_shape"] == [6, 32, 32]
    assert d["total"]["params"] == sum(layer["params"] for layer in d["layers"])


def test_summary_of_a_training_net(capsys):
    # the nets `svertka train --model` accepts are analysable too; cnn2 is the Keras mnist_cnn
    code, out, _ = run(capsys, "summary", "cnn2", "--json")
    assert code == 0 and json.loads(out)["total"]["params"] == 1_199_882


def test_summary_text(capsys):
    code, out, _ = run(capsys, "summary", "resnet18")
    assert code == 0 and "layer4.1.conv2" in out and "Total params: 11,689,512" in out


def test_rf_and_params(capsys):
    _, out, _ = run(capsys, "rf")
    assert "n = 50" in out
    _, out, _ = run(capsys, "params", "conv", "--in", "32", "--out", "64", "-k", "3")
    assert "3*3*32*64 + 64 = 18,496" in out
    _, out, _ = run(capsys, "rf", "vgg16", "--layer", "features.30")
    assert "212 px" in out and "stride 32" in out and "padding 90" in out


def test_compare_table8(capsys):
    _, out, _ = run(capsys, "compare")
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line[:1].isalpha()}
    assert lines["mobilenet_v1"][2] == "569" and lines["googlenet_2014"][3] == "1,550"


@pytest.mark.parametrize("argv,needle", [
    (["summary", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["summary", "alexnet", "--input", "3x32x32"], "smallest input this model takes is 3x63x63"),
    (["summary", "alexnet", "--input", "3by224"], "malformed --input"),
    (["summary", "alexnet", "--input", "0x5x5"], "zero size"),
    (["models", "zzz*"], "no model matches"),
    (["params", "conv", "--in", "3", "--out", "4", "--groups", "2"], "not divisible"),
    (["summary", "resnet18", "--num-classes", "-3"], "positive integer"),
    (["frobnicate"], "invalid choice"),
    (["rf", "vgg16", "--layer", "features.99"], "has no layer"),
    (["summary", "missing.json"], "does not exist"),
])
def test_errors_are_one_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_parse_shape():
    # CxHxW, HxW or one size; without C the model's channel count is kept (None here)
    assert parse_shape("3x224x224") == (3, 224, 224)
    assert parse_shape("28x28") == (None, 28, 28)
    assert parse_shape("1x28x28") == (1, 28, 28)
    assert parse_shape("64") == (None, 64, 64)
    for bad in ("a", "1x2x3x4", "3x", "-3x5", "2.5"):
        with pytest.raises(UsageError):
            parse_shape(bad)


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "svertka.cli", "summary", "efficientnet_b7"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Total params: 66,347,960" in out.stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    out = capsys.readouterr().out
    assert stop.value.code == 0
    assert out.startswith(f"svertka {svertka.__version__} (Python ") and "numpy " in out and "torch " in out


@pytest.fixture
def no_torch(monkeypatch):
    """PyTorch made unimportable, as on a `pip install svertka` without the [torch] extra."""
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError; find_spec is None


def test_numpy_only_install_trains_on_the_numpy_engine(no_torch, capsys, tmp_path):
    code, out, err = run(capsys, "train", "lenet5", "--data", "fashion-mnist-mini", "--epochs", "1", "-q",
                         "--limit-train", "256", "--limit-test", "256", "-o", str(tmp_path / "run"))
    assert code == 0, err
    assert err.count("\n") == 1 and "PyTorch is not installed" in err and "NumPy engine" in err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["backend"] == "numpy"
    assert (tmp_path / "run" / "last.safetensors").is_file()


@pytest.mark.parametrize("argv", [["demo"], ["train", "lenet5"]])
def test_numpy_only_install_picks_numpy_for_demo_and_train(no_torch, argv):
    args = build_parser().parse_args(argv)
    use_numpy_without_torch(args)
    assert args.backend == "numpy"


@pytest.mark.parametrize("argv", [
    ["train", "lenet5", "--backend", "torch"],      # asked for by name
    ["train", "lenet5", "--amp", "bf16"],           # a torch-only flag
    ["train", "--recipe", "fashion-mnist-94"],      # a recipe with torch-only settings (bf16)
    ["demo", "--backend", "torch"],
])
def test_numpy_only_install_keeps_an_explicit_torch_request(no_torch, argv):
    args = build_parser().parse_args(argv)
    given = args.backend
    use_numpy_without_torch(args)
    assert args.backend == given


def test_numpy_only_install_torch_request_is_one_line(no_torch, capsys, tmp_path):
    code, _, err = run(capsys, "train", "lenet5", "--data", "fashion-mnist-mini", "--backend", "torch",
                       "-o", str(tmp_path / "run"))
    assert code == 2 and "needs PyTorch" in err and err.count("\n") == 1


def test_torch_installed_keeps_the_torch_default():
    pytest.importorskip("torch")
    args = build_parser().parse_args(["train", "lenet5"])
    use_numpy_without_torch(args)
    assert args.backend is None  # the config's default, torch
