"""One registry: `svertka models`, `summary`, `rf` and `train` take the same names,
all resolved by svertka.zoo.resolve_model."""
import json

import pytest

from svertka.analysis import analyze
from svertka.errors import UnknownModelError, UsageError
from svertka.spec import network_to_dict, save_network
from svertka.zoo import create_model, list_models, resolve_model
from test_cli import run


def test_models_lists_the_training_nets_with_their_counts(capsys):
    code, out, _ = run(capsys, "models", "vgg_fm*")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("vgg_fm")}
    assert rows["vgg_fm"][1:6] == ["1x28x28", "288,170", "=", "ref", "29,128,448"]
    assert rows["vgg_fm_small"][1:6] == ["1x28x28", "72,666", "=", "ref", "7,338,880"]
    code, out, _ = run(capsys, "models", "cnn2", "--json")
    (row,) = json.loads(out)
    assert (row["params"], row["macs"], row["family"]) == (1_199_882, 11_992_448, "small")
    assert row["reference"]["source"].startswith("Keras examples, mnist_cnn.py")


@pytest.mark.parametrize("name", ["cnn2", "vgg_fm", "vgg_fm_small", "lenet5"])
def test_summary_and_rf_take_every_models_name(capsys, name):
    code, out, _ = run(capsys, "summary", name, "--json")
    assert code == 0 and json.loads(out)["total"]["params"] == analyze(create_model(name)).params
    code, out, _ = run(capsys, "rf", name)
    assert code == 0 and "features.0" in out


@pytest.mark.parametrize("name", list_models())
def test_resolve_model_is_the_zoo_model(name):
    assert network_to_dict(resolve_model(name)) == network_to_dict(create_model(name))


def test_resolve_model_adapts_to_the_data():
    # CIFAR-10 through a Fashion-MNIST net: 3 channels, 32x32, the head follows num_classes
    net = resolve_model("vgg_fm_small", num_classes=7, in_chans=3, input_size=32)
    a = analyze(net)
    assert a.input_shape == (3, 32, 32) and a.output_shape == (7,)
    assert net.mean == (0.2860,) * 3
    # two more input channels on the first 3x3x16 conv; a 7-way head instead of 10
    assert a.params == 72_666 + 2 * 9 * 16 - (64 * 10 + 10) + (64 * 7 + 7)


def test_resolve_model_reads_a_network_file(tmp_path):
    path = tmp_path / "mine.json"
    save_network(create_model("cnn2"), path)
    assert analyze(resolve_model(str(path))).params == 1_199_882
    with pytest.raises(UsageError, match="has 10 classes but the data has 5"):
        resolve_model(str(path), num_classes=5)


def test_resolve_model_unknown_name_suggests():
    with pytest.raises(UnknownModelError, match="did you mean vgg_fm"):
        resolve_model("vgg_fn")
