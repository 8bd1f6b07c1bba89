"""Train a segmentation net (zoo ``unet`` or ``fcn``) on the 96x96 canvases with torch,
then score it on test canvases; the figures of benchmarks/README.md (segmentation).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/train_segment.py unet --epochs 8 --out runs/seg-unet

Each epoch draws ``--train`` new canvases from the training items (canvases
``epoch * train ..`` of one seeded stream, so a rerun sees the same ones); the
validation canvases come from the training items with another seed, the test
canvases from the test items. The weights with the best validation mIoU are
kept (best.safetensors, svertka's checkpoint format with task "segment").
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from svertka.backends.torch import compile as compile_torch
from svertka.data.canvas import CanvasGenerator
from svertka.spec import save_network
from svertka.sysload import OtherLoad
from svertka.tasks.segment import SEGMENT_CANVAS, ConfusionEvaluator, pixel_labels, segment_classes
from svertka.train.checkpoint import read_checkpoint, save_checkpoint, write_metrics
from svertka.zoo import create_model

SEEDS = {"train": 0, "val": 1, "test": 0}


def normalise(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - mean[0]) / std[0]


def predict(model, images, mean, std, batch=64) -> np.ndarray:
    """N x K x H x W float32 scores, eval mode."""
    model.eval()
    outs = []
    with torch.inference_mode():
        for lo in range(0, len(images), batch):
            outs.append(model(normalise(images[lo:lo + batch], mean, std)).numpy())
    return np.concatenate(outs)


def score(model, canvases, classes, mean, std) -> dict:
    ev = ConfusionEvaluator(len(classes), classes)
    truth = pixel_labels(canvases)
    for lo in range(0, len(canvases), 256):
        ev.add(predict(model, canvases.images[lo:lo + 256], mean, std), {"mask": truth[lo:lo + 256]})
    return ev.result()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=["unet", "fcn"])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--train", type=int, default=8000, help="new training canvases per epoch")
    p.add_argument("--val", type=int, default=500)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--init", help="start from this run's best.safetensors (a second stage)")
    p.add_argument("--skip", type=int, default=0, help="epochs of the canvas stream an earlier stage used")
    a = p.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    gen_train = CanvasGenerator.from_dataset("auto", "train", SEGMENT_CANVAS)
    gen_test = CanvasGenerator.from_dataset("auto", "test", SEGMENT_CANVAS)
    classes = segment_classes(gen_train.classes)
    net = create_model(a.model, num_classes=len(classes))
    mean, std = net.mean, net.std
    model = compile_torch(net)
    if a.init:
        weights, _, _, _ = read_checkpoint(Path(a.init) / "best.safetensors")
        model.load_state_dict({k: torch.from_numpy(np.asarray(w)) for k, w in weights.items()})
    save_network(net, out / "model.json")
    val = gen_train.generate(a.val, seed=SEEDS["val"])
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    steps = a.epochs * (a.train // a.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.15)
    meta = {"model": net.name, "num_classes": len(classes), "input_shape": list(net.input_shape),
            "classes": list(classes), "mean": list(mean), "std": list(std), "task": "segment",
            "dataset": gen_train.name}
    (out / "config.json").write_text(json.dumps({**vars(a), **meta}, indent=1))
    history, best, start = [], -1.0, time.perf_counter()
    load = OtherLoad()
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        data = gen_train.generate(a.train, seed=SEEDS["train"], start=(a.skip + epoch - 1) * a.train)
        masks = torch.from_numpy(pixel_labels(data).astype(np.int64))
        order = torch.randperm(a.train)
        model.train()
        total, seen, gen_s = 0.0, 0, time.perf_counter() - t0
        for lo in range(0, a.train - a.batch_size + 1, a.batch_size):
            idx = order[lo:lo + a.batch_size]
            x = normalise(data.images[idx.numpy()], mean, std)
            loss = torch.nn.functional.cross_entropy(model(x), masks[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        train_s = time.perf_counter() - t0 - gen_s
        v = score(model, val, classes, mean, std)
        row = {"epoch": epoch, "train_loss": round(total / seen, 5), "val_miou": round(v["miou"], 5),
               "val_pixel_acc": round(v["pixel_acc"], 5), "images_per_s": round(seen / train_s, 1),
               "canvas_s": round(gen_s, 2), "seconds": round(time.perf_counter() - t0, 1),
               "other_cores": round(load.other_cores() or 0, 2), "threads": a.threads,
               "elapsed": round(time.perf_counter() - start, 1)}
        history.append(row)
        write_metrics(out, history)
        print(json.dumps(row), flush=True)
        if v["miou"] > best:
            best = v["miou"]
            state = {k: t.detach().numpy() for k, t in model.state_dict().items()}
            save_checkpoint(out / "best.safetensors", state, {**meta, "epoch": epoch})
    train_minutes = (time.perf_counter() - start) / 60
    weights, _, _, _ = read_checkpoint(out / "best.safetensors")
    model.load_state_dict({k: torch.from_numpy(np.asarray(w)) for k, w in weights.items()})
    test = gen_test.generate(a.test, seed=SEEDS["test"])
    scores = score(model, test, classes, mean, std)
    result = {"model": net.name, "test_canvases": a.test, "train_minutes": round(train_minutes, 2),
              "best_val_miou": best, **{f"test_{k}": v for k, v in scores.items()}}
    (out / "test.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
