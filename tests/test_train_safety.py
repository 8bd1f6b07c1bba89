"""Crash safety of training runs, and the progress display.

A kill at any moment leaves last and best consistent and the metrics whole;
checkpoints carry a checksum; a full disk is one line with the previous
checkpoint intact. The SIGKILL campaign itself is scripts/kill_stress.py; a
bounded run of it is the last test here."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from svertka.cli import main
from svertka.errors import UsageError, WeightsError, WriteError
from svertka.train import loop as loop_mod
from svertka.train import make_config, resume_config, train
from svertka.train.checkpoint import CHECKSUM_KEY, META_KEY, read_checkpoint, save_checkpoint
from svertka.train.loop import BEST, LAST, TIMING_KEYS
from svertka.train.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
TINY = {"data": "fashion-mnist-mini", "limit_train": 192, "limit_test": 64, "batch_size": 64,
        "eval_batch_size": 128, "threads": 1, "backend": "numpy", "epochs": 3}


def run(tmp_path, name="run", stop_after=None, stream=None, **kw):
    cfg = make_config({**TINY, "output": str(tmp_path / name), **kw})
    return train(cfg, stop_after=stop_after, progress=stream is not None, stream=stream)


def resume(run_dir, **kw):
    return train(resume_config(run_dir), resume=run_dir, progress=False, **kw)


def strip(history):
    return [{k: v for k, v in rec.items() if k not in TIMING_KEYS} for rec in history]


def assert_same_run(a: Path, b: Path):
    """last and best hold the same tensors, best the same epoch, the metrics the same figures."""
    for name in (LAST, BEST):
        wa, ma, oa, sa = read_checkpoint(a / name)
        wb, mb, ob, sb = read_checkpoint(b / name)
        assert wa.keys() == wb.keys() and oa.keys() == ob.keys() and ma == mb, name
        for k in wa:
            assert wa[k].tobytes() == wb[k].tobytes(), (name, k)
        for k in oa:
            assert oa[k].tobytes() == ob[k].tobytes(), (name, k)
        if sa is not None:
            assert strip(sa["history"]) == strip(sb["history"]) and sa["best_epoch"] == sb["best_epoch"]
    ja, jb = ([json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b))
    assert strip(ja) == strip(jb)
    assert len((b / "metrics.csv").read_text().splitlines()) == len(jb) + 1
    assert not [p.name for p in b.iterdir() if p.name.endswith(".tmp")]


def one_line_error(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and err.startswith("svertka: error:") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch run with a validation split (best is chosen on it)."""
    return run(tmp_path_factory.mktemp("ref"), val_fraction=0.05).run_dir


# ------------------------------------------------------------------ checksums


def test_checkpoint_checksum_refuses_corruption(tmp_path, capsys):
    path = tmp_path / "w.safetensors"
    weights = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(3)}
    save_checkpoint(path, weights, {"model": "lenet5"}, {"m": np.zeros(2, np.float32)}, {"epoch": 1})
    w, meta, optim, state = read_checkpoint(path)  # it reads back, checksum and all
    assert state["epoch"] == 1 and w["w"][1, 2] == 5 and w["n"].shape == ()
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # one bit in the tensors' bytes: still a valid safetensors file
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupted"):
        read_checkpoint(bad)
    assert "corrupted" in one_line_error(capsys, ["eval", str(bad)])
    # a header whose training state was edited: the checksum covers it too
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="numpy") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(bad), metadata={**header, "svertka_train": json.dumps({"epoch": 7})})
    with pytest.raises(WeightsError, match="corrupted"):
        read_checkpoint(bad)
    # a file from before the checksum existed still loads
    old = {k: v for k, v in header.items() if k != CHECKSUM_KEY}
    save_file(tensors, str(bad), metadata=old)
    assert read_checkpoint(bad)[3]["epoch"] == 1 and json.loads(old[META_KEY]) == {"model": "lenet5"}


def test_resume_from_a_corrupted_last_is_one_line(tmp_path, capsys):
    d = run(tmp_path, stop_after=1).run_dir
    data = bytearray((d / LAST).read_bytes())
    data[-5] ^= 1
    (d / LAST).write_bytes(bytes(data))
    assert "corrupted" in one_line_error(capsys, ["train", "--resume", str(d)])


# ------------------------------------------------------------------ full disk


def test_full_disk_is_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    import safetensors.numpy
    from safetensors import SafetensorError

    path = tmp_path / LAST
    save_checkpoint(path, {"w": np.ones(4, np.float32)}, {"model": "x"}, {}, {"epoch": 1})

    def full(*a, **k):  # what safetensors raises on ENOSPC
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    with pytest.raises(WriteError, match="disk is full") as e:
        save_checkpoint(path, {"w": np.zeros(4, np.float32)}, {"model": "x"}, {}, {"epoch": 2})
    assert "\n" not in str(e.value) and f"previous {LAST} is unchanged" in str(e.value)
    assert read_checkpoint(path)[3]["epoch"] == 1 and [p.name for p in tmp_path.iterdir()] == [LAST]


@pytest.fixture
def small_disk(tmp_path):
    """(folder, resize): a tmpfs mounted on a folder of tmp_path, and
    ``resize(bytes)`` that remounts it with another size."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    disk = tmp_path / "disk"
    disk.mkdir()

    def mount(size, *extra):
        options = ",".join([*extra, f"size={size}"])
        return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)],
                              capture_output=True, text=True)

    r = mount(4096)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()[:100]}")
    try:
        yield disk, lambda size: mount(size, "remount")
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_full_disk_during_training(tmp_path, small_disk, capsys):
    disk, resize = small_disk
    ref = run(tmp_path, "ref", epochs=2).run_dir  # also tells the file sizes
    b, last = (ref / BEST).stat().st_size, (ref / LAST).stat().st_size
    # epoch 2 writes best (old + new + last on disk: 2b + l), then last (b + 2l): let only the first fit
    assert resize(16 * 1024 + 2 * b + last + (last - b) // 2).returncode == 0
    d = disk / "run"
    run(disk, "run", stop_after=1, epochs=2)
    err = one_line_error(capsys, ["train", "--resume", str(d), "-q"])
    assert "disk is full" in err and f"previous {LAST} is unchanged" in err and "--resume" in err
    assert read_checkpoint(d / LAST)[3]["epoch"] == 1  # whole, checksum right
    assert not [p.name for p in d.iterdir() if p.name.endswith(".tmp")]
    assert resize(64 << 20).returncode == 0  # space freed: the run continues
    resume(d)
    assert_same_run(ref, d)


# ------------------------------------------------------ consistency across a kill


def test_save_order_is_best_metrics_last(tmp_path, monkeypatch):
    writes = []
    for name in ("save_checkpoint", "write_metrics"):
        real = getattr(loop_mod, name)
        monkeypatch.setattr(loop_mod, name,
                            lambda *a, _real=real, **k: writes.append(Path(a[0]).name) or _real(*a, **k))
    run(tmp_path, epochs=1)
    assert writes == [BEST, "run", LAST]  # write_metrics gets the folder


@pytest.mark.parametrize("dies_before", [LAST, BEST])
def test_killed_between_writes_resumes_identical(tmp_path, monkeypatch, reference, dies_before):
    """A kill after best and the metrics but before last, or just before best,
    in the first epoch after the first that writes that file."""
    real = loop_mod.save_checkpoint

    def dying(path, weights, meta, optim=None, state=None):
        epoch = (state or meta)["epoch"]
        if Path(path).name == dies_before and epoch >= 2:
            raise KeyboardInterrupt
        return real(path, weights, meta, optim, state)

    monkeypatch.setattr(loop_mod, "save_checkpoint", dying)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, val_fraction=0.05)
    monkeypatch.setattr(loop_mod, "save_checkpoint", real)
    d = tmp_path / "run"
    saved = read_checkpoint(d / LAST)[3]["epoch"]
    in_metrics = len((d / "metrics.jsonl").read_text().splitlines())
    assert in_metrics == saved + (dies_before == LAST)  # never behind last; ahead by the epoch being saved
    resume(d)
    assert_same_run(reference, d)


def test_a_stale_best_from_an_older_svertka_is_rebuilt(tmp_path, capsys):
    """Older versions wrote last before best; a kill in between left best one epoch behind."""
    d = run(tmp_path, stop_after=1).run_dir
    stale = (d / BEST).read_bytes()
    resume(d)
    fresh = read_checkpoint(d / BEST)
    (d / BEST).write_bytes(stale)
    assert read_checkpoint(d / BEST)[1]["epoch"] == 1
    out = io.StringIO()
    train(resume_config(d), resume=d, stream=out)  # the run is finished: only the repair happens
    assert "rebuilt best.safetensors (epoch 3)" in out.getvalue()
    w, meta, _, _ = read_checkpoint(d / BEST)
    assert meta["epoch"] == 3 and all(w[k].tobytes() == fresh[0][k].tobytes() for k in w)


def test_resume_removes_stale_temp_files_only(tmp_path):
    d = run(tmp_path, stop_after=1).run_dir
    for name in (f".{LAST}.abc123.tmp", ".metrics.csv.x1.tmp", ".config.json.q.tmp"):
        (d / name).write_bytes(b"half")
    (d / "notes.tmp").write_text("mine")  # not svertka's: kept
    out = io.StringIO()
    train(resume_config(d), resume=d, stream=out)
    assert sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp")) == ["notes.tmp"]
    assert out.getvalue().count("left by an interrupted write") == 3


def test_killed_before_the_first_epoch_starts_again(tmp_path, monkeypatch, capsys):
    from svertka.train.backends import NumpyAdapter

    real = NumpyAdapter.train_step

    def dying(self, x, y):
        raise KeyboardInterrupt

    monkeypatch.setattr(NumpyAdapter, "train_step", dying)
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, stream=out)
    assert "before the first epoch ended" in out.getvalue() and "--resume" in out.getvalue()
    monkeypatch.setattr(NumpyAdapter, "train_step", real)
    d = tmp_path / "run"
    assert not (d / LAST).exists()
    r = resume(d)
    assert [h["epoch"] for h in r.history] == [1, 2, 3]


def test_resume_refuses_fewer_epochs_than_done(tmp_path, capsys):
    d = run(tmp_path, stop_after=2).run_dir
    err = one_line_error(capsys, ["train", "--resume", str(d), "--epochs", "1"])
    assert "already has 2 epochs" in err
    with pytest.raises(UsageError):
        train(resume_config(d, epochs=1), resume=d, progress=False)


# ------------------------------------------------------------------ progress


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_pipe_is_one_line_per_epoch(tmp_path):
    out = io.StringIO()
    run(tmp_path, epochs=2, stream=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("svertka train: lenet5") and "\r" not in out.getvalue()
    assert lines[1].startswith("epoch 1/2  loss") and lines[2].startswith("epoch 2/2  loss")


def test_progress_on_a_tty_draws_a_bar_and_keeps_the_epoch_lines(tmp_path):
    out = FakeTTY()
    run(tmp_path, epochs=2, stream=out)
    text = out.getvalue()
    assert "\repoch 1/2" in text and "img/s" in text and "loss" in text  # the bar, with its postfix
    shown = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]  # what the terminal keeps
    assert [s[:12] for s in shown if s.startswith("epoch")] == ["epoch 1/2  l", "epoch 2/2  l"]


def test_progress_line_moves_while_a_step_is_slow():
    out = FakeTTY()
    with Progress(out, tick=0.05).bar("epoch 1/1", total=10):
        time.sleep(0.6)  # one long step: no update from the loop
    assert out.getvalue().count("\r") >= 4  # the ticker redrew it meanwhile


def test_download_progress(tmp_path, monkeypatch, capsys):
    from svertka.data.download import fetch

    src = tmp_path / "src.bin"
    src.write_bytes(b"z" * 300_000)
    fetch(src.as_uri(), tmp_path / "a" / "f.bin")  # stderr is no TTY here: one line when done
    err = capsys.readouterr().err
    assert err == "downloaded f.bin (0.3 MB)\n"
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    fetch(src.as_uri(), tmp_path / "b" / "f.bin")
    assert "f.bin" in tty.getvalue() and "300k/300k" in tty.getvalue() and "downloaded" not in tty.getvalue()


# ------------------------------------------------------------- the SIGKILL campaign


@pytest.mark.slow
def test_kill_stress_bounded(tmp_path):
    """3 SIGKILLs (1 at a random moment, 2 inside checkpoint writes) on the torch
    backend; each run ends bit-identical to an uninterrupted one."""
    pytest.importorskip("torch")
    out = tmp_path / "result.json"
    argv = ["--backends", "torch", "--random", "1", "--in-write", "2", "--epochs", "2", "--seed", "1",
            "--json", str(out)]
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "kill_stress.py"), *argv],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["kills"] for row in rows] == [1, 2] and all(row["identical"] == row["runs"] for row in rows)


# ------------------------------------------------------------------ the adapters


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_model_without_parameters_is_one_line(backend):
    if backend == "torch":
        pytest.importorskip("torch")
    from svertka.spec.nodes import AdaptiveAvgPool2d, Flatten, Network, seq
    from svertka.train import TrainConfig
    from svertka.train.backends import make_adapter

    net = Network("pool_only", seq(AdaptiveAvgPool2d(1), Flatten()), (1, 28, 28), 1)
    adapter = make_adapter(net, TrainConfig(model="pool_only", backend=backend, threads=1), (0.5,), (0.5,))
    with pytest.raises(UsageError, match="no trainable parameters"):
        adapter.make_optimizer()


def test_one_backend_switch():
    from svertka.backends import backend_of, get_backend
    from svertka.data.augment import Compose

    assert get_backend("numpy").__name__ == "svertka.backends.numpy"
    with pytest.raises(UsageError, match="unknown backend 'jax'"):
        get_backend("jax")
    assert backend_of(np.zeros(2)) == "numpy" and backend_of([0.0]) is None
    with pytest.raises(UsageError, match="NumPy array or a torch tensor"):
        Compose("flip")([[0.0]])
    with pytest.raises(UsageError, match="float N x C x H x W"):
        Compose("flip")(np.zeros((2, 1, 4, 4), np.uint8))


def test_output_that_cannot_be_a_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    argv = ["train", "--data", "fashion-mnist-mini", "--limit-train", "64", "--epochs", "1", "--threads", "1",
            "-q", "--backend", "numpy", "--output"]
    assert "is a file" in one_line_error(capsys, [*argv, str(tmp_path / "file")])
    assert "cannot make that folder" in one_line_error(capsys, [*argv, str(tmp_path / "file" / "run")])
