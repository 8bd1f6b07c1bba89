"""The training loop, shared by both backends and by every task.

``train`` is four named steps: open (or resume) the run, train one epoch,
evaluate it, save it. The task (svertka.tasks.task; classification unless
``--task`` says otherwise) supplies the data, the model, the loss and the
metrics; the loop moves batches, steps the optimizer and keeps the files.

Reproducibility and exact resume: the data order and the augmentation of
epoch e come from ``numpy.random.default_rng([seed, e])``, the backend's own
RNG (dropout) is reseeded from (seed, e) at the start of each epoch, and the LR
is a function of the global step. A checkpoint therefore only needs the
weights, the optimizer state and the epoch: a run resumed after epoch k ends
bit-identical to one that was never interrupted (same backend, device and
thread count: torch's default thread count follows the machine's load, see
svertka.threads, and a different count changes float rounding; fix it with
``--threads N`` where the last bit matters).

Crash safety: an epoch is saved as best, then the metrics, then last, each
file written atomically. ``last`` is what a resume continues from, so a kill
at any moment leaves the files at or ahead of ``last``: a resume redoes the
unsaved epoch and rewrites them alike. Opening a run removes the temp files a
kill left, checks ``best`` against the epoch ``last`` names, and rebuilds it
where it can (older runs wrote last before best).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SvertkaError, UsageError, WeightsError, WriteError
from ..fileio import atomic_write_text, remove_stale_temps
from ..sysload import OtherLoad
from ..tasks.task import Task, TaskData, get_task
from ..untrusted import check_train_state, load_json
from .backends import Adapter, make_adapter
from .checkpoint import read_checkpoint, save_checkpoint, write_metrics
from .config import TrainConfig
from .distributed import current as current_job
from .feed import eval_outputs, hold, train_batches
from .progress import Progress
from .schedule import Schedule

LAST, BEST = "last.safetensors", "best.safetensors"
RUN_FILES = (LAST, BEST, "metrics.jsonl", "metrics.csv", "config.json", "model.json")
TIMING_KEYS = ("images_per_s", "seconds", "train_seconds", "elapsed", "other_cores")  # differ run to run


def _round(v, digits=2):
    return None if v is None else round(v, digits)


@dataclass
class RunResult:
    run_dir: Path
    config: TrainConfig
    history: list
    data_location: str
    test_acc: float  # the test split's value of the task's score (top-1 for classification)
    seconds: float
    task: str = "classify"
    score: str = "acc"


@dataclass
class Run:
    """What the steps of one training run share."""

    cfg: TrainConfig
    run_dir: Path
    task: Task
    adapter: Adapter
    train_ds: TaskData
    val_ds: TaskData | None
    test_ds: TaskData
    batch: int  # images per step
    steps: int  # steps per epoch: full batches only, so every step sees the same batch size
    sched: Schedule
    aug: object  # a data.augment.Compose, or None
    meta: dict  # the model metadata every checkpoint carries
    history: list
    best: float | None = None  # best validation score so far (None: no validation split yet)
    start_epoch: int = 0
    elapsed_before: float = 0.0  # seconds the run spent before this process resumed it


def make_task(cfg: TrainConfig) -> Task:
    task = get_task(cfg.task)(cfg)
    task.check_training()
    return task


def load_data(cfg: TrainConfig):
    """The task's train, validation (or None) and test splits."""
    return make_task(cfg).load()


def evaluate_split(adapter, name: str, n: int, batch: int, tta: str = "none", ds=None) -> dict:
    """The task's metrics over a split, held by the adapter or streamed (``ds``) (no autograd, eval mode).
    Several ranks each compute their share of the rows; the evaluator sees all of them, in order."""
    ev = adapter.task.evaluator()
    job = current_job()
    start, stop = job.rows(n)
    blocks = eval_outputs(adapter, name, ds, stop, batch, tta, start=start)
    if job.world > 1:
        blocks = job.gather_blocks(list(blocks))
    for outputs, targets in blocks:
        ev.add(outputs, targets)
    return ev.result()


def accuracy(adapter, name: str, n: int, batch: int, tta: str = "none") -> float:
    """Top-1 accuracy over a stored split of a classification run."""
    return evaluate_split(adapter, name, n, batch, tta)["acc"]


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{cfg.model}-{cfg.data}-{cfg.backend}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def resume_config(run_dir, epochs: int | None = None, threads: int | None = None) -> TrainConfig:
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise UsageError(f"--resume {run_dir}: no config.json there; "
                         f"pass a run folder written by svertka train")
    d = load_json(cfg_path.read_bytes(), f"--resume {run_dir}: config.json", UsageError)
    cfg = TrainConfig.from_dict(d, f"--resume {run_dir}: config.json")
    if epochs is not None:
        cfg.epochs = epochs
    if threads is not None:  # how fast, not what: results change by float rounding only
        cfg.threads = threads
    cfg.output = str(run_dir)
    return cfg.validate()


def is_better(score, best, higher_is_better: bool = True) -> bool:
    """Whether an epoch with validation ``score`` replaces ``best``. "Best" is
    chosen on the validation split; with none, it is the latest epoch (choosing
    on the test set would make the test score a tuned number)."""
    if score is None or best is None:
        return True
    return score > best if higher_is_better else score < best


def best_epoch(history: list, key: str = "val_acc", higher_is_better: bool = True) -> int | None:
    """The epoch ``best.safetensors`` must hold after ``history``."""
    best = found = None
    for rec in history:
        if is_better(rec.get(key), best, higher_is_better):
            best, found = rec.get(key), rec["epoch"]
    return found


def run_best_epoch(run: Run) -> int | None:
    return best_epoch(run.history, f"val_{run.task.score}", run.task.higher_is_better)


# ------------------------------------------------------------------ the steps


def build_run(cfg: TrainConfig, run_dir: Path) -> Run:
    """Data, model, optimizer, schedule and augmentation, as ``cfg`` says."""
    task = make_task(cfg)
    train_ds, val_ds, test_ds = task.load()
    net = task.network(train_ds)
    adapter = make_adapter(net, cfg, train_ds.mean, train_ds.std, task)
    adapter.make_optimizer()
    for name, ds in (("train", train_ds), ("val", val_ds), ("test", test_ds)):
        if ds is not None:
            hold(adapter, name, ds)
    world = current_job().world
    bs = min(cfg.batch_size, len(train_ds) - len(train_ds) % world)  # a global batch splits evenly over ranks
    spe = len(train_ds) // bs
    decay_steps = round(cfg.decay_epochs * spe) if cfg.decay_epochs else None
    sched = Schedule(cfg.sched, cfg.epochs * spe, warmup_steps=round(cfg.warmup_epochs * spe),
                     min_factor=cfg.min_lr_factor, decay_steps=decay_steps, decay_rate=cfg.decay_rate)
    aug = None
    if cfg.aug:
        from ..data.augment import Compose
        aug = Compose(cfg.aug)
    meta = {"model": net.name, "num_classes": int(net.num_classes), "input_shape": list(net.input_shape),
            "mean": list(train_ds.mean), "std": list(train_ds.std), "classes": list(train_ds.classes),
            "data": cfg.data, "backend": cfg.backend, "aug": cfg.aug, **task.meta()}
    if cfg.stream:  # how the model's inputs were cut from the photos, for eval and predict
        meta["stream"] = {"image_size": cfg.image_size, "crop_pct": cfg.crop_pct}
    return Run(cfg, run_dir, task, adapter, train_ds, val_ds, test_ds, bs, spe, sched, aug, meta, history=[])


def open_run(cfg: TrainConfig, resume, out: Progress) -> Run:
    """The run, fresh or resumed (its state read from ``last``, its other
    files repaired), and its folder with config.json and model.json."""
    run_dir = Path(resume) if resume is not None else Path(cfg.output) if cfg.output else default_run_dir(cfg)
    job = current_job()
    run_dir = Path(job.broadcast(str(run_dir)))  # rank 0's folder name (its clock names the default)
    if resume is None and (run_dir / LAST).exists():
        raise UsageError(f"--output {run_dir} already holds a run; "
                         f"use --resume {run_dir} or another --output")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--output {run_dir} is a file; pass a folder for the run")
    run = build_run(cfg, run_dir)
    if run_dir.is_dir() and job.is_main:
        for p in remove_stale_temps(run_dir, RUN_FILES):
            out.line(f"svertka train: removed {p.name}, left by an interrupted write")
    if resume is not None:
        resume_run(run, out)
    cfg.output = str(run_dir)
    if not job.is_main:  # rank 0 alone writes the run folder
        return run
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"--output {run_dir}: cannot make that folder ({e.strerror or e}); "
                         f"pick another --output") from None
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=1))
    from ..spec import network_to_dict
    atomic_write_text(run_dir / "model.json", json.dumps(network_to_dict(run.adapter.net), indent=1))
    return run


def resume_run(run: Run, out: Progress) -> None:
    """Load ``last`` into ``run`` and make the folder agree with it: metrics
    as in ``last``, ``best`` from the epoch ``last`` names."""
    run_dir, last = run.run_dir, run.run_dir / LAST
    if not last.is_file():
        out.line(f"svertka train: {run_dir} has no finished epoch yet; starting it from epoch 1")
        return
    weights, fmeta, optim_t, state = read_checkpoint(last)
    if state is None:
        raise WeightsError(f"{last} holds weights only, no training state; cannot resume from it")
    check_train_state(state, str(last), WeightsError)
    current_job().check_resume(state, run_dir)
    if state.get("steps_per_epoch") != run.steps:
        raise UsageError(f"--resume {run_dir}: the data or batch size changed since the run started")
    if run.cfg.epochs < state["epoch"]:
        raise UsageError(f"--resume {run_dir}: the run already has {state['epoch']} epochs; "
                         f"pass --epochs {state['epoch']} or more")
    run.adapter.load_model_state(weights, fmeta, str(last))
    try:  # the optimizer state as the file holds it: any misfit means a corrupt file
        run.adapter.load_optim_state(optim_t, state["optimizer"])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
        raise WeightsError(f"{last}: its optimizer state does not fit this run ({type(e).__name__}); "
                           "the file is corrupt, resume from another run or start afresh") from None
    run.start_epoch, run.history, run.best = state["epoch"], state["history"], state.get("best")
    run.elapsed_before = run.history[-1].get("elapsed", 0.0) if run.history else 0.0
    if current_job().is_main:
        write_metrics(run_dir, run.history)  # they may hold an epoch that last does not
        repair_best(run, weights, fmeta, out)


def repair_best(run: Run, weights: dict, meta: dict, out: Progress) -> None:
    """Make ``best`` hold the epoch the history in ``last`` chose. With this
    loop's save order it already does; a run written by an older svertka (last
    before best) may have been killed in between."""
    want = run_best_epoch(run)
    path = run.run_dir / BEST
    try:
        got = read_checkpoint(path)[1].get("epoch") if path.is_file() else None
    except SvertkaError:
        got = None  # unreadable or corrupted: rebuilt below where possible
    if want is None or got == want:
        return
    if want == run.start_epoch:  # the best epoch is the one last holds
        save_checkpoint(path, weights, {**meta, "epoch": want})
        out.line(f"svertka train: rebuilt {BEST} (epoch {want}) from {LAST}")
    else:
        holds = "no readable epoch" if got is None else f"epoch {got}"
        out.line(f"svertka train: note: {BEST} should hold epoch {want} but holds {holds}; "
                 f"it cannot be rebuilt from {LAST}")


def stats_text(stats: dict, seen: int, value) -> str:
    """The task's running training stats for the progress bar (accuracies as %)."""
    return " ".join(f"{k} {100 * value(v) / seen:.2f}%" if k == "acc" else f"{k} {value(v) / seen:.4g}"
                    for k, v in stats.items())


def train_epoch(run: Run, epoch: int, bar) -> dict:
    """One pass over the training split: the loss, the task's stats, speed."""
    cfg, adapter, bs, job = run.cfg, run.adapter, run.batch, current_job()
    t0 = time.perf_counter()
    rng = np.random.default_rng([cfg.seed, epoch])
    perm = rng.permutation(len(run.train_ds))  # the same on every rank; each takes its slice of a step
    aug_rng = job.aug_rng(rng, cfg.seed, epoch)
    adapter.seed_epoch(cfg.seed, epoch)
    job.seed_epoch(cfg.seed, epoch)
    loss_sum, sums = 0, {}
    seen, shown = 0, t0
    steps = [job.shard(perm[s * bs:(s + 1) * bs]) for s in range(run.steps)]  # this rank's part of each
    for s, (x, t) in enumerate(train_batches(adapter, "train", run.train_ds, steps, run.aug, aug_rng, epoch)):
        adapter.set_lr(run.sched(epoch * run.steps + s))
        loss, stats = adapter.train_step(x, t)
        loss_sum, seen = loss_sum + loss, seen + len(steps[s])
        sums = {k: sums.get(k, 0) + v for k, v in stats.items()}
        if bar is not None:
            bar.update(bs)
            now = time.perf_counter()
            if now - shown > 0.5 or s == run.steps - 1:  # reading the loss syncs a GPU: not every step
                shown = now
                bar.set_postfix_str(f"loss {adapter.value(loss_sum) / seen:.4f} "
                                    f"{stats_text(sums, seen, adapter.value)} lr {adapter.lr:.2e}",
                                    refresh=False)
    train_s = time.perf_counter() - t0
    job.sync_buffers()
    keys = list(sums)
    # summed over the ranks (images/s too); the slowest rank's time is the epoch's
    loss_sum, rate, seen, *totals = job.all_reduce([adapter.value(loss_sum), seen / train_s, seen,
                                                    *(adapter.value(sums[k]) for k in keys)])
    train_loss = loss_sum / seen
    if not math.isfinite(train_loss):
        raise UsageError(f"training diverged at epoch {epoch + 1} (loss {train_loss}); "
                         f"lower --lr (now {cfg.lr:g})")
    return {"train_loss": round(train_loss, 6),
            **{f"train_{k}": round(v / seen, 6) for k, v in zip(keys, totals)},
            "images_per_s": round(rate, 1), "train_seconds": round(train_s, 3)}


def evaluate_epoch(run: Run, epoch: int) -> dict:
    """The task's metrics on the validation (if any) and test splits after ``epoch``."""
    cfg, rec = run.cfg, {}
    # TTA doubles an evaluation's cost; the epochs before the last only track progress
    tta = cfg.tta if epoch == cfg.epochs - 1 else "none"
    for name, ds in (("val", run.val_ds), ("test", run.test_ds)):
        if ds is not None:
            scores = evaluate_split(run.adapter, name, len(ds), cfg.eval_batch_size, tta, ds)
            rec.update({f"{name}_{k}": _metric(v) for k, v in scores.items()})
    rec["tta"] = tta
    return rec


def _metric(v):
    return round(float(v), 6) if isinstance(v, (int, float, np.floating, np.integer)) else v


def save_epoch(run: Run, epoch: int, rec: dict) -> None:
    """Add ``rec`` to the history and write best, the metrics, then last (the
    order that keeps them consistent across a kill; see the module's notes)."""
    run.history.append(rec)
    key = f"val_{run.task.score}"
    is_best = is_better(rec.get(key), run.best, run.task.higher_is_better)
    if is_best:
        run.best = rec.get(key)
    weights, job = run.adapter.model_state(), current_job()
    job.check_in_sync(weights)
    if not job.is_main:  # rank 0 alone writes
        return
    opt_tensors, opt_skel = run.adapter.optim_state()
    state = {"epoch": epoch + 1, "step": (epoch + 1) * run.steps, "steps_per_epoch": run.steps,
             "world_size": job.world,
             "history": run.history, "best": run.best, "best_epoch": run_best_epoch(run),
             "optimizer": opt_skel, "config": run.cfg.to_dict()}
    try:
        if is_best:
            save_checkpoint(run.run_dir / BEST, weights, {**run.meta, "epoch": epoch + 1})
        write_metrics(run.run_dir, run.history)
        save_checkpoint(run.run_dir / LAST, weights, run.meta, opt_tensors, state)
    except WriteError as e:
        raise WriteError(f"{e}; then continue with `svertka train --resume {run.run_dir}`") from None


def epoch_line(rec: dict, epochs: int, shown=("acc",)) -> str:
    """One line per epoch: the loss, then the task's ``shown`` metrics per split."""
    def fmt(key, v):
        return f"{100 * v:.2f}%" if key == "acc" else f"{v:.4g}"

    parts = []
    for split, label in (("train", "train"), ("val", "val"), ("test", "test")):
        vals = [(k, rec[f"{split}_{k}"]) for k in shown if isinstance(rec.get(f"{split}_{k}"), (int, float))]
        if vals:
            parts.append(f"{label} " + " ".join(fmt(k, v) if k == "acc" else f"{k} {fmt(k, v)}"
                                                for k, v in vals))
    return (f"epoch {rec['epoch']}/{epochs}  loss {rec['train_loss']:.4f}  " + "  ".join(parts)
            + f"  {rec['images_per_s']:,.0f} img/s  {rec['seconds']:.1f} s")


# ------------------------------------------------------------------ the loop


def train(cfg: TrainConfig, resume: str | Path | None = None, stop_after: int | None = None,
          progress: bool = True, stream=None) -> RunResult:
    """Train as ``cfg`` says; with ``resume`` (a run folder) continue from its
    ``last.safetensors``. ``stop_after`` ends after that many epochs in total
    (as if killed), leaving a resumable run."""
    t_start = time.perf_counter()
    job = current_job()
    out = Progress(stream, progress and job.is_main)  # rank 0 alone reports
    run = open_run(cfg, resume, out)
    where = run.train_ds.location or run.test_ds.location or cfg.data  # where the training images come from
    device = f" on {run.adapter.device}" if cfg.backend == "torch" else ""
    task = "" if cfg.task == "classify" else f"task {cfg.task}, "
    out.line(f"svertka train: {task}{run.adapter.net.name} on {cfg.data} ({len(run.train_ds)} train images "
             f"from {where}), backend {cfg.backend}{device}{job.describe()}, {cfg.epochs} epochs, "
             f"batch {run.batch}, "
             f"{cfg.opt} lr {cfg.lr:g} {cfg.sched}; run folder {run.run_dir}")
    threads, amp = run.adapter.threads, run.adapter.amp_choice
    for note in (threads and threads.note, amp and amp.why):
        if note:
            out.line(note)
    stop = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    try:
        for epoch in range(run.start_epoch, stop):
            t0, load = time.perf_counter(), OtherLoad()
            with out.bar(f"epoch {epoch + 1}/{cfg.epochs}", run.steps * run.batch) as bar:
                fig = train_epoch(run, epoch, bar)
                if bar is not None:
                    bar.set_description(f"epoch {epoch + 1}/{cfg.epochs} evaluating")
                scores = evaluate_epoch(run, epoch)
            now = time.perf_counter()
            rec = {"epoch": epoch + 1, **{k: v for k, v in fig.items() if k.startswith("train_")
                                          and k != "train_seconds"},
                   **scores, "images_per_s": fig["images_per_s"], "seconds": round(now - t0, 3),
                   "train_seconds": fig["train_seconds"], "lr": run.adapter.lr,
                   "other_cores": _round(load.other_cores()),
                   **({"threads": threads.n} if threads else {}),
                   "elapsed": round(now - t_start + run.elapsed_before, 3)}
            save_epoch(run, epoch, rec)
            out.line(epoch_line(rec, cfg.epochs, run.task.shown))
            if epoch + 1 < stop and threads and threads.recheck(rec["other_cores"]):
                out.line(threads.note)
    except KeyboardInterrupt:
        again = f"`svertka train --resume {run.run_dir}`"
        if (run.run_dir / LAST).is_file():
            out.line(f"interrupted: the last checkpoint is whole; continue with {again}")
        else:
            out.line(f"interrupted before the first epoch ended; {again} starts it again")
        raise
    score = run.task.score
    test_score = run.history[-1].get(f"test_{score}", float("nan")) if run.history else float("nan")
    return RunResult(run.run_dir, cfg, run.history, where, test_score, time.perf_counter() - t_start,
                     cfg.task, score)
