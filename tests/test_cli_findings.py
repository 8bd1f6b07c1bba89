"""The CLI walkthrough of issue 16: every README command and --help, with bad input.

Each finding runs through the real `main()` entry point and asserts the exit code
and the one-line message (no traceback). Training here uses the numpy backend on a
slice of the packaged fashion-mnist-mini, so the file needs no torch and no network.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from svertka.cli import build_parser, main
from svertka.errors import DataError

REPO = Path(__file__).resolve().parents[1]
TINY = ["--data", "fashion-mnist-mini", "--backend", "numpy", "--limit-train", "128", "--limit-test", "64",
        "-b", "64", "-q"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    # a finding that came back must not write to the user's cache, nor runs/ or a PNG into the checkout
    monkeypatch.setenv("SVERTKA_DATA", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def one_line_error(capsys, *argv, code=2) -> str:
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert rc == code, err
    assert err.startswith("svertka: error:") and err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def ok(capsys, *argv) -> str:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


@pytest.fixture(scope="module")
def numpy_run(tmp_path_factory):
    """A 3-epoch LeNet-5 run on the numpy backend (about 40 steps)."""
    d = tmp_path_factory.mktemp("findings") / "run"
    rc = main(["train", "lenet5", "--data", "fashion-mnist-mini", "--backend", "numpy", "--epochs", "3",
               "--limit-train", "832", "--limit-test", "64", "-b", "64", "--opt", "adam", "--lr", "0.003",
               "--sched", "constant", "-o", str(d), "-q"])
    assert rc == 0
    return d


# ------------------------------------------------------------------ the hang


def test_rf_kernel_1_is_an_error_not_a_hang(capsys):
    err = one_line_error(capsys, "rf", "--kernel", "1")
    assert "1x1 convolution never grows the receptive field" in err
    # the answer is a formula now, not a loop: a huge object is instant and exact
    out = ok(capsys, "rf", "--pixels", str(10**12), "--kernel", "2")
    assert f"n = {10**12 - 1} stacked" in out
    assert "n = 50 stacked" in ok(capsys, "rf") and "n = 25 stacked" in ok(capsys, "rf", "--kernel", "5")


# ------------------------------------------------------------------ tracebacks


def test_summary_of_a_folder(capsys, tmp_path):
    err = one_line_error(capsys, "summary", str(tmp_path))
    assert str(tmp_path) in err and "model.json" in err
    # a run folder has model.json: its network is summarised
    from svertka.spec import save_network
    from svertka.zoo import create_model

    save_network(create_model("lenet5"), tmp_path / "model.json")
    assert "Total params: 61,706" in ok(capsys, "summary", str(tmp_path))


def test_train_output_that_cannot_be_a_folder(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    err = one_line_error(capsys, "train", *TINY, "--epochs", "1", "-o", str(afile))
    assert "is a file" in err
    err = one_line_error(capsys, "train", *TINY, "--epochs", "1", "-o", str(afile / "run"))
    assert "cannot make that folder" in err and afile.read_text() == "x"


# ------------------------------------------------------------------ silently accepted


def test_root_that_does_not_exist(capsys, tmp_path):
    missing = tmp_path / "nonexistent"
    for argv in (["train", "--data", "mnist", "--root", str(missing)],
                 ["augment", "--data", "fashion-mnist", "--root", str(missing)]):
        err = one_line_error(capsys, *argv)
        assert f"--root {missing}: no such folder" in err
    assert not missing.exists()
    err = one_line_error(capsys, "augment", "--data", "fashion-mnist-mini", "--root", str(tmp_path))
    assert "packaged" in err and "--root does not apply" in err


def test_no_abbreviations_anywhere(capsys):
    err = one_line_error(capsys, "train", *TINY, "--min-lr", "1e-5")  # timm's flag, a different quantity
    assert "unrecognized arguments: --min-lr" in err and "--min-lr-factor" in err
    one_line_error(capsys, "summary", "lenet5", "--js")
    one_line_error(capsys, "params", "conv", "--in", "3", "--ou", "4")
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert not parser.allow_abbrev and all(not s.allow_abbrev for s in subs.values())


@pytest.mark.parametrize("argv,needle", [
    (["--momentum", "5"], "--momentum must be in [0, 1)"),
    (["--momentum", "1"], "--momentum must be in [0, 1)"),
    (["--momentum", "0.5", "--opt", "adamw"], "--momentum applies to --opt sgd or nesterov"),
    (["--decay-rate", "2", "--sched", "step"], "--decay-rate must be in (0, 1]"),
    (["--decay-epochs", "0", "--sched", "step"], "--decay-epochs must be a number > 0"),
    (["--decay-epochs", "2"], "--decay-epochs applies to --sched step"),
    (["--min-lr-factor", "1.5"], "--min-lr-factor is the end LR as a fraction of --lr"),
    (["--min-lr-factor", "0.1", "--sched", "step"], "--min-lr-factor applies to --sched cosine or onecycle"),
    (["--split-seed", "3"], "--split-seed draws the validation split"),
    (["--weight-decay", "0", "--decay-norm-bias"], "weight decay"),
])
def test_optimizer_flags_are_range_checked_and_must_apply(capsys, argv, needle):
    # rejected while the config is built, before any data is read (TINY: were one accepted, a short run)
    assert needle in one_line_error(capsys, "train", *TINY, "--epochs", "1", *argv)


def test_input_shape_rule(capsys):
    err = one_line_error(capsys, "summary", "resnet50", "--input", "3x224")
    assert "ambiguous" in err and "3x224x224" in err
    assert "Input: 3x224x224" in ok(capsys, "summary", "resnet50", "--input", "224x224")
    assert "Input: 3x160x160" in ok(capsys, "summary", "resnet50", "--input", "160")
    # HxW keeps the model's channels: lenet5 stays grey (it used to become 3x32x32)
    assert "Input: 1x32x32" in ok(capsys, "summary", "lenet5", "--input", "32x32")
    assert "Input: 3x32x32" in ok(capsys, "summary", "lenet5", "--input", "3x32x32")


def test_params_needs_out_and_takes_only_its_flags(capsys):
    assert "needs --out" in one_line_error(capsys, "params", "conv", "--in", "32")
    assert "needs --out" in one_line_error(capsys, "params", "linear", "--in", "32")
    assert "does not apply to BatchNorm" in one_line_error(capsys, "params", "bn", "--in", "32", "--out", "3")
    assert "does not apply to a linear" in one_line_error(capsys, "params", "linear", "--in", "3",
                                                          "--out", "4", "-k", "3")
    assert "2*32 = 64" in ok(capsys, "params", "bn", "--in", "32")
    assert "3*3*32*64 + 64 = 18,496" in ok(capsys, "params", "conv", "--in", "32", "--out", "64")


def test_depth_must_be_positive(capsys):
    for bad in ("-1", "0"):
        assert "positive integer" in one_line_error(capsys, "summary", "lenet5", "--depth", bad)
    out = ok(capsys, "summary", "lenet5", "--depth", "1")
    assert "features " in out and "classifier " in out and "features.0" not in out
    assert "--json lists every layer" in one_line_error(capsys, "summary", "lenet5", "--depth", "1", "--json")


def test_rf_flags_that_do_not_apply(capsys):
    err = one_line_error(capsys, "rf", "vgg16", "--pixels", "50", "--kernel", "5")
    assert "--pixels" in err and "without a model" in err
    assert "--kernel" in one_line_error(capsys, "rf", "vgg16", "--kernel", "5")
    assert "--layer applies to a model" in one_line_error(capsys, "rf", "--layer", "features.0")


def test_augment_grid_is_capped(capsys, tmp_path):
    err = one_line_error(capsys, "augment", "--data", "fashion-mnist-mini", "-n", "100000",
                         "--out", str(tmp_path / "big.png"))
    assert "at most 256" in err
    out = ok(capsys, "augment", "--data", "fashion-mnist-mini", "-n", "8", "--out", str(tmp_path / "g.png"))
    assert "wrote" in out and (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------ misleading


def test_ctrl_c_before_the_first_epoch_says_the_truth(capsys, tmp_path, monkeypatch):
    from svertka.train.backends import NumpyAdapter

    def interrupted(self, x, y):
        raise KeyboardInterrupt

    monkeypatch.setattr(NumpyAdapter, "train_step", interrupted)
    rc = main(["train", *TINY[:-1], "--epochs", "1", "-o", str(tmp_path / "run")])  # progress on
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    assert "starts it again" in err and "checkpoint is whole" not in err
    monkeypatch.undo()  # and the resume it points to does start the run again
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "last.safetensors").is_file()


def test_no_error_points_to_a_missing_doc(capsys, tmp_path):
    bad = tmp_path / "net.json"
    bad.write_text("{not json")
    err = one_line_error(capsys, "summary", str(bad))
    assert "not valid JSON" in err and "docs/spec.md" not in err
    sources = "".join(p.read_text() for p in (REPO / "src").rglob("*.py"))
    cited = set(re.findall(r"docs/[\w./-]+\.md", sources))
    assert all((REPO / c).is_file() for c in cited), cited


def test_cifar10_location_matches_the_readme(tmp_path):
    from svertka.data import load_dataset

    with pytest.raises(DataError) as e:
        load_dataset("cifar10", root=tmp_path, download=False)
    msg = str(e.value)
    # the error names the --root folder itself and the extracted folder, as the README line does
    assert f"cifar-10-batches-py/ in {tmp_path}," in msg
    line = next(text for text in (REPO / "README.md").read_text().splitlines()
                if "--data cifar10 --root ~/data" in text)
    assert "~/data/cifar-10-batches-py/" in line


def test_failed_download_leaves_no_empty_folders(tmp_path, monkeypatch):
    from svertka.data import load_dataset
    from svertka.data.download import fetch
    from svertka.data.registry import REGISTRY

    closed = "http://127.0.0.1:9/"  # the discard port: the connection is refused at once, no network used
    with pytest.raises(DataError):
        fetch([closed + "x.gz"], tmp_path / "a" / "b" / "x.gz", timeout=5, quiet=True)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setitem(REGISTRY, "cifar10", dataclasses.replace(REGISTRY["cifar10"], mirrors=(closed,)))
    with pytest.raises(DataError, match="download failed"):
        load_dataset("cifar10", root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no empty cifar10/ left behind


def test_recipe_torch_options_with_numpy_backend(capsys):
    from svertka.train import make_config

    err = one_line_error(capsys, "train", "--recipe", "fashion-mnist-94", "--backend", "numpy")
    assert "recipe fashion-mnist-94 sets" in err and "drop" not in err
    # the recipe's --amp auto means fp32 on the NumPy engine, so only channels_last is named
    assert "--no-channels-last" in err and "amp" not in err
    cfg = make_config({"backend": "numpy", "amp": "none", "channels_last": False}, "fashion-mnist-94")
    assert cfg.backend == "numpy" and cfg.amp == "none" and not cfg.channels_last
    # options the user typed are named as theirs
    assert "drop them" in one_line_error(capsys, "train", "--backend", "numpy", "--amp", "bf16")


def test_resume_cannot_shrink_a_finished_run(capsys, numpy_run):
    err = one_line_error(capsys, "train", "--resume", str(numpy_run), "--epochs", "2")
    assert "the run already has 3 epochs; pass --epochs 3 or more" in err


def test_device_list_is_whole(capsys):
    err = one_line_error(capsys, "train", *TINY[:2], "--limit-train", "64", "--device", "tpu")
    assert err.endswith("choose auto, cpu, cuda, cuda:N or mps")


def test_unknown_flag_points_to_the_subcommand_help(capsys):
    assert "(see `svertka summary --help`)" in one_line_error(capsys, "summary", "lenet5", "--frob")
    assert "(see `svertka train --help`)" in one_line_error(capsys, "train", *TINY, "--frob", "1")


# ------------------------------------------------------------------ defaults


def test_eval_and_predict_use_the_runs_backend(capsys, numpy_run, tmp_path):
    from svertka.train.evaluate import load_trained

    assert load_trained(numpy_run).adapter.backend == "numpy"
    assert "numpy backend" in ok(capsys, "eval", str(numpy_run), "--limit", "64")
    err = one_line_error(capsys, "eval", str(numpy_run), "--device", "cuda")
    assert "trained with the numpy backend" in err and "--backend torch" in err
    assert "more than the model's 10 classes" in one_line_error(capsys, "predict", "-w", str(numpy_run),
                                                                 "-k", "20", str(tmp_path / "x.png"))


# ------------------------------------------------------------------ help texts


def _subparsers():
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, subs.choices


def test_every_flag_has_help_and_shows_its_default():
    parser, subs = _subparsers()
    for name, sub in [("svertka", parser), *subs.items()]:
        formatter = sub._get_formatter()
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help.strip(), f"{label} has no help"
            # a flag that takes a value, or an optional positional, says its default (or that it is required)
            if (action.option_strings and action.nargs != 0) or action.nargs in ("?", "*"):
                shown = formatter._expand_help(action)
                assert "default" in shown or "required" in shown, (
                    f"{label} does not show its default: {shown!r}")


def test_help_renders_with_defaults(capsys):
    for argv, needle in ((["train", "--help"], "(default: 10)"), (["augment", "--help"], "(default: 32)"),
                         (["params", "--help"], "(default: 3)"), (["rf", "--help"], "(default: 100)")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0 and needle in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------ predict --invert


def _save_png(path, arr):
    from PIL import Image

    Image.fromarray(arr[..., 0]).save(path)
    return str(path)


def test_predict_inverts_a_product_photo(capsys, numpy_run, tmp_path):
    """Real Fashion-MNIST test images as a shop shows them: the dark item on white."""
    pytest.importorskip("PIL")
    from svertka.data import load_dataset

    test = load_dataset("fashion-mnist-mini", split="test")
    idx = np.arange(40)
    originals = [_save_png(tmp_path / f"o{i}.png", test.images[i]) for i in idx]
    photos = [_save_png(tmp_path / f"p{i}.png", 255 - test.images[i]) for i in idx]

    def classes(*argv):
        out = json.loads(ok(capsys, "predict", "-w", str(numpy_run), "--json", "-k", "1", *argv))
        return [o["top"][0]["index"] for o in out], [o["inverted"] for o in out]

    truth = test.labels[idx].tolist()
    base, inv = classes(*originals)
    assert not any(inv)  # dark borders: left as they are
    auto, inv = classes(*photos)
    assert all(inv) and auto == base  # inverted back exactly: the same answers as the originals
    raw, inv = classes("--invert", "no", *photos)
    assert not any(inv)

    def acc(pred):
        return np.mean(np.equal(pred, truth))

    assert acc(base) >= 0.5 and acc(raw) < acc(base) - 0.25, (acc(base), acc(raw))  # misread without it
    forced, _ = classes("--invert", "yes", *originals)
    assert forced != base
    out = ok(capsys, "predict", "-w", str(numpy_run), photos[0])
    assert "inverted: light border" in out
    # as a shop's JPEG: 8x larger, lossy; resized back to 28x28 it is near the original
    from PIL import Image

    jpegs = []
    for i in idx:
        jpegs.append(str(tmp_path / f"j{i}.jpg"))
        enlarged = Image.fromarray(255 - test.images[i, :, :, 0]).resize((224, 224), Image.NEAREST)
        enlarged.save(jpegs[-1], quality=90)
    shop, inv = classes(*jpegs)
    assert all(inv) and np.mean(np.equal(shop, base)) >= 0.8, np.mean(np.equal(shop, base))
