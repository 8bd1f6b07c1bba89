"""The training loop, checkpoints, schedules and the train/eval/predict commands.

Everything runs on small slices of the packaged fashion-mnist-mini with tiny
step counts, so the whole file stays well under a minute."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cli_helpers import one_line_error
from svertka.cli import main
from svertka.errors import UsageError, WeightsError
from svertka.train import Schedule, TrainConfig, list_recipes, load_recipe, make_config, resume_config, train
from svertka.train.backends import NumpyAdapter, TorchAdapter, param_groups
from svertka.train.checkpoint import read_checkpoint, save_checkpoint
from svertka.zoo import resolve_model

TINY = {"data": "fashion-mnist-mini", "limit_train": 256, "limit_test": 128, "batch_size": 64,
        "eval_batch_size": 128, "threads": 1}
REQUIRED = {"epoch", "train_loss", "train_acc", "test_acc", "images_per_s", "seconds"}


def run(tmp_path, name="run", stop_after=None, **kw):
    cfg = make_config({**TINY, "output": str(tmp_path / name), **kw})
    return train(cfg, stop_after=stop_after, progress=False)


# ------------------------------------------------------------------ schedules


def test_warmup_then_cosine_ends_at_min():
    s = Schedule("cosine", total_steps=100, warmup_steps=10, min_factor=0.01)
    c = s.curve()
    assert c[0] == pytest.approx(0.1) and c[9] == pytest.approx(1.0)  # linear 1/10 .. 10/10
    assert all(a < b for a, b in zip(c[:10], c[1:10]))
    assert c[10] == pytest.approx(1.0)  # cosine starts at the peak
    assert c[-1] == pytest.approx(0.01)  # and ends exactly at min_factor
    assert all(a >= b for a, b in zip(c[10:], c[11:]))
    assert c[55] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 45 / 89)))


def test_onecycle_and_step_shapes():
    c = Schedule("onecycle", total_steps=100).curve()
    assert c[0] == pytest.approx(1 / 25) and max(c) == pytest.approx(1.0)
    assert int(np.argmax(c)) == 29 and c[-1] == pytest.approx(1 / 25 * 1e-4)
    st = Schedule("step", total_steps=90, decay_steps=30, decay_rate=0.1).curve()
    assert st[0] == 1 and st[29] == 1 and st[30] == pytest.approx(0.1) and st[89] == pytest.approx(0.01)
    assert Schedule("constant", 5, warmup_steps=2).curve() == [0.5, 1, 1, 1, 1]
    with pytest.raises(UsageError):
        Schedule("linear", 10)


def test_lr_follows_schedule_in_the_loop(tmp_path):
    r = run(tmp_path, epochs=2, sched="cosine", warmup_epochs=1, lr=0.01, min_lr_factor=0.1)
    assert r.history[0]["lr"] == pytest.approx(0.01)  # end of warmup = peak
    assert r.history[1]["lr"] == pytest.approx(0.001)  # cosine end value


# ------------------------------------------------------------ optimizer groups


@pytest.mark.parametrize("Adapter", [TorchAdapter, NumpyAdapter])
def test_no_decay_groups(Adapter):
    net = resolve_model("vgg_fm_small")
    for flag, n_groups in ((True, 2), (False, 1)):
        cfg = TrainConfig(model="vgg_fm_small", backend=Adapter.backend, weight_decay=0.1,
                          no_decay_norm_bias=flag, threads=1)
        a = Adapter(net, cfg, (0.5,), (0.5,))
        a.make_optimizer()
        groups = a.optimizer.param_groups
        assert len(groups) == n_groups
        assert groups[0]["weight_decay"] == 0.1
        if flag:
            assert groups[1]["weight_decay"] == 0.0
            names = a.group_names[1]
            assert "classifier.bias" in names
            assert any(n.endswith(".weight") and "features" in n for n in names)
            assert all(len(p.shape) >= 2 for p in groups[0]["params"])


def test_param_groups_plain():
    params = [("w", np.zeros((3, 3))), ("b", np.zeros(3))]
    g = param_groups(params, 0.5, True)
    assert [x["names"] for x in g] == [["w"], ["b"]] and [x["weight_decay"] for x in g] == [0.5, 0.0]


# ------------------------------------------------------------------- the loop


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_loop_runs_and_writes_files(tmp_path, backend):
    r = run(tmp_path, epochs=2, backend=backend, val_fraction=0.1, aug="flip,crop:2", label_smoothing=0.1,
            opt="nesterov", lr=0.05, sched="step", decay_epochs=1)
    d = r.run_dir
    lines = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert all(REQUIRED | {"val_acc"} <= set(line) for line in lines)
    assert all(0 <= line["test_acc"] <= 1 and line["images_per_s"] > 0 for line in lines)
    csv = (d / "metrics.csv").read_text().splitlines()
    assert len(csv) == 3 and REQUIRED <= set(csv[0].split(","))
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["backend"] == backend and cfg["epochs"] == 2 and cfg["aug"] == "flip,crop:2"
    assert (d / "model.json").is_file() and (d / "best.safetensors").is_file()
    w, meta, optim, state = read_checkpoint(d / "last.safetensors")
    assert meta["model"] == "lenet5" and meta["num_classes"] == 10 and state["epoch"] == 2 and optim
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]
    assert all(math.isfinite(line["train_loss"]) for line in lines)


def test_tta_only_at_the_last_epoch(tmp_path, capsys):
    r = run(tmp_path, epochs=2, aug="flip", tta="flip")
    lines = [json.loads(line) for line in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["tta"] for line in lines] == ["none", "flip"]
    # the final figure is what `svertka eval --tta flip` reports for the last weights
    argv = ["eval", str(r.run_dir / "last.safetensors"), "--tta", "flip", "--limit", "128", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(lines[-1]["test_acc"], abs=1e-6)
    assert r.test_acc == lines[-1]["test_acc"]


def test_split_seed_pins_the_validation_set():
    from svertka.train.loop import load_data

    def val_images(**kw):
        _, val, _ = load_data(make_config({**TINY, "val_fraction": 0.2, **kw}))
        return val.images

    # by default each seed draws its own split; --split-seed gives every seed the same one
    assert not np.array_equal(val_images(seed=0), val_images(seed=1))
    np.testing.assert_array_equal(val_images(seed=0), val_images(seed=1, split_seed=0))
    np.testing.assert_array_equal(val_images(seed=3, split_seed=7), val_images(seed=4, split_seed=7))
    # saved, so --resume keeps it
    assert make_config({"split_seed": 7, "val_fraction": 0.1}).to_dict()["split_seed"] == 7


@pytest.mark.parametrize("Adapter", [TorchAdapter, NumpyAdapter])
def test_altflip_batches_mirror_between_epochs(Adapter):
    from svertka.data.augment import Compose
    cfg = TrainConfig(model="vgg_fm_small", backend=Adapter.backend, threads=1)
    a = Adapter(resolve_model("vgg_fm_small"), cfg, (0.5,), (0.5,))
    images = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8)
    a.set_data("train", images, {"label": np.arange(8) % 10})
    idx, aug = np.array([5, 2, 7, 0]), Compose("altflip")
    x0, x1 = (np.asarray(a.batch("train", idx, aug, None, epoch=e)[0]) for e in (0, 1))
    assert np.array_equal(x1, x0[..., ::-1]) and not np.array_equal(x0, x1)


def test_the_loop_gives_altflip_indices_and_epochs(tmp_path, monkeypatch):
    from svertka.data.augment import AltFlip
    seen, choose = [], AltFlip.choose
    monkeypatch.setattr(AltFlip, "choose", lambda self, index, epoch, n: seen.append((epoch, *index)) or
                        choose(self, index, epoch, n))
    run(tmp_path, epochs=2, aug="altflip")
    for epoch in (0, 1):  # every training image once per epoch (256 images, batch 64)
        assert sorted(i for e, *idx in seen if e == epoch for i in idx) == list(range(256))


@pytest.mark.parametrize("backend, model",
                         [("torch", "cnn2"), ("torch", "vgg_fm_small"), ("numpy", "lenet5")])
def test_resume_is_bit_identical(tmp_path, backend, model):
    # cnn2: dropout's RNG; vgg_fm_small: BatchNorm's running stats and 0-d num_batches_tracked
    kw = dict(epochs=3, backend=backend, aug="flip,crop:2", model=model, limit_train=192)
    full = run(tmp_path, "full", **kw)
    part = run(tmp_path, "part", stop_after=2, **kw)
    assert len(part.history) == 2
    resumed = train(resume_config(part.run_dir), resume=part.run_dir, progress=False)
    wa, _, oa, sa = read_checkpoint(full.run_dir / "last.safetensors")
    wb, _, ob, sb = read_checkpoint(resumed.run_dir / "last.safetensors")
    assert wa.keys() == wb.keys() and oa.keys() == ob.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k
    for k in oa:
        assert np.array_equal(oa[k], ob[k]), k
    timing = ("images_per_s", "seconds", "train_seconds", "elapsed", "other_cores")

    def strip(h):  # timings differ between runs; everything else must match
        return [{k: v for k, v in e.items() if k not in timing} for e in h]

    assert strip(sa["history"]) == strip(sb["history"])
    assert len((resumed.run_dir / "metrics.jsonl").read_text().splitlines()) == 3


def test_batchnorm_run_evaluates_and_scalars_stay_scalars(tmp_path, capsys):
    r = run(tmp_path, epochs=1, model="vgg_fm_small", opt="adam")
    w, _, optim, _ = read_checkpoint(r.run_dir / "last.safetensors")
    assert w["features.1.num_batches_tracked"].shape == ()
    assert all(v.shape == () for k, v in optim.items() if k.endswith("step"))
    assert main(["eval", str(r.run_dir), "--json", "--limit", "128"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(r.test_acc, abs=1e-6)
    # a file from before the fix (num_batches_tracked saved as shape (1,)) still loads
    old = {k: (v.reshape(1) if k.endswith("num_batches_tracked") else v) for k, v in w.items()}
    _, meta, _, _ = read_checkpoint(r.run_dir / "best.safetensors")
    save_checkpoint(tmp_path / "old.safetensors", old, meta)
    assert main(["eval", str(tmp_path / "old.safetensors"), "--json", "--limit", "128"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(r.test_acc, abs=1e-6)


def test_crash_mid_write_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, {"w": np.ones(4, np.float32)}, {"model": "x"}, {"m": np.zeros(2, np.float32)},
                    {"epoch": 1})
    import safetensors.numpy

    def dying_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 10)  # half a file...
        raise KeyboardInterrupt  # ...then Ctrl-C / a crash

    monkeypatch.setattr(safetensors.numpy, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": np.full(4, 2, np.float32)}, {"model": "x"}, {}, {"epoch": 2})
    w, meta, optim, state = read_checkpoint(path)
    assert state["epoch"] == 1 and np.array_equal(w["w"], np.ones(4)) and "m" in optim
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temp file left


def test_ctrl_c_during_training_leaves_a_resumable_run(tmp_path, monkeypatch):
    calls = {"n": 0}
    orig = TorchAdapter.train_step

    def step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 6:  # 4 steps an epoch: dies in epoch 2
            raise KeyboardInterrupt
        return orig(self, x, y)

    monkeypatch.setattr(TorchAdapter, "train_step", step)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, epochs=3)
    d = tmp_path / "run"
    _, _, _, state = read_checkpoint(d / "last.safetensors")
    assert state["epoch"] == 1
    monkeypatch.setattr(TorchAdapter, "train_step", orig)
    r = train(resume_config(d), resume=d, progress=False)
    assert [h["epoch"] for h in r.history] == [1, 2, 3]


# ----------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("trained") / "run"
    rc = main(["train", "lenet5", "--data", "fashion-mnist-mini", "--epochs", "1", "-b", "64",
               "--limit-train", "256", "--limit-test", "128", "--threads", "1", "--output", str(d), "-q"])
    assert rc == 0
    return d


def test_train_cli_json(tmp_path, capsys):
    rc = main(["train", "--model", "lenet5", "--data", "fashion-mnist-mini", "--epochs", "1", "-b", "64",
               "--limit-train", "128", "--limit-test", "64", "--threads", "1",
               "--output", str(tmp_path / "r"), "-q", "--json", "--backend", "numpy"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert REQUIRED <= set(out) and out["run_dir"] == str(tmp_path / "r")


def test_eval_json(trained, capsys):
    assert main(["eval", str(trained), "--json", "--limit", "200"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"top1", "top5", "per_class", "n"}
    assert out["n"] == 200 and 0 <= out["top1"] <= out["top5"] <= 1
    assert len(out["per_class"]) == 10 and "Trouser" in out["per_class"]
    assert (trained / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["eval", str(trained / "best.safetensors"), "--tta", "flip", "--limit", "100"]) == 0
    text, err = capsys.readouterr()
    assert "top-1" in text and "confusion matrix" in text
    assert "trained without --aug flip" in err  # the fixture trains with no augmentation


def test_eval_numpy_backend_agrees(trained, capsys):
    main(["eval", str(trained), "--json", "--limit", "200"])
    a = json.loads(capsys.readouterr().out)
    main(["eval", str(trained), "--json", "--limit", "200", "--backend", "numpy"])
    b = json.loads(capsys.readouterr().out)
    assert abs(a["top1"] - b["top1"]) <= 0.01


def test_predict_json(trained, tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 255, (300, 200), dtype=np.uint8)).save(tmp_path / "b.jpg")
    rc = main(["predict", "--weights", str(trained / "best.safetensors"), str(tmp_path / "a.png"),
               str(tmp_path / "b.jpg"), "--json", "-k", "3"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 2
    for item in out:
        assert len(item["top"]) == 3 and set(item["top"][0]) == {"class", "index", "prob"}
        probs = [t["prob"] for t in item["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    rc = main(["predict", "--model", "lenet5", "--weights", str(trained / "last.safetensors"),
               str(tmp_path / "a.png")])
    assert rc == 0 and "%" in capsys.readouterr().out


# ------------------------------------------------------------------ bad input


def test_bad_inputs_are_one_line(trained, tmp_path, capsys):
    junk = tmp_path / "notes.png"
    junk.write_text("this is not an image")
    err = one_line_error(capsys, ["predict", "--weights", str(trained), str(junk)])
    assert "not an image" in err
    err = one_line_error(capsys, ["predict", "--model", "cnn2",
                                  "--weights", str(trained / "best.safetensors"), str(junk)])
    assert "lenet5" in err  # the checkpoint is for another model
    err = one_line_error(capsys, ["eval", str(trained / "best.safetensors"), "--num-classes", "7"])
    assert "num_classes" in err
    err = one_line_error(capsys, ["eval", str(junk)])
    assert "safetensors" in err
    for argv in (["train", "--lr", "-1"], ["train", "--opt", "rmsprop"], ["train", "--recipe", "nope"],
                 ["train", "--aug", "spin:3"], ["train", "--backend", "numpy", "--amp", "bf16"],
                 ["train", "--epochs", "0"], ["train", "--resume", str(tmp_path / "nothing")],
                 ["train", "--resume", str(trained), "--lr", "0.1"], ["train", "--model", "nosuchnet",
                 "--data", "fashion-mnist-mini"], ["train", "--seed", "-1"], ["train", "--split-seed", "-2"]):
        one_line_error(capsys, argv)
    # a run folder is never overwritten
    err = one_line_error(capsys, ["train", "--data", "fashion-mnist-mini", "--output", str(trained), "-q"])
    assert "--resume" in err


def test_mismatched_classes_checkpoint_in_adapter(trained):
    w, meta, _, _ = read_checkpoint(trained / "best.safetensors")
    net = resolve_model("lenet5", num_classes=5)
    a = TorchAdapter(net, TrainConfig(threads=1), (0.5,), (0.5,))
    with pytest.raises(WeightsError, match="num_classes"):
        a.load_model_state(w, meta)
    b = NumpyAdapter(resolve_model("cnn2"), TrainConfig(backend="numpy"), (0.5,), (0.5,))
    with pytest.raises(WeightsError, match="lenet5"):
        b.load_model_state(w, meta)


def test_recipes_load():
    names = list_recipes()
    assert {"fashion-mnist-94", "lenet5-demo"} <= set(names)
    for n in names:
        cfg = make_config({}, recipe=n)
        assert cfg.recipe == n
    assert make_config({"epochs": 3}, recipe="fashion-mnist-94").epochs == 3  # flags win over the recipe
    assert load_recipe("fashion-mnist-94")["amp"] == "auto"  # bf16 only where it pays (train/amp.py)


# ------------------------------------------------------------------ allocator

_FAULTS = """
import resource, sys
import numpy as np
from svertka.train.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():  # a training step's pattern: buffers of a few MB, allocated and freed together
    a, b, c = np.ones(4 << 20, np.float32), np.ones(3 << 20, np.float32), np.ones(2 << 20, np.float32)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_stops_refaulting_buffers():
    import subprocess

    faults = {mode: int(subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("default", "keep")}
    # 10 steps of 36 MB are ~90 k page touches; by default freed buffers go back to the OS
    assert faults["default"] > 5_000 and faults["keep"] < faults["default"] / 10, faults
