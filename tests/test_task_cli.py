"""The task commands as the issue writes them: `svertka predict RUN image.png` (the
run first, no -w), and the canvas geometry as task options (size, items, scale,
overlap cap): one-line errors before any canvas is drawn, and a run trained on a
non-default geometry that eval and predict read back."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli_helpers import one_line_error
from svertka.argtypes import Range, float_range
from svertka.cli import main
from svertka.data.canvas import TASK_PRESETS, CanvasConfig, CanvasGenerator
from svertka.tasks.segment import SEGMENT_CANVAS
from svertka.tasks.task import Task, get_task, task_of_meta
from svertka.train.config import TrainConfig

DATA = "fashion-mnist-mini"
DETECT = ["train", "--task", "detect", "--model", "centernet_fm_tiny", "--data", DATA, "--epochs", "1",
          "-b", "16", "--threads", "1", "-q"]


def opts(**kw) -> list[str]:
    return [a for k, v in kw.items() for a in ("--task-opt", f"{k}={v}")]


# ------------------------------------------------------------------ predict RUN IMAGE


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cls") / "run"
    assert main(["train", "lenet5", "--data", DATA, "--backend", "numpy", "--epochs", "1", "--limit-train",
                 "64", "--limit-test", "32", "-b", "32", "-o", str(run), "-q"]) == 0
    return run


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "shirt.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)).save(path)
    return path


def test_predict_takes_the_run_first_as_the_issue_writes_it(classifier_run, image, capsys):
    capsys.readouterr()
    forms = ([str(classifier_run), str(image)],  # the issue's form
             [str(classifier_run / "best.safetensors"), str(image)],  # a checkpoint file first
             ["-w", str(classifier_run), str(image)],  # -w stays
             [str(image), "-w", str(classifier_run)],
             ["--model", "lenet5", "-w", str(classifier_run / "last.safetensors"), str(image)])
    outs = []
    for argv in forms:
        assert main(["predict", *argv, "--json", "-k", "3"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert all(o[0]["image"] == str(image) and len(o[0]["top"]) == 3 for o in outs)
    assert outs[1:4] == [outs[0]] * 3  # best.safetensors is what the run folder means
    # two images after the run: two predictions
    assert main(["predict", str(classifier_run), str(image), str(image), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_predict_never_guesses_which_argument_is_the_run(classifier_run, image, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [([str(image)], "no -w was given"),  # an image where the run goes
             ([str(image), str(classifier_run)], "is not a run folder"),  # the run last
             ([str(tmp_path / "nothing"), str(image)], "does not exist"),
             ([str(empty), str(image)], "not a run folder of svertka train"),
             ([str(classifier_run)], "no image after"),
             (["-w", str(classifier_run), str(classifier_run), str(image)], "two sets of weights"),
             (["-w", str(classifier_run), str(classifier_run / "best.safetensors"), str(image)],
              "two sets of weights")]
    for argv, words in cases:
        err = one_line_error(capsys, ["predict", *argv])
        assert words in err, err
        assert "svertka predict" in err  # and the form to use


def test_eval_takes_the_run_first_too(classifier_run, capsys):
    assert main(["eval", str(classifier_run), "--json", "--limit", "8", "--png", "none"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 8


# ------------------------------------------------------------------ geometry options: errors


@pytest.mark.parametrize("argv, words", [
    (opts(size=20), "--task-opt size=20: a 20x20 canvas is smaller than an item at scale 2.0 (56 px)"),
    (opts(size=64, scale="1,2.5"), "--task-opt size=64 scale=1,2.5: a 64x64 canvas is smaller than an item "
                                   "at scale 2.5 (70 px)"),
])
def test_a_canvas_smaller_than_an_item_fails_before_anything_is_drawn(argv, words, tmp_path, capsys):
    err = one_line_error(capsys, DETECT + argv + ["-o", str(tmp_path / "run")])
    assert words in err
    assert not (tmp_path / "run").exists()


def test_more_items_than_fit_is_one_line(tmp_path, capsys):
    # twelve 28 px items on a 64 px canvas with box IoU <= 0.3: not one canvas fits
    argv = opts(size=64, scale="1,1", min_items=12, max_items=12, canvases=8, test_canvases=8)
    err = one_line_error(capsys, DETECT + argv + ["-o", str(tmp_path / "run")])
    assert "cannot fit up to 12 items at scale 1.0-1.0 on a 64x64 canvas with box IoU <= 0.3" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("task, argv, words", [
    ("detect", opts(size=0), "--task-opt size=0: expected a positive integer"),
    ("detect", opts(size="big"), "--task-opt size=big: expected a positive integer"),
    ("segment", opts(scale=1), "--task-opt scale=1: expected LOW,HIGH"),
    ("segment", opts(scale="1,inf"), "expected finite numbers"),
    ("detect", opts(scale="2,1"), "bad scale range 2.0..1.0"),
    ("detect", opts(scale="0.1,1"), "bad scale range 0.1..1.0"),
    ("detect", opts(max_iou=1.5), "--task-opt max_iou=1.5: expected a number in [0, 1]"),
    ("detect", opts(size=5000), "--task-opt size=5000: canvas size must be an integer from 1 to 1024 px"),
    ("segment", opts(max_items=300), "need 1 <= min_items <= max_items <= 255, got 1..300"),
    ("segment", opts(max_items=0), "--task-opt max_items=0: expected a positive integer"),
    ("segment", opts(min_items=6), "--task-opt min_items=6: items per canvas: need 1 <= min_items"),
    ("points", opts(max_items=2), "max_items is not an option of task points; its options: canvases, head, "
                                  "scale, size"),
    ("localize", opts(max_iou=0.5), "max_iou is not an option of task localize"),
])
def test_bad_geometry_values_are_one_line(task, argv, words, tmp_path, capsys):
    err = one_line_error(capsys, ["train", "--task", task, "--data", DATA, *argv, "-o", str(tmp_path / "r")])
    assert words in err


@pytest.mark.parametrize("task, argv", [
    ("detect", ["--model", "centernet_fm_tiny", *opts(size=512)]),  # 20,000 + 5,000 canvases: 13 GB
    ("points", opts(size=512, head="direct")),
])
def test_canvases_that_cannot_fit_in_memory_are_refused_before_drawing(task, argv, tmp_path, capsys,
                                                                      monkeypatch):
    from svertka.data import formats

    monkeypatch.setattr(formats, "available_memory", lambda: 10**9)
    err = one_line_error(capsys, ["train", "--task", task, "--data", DATA, *argv, "-o", str(tmp_path / "r")])
    assert "x512 px take about" in err and "more than the 1.0 GB free" in err
    assert not (tmp_path / "r").exists()
    from svertka.tasks.canvas_options import check_memory

    check_memory(CanvasConfig(size=512), 100)  # 0.6 GB: a hundred fit


@pytest.mark.parametrize("task, model, size, words", [
    ("detect", "centernet_fm_tiny", 100, "the nearest sizes it takes: 96 and 104"),  # 8 divides the size
    ("segment", "unet", 100, "the nearest sizes it takes: 96 and 112"),  # four 2x2 pools: 16 | size
    ("points", "points_heatmap", 66, "the nearest sizes it takes: 64 and 72"),
    ("localize", "localize_net", 96, "(its own: 64)"),  # the box head is an 8x8 conv over the 8x8 map
])
def test_a_model_that_cannot_take_the_size_names_the_sizes_it_takes(task, model, size, words, tmp_path,
                                                                    capsys):
    argv = ["train", "--task", task, "--model", model, "--data", DATA, *opts(size=size)]
    err = one_line_error(capsys, argv + ["-o", str(tmp_path / "r")])
    assert f"--task-opt size={size}: {model} cannot work on {size}x{size} canvases" in err and words in err
    assert not (tmp_path / "r").exists()


def test_a_model_of_another_task_keeps_its_own_error(tmp_path, capsys):
    argv = DETECT[:4] + ["lenet5"] + DETECT[5:] + opts(size=64, max_items=2, canvases=8, test_canvases=8)
    err = one_line_error(capsys, argv + ["-o", str(tmp_path / "r")])
    assert "use --model centernet_fm" in err


# ------------------------------------------------------------------ geometry options: the checkpoint


@pytest.mark.parametrize("task, preset, given, want", [
    ("detect", TASK_PRESETS["detect"],
     {"size": "128", "max_items": "8", "scale": "0.5,1.5", "max_iou": "0.1"},
     CanvasConfig(size=128, min_items=1, max_items=8, scale=(0.5, 1.5), max_iou=0.1)),
    ("segment", SEGMENT_CANVAS, {"size": "64", "min_items": "2", "max_items": "3"},
     CanvasConfig(size=64, min_items=2, max_items=3)),
    ("points", TASK_PRESETS["points"], {"size": "48", "scale": "0.5,1.25"},
     CanvasConfig(size=48, min_items=1, max_items=1, scale=(0.5, 1.25))),
    ("localize", TASK_PRESETS["localize"], {}, TASK_PRESETS["localize"]),
])
def test_the_geometry_goes_through_the_checkpoint_meta(task, preset, given, want):
    cfg = TrainConfig(task=task, task_options=dict(given))
    t = get_task(task)(cfg)
    assert t.canvas == want
    meta = json.loads(json.dumps(Task.meta(t)))  # the options as a checkpoint stores them
    back = task_of_meta(meta, TrainConfig())
    assert back.canvas == want and back.opts == t.opts
    if task in ("points", "localize"):
        assert back.size == want.size  # what decodes coordinates in pixels


def test_float_range_prints_what_parses_back():
    r = float_range("0.5,1.25")
    assert r == (0.5, 1.25) and isinstance(r, Range) and float_range(str(r)) == r
    assert float_range(str(Range((0.1 + 0.2, 2.0)))) == (0.1 + 0.2, 2.0)  # repr keeps every bit


def test_a_run_on_another_geometry_trains_evaluates_and_predicts(tmp_path, capsys):
    pytest.importorskip("torch")
    from svertka.train.checkpoint import read_checkpoint
    from svertka.train.evaluate import load_trained

    run = tmp_path / "run"
    geometry = dict(size=64, max_items=3, scale="0.5,1.5")
    argv = DETECT + opts(**geometry, canvases=32, test_canvases=8) + ["--val-fraction", "0.25"]
    assert main(argv + ["-o", str(run)]) == 0
    capsys.readouterr()
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "test_map" in rec and np.isfinite(rec["train_loss"])
    _, meta, _, _ = read_checkpoint(run / "best.safetensors")
    assert meta["input_shape"] == [1, 64, 64]
    assert {k: meta["task_options"][k] for k in geometry} == {k: str(v) for k, v in geometry.items()}

    # eval redraws the same 64 px test canvases: the same score as the run's last record
    assert main(["eval", str(run), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["n"] == 8 and got["map"] == pytest.approx(rec["test_map"], abs=1e-6)
    loaded = load_trained(run)
    assert loaded.task.canvas == CanvasConfig(size=64, max_items=3, scale=(0.5, 1.5))
    test = loaded.task.load_test()
    want = CanvasGenerator.from_dataset(DATA, "test", loaded.task.canvas).generate(8, seed=0)
    np.testing.assert_array_equal(test.images, want.images)

    # predict RUN IMAGE on one of those canvases: boxes inside the 64 px canvas, drawn 4x
    Image.fromarray(want.images[0, ..., 0]).save(tmp_path / "canvas.png")
    assert main(["predict", str(run), str(tmp_path / "canvas.png"), "--json", "--out",
                 str(tmp_path / "boxes.png")]) == 0
    (pred,) = json.loads(capsys.readouterr().out)
    assert all(0 <= v <= 64 for d in pred["detections"] for v in d["box"])
    assert Image.open(tmp_path / "boxes.png").size == (4 * 64, 4 * 64)


def test_a_points_run_on_a_smaller_canvas_scores_and_predicts_in_its_pixels(tmp_path, capsys):
    """Points decode coordinates with the canvas side: eval and predict must take it from the run."""
    pytest.importorskip("torch")
    run = tmp_path / "run"
    argv = ["train", "points_heatmap_small", "--task", "points", "--data", DATA, "--limit-test", "16",
            *opts(size=48, scale="0.5,1.5", canvases=32), "--epochs", "1", "-b", "16", "--threads", "1", "-q"]
    assert main(argv + ["-o", str(run)]) == 0
    capsys.readouterr()
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert main(["eval", str(run), "--json", "--limit", "16"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["n"] == 16 and got["mean_px_error"] == pytest.approx(rec["test_mean_px_error"], abs=1e-5)
    canvas = CanvasGenerator.from_dataset(DATA, "test", CanvasConfig(size=48, max_items=1, scale=(0.5, 1.5)))
    Image.fromarray(canvas.generate(1, seed=0).images[0, ..., 0]).save(tmp_path / "c.png")
    assert main(["predict", str(run), str(tmp_path / "c.png"), "--json"]) == 0
    (pred,) = json.loads(capsys.readouterr().out)
    assert len(pred["keypoints"]) == 5
    assert all(0 <= v <= 48 for xy in pred["keypoints"].values() for v in xy)  # soft-argmax stays inside


def test_data_export_refuses_a_canvas_too_large_to_draw(tmp_path, capsys):
    # was: numpy's MemoryError traceback (2.33 TiB for the first 256 canvases)
    err = one_line_error(capsys, ["data", "export", "canvas", "--data", DATA, "--size", "100000", "--n", "2",
                                  "--out", str(tmp_path / "x")])
    assert "canvas size must be an integer from 1 to 1024 px" in err


# ------------------------------------------------------------------ each task's own model


@pytest.mark.parametrize("task,options,model", [
    ("classify", {}, "lenet5"), ("detect", {}, "centernet_fm"), ("segment", {}, "unet"),
    ("localize", {}, "localize_net"), ("points", {}, "points_heatmap"),
    ("points", {"head": "direct"}, "points_direct"), ("upscale", {}, "espcn_x2")])
def test_a_task_trains_its_own_model_when_none_is_named(task, options, model):
    cfg = TrainConfig(task=task, task_options=options).validate()
    assert cfg.model == model
    named = TrainConfig(task=task, task_options=options, model="cnn2").validate()
    assert named.model == "cnn2"  # a named model is never replaced by the task's


def test_lenet5_named_for_points_is_refused_not_swapped(capsys):
    """Naming the classifier's model for a points task is an error: it used to be taken as
    "no model named" (the config's default was lenet5) and points_heatmap trained instead."""
    line = one_line_error(capsys, ["train", "--task", "points", "lenet5", "--data", DATA, "--epochs", "1",
                                   "--threads", "1", "-q"])
    assert "not lenet5" in line and "points_heatmap" in line


def test_the_run_folder_is_named_after_the_task_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--task", "detect", "--data", DATA, "--epochs", "1", "-b", "16", "--threads", "1",
                 "--limit-train", "16", "--limit-test", "8", "-q", *opts(canvases=16, test_canvases=8)]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("centernet_fm-")
    assert json.loads((run / "config.json").read_text())["model"] == "centernet_fm"


# ------------------------------------------------------------------ eval --task-opt: the test split only


def test_eval_may_change_the_test_split_and_nothing_else(tmp_path, classifier_run, capsys):
    run = tmp_path / "det"
    assert main([*DETECT, "--limit-train", "16", "-o", str(run), *opts(canvases=16, test_canvases=8)]) == 0
    capsys.readouterr()
    counts = []
    for n in ("8", "12"):
        assert main(["eval", str(run), "--json", "--threads", "1", "--task-opt", f"test_canvases={n}"]) == 0
        counts.append(json.loads(capsys.readouterr().out)["n"])
    assert counts == [8, 12]  # more test canvases than the run scored while training
    for given, words in (("size=64", "fixed when the run trained"),
                         ("tests=3", "not an option of task detect"), ("test_canvases=0", "test_canvases=0")):
        assert words in one_line_error(capsys, ["eval", str(run), "--task-opt", given])
    assert "is a classifier" in one_line_error(capsys, ["eval", str(classifier_run), "--task-opt",
                                                        "test_canvases=5"])
