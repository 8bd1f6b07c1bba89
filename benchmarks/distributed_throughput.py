"""Two ranks against one process on the same cores (issue 15, "What it must show" 2).

    python benchmarks/distributed_throughput.py              # lenet5, 4 epochs of fashion-mnist-mini
    python benchmarks/distributed_throughput.py --epochs 2 --limit-train 3200   # a quick look

In one run, the same `svertka train` (torch backend, global batch 128, same seed, no
augmentation) three ways, each a fresh command as a user types it:

- 2 ranks x 1 thread: `torchrun --standalone --nproc-per-node 2 -m svertka train ... --threads 1`;
- 1 process x 2 threads: `python -m svertka train ... --threads 2`;
- 1 process x 1 thread while another process spins on a core (benchmarks/contention.py's
  BusyCore, pinned to the first CPU).

Reported per row: training images/s (all ranks together, evaluation excluded, from the
run's metrics.jsonl), the seconds until the run first reaches the target test accuracy
(the lowest final accuracy of the rows, so every row reaches it; the run's own clock, which
starts after imports and process start-up), the wall seconds of the whole command (those
included), and the load of other processes during the row (minus the spin loop's own CPU
time), flagged NOISY above a quarter of a core. Ratios are against the 1 x 2 row.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from contention import BusyCore, cpu_description  # noqa: E402
from machine import CONTENDED_CORES, LoadMonitor, write_results  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def command(kind: str, flags: list[str], out: Path) -> list[str]:
    threads = "2" if kind == "1 process x 2 threads" else "1"
    train = ["-m", "svertka", "train", *flags, "--threads", threads, "-q", "-o", str(out)]
    if kind == "2 ranks x 1 thread":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *train]
    return [sys.executable, *train]


def measure(kind: str, flags: list[str], tmp: str) -> dict:
    out = Path(tempfile.mkdtemp(dir=tmp)) / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    busy = BusyCore(min(os.sched_getaffinity(0))) if kind.endswith("busy process") else None
    with LoadMonitor() as load:
        spin0 = 0.0
        if busy:
            busy.__enter__()
            spin0 = busy.cpu_seconds()
        try:
            t0 = time.perf_counter()
            r = subprocess.run(command(kind, flags, out), env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            spin = (busy.cpu_seconds() - spin0) if busy else 0.0
        finally:
            if busy:
                busy.__exit__(None, None, None)
    if r.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{r.stderr[-2000:]}")
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    images = sum(h["images_per_s"] * h["train_seconds"] for h in history)
    background = max(0.0, load.other_cores - spin / load.wall)
    return {"kind": kind, "history": history,
            "images_per_s": round(images / sum(h["train_seconds"] for h in history), 1),
            "final_test_acc": history[-1]["test_acc"], "wall_s": round(wall, 2),
            "spin_loop_cores": round(spin / load.wall, 3), "background_cores": round(background, 3),
            "noisy": background > CONTENDED_CORES}


def seconds_to(history: list[dict], target: float) -> float | None:
    """The run's own clock (``elapsed``) at the first epoch whose test accuracy reaches ``target``."""
    return next((h["elapsed"] for h in history if h["test_acc"] >= target), None)


KINDS = ("2 ranks x 1 thread", "1 process x 2 threads", "1 process x 1 thread, 1 busy process")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet5")
    p.add_argument("--data", default="fashion-mnist-mini")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--limit-train", type=int, default=None, help="first N training images (default: all)")
    p.add_argument("--limit-test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("this benchmark compares ways to use 2 cores; this process may use only one")

    flags = [args.model, "--data", args.data, "--epochs", str(args.epochs), "-b", "128", "--seed",
             str(args.seed), "--limit-test", str(args.limit_test)]
    if args.limit_train:
        flags += ["--limit-train", str(args.limit_train)]
    with tempfile.TemporaryDirectory() as tmp, LoadMonitor() as whole:
        rows = [measure(kind, flags, tmp) for kind in KINDS]
    target = min(r["final_test_acc"] for r in rows)
    base = rows[1]
    for r in rows:
        r["seconds_to_target"] = seconds_to(r["history"], target)
        r["speed_vs_1x2"] = round(r["images_per_s"] / base["images_per_s"], 3)

    print(f"\n{args.model} on {args.data}, {args.epochs} epochs, global batch 128; "
          f"target: {100 * target:.2f}% test accuracy (the lowest final accuracy of the rows)")
    print(f"{'':<38} {'img/s':>8} {'vs 1x2':>7} {'s to target':>11} {'final acc':>9} {'wall s':>7} "
          f"{'spin':>5} {'bkgnd':>6}")
    for r in rows:
        to = r["seconds_to_target"]
        print(f"{r['kind']:<38} {r['images_per_s']:>8,.0f} {r['speed_vs_1x2']:>6.2f}x "
              f"{'-' if to is None else f'{to:.1f}':>11} {100 * r['final_test_acc']:>8.2f}% "
              f"{r['wall_s']:>7.1f} "
              f"{r['spin_loop_cores']:>5.2f} {r['background_cores']:>6.2f}{'  NOISY' if r['noisy'] else ''}")
    print(f"\nwhole run: {whole.wall:.0f} s; other processes (the spin loop included) "
          f"{whole.other_cores:.2f} cores on average")
    path = write_results("distributed_throughput", {
        "cpu": cpu_description(), "args": vars(args), "target_test_acc": target, "rows": rows,
        "whole_run": whole.as_dict(), "seconds": round(whole.wall, 1)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
