"""Points and localize on 64x64 canvases: train a task model, score it on the test
canvases (benchmarks/README.md, "Points and localize").

    python benchmarks/points_localize.py points points_heatmap --canvases 12000 --epochs 8
    python benchmarks/points_localize.py points points_heatmap_small --backend numpy --epochs 1
    python benchmarks/points_localize.py localize localize_net --canvases 12000 --epochs 8

The model, targets, loss, decoder and scores are the tasks' own (svertka.tasks.points,
svertka.tasks.localize, svertka.zoo.tasks); the loop is the plain one of svertka train's
defaults: AdamW (lr 3e-3, weight decay 0.05, none on norms and biases), one-cycle
schedule per step, batch 128, data order from (seed, epoch). The test canvases are
scored once, after the last epoch. Canvases: training
canvases from training items (seed 0), test canvases from test items (seed 0), as
the tasks draw them. Prints one JSON line per epoch and writes the last to --json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import LoadMonitor  # noqa: E402
from svertka.data.canvas import TASK_PRESETS, CanvasGenerator  # noqa: E402
from svertka.tasks.localize import (  # noqa: E402
    LocalizeEvaluator,
    box_picture,
    localize_json,
    localize_loss,
    localize_targets,
)
from svertka.tasks.points import (  # noqa: E402
    PointsEvaluator,
    decode_keypoints,
    keypoint_targets,
    keypoints_json,
    keypoints_picture,
    mean_keypoints,
    points_loss,
)
from svertka.train.backends import param_groups  # noqa: E402
from svertka.train.schedule import Schedule  # noqa: E402
from svertka.zoo import create_model  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=("points", "localize"))
    ap.add_argument("model")
    ap.add_argument("--canvases", type=int, default=12000, help="training canvases")
    ap.add_argument("--test-canvases", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--backend", choices=("torch", "numpy"), default="torch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--box-loss", default="smooth_l1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--json", default=None)
    ap.add_argument("--grid", default=None, help="PNG of the first 16 test canvases: predicted and true")
    a = ap.parse_args(argv)

    preset = TASK_PRESETS[a.task]
    size = preset.size
    train = CanvasGenerator.from_dataset(a.data, "train", preset).generate(a.canvases, seed=0)
    test = CanvasGenerator.from_dataset(a.data, "test", preset).generate(a.test_canvases, seed=0)
    mean, std = train.images.mean() / 255, train.images.std() / 255
    if a.task == "points":
        targets = {"keypoints": keypoint_targets(train)}
        test_t = {"keypoints": keypoint_targets(test)}
        net = create_model(a.model, num_classes=targets["keypoints"].shape[1])
        evaluator = lambda: PointsEvaluator(size, mean_keypoints(targets["keypoints"]))  # noqa: E731
    else:
        targets, test_t = localize_targets(train), localize_targets(test)
        net = create_model(a.model, num_classes=len(train.classes))
        evaluator = lambda: LocalizeEvaluator(len(train.classes), size)  # noqa: E731

    def normalised(images):
        return ((images[..., 0].astype(np.float32) / 255 - mean) / std)[:, None].astype(np.float32)

    if a.backend == "torch":
        import torch
        import torch.nn.functional as F

        from svertka.backends.torch.compile import compile as build
        torch.set_num_threads(a.threads)
        torch.manual_seed(a.seed)
        model = build(net)
        to_t = torch.from_numpy
        optim = torch.optim
        no_grad = torch.no_grad
    else:
        from svertka.backends.numpy import functional as F
        from svertka.backends.numpy import optim
        from svertka.backends.numpy.compile import compile as build
        from svertka.backends.numpy.tensor import Tensor, no_grad
        F.manual_seed(a.seed)
        model = build(net)
        to_t = lambda x: x if x.dtype != np.float32 or x.ndim < 4 else Tensor(x)  # noqa: E731

    groups = param_groups(model.named_parameters(), 0.05, True)
    for g in groups:
        g.pop("names")
    opt = optim.AdamW(groups, lr=a.lr)
    base = [g["lr"] for g in opt.param_groups]
    steps = len(train.images) // a.batch
    sched = Schedule("onecycle", a.epochs * steps)

    def loss_of(out, t):
        if a.task == "points":
            return points_loss(out, t["keypoints"], size)
        return localize_loss(F, out, t["labels"], t["boxes"], len(train.classes), size, a.box_loss)

    t_start = time.perf_counter()
    for epoch in range(a.epochs):
        rng = np.random.default_rng([a.seed, epoch])
        perm = rng.permutation(len(train.images))
        model.train()
        seen, sums, t0 = 0, {}, time.perf_counter()
        with LoadMonitor() as load:
            for s in range(steps):
                for g, b in zip(opt.param_groups, base):
                    g["lr"] = b * sched(epoch * steps + s)
                idx = perm[s * a.batch:(s + 1) * a.batch]
                out = model(to_t(normalised(train.images[idx])))
                loss, logs = loss_of(out, {k: to_t(v[idx]) for k, v in targets.items()})
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen += len(idx)
                for k, v in {"loss": loss.detach() * len(idx), **logs}.items():
                    sums[k] = sums.get(k, 0.0) + float(v.item() if hasattr(v, "item") else v)
        train_s = time.perf_counter() - t0
        rec = {"task": a.task, "model": a.model, "backend": a.backend, "epoch": epoch + 1,
               "canvases": len(train.images), "test_canvases": len(test.images),
               **{f"train_{k}": round(v / seen, 5) for k, v in sums.items()},
               "images_per_s": round(seen / train_s, 1), **load.as_dict()}
        if epoch + 1 < a.epochs:  # the test set is scored once, after the last epoch
            print(json.dumps(rec), flush=True)
            continue
        model.eval()
        ev = evaluator()
        with no_grad():
            for i in range(0, len(test.images), 500):
                out = model(to_t(normalised(test.images[i:i + 500])))
                out = out.numpy() if hasattr(out, "numpy") else out.data
                ev.add(np.asarray(out), {k: v[i:i + 500] for k, v in test_t.items()})
        rec.update({f"test_{k}": round(v, 5) for k, v in ev.result().items()})
        if a.grid:
            with no_grad():
                out = model(to_t(normalised(test.images[:16])))
            write_grid(a.task, np.asarray(out.numpy() if hasattr(out, "numpy") else out.data), test, a.grid)
        rec["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        print(json.dumps(rec), flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rec, indent=1))


def write_grid(task: str, outputs: np.ndarray, test, path) -> None:
    """Predicted (colours) and true (white points / green boxes) on the first test canvases."""
    from svertka.viz.image import save_grid

    n, size = len(outputs), test.images.shape[1]
    if task == "points":
        pred = keypoints_json(decode_keypoints(outputs, size))
        true = keypoints_json(keypoint_targets(test)[:n])
        tiles = [keypoints_picture(test.images[i], pred[i], true[i], scale=3) for i in range(n)]
    else:
        pred = localize_json(outputs, test.classes, size)
        true = [{"box": b} for b in localize_targets(test)["boxes"][:n].tolist()]
        tiles = [box_picture(test.images[i], pred[i], true[i], scale=3) for i in range(n)]
    save_grid(np.stack(tiles), path, nrow=8, scale=1)


if __name__ == "__main__":
    main()
