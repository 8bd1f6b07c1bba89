"""`svertka plot KIND`: every picture is rendered into tmp_path and checked for
what it claims (the frame count, the formula's number, the matrix equals the
convolution, the effective field lies inside the theoretical box), not only
that a file exists."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("matplotlib")
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from cli_helpers import one_line_error  # noqa: E402
from svertka.analysis import analyze  # noqa: E402
from svertka.backends.numpy import Tensor  # noqa: E402
from svertka.backends.numpy import functional as F  # noqa: E402
from svertka.cli import main  # noqa: E402
from svertka.spec import Conv2d, geometry  # noqa: E402
from svertka.zoo import create_model, get_entry, list_models  # noqa: E402


def check_png(path, min_size=(200, 150)):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        return np.asarray(im.convert("RGB"))


def svg_text(path) -> str:
    """All text in an SVG (it parses as XML; fonts are kept as text, not paths)."""
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return " ".join(t for t in root.itertext())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("plots") / "lenet-run"
    assert main(["train", "lenet5", "--data", "fashion-mnist-mini", "--epochs", "2", "-b", "64",
                 "--backend", "numpy", "--limit-train", "256", "--limit-test", "128", "--threads", "1",
                 "--output", str(d), "-q"]) == 0
    return d


@pytest.fixture(scope="module")
def shirt(tmp_path_factory):
    from svertka.data import load_dataset

    ds = load_dataset("fashion-mnist-mini", split="test")
    path = tmp_path_factory.mktemp("img") / "item.png"
    Image.fromarray(ds.images[0][..., 0]).save(path)
    return path


# ------------------------------------------------------------------ runs


def test_curves_overlay_runs(run, tmp_path, capsys):
    other = tmp_path / "second-run"
    other.mkdir()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r["test_acc"] = r["test_acc"] / 2
    (other / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["plot", "curves", str(run), str(other), "--out", str(tmp_path / "c")]) == 0
    check_png(tmp_path / "c.png")
    text = svg_text(tmp_path / "c.svg")
    for label in ("lenet-run (test)", "second-run (test)", "lenet-run (train)", "epoch",
                  "top-1 accuracy (%)"):
        assert label in text


def test_confusion_labels_and_counts(run, tmp_path):
    from svertka.viz.runs import confusion_figure

    conf = np.array([[5, 1, 0], [2, 7, 3], [0, 0, 9]])
    fig = confusion_figure(conf, ["cat", "dog", "bird"])
    ax = fig.axes[0]
    cells = [int(t.get_text()) for t in ax.texts]
    assert cells == conf.ravel().tolist()  # one count per cell, row by row
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "bird"]
    assert "21 of 27 images right" in ax.get_title()
    assert len(fig.axes) == 2  # the colour bar
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_confusion_of_a_run_and_eval_png(run, tmp_path, capsys):
    assert main(["plot", "confusion", str(run), "--limit", "100", "--out", str(tmp_path / "m")]) == 0
    check_png(tmp_path / "m.png")
    text = svg_text(tmp_path / "m.svg")
    assert "Ankle boot" in text and "predicted class" in text and "of 100 images right" in text
    capsys.readouterr()
    assert main(["eval", str(run), "--limit", "100", "--png", str(tmp_path / "eval.png")]) == 0
    assert check_png(tmp_path / "eval.png", (400, 400)).std() > 0


def test_filters_mosaic_places_each_kernel():
    from svertka.viz.runs import filter_mosaic

    w = np.arange(6 * 1 * 3 * 3, dtype=np.float32).reshape(6, 1, 3, 3)
    mosaic, layout = filter_mosaic(w)
    assert layout == "grid" and mosaic.shape == (2 * 4 - 1, 3 * 4 - 1)  # 3 columns, 1 px gaps
    np.testing.assert_array_equal(mosaic[4:7, 4:7], w[4, 0])  # filter 4: row 1, column 1
    assert np.isnan(mosaic[3]).all()
    m, layout = filter_mosaic(np.ones((4, 5, 2, 2), np.float32))
    assert layout == "matrix" and m.shape == (4 * 3 - 1, 5 * 3 - 1)
    rgb, layout = filter_mosaic(np.random.default_rng(0).standard_normal((4, 3, 5, 5)))
    assert layout == "rgb" and rgb.shape[-1] == 3 and np.nanmin(rgb) == 0 and np.nanmax(rgb) == 1


def test_filters_of_a_run(run, tmp_path, capsys):
    assert main(["plot", "filters", str(run), "--out", str(tmp_path / "f")]) == 0
    check_png(tmp_path / "f.png")
    assert "features.0: 6 filters, 5x5 px" in svg_text(tmp_path / "f.svg")
    assert main(["plot", "filters", str(run), "--layer", "features.3", "--out", str(tmp_path / "f3")]) == 0
    text = svg_text(tmp_path / "f3.svg")
    assert "16 filters" in text and "6 input channels" in text and "input channel" in text


def test_features_every_conv_stage(run, shirt, tmp_path, capsys):
    assert main(["plot", "features", str(run), str(shirt), "--channels", "4",
                 "--out", str(tmp_path / "x")]) == 0
    check_png(tmp_path / "x.png")
    text = svg_text(tmp_path / "x.svg")
    assert "features.0" in text and "6x28x28" in text and "features.3" in text and "16x10x10" in text
    assert "prediction:" in text


# ------------------------------------------------------------------ receptive field


@pytest.mark.parametrize("model,layer,size", [("lenet5", "features.3", 28), ("resnet20", "layer2.0", 32),
                                              ("resnet20", "layer1.2.conv1", 32)])
def test_erf_lies_inside_the_theoretical_box(model, layer, size):
    from svertka.viz.fields import receptive_field

    net = create_model(model)
    fm = receptive_field(net, layer)
    la = analyze(net).layer(layer)
    oh, ow = la.out_shape[1:]
    assert fm.unit == (oh // 2, ow // 2)
    assert fm.box[:2] == la.rf.span(oh // 2, 0) and fm.box[2:] == la.rf.span(ow // 2, 1)
    ys, xs = fm.support()
    assert len(ys) > 1 and fm.erf.shape == (size, size) and fm.erf.max() == 1
    assert ys.min() >= fm.box[0] and ys.max() <= fm.box[1]
    assert xs.min() >= fm.box[2] and xs.max() <= fm.box[3]
    assert 1 <= fm.mass_within(0.95) <= la.rf.size[0]


def test_erf_of_a_corner_unit_is_clipped_to_the_image():
    from svertka.viz.fields import receptive_field

    fm = receptive_field(create_model("lenet5"), "features.3", unit=(0, 9))
    ys, xs = fm.support()
    assert fm.box[0] < 0 and ys.min() == 0  # the box reaches into the padding; the gradient cannot
    assert xs.max() <= min(fm.box[3], 27)


def test_rf_plot_trained_run_and_image(run, shirt, tmp_path, capsys):
    assert main(["plot", "rf", "lenet5", str(shirt), "--layer", "features.3", "--run", str(run),
                 "--out", str(tmp_path / "rf")]) == 0
    out = capsys.readouterr().out
    assert "rows 8..21, columns 8..21 (14x14 px)" in out
    check_png(tmp_path / "rf.png")
    text = svg_text(tmp_path / "rf.svg")
    assert "theoretical RF (14x14 px)" in text and "trained (lenet-run)" in text and "item.png" in text


# ------------------------------------------------------------------ conv arithmetic


@pytest.mark.parametrize("n,k,s,p,d", [(4, 3, 1, 1, 1), (5, 3, 2, 1, 1), (7, 3, 1, 0, 2), (6, 4, 3, 2, 1)])
def test_conv_gif_frames_and_formula(tmp_path, capsys, n, k, s, p, d):
    out = tmp_path / "conv"
    assert main(["plot", "conv", "--in", str(n), "--kernel", str(k), "--stride", str(s), "--padding", str(p),
                 "--dilation", str(d), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    size = geometry.conv_out(n, k, s, p, d)
    assert size == analyze(Conv2d(1, k, stride=s, padding=p, dilation=d), (1, n, n)).output_shape[1]
    with Image.open(tmp_path / "conv.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == size * size
    formula = printed.strip().splitlines()[-1].split("; ", 1)[1]
    assert formula.endswith(f"= {size}") and f"floor(({n} + 2*{p} - {d}*({k}-1) - 1) / {s})" in formula
    assert formula in svg_text(tmp_path / "conv.svg")
    check_png(tmp_path / "conv.png")


def test_conv_bad_geometry_is_one_line(capsys):
    assert "spans 5 px" in one_line_error(capsys, ["plot", "conv", "--in", "3", "-k", "5", "-p", "0"])
    assert "frames" in one_line_error(capsys, ["plot", "conv", "--in", "30", "-k", "1", "-p", "0"])
    one_line_error(capsys, ["plot", "conv", "--padding", "-1"])


# ------------------------------------------------------------------ the conv as a matrix


@pytest.mark.parametrize("hw,k,s,p,d", [((4, 4), 3, 1, 0, 1), ((5, 4), 3, 1, 1, 1), ((7, 6), 3, 2, 1, 1),
                                        ((6, 6), 2, 1, 0, 2), ((5, 7), 1, 2, 0, 1)])
def test_toeplitz_times_x_equals_the_convolution(hw, k, s, p, d):
    from svertka.viz.conv_matrix import conv_matrix

    rng = np.random.default_rng(hash((hw, k, s, p, d)) % 2**32)
    w = rng.standard_normal((k, k))
    x = rng.standard_normal((1, 1, *hw))
    cm = conv_matrix(hw, w, s, p, d)
    y = F.conv2d(Tensor(x), Tensor(w[None, None]), None, s, p, d).data  # the engine's im2col conv
    assert y.shape[2:] == cm.out_hw
    np.testing.assert_allclose(cm.matrix @ x.ravel(), y.ravel(), rtol=1e-12, atol=1e-12)


def test_toeplitz_plot(tmp_path, capsys):
    assert main(["plot", "toeplitz", "--in", "4x4", "--kernel", "3", "--padding", "1", "--out",
                 str(tmp_path / "t")]) == 0
    assert "M is 16x16" in capsys.readouterr().out
    check_png(tmp_path / "t.png")
    assert "M is 16x16" in svg_text(tmp_path / "t.svg")
    assert "at most 400 pixels" in one_line_error(capsys, ["plot", "toeplitz", "--in", "21x20"])
    assert "malformed --in" in one_line_error(capsys, ["plot", "toeplitz", "--in", "4by4"])


# ------------------------------------------------------------------ zoo


def test_zoo_chart_reads_the_reference_figures(tmp_path, capsys):
    from svertka.viz.zoo_chart import zoo_points

    pts = zoo_points()
    expected = [n for n in list_models() if get_entry(n).reference.dataset == "ImageNet-1k"
                and get_entry(n).reference.top1 is not None]
    assert [p.name for p in pts] == expected and "resnet50" in expected and "lenet5" not in expected
    r50 = next(p for p in pts if p.name == "resnet50")
    ref = get_entry("resnet50").reference
    assert (r50.top1, r50.macs, r50.params) == (ref.top1, ref.macs, ref.params)
    no_macs = next(p for p in pts if p.name == "alexnet_2012")  # the paper gives no MACs: computed
    assert no_macs.macs == analyze(create_model("alexnet_2012")).macs
    assert main(["plot", "zoo", "--out", str(tmp_path / "z")]) == 0
    check_png(tmp_path / "z.png")
    text = svg_text(tmp_path / "z.svg")
    assert all(n in text for n in expected)


# ------------------------------------------------------------------ bad input


def test_bad_input_is_one_line(run, shirt, tmp_path, capsys):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    shutil.copy(run / "metrics.jsonl", empty / "metrics.jsonl")
    bad_img = tmp_path / "not-an-image.png"
    bad_img.write_text("hello")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.jsonl").write_text("{not json\n")
    cases = [
        (["plot", "filters", str(empty)], "no best.safetensors"),
        (["plot", "filters", str(run), "--layer", "features.1"], "not a conv layer"),
        (["plot", "filters", str(run), "--layer", "nope"], "no layer named 'nope'"),
        (["plot", "features", str(run), str(bad_img)], "not an image Pillow can decode"),
        (["plot", "features", str(run), str(tmp_path / "missing.png")], "no such image file"),
        (["plot", "curves", str(tmp_path)], "no metrics.jsonl"),
        (["plot", "curves", str(broken)], "line 1 is not JSON"),
        (["plot", "rf", "lenet5", "--layer", "nope"], "no layer 'nope'"),
        (["plot", "rf", "lenet5", "--layer", "classifier.0"], "not a feature map"),
        (["plot", "rf", "resnet18", "--layer", "layer1", "--run", str(run)],
         "weights of lenet5, not resnet18"),
        (["plot", "rf", "no_such_model", "--layer", "x"], "unknown model"),
        (["plot", "zoo", "lenet*"], "no zoo model matching"),
        (["plot", "nope"], "invalid choice"),
        (["plot", "conv", "--kernal", "3"],
         "the nearest flag is --kernel (kernel size) (see `svertka plot conv --help`)"),
    ]
    for argv, expected in cases:
        assert expected in one_line_error(capsys, argv), argv


# ------------------------------------------------------------------ stack more layers


def test_depth_backends_agree_and_show_the_slide():
    pytest.importorskip("torch")
    from svertka.viz.depth import INITS, run_experiment

    results = run_experiment((10,), ("numpy", "torch"))
    rows = {(r.variant.bn, r.variant.residual, r.variant.init, r.backend): r.row() for r in results}
    assert len(rows) == 2 * 2 * len(INITS) * 2
    for (bn, res, init, backend), row in rows.items():
        if backend == "numpy":  # the same weights and batch: only rounding differs
            twin = rows[(bn, res, init, "torch")]
            for key in ("grad_ratio_first_to_last", "act_std_last", "grad_std_first"):
                assert row[key] == pytest.approx(twin[key], rel=1e-4), (bn, res, init, key)
    ratio = {k[:3]: r["grad_ratio_first_to_last"] for k, r in rows.items() if k[3] == "numpy"}
    assert ratio[(False, False, "default")] < 1e-2   # torch's default init: the gradient vanishes
    assert ratio[(False, False, "large")] > 10       # twice He's std: it explodes
    assert 0.1 < ratio[(False, False, "he")] < 10    # He keeps it in range
    assert all(0.1 < ratio[(True, True, i)] < 10 for i in INITS)  # BN + residual: whatever the init


def test_depth_cli_json_and_figure(tmp_path, capsys):
    assert main(["plot", "depth", "--depths", "3,5", "--backend", "numpy", "--json",
                 "--out", str(tmp_path / "d")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 * 16 and {r["depth"] for r in rows} == {3, 5}
    assert {r["backend"] for r in rows} == {"numpy"}
    assert all(r["grad_ratio_first_to_last"] == pytest.approx(r["grad_std_first"] / r["grad_std_last"])
               for r in rows)
    from svertka.viz.depth import markdown_table

    table = markdown_table(rows).splitlines()
    assert len(table) == 2 + 16 and table[0] == "| net | init | depth 3 | depth 5 |"
    plain = {r["depth"]: r["grad_ratio_first_to_last"] for r in rows
             if not r["bn"] and not r["residual"] and r["init"] == "default"}
    assert table[2] == f"| plain | default | {plain[3]:.3g} | {plain[5]:.3g} |"
    check_png(tmp_path / "d.png")
    text = svg_text(tmp_path / "d.svg")
    assert "stacking 5 conv layers" in text and "he init" in text and "std of d loss / d block output" in text
    assert "malformed --depths" in one_line_error(capsys, ["plot", "depth", "--depths", "ten"])


def test_every_plot_flag_has_help_and_shows_its_default():
    import argparse

    from svertka.cli import build_parser

    parser = build_parser()
    plot = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["plot"]
    kinds = next(a for a in plot._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(kinds) == {"curves", "confusion", "filters", "features", "rf", "conv", "toeplitz", "zoo",
                          "depth"}
    for name, sub in kinds.items():
        assert not sub.allow_abbrev
        formatter = sub._get_formatter()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"plot {name} {action.dest} has no help"
            if (action.option_strings and action.nargs != 0) or action.nargs in ("?", "*"):
                shown = formatter._expand_help(action)
                assert "default" in shown or "required" in shown, f"plot {name} {action.dest}: {shown!r}"


def test_without_matplotlib_plots_fail_in_one_line_and_eval_skips_its_png(run, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    for argv in (["plot", "conv"], ["plot", "zoo"], ["plot", "rf", "lenet5", "--layer", "features.3"]):
        assert "pip install 'svertka[plots]'" in one_line_error(capsys, argv + ["--out", str(tmp_path / "x")])
    assert not list(tmp_path.iterdir())
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "confusion.png").unlink(missing_ok=True)
    assert main(["eval", str(copy), "--limit", "50"]) == 0
    assert "confusion matrix PNG" not in capsys.readouterr().out and not (copy / "confusion.png").exists()
