"""The task interface of the training loop, driven by a small regression task
written here: predict each image's mean brightness (a number the images
determine exactly), so every path a non-classification task takes through
train, resume, eval and predict is exercised, on both backends."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import one_line_error
from svertka.cli import main
from svertka.errors import UsageError
from svertka.spec import nodes as n
from svertka.tasks.task import TASKS, ClassifyTask, Evaluator, Task, TaskData, get_task, task_of_meta
from svertka.train import make_config, train
from svertka.train.loop import best_epoch, epoch_line

torch = pytest.importorskip("torch")

TINY = {"data": "fashion-mnist-mini", "limit_train": 192, "limit_test": 96, "batch_size": 32,
        "eval_batch_size": 64, "threads": 1, "epochs": 2}


class MAE(Evaluator):
    def __init__(self):
        self.err = self.n = 0.0

    def add(self, outputs, targets):
        self.err += float(np.abs(outputs[:, 0] - targets["brightness"][:, 0]).sum())
        self.n += len(outputs)

    def result(self):
        return {"mae": self.err / max(1.0, self.n), "n": self.n}


class BrightnessTask(Task):
    name = "brightness-test"
    score = "mae"
    higher_is_better = False
    shown = ("mae",)
    options = {"width": (4, int, "width=N: hidden units")}

    def load(self):
        from svertka.data import load_dataset

        def split(name, limit):
            ds = load_dataset("fashion-mnist-mini", split=name)
            images = ds.images[:limit]
            target = images.reshape(len(images), -1).mean(1, keepdims=True).astype(np.float32) / 255
            return TaskData(images, {"brightness": target}, (), (0.5,), (0.5,), "mini")
        return split("train", self.cfg.limit_train), None, split("test", self.cfg.limit_test)

    def network(self, train):
        w = self.opts["width"]
        root = n.seq(n.Flatten(), n.Linear(w), n.Linear(1))  # linear: the exact answer is in reach
        return n.Network("brightness_mlp", root, (1, 28, 28), 0, (0.5,), (0.5,))

    def loss(self, F, out, targets):
        t = targets["brightness"]
        loss = F.mse_loss(out, t)
        return loss, {"abs_err": (out.detach() - t).abs().sum()}

    def evaluator(self):
        return MAE()

    def decode(self, outputs, meta):
        return [{"brightness": float(v)} for v in outputs[:, 0]]


@pytest.fixture(autouse=True)
def registered():
    TASKS[BrightnessTask.name] = BrightnessTask
    yield
    TASKS.pop(BrightnessTask.name, None)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_a_regression_task_trains_and_records_its_own_metrics(tmp_path, backend):
    cfg = make_config({**TINY, "task": BrightnessTask.name, "backend": backend, "output": str(tmp_path / "r"),
                       "task_options": {"width": "8"}, "batch_size": 16, "epochs": 6, "lr": 1e-2})
    r = train(cfg, progress=False)
    last = r.history[-1]
    assert {"train_loss", "train_abs_err", "test_mae", "test_n"} <= set(last) and "test_acc" not in last
    # better than always answering the training set's mean brightness
    task = BrightnessTask(cfg)
    tr, _, te = task.load()
    baseline = float(np.abs(te.targets["brightness"] - tr.targets["brightness"].mean()).mean())
    assert last["test_n"] == 96 and last["test_mae"] < 0.7 * baseline, (last["test_mae"], baseline)
    assert r.task == BrightnessTask.name and r.score == "mae" and r.test_acc == last["test_mae"]
    # the checkpoint records the task and its options, so eval and predict follow it
    out = tmp_path / "r"
    assert main(["eval", str(out), "--json"]) == 0


def test_eval_and_predict_follow_the_run_s_task(tmp_path, capsys):
    cfg = make_config({**TINY, "task": BrightnessTask.name, "output": str(tmp_path / "r"), "epochs": 1})
    r = train(cfg, progress=False)
    capsys.readouterr()
    assert main(["eval", str(r.run_dir), "--json", "--limit", "96"]) == 0  # the run's test split
    got = json.loads(capsys.readouterr().out)
    assert got["task"] == BrightnessTask.name and got["n"] == 96
    assert got["mae"] == pytest.approx(r.history[-1]["test_mae"], abs=1e-6)
    from PIL import Image
    img = np.zeros((28, 28), np.uint8)
    img[:, :14] = 255  # mean brightness 0.5
    Image.fromarray(img).save(tmp_path / "half.png")
    assert main(["predict", str(tmp_path / "half.png"), "-w", str(r.run_dir), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred[0]["image"].endswith("half.png") and isinstance(pred[0]["brightness"], float)
    # classification-only flags are refused in one line
    one_line_error(capsys, ["predict", str(tmp_path / "half.png"), "-w", str(r.run_dir), "-k", "3"])
    one_line_error(capsys, ["eval", str(r.run_dir), "--tta", "flip"])


def test_a_classifier_checkpoint_keeps_the_classification_report(tmp_path, capsys):
    cfg = make_config({**TINY, "output": str(tmp_path / "c"), "epochs": 1})
    r = train(cfg, progress=False)
    capsys.readouterr()
    assert main(["eval", str(r.run_dir), "--json", "--png", "none", "--limit", "96"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {"top1", "top5", "per_class"} <= set(got)
    assert got["top1"] == pytest.approx(r.history[-1]["test_acc"], abs=1e-6)


def test_best_follows_the_task_s_direction():
    hist = [{"epoch": 1, "val_mae": 0.3}, {"epoch": 2, "val_mae": 0.1}, {"epoch": 3, "val_mae": 0.2}]
    assert best_epoch(hist, "val_mae", higher_is_better=False) == 2
    assert best_epoch(hist, "val_mae", higher_is_better=True) == 1
    rec = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.9, "test_acc": 0.8, "images_per_s": 10, "seconds": 1}
    assert "train 90.00%  test 80.00%" in epoch_line(rec, 3)
    rec = {"epoch": 1, "train_loss": 0.5, "test_mae": 0.0123, "images_per_s": 10, "seconds": 1}
    assert "test mae 0.0123" in epoch_line(rec, 3, ("mae",))


def test_bad_task_settings_get_one_line(capsys):
    with pytest.raises(UsageError, match="unknown task 'nope'"):
        get_task("nope")
    err = one_line_error(capsys, ["train", "--task", BrightnessTask.name, "--task-opt", "depth=3",
                                  "--data", "fashion-mnist-mini", "--limit-train", "64"])
    assert "depth" in err and "width" in err
    err = one_line_error(capsys, ["train", "--task", BrightnessTask.name, "--task-opt", "width=wide",
                                  "--data", "fashion-mnist-mini", "--limit-train", "64"])
    assert "width=wide" in err
    err = one_line_error(capsys, ["train", "--task", BrightnessTask.name, "--aug", "flip",
                                  "--data", "fashion-mnist-mini", "--limit-train", "64"])
    assert "--aug" in err
    err = one_line_error(capsys, ["train", "--task-opt", "novalue"])
    assert "KEY=VALUE" in err


def test_old_checkpoints_without_a_task_are_classifiers():
    cfg = make_config({"data": "fashion-mnist-mini"})
    assert isinstance(task_of_meta({"model": "lenet5"}, cfg), ClassifyTask)
    with pytest.raises(UsageError, match="unknown task"):
        task_of_meta({"task": "teleport"}, cfg)
