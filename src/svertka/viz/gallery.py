"""Every plot kind into one folder (what `make gallery` runs):

    python -m svertka.viz.gallery docs/gallery

It trains two small LeNet-5 runs on the packaged fashion-mnist-mini (AdamW and
SGD, for the overlaid curves; torch backend when installed, else the NumPy
engine) in a temporary folder, then draws from them. PNGs only (and the GIF),
small enough to commit; `svertka plot` writes SVG too.
"""
from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

EPOCHS = 8


def train_runs(where: Path) -> list[Path]:
    from ..train import make_config, train

    backend = "torch" if importlib.util.find_spec("torch") else "numpy"
    runs = []
    for name, over in (("lenet5-adamw", {}), ("lenet5-sgd", {"opt": "sgd", "lr": 0.05})):
        cfg = make_config({"model": "lenet5", "data": "fashion-mnist-mini", "backend": backend,
                           "epochs": EPOCHS, "batch_size": 64, "threads": 1, "output": str(where / name),
                           **over})
        train(cfg, progress=False)
        runs.append(where / name)
    return runs


def depth_figure(out: Path, formats) -> list[Path]:
    """The depth experiment at 10, 50, 200 and 1,000 layers on both backends
    (numpy only without torch): its figure, and its table as depth.json."""
    import json

    from .depth import markdown_table, plot_depth, run_experiment

    backends = ("numpy", "torch") if importlib.util.find_spec("torch") else ("numpy",)
    results = run_experiment(backends=backends)
    table = out / "depth.json"
    rows = [r.row() for r in results]
    table.write_text(json.dumps(rows, indent=1) + "\n")
    (out / "depth.md").write_text(markdown_table(rows) + "\n")
    return plot_depth(results, out / "depth", formats) + [table, out / "depth.md"]


def make_gallery(out="docs/gallery", log=print) -> list[Path]:
    from ..data import load_dataset
    from ..zoo import create_model
    from .conv_arithmetic import plot_conv
    from .conv_matrix import plot_toeplitz
    from .fields import plot_rf
    from .runs import plot_confusion, plot_curves, plot_features, plot_filters
    from .zoo_chart import plot_zoo

    out = Path(out)
    png = ("png",)
    written = []
    with tempfile.TemporaryDirectory(prefix="svertka-gallery-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        runs = train_runs(tmp)
        log(f"trained {', '.join(r.name for r in runs)} ({time.perf_counter() - t0:.0f} s)")
        ds = load_dataset("fashion-mnist-mini", split="test")
        item = tmp / "pullover.png"
        Image.fromarray(ds.images[0][..., 0]).save(item)  # a pullover, the first test image
        steps = [
            ("curves", lambda: plot_curves(runs, out / "curves", png)),
            ("confusion", lambda: plot_confusion(runs[0], out / "confusion", png)),
            ("filters", lambda: plot_filters(runs[0], None, out / "filters", png)),
            ("features", lambda: plot_features(runs[0], item, out / "features", png, channels=6)),
            ("rf (LeNet-5, trained)", lambda: plot_rf(create_model("lenet5"), "features.3", item, runs[0],
                                                      out / "rf-lenet5", png).paths),
            ("rf (ResNet-18, random)", lambda: plot_rf(create_model("resnet18"), "layer2.1", None, None,
                                                       out / "rf-resnet18", png).paths),
            ("conv", lambda: plot_conv(5, 3, 2, 1, 1, out / "conv", png).paths),
            ("toeplitz", lambda: plot_toeplitz((4, 4), 3, 1, 1, 1, 0, out / "toeplitz", png).paths),
            ("zoo", lambda: plot_zoo("*", out / "zoo", png).paths),
            ("depth", lambda: depth_figure(out, png)),
        ]
        for name, draw in steps:
            t0 = time.perf_counter()
            paths = draw()
            written += paths
            log(f"{name}: {', '.join(str(p) for p in paths)} ({time.perf_counter() - t0:.1f} s)")
    return written


if __name__ == "__main__":
    make_gallery(sys.argv[1] if len(sys.argv) > 1 else "docs/gallery", log=lambda s: print(s, flush=True))
