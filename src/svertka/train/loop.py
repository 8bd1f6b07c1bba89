"""The training loop, shared by both backends.

Reproducibility and exact resume: the data order and the augmentation of
epoch e come from ``numpy.random.default_rng([seed, e])``, the backend's own
RNG (dropout) is reseeded from (seed, e) at the start of each epoch, and the LR
is a function of the global step. A checkpoint therefore only needs the
weights, the optimizer state and the epoch: a run resumed after epoch k ends
bit-identical to one that was never interrupted (same backend and device).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError, WeightsError
from ..fileio import atomic_write_text
from ..sysload import OtherLoad
from ..untrusted import check_train_state, load_json
from .backends import make_adapter
from .checkpoint import read_checkpoint, save_checkpoint, write_metrics
from .config import TrainConfig
from .nets import resolve_model
from .schedule import Schedule


class Progress:
    """One status line on stderr, redrawn at most 5 times a second (a TTY), or
    one line per epoch (a pipe or file)."""

    def __init__(self, stream=None, enabled: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = 0.0

    def update(self, text: str, force: bool = False):
        if not self.tty:
            return
        now = time.perf_counter()
        if force or now - self.last > 0.2:
            self.stream.write("\r" + text[:150].ljust(100))
            self.stream.flush()
            self.last = now

    def line(self, text: str):
        if not self.enabled:
            return
        self.stream.write(("\r" if self.tty else "") + text.ljust(100 if self.tty else 0) + "\n")
        self.stream.flush()


def _round(v, digits=2):
    return None if v is None else round(v, digits)


def bar(done: int, total: int, width: int = 20) -> str:
    k = int(width * done / max(1, total))
    return "[" + "#" * k + "." * (width - k) + "]"


@dataclass
class RunResult:
    run_dir: Path
    config: TrainConfig
    history: list
    data_location: str
    test_acc: float
    seconds: float


def load_data(cfg: TrainConfig):
    from ..data import load_dataset

    split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    common = dict(root=cfg.root, val_fraction=cfg.val_fraction, seed=split_seed)
    train = load_dataset(cfg.data, split="train", **common)
    val = load_dataset(cfg.data, split="val", **common) if cfg.val_fraction > 0 else None
    test = load_dataset(cfg.data, split="test", root=cfg.root)
    if cfg.limit_train:
        train.images, train.labels = train.images[: cfg.limit_train], train.labels[: cfg.limit_train]
    if cfg.limit_test:
        test.images, test.labels = test.images[: cfg.limit_test], test.labels[: cfg.limit_test]
    if len(train) == 0:
        raise UsageError(f"{cfg.data}: the training split is empty")
    return train, val, test


def build_network(cfg: TrainConfig, ds):
    c, h, w = ds.image_shape[2], ds.image_shape[0], ds.image_shape[1]
    net = resolve_model(cfg.model, num_classes=ds.num_classes, in_chans=c, input_size=h)
    if tuple(net.input_shape) != (c, h, w):
        raise UsageError(f"{cfg.model} takes {'x'.join(map(str, net.input_shape))} inputs but {cfg.data} "
                         f"images are {c}x{h}x{w}; pick a model for this data")
    return net


def accuracy(adapter, name: str, n: int, batch: int, tta: str = "none"):
    """Top-1 accuracy over a stored split (no autograd, eval mode)."""
    correct = 0
    for i in range(0, n, batch):
        idx = np.arange(i, min(n, i + batch))
        logits = adapter.logits(name, idx, tta)
        y = adapter.labels_np[name][idx]
        correct += int((logits.argmax(1) == y).sum())
    return correct / max(1, n)


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{cfg.model}-{cfg.data}-{cfg.backend}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def resume_config(run_dir, epochs: int | None = None) -> TrainConfig:
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise UsageError(f"--resume {run_dir}: no config.json there; pass a run folder written by svertka train")
    d = load_json(cfg_path.read_bytes(), f"--resume {run_dir}: config.json", UsageError)
    cfg = TrainConfig.from_dict(d, f"--resume {run_dir}: config.json")
    if epochs is not None:
        cfg.epochs = epochs
    cfg.output = str(run_dir)
    return cfg.validate()


def train(cfg: TrainConfig, resume: str | Path | None = None, stop_after: int | None = None,
          progress: bool = True, stream=None) -> RunResult:
    """Train as ``cfg`` says; with ``resume`` (a run folder) continue from its
    ``last.safetensors``. ``stop_after`` ends after that many epochs in total
    (as if killed), leaving a resumable run."""
    t_start = time.perf_counter()
    out = Progress(stream, progress)
    train_ds, val_ds, test_ds = load_data(cfg)
    net = build_network(cfg, train_ds)
    adapter = make_adapter(net, cfg, train_ds.mean, train_ds.std)
    adapter.make_optimizer()
    adapter.labels_np = {}
    for name, ds in (("train", train_ds), ("val", val_ds), ("test", test_ds)):
        if ds is not None:
            adapter.set_data(name, ds.images, ds.labels)
            adapter.labels_np[name] = ds.labels

    n = len(train_ds)
    bs = min(cfg.batch_size, n)
    spe = n // bs  # full batches only: every step sees the same batch size
    total = cfg.epochs * spe
    sched = Schedule(cfg.sched, total, warmup_steps=round(cfg.warmup_epochs * spe), min_factor=cfg.min_lr_factor,
                     decay_steps=round(cfg.decay_epochs * spe) if cfg.decay_epochs else None,
                     decay_rate=cfg.decay_rate)
    aug = None
    if cfg.aug:
        from ..data.augment import Compose
        aug = Compose(cfg.aug)

    history, start_epoch, best = [], 0, None
    meta = {"model": net.name, "num_classes": int(net.num_classes), "input_shape": list(net.input_shape),
            "mean": list(train_ds.mean), "std": list(train_ds.std), "classes": list(train_ds.classes),
            "data": cfg.data, "backend": cfg.backend, "aug": cfg.aug}
    if resume is not None:
        run_dir = Path(resume)
        last = run_dir / "last.safetensors"
        if not last.is_file():
            raise UsageError(f"--resume {run_dir}: no last.safetensors (the run never finished an epoch); start afresh")
        weights, fmeta, optim_t, state = read_checkpoint(last)
        if state is None:
            raise WeightsError(f"{last} holds weights only, no training state; cannot resume from it")
        check_train_state(state, str(last), WeightsError)
        adapter.load_model_state(weights, fmeta, str(last))
        try:  # the optimizer state as the file holds it: any misfit means a corrupt file
            adapter.load_optim_state(optim_t, state["optimizer"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
            raise WeightsError(f"{last}: its optimizer state does not fit this run ({type(e).__name__}); "
                               "the file is corrupt, resume from another run or start afresh") from None
        start_epoch, history, best = state["epoch"], state["history"], state.get("best")
        if state.get("steps_per_epoch") != spe:
            raise UsageError(f"--resume {run_dir}: the data or batch size changed since the run started")
    else:
        run_dir = Path(cfg.output) if cfg.output else default_run_dir(cfg)
        if (run_dir / "last.safetensors").exists():
            raise UsageError(f"--output {run_dir} already holds a run; use --resume {run_dir} or another --output")
        cfg.output = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=1))
    from ..spec import network_to_dict
    atomic_write_text(run_dir / "model.json", json.dumps(network_to_dict(net), indent=1))

    where = test_ds.location or cfg.data
    out.line(f"svertka train: {net.name} on {cfg.data} ({n} train images from {where}), backend {cfg.backend}"
             + (f" on {adapter.device}" if cfg.backend == "torch" else "") + f", {cfg.epochs} epochs, "
             f"batch {bs}, {cfg.opt} lr {cfg.lr:g} {cfg.sched}; run folder {run_dir}")
    stop = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    try:
        for epoch in range(start_epoch, stop):
            t0 = time.perf_counter()
            load = OtherLoad()
            rng = np.random.default_rng([cfg.seed, epoch])
            perm = rng.permutation(n)
            adapter.seed_epoch(cfg.seed, epoch)
            loss_sum = correct = 0
            seen = 0
            for s in range(spe):
                step = epoch * spe + s
                adapter.set_lr(sched(step))
                x, y = adapter.batch("train", perm[s * bs:(s + 1) * bs], aug, rng, epoch)
                l, c = adapter.train_step(x, y)
                loss_sum, correct, seen = loss_sum + l, correct + c, seen + bs
                if out.tty and (s % 10 == 9 or s == spe - 1):
                    dt = time.perf_counter() - t0
                    out.update(f"epoch {epoch + 1}/{cfg.epochs} {bar(s + 1, spe)} {s + 1}/{spe} "
                               f"{seen / dt:,.0f} img/s loss {adapter.value(loss_sum) / seen:.4f} "
                               f"acc {100 * adapter.value(correct) / seen:.2f}% lr {adapter.lr:.2e}")
            train_s = time.perf_counter() - t0
            train_loss = adapter.value(loss_sum) / seen
            if not math.isfinite(train_loss):
                raise UsageError(f"training diverged at epoch {epoch + 1} (loss {train_loss}); lower --lr "
                                 f"(now {cfg.lr:g})")
            rec = {"epoch": epoch + 1, "train_loss": round(train_loss, 6),
                   "train_acc": round(adapter.value(correct) / seen, 6)}
            # TTA doubles an evaluation's cost; the epochs before the last only track progress
            tta = cfg.tta if epoch == cfg.epochs - 1 else "none"
            if val_ds is not None:
                rec["val_acc"] = round(accuracy(adapter, "val", len(val_ds), cfg.eval_batch_size, tta), 6)
            rec["test_acc"] = round(accuracy(adapter, "test", len(test_ds), cfg.eval_batch_size, tta), 6)
            rec["tta"] = tta
            seconds = time.perf_counter() - t0
            rec.update({"images_per_s": round(seen / train_s, 1), "seconds": round(seconds, 3),
                        "train_seconds": round(train_s, 3), "lr": adapter.lr, "other_cores": _round(load.other_cores()),
                        "elapsed": round(time.perf_counter() - t_start + (history[-1]["elapsed"] if history and resume else 0), 3)})
            history.append(rec)
            # "best" is chosen on the validation split; with none, it is the latest epoch
            # (choosing on the test set would make the test accuracy a tuned number)
            score = rec.get("val_acc")
            is_best = score is None or best is None or score > best
            if is_best:
                best = score
            opt_tensors, opt_skel = adapter.optim_state()
            weights = adapter.model_state()
            state = {"epoch": epoch + 1, "step": (epoch + 1) * spe, "steps_per_epoch": spe, "history": history,
                     "best": best, "optimizer": opt_skel, "config": cfg.to_dict()}
            save_checkpoint(run_dir / "last.safetensors", weights, meta, opt_tensors, state)
            if is_best:
                save_checkpoint(run_dir / "best.safetensors", weights, {**meta, "epoch": epoch + 1})
            write_metrics(run_dir, history)
            out.line(f"epoch {epoch + 1}/{cfg.epochs}  loss {rec['train_loss']:.4f}  train {100 * rec['train_acc']:.2f}%"
                     + (f"  val {100 * rec['val_acc']:.2f}%" if "val_acc" in rec else "")
                     + f"  test {100 * rec['test_acc']:.2f}%  {rec['images_per_s']:,.0f} img/s  {seconds:.1f} s")
    except KeyboardInterrupt:
        out.line(f"interrupted: the last checkpoint is whole; continue with `svertka train --resume {run_dir}`")
        raise
    test_acc = history[-1]["test_acc"] if history else float("nan")
    return RunResult(run_dir, cfg, history, where, test_acc, time.perf_counter() - t_start)
