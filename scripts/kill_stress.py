#!/usr/bin/env python3
"""SIGKILL training runs at random moments and inside checkpoint writes,
resume each with `svertka train --resume`, and check that every run ends
bit-identical to one that was never interrupted.

    python scripts/kill_stress.py                    # both backends, 10 random + 10 in-write kills each
    python scripts/kill_stress.py --backends numpy --random 2 --in-write 2 --json out.json

Per backend: one uninterrupted reference run, then runs that are each killed
up to --kills-per-run times and resumed until they finish.

- A random kill lands a uniform random time after the child prints its header
  line (the data is loaded and training starts), within the reference's time
  for the epochs still to run.
- An in-write kill pauses the child inside its n-th checkpoint write and kills
  it there: before the temp file is filled, or after it is filled and before
  its rename. The pause is a hook this script installs in the child (svertka
  itself has none): it wraps svertka.fileio.atomic_write.

A run passes when last.safetensors and best.safetensors hold the reference's
tensors bit for bit (weights and optimizer state) and the same metadata and
training state (history without its timing fields), metrics.jsonl lists the
same epochs with the same figures, and no temp file is left in the folder.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the svertka beside this script, as the children use
TIMING_KEYS = {"images_per_s", "seconds", "train_seconds", "elapsed", "other_cores"}
CHILD_TIMEOUT = 900  # seconds; a child that hangs this long is a failure

# Runs in the child: svertka's CLI, with an optional pause inside one checkpoint write.
BOOT = r"""
import os, sys, time
from pathlib import Path

hook = os.environ.get("KILL_STRESS_WRITE")
if hook:
    import svertka.fileio as fileio
    import svertka.train.checkpoint as checkpoint

    target, phase, marker = hook.split(":", 2)
    target, count, atomic_write = int(target), [0], fileio.atomic_write

    def pause(path):  # tell the parent where, in one rename so it never reads half a note
        Path(marker + ".w").write_text(f"{phase} {Path(path).name}")
        os.replace(marker + ".w", marker)
        time.sleep(3600)

    def paused_write(path, write):
        if str(path).endswith(".safetensors"):
            count[0] += 1
            if count[0] == target:
                if phase == "before":
                    return atomic_write(path, lambda tmp: (pause(path), write(tmp)))
                return atomic_write(path, lambda tmp: (write(tmp), pause(path)))
        return atomic_write(path, write)

    fileio.atomic_write = checkpoint.atomic_write = paused_write

from svertka.cli import main
sys.exit(main(sys.argv[1:]))
"""


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("KILL_STRESS_WRITE", None)
    return env


def train_args(backend: str, epochs: int, run_dir: Path) -> list[str]:
    if (run_dir / "config.json").is_file():
        return ["train", "--resume", str(run_dir)]
    return ["train", "lenet5", "--data", "fashion-mnist-mini", "--backend", backend, "--epochs", str(epochs),
            "-b", "64", "--limit-train", "512", "--limit-test", "128", "--val-fraction", "0.05",
            "--aug", "flip,crop:2", "--threads", "1", "--output", str(run_dir)]


CHILDREN: list[subprocess.Popen] = []  # killed if this script stops early


def launch(args, log: Path, env: dict):
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", BOOT, *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=ROOT)
    CHILDREN.append(proc)
    return proc


def wait_for(cond, proc, timeout: float) -> bool:
    """Poll ``cond`` every 5 ms until it holds (True) or ``proc`` exits (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if proc.poll() is not None:
            return cond()
        time.sleep(0.005)
    raise TimeoutError("child ran past the time limit")


def count_in(log: Path, text: str) -> int:
    return log.read_text(errors="replace").count(text) if log.exists() else 0


def header_count(log: Path) -> int:
    """Children that started training (their data loaded)."""
    return count_in(log, "svertka train: lenet5")


def final_count(log: Path, epochs: int) -> int:
    """Children that saved their last epoch (the line comes after the save)."""
    return count_in(log, f"epoch {epochs}/{epochs}  loss")


def epochs_done(run_dir: Path) -> int:
    m = run_dir / "metrics.jsonl"
    return len(m.read_text().splitlines()) if m.is_file() else 0


def finish(proc, log: Path) -> None:
    rc = proc.wait(CHILD_TIMEOUT)
    if rc != 0:
        raise RuntimeError(f"child exited {rc}; see {log}")


def run_clean(backend, epochs, run_dir, log) -> float:
    """Run (or resume) to the end with no kill; the seconds from its header to
    its last epoch's line (training and saving, not the start-up or the exit)."""
    seen, done = header_count(log), final_count(log, epochs)
    proc = launch(train_args(backend, epochs, run_dir), log, child_env())
    wait_for(lambda: header_count(log) > seen, proc, CHILD_TIMEOUT)
    t0 = time.monotonic()
    wait_for(lambda: final_count(log, epochs) > done, proc, CHILD_TIMEOUT)
    seconds = time.monotonic() - t0
    finish(proc, log)
    return seconds


def kill_random(backend, epochs, run_dir, log, pace: dict, rng) -> dict | None:
    """Start or resume, kill at a random moment of training; None if it finished first.
    ``pace["epoch_s"]``, the seconds an epoch takes, is updated whenever a child
    finishes first: the machine's load changes, and with it the pace."""
    remaining = max(1, epochs - epochs_done(run_dir))
    seen, done = header_count(log), final_count(log, epochs)
    proc = launch(train_args(backend, epochs, run_dir), log, child_env())
    if not wait_for(lambda: header_count(log) > seen, proc, CHILD_TIMEOUT):
        finish(proc, log)
        return None
    t0 = time.monotonic()
    delay = rng.uniform(0, pace["epoch_s"] * remaining)
    while time.monotonic() < t0 + delay and proc.poll() is None and final_count(log, epochs) == done:
        time.sleep(0.01)
    if proc.poll() is not None or final_count(log, epochs) > done:  # training ended first: no kill
        pace["epoch_s"] = (time.monotonic() - t0) / remaining
        finish(proc, log)
        return None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return {"at_s": round(delay, 3), "epochs_saved": epochs_done(run_dir)}


def kill_in_write(backend, epochs, run_dir, log, rng, marker: Path) -> dict | None:
    """Start or resume, pause in a random checkpoint write, kill there; None if it finished first."""
    remaining = max(1, epochs - epochs_done(run_dir))
    target, phase = rng.randint(1, 2 * remaining), rng.choice(["before", "after"])
    marker.unlink(missing_ok=True)
    env = child_env()
    env["KILL_STRESS_WRITE"] = f"{target}:{phase}:{marker}"
    proc = launch(train_args(backend, epochs, run_dir), log, env)
    if not wait_for(marker.exists, proc, CHILD_TIMEOUT):
        finish(proc, log)
        return None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    where = marker.read_text()
    marker.unlink()
    return {"write": target, "where": where, "epochs_saved": epochs_done(run_dir)}


def read_file(path: Path):
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def strip(history):
    return [{k: v for k, v in rec.items() if k not in TIMING_KEYS} for rec in history]


def compare(ref: Path, run: Path) -> list[str]:
    """What differs between two finished runs (empty: bit-identical)."""
    from svertka.errors import SvertkaError
    from svertka.train.checkpoint import read_checkpoint

    problems = []
    for name in ("last.safetensors", "best.safetensors"):
        if not (run / name).is_file():
            problems.append(f"{name} missing")
            continue
        try:
            read_checkpoint(run / name)  # svertka accepts it: whole, checksum right
        except SvertkaError as e:
            problems.append(f"{name} refused: {e}")
        (ta, ha), (tb, hb) = read_file(ref / name), read_file(run / name)
        if ta.keys() != tb.keys():
            problems.append(f"{name}: tensor names differ")
        diff = [k for k in ta if k in tb and (ta[k].dtype != tb[k].dtype or ta[k].shape != tb[k].shape
                                              or ta[k].tobytes() != tb[k].tobytes())]
        if diff:
            problems.append(f"{name}: {len(diff)} of {len(ta)} tensors differ ({', '.join(diff[:3])})")
        if ha.get("svertka") != hb.get("svertka"):
            problems.append(f"{name}: metadata differs")
        sa, sb = (json.loads(h["svertka_train"]) if "svertka_train" in h else None for h in (ha, hb))
        for state in (sa, sb):
            if state is not None:
                state["config"].pop("output", None)  # each run has its own folder
        if sa is not None or sb is not None:
            if sa is None or sb is None or strip(sa.pop("history")) != strip(sb.pop("history")) or sa != sb:
                problems.append(f"{name}: training state differs")
    ma, mb = ((d / "metrics.jsonl").read_text().splitlines() for d in (ref, run))
    if strip(map(json.loads, ma)) != strip(map(json.loads, mb)):
        problems.append("metrics.jsonl differs")
    csv = (run / "metrics.csv").read_text().splitlines()
    if [line.split(",")[0] for line in csv[1:]] != [str(json.loads(m)["epoch"]) for m in ma]:
        problems.append("metrics.csv epochs differ")
    temps = sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp"))
    if temps:
        problems.append(f"temp files left: {', '.join(temps)}")
    return problems


def campaign(backend, kind, total, args, work, ref, pace, rng, out) -> list[dict]:
    runs, landed, i = [], 0, 0
    marker = work / "paused"
    while landed < total:
        run_dir, log = work / f"{backend}-{kind}-{i}", work / f"{backend}-{kind}-{i}.log"
        i += 1
        kills = []
        while len(kills) < args.kills_per_run and landed < total:
            ev = (kill_random(backend, args.epochs, run_dir, log, pace, rng) if kind == "random"
                  else kill_in_write(backend, args.epochs, run_dir, log, rng, marker))
            if ev is None:
                break  # it finished before the kill
            kills.append(ev)
            landed += 1
        if not kills:
            continue  # it finished before the first kill: a clean run, not counted
        run_clean(backend, args.epochs, run_dir, log)  # the last resume, never killed (no-op if finished)
        problems = compare(ref, run_dir)
        runs.append({"run": run_dir.name, "kind": kind, "kills": kills, "identical": not problems,
                     "problems": problems})
        where = "; ".join(k.get("where") or f"at {k.get('at_s')} s" for k in kills)
        verdict = "bit-identical" if not problems else "DIFFERS: " + "; ".join(problems)
        print(f"  {run_dir.name}: {len(kills)} kills [{where}] -> {verdict}", file=out, flush=True)
    return runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--backends", nargs="+", default=["torch", "numpy"], choices=["torch", "numpy"])
    p.add_argument("--random", type=int, default=10, help="random kills per backend (default 10)")
    p.add_argument("--in-write", type=int, default=10,
                   help="kills inside checkpoint writes per backend (default 10)")
    p.add_argument("--kills-per-run", type=int, default=3,
                   help="kills before a run is let finish (default 3)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill times and write choices (default 0)")
    p.add_argument("--workdir", help="where the runs go (default: a temp folder, removed at the end)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the children are killed too
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="svertka-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    results, t0 = {}, time.monotonic()
    try:
        for backend in args.backends:
            ref = work / f"{backend}-ref"
            shutil.rmtree(ref, ignore_errors=True)
            ref_seconds = run_clean(backend, args.epochs, ref, work / f"{backend}-ref.log")
            print(f"{backend}: reference run, {ref_seconds:.1f} s of training", flush=True)
            runs = []
            for kind, total in (("random", args.random), ("in-write", args.in_write)):
                pace = {"epoch_s": ref_seconds / args.epochs}
                runs += campaign(backend, kind, total, args, work, ref, pace, rng, sys.stdout)
            results[backend] = runs
    finally:
        for proc in CHILDREN:
            if proc.poll() is None:
                proc.kill()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    rows = []
    for backend, runs in results.items():
        for kind in ("random", "in-write"):
            rs = [r for r in runs if r["kind"] == kind]
            kills = [k for r in rs for k in r["kills"]]
            rows.append({"backend": backend, "kind": kind, "kills": len(kills), "runs": len(rs),
                         "identical": sum(r["identical"] for r in rs),
                         "temp_left": sum(any("temp" in p for p in r["problems"]) for r in rs),
                         "where": {w: sum(1 for k in kills if k.get("where", "").startswith(w))
                                   for w in ("before last", "after last", "before best", "after best")}
                         if kind == "in-write" else
                         {f"in epoch {e}": sum(1 for k in kills if k["epochs_saved"] + 1 == e)
                          for e in range(1, args.epochs + 1)}})
    print("\n| backend | kills | count | runs | bit-identical runs (last and best) "
          "| runs with temp files left |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        where = ", ".join(f"{v} {k}" for k, v in r["where"].items() if v)
        kind = f"{r['kind']} ({where})" if where else r["kind"]
        print(f"| {r['backend']} | {kind} | {r['kills']} | {r['runs']} | "
              f"{r['identical']} of {r['runs']} | {r['temp_left']} |")
    print(f"\n{time.monotonic() - t0:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "runs": results, "args": vars(args)}, indent=1))
    return 0 if all(r["identical"] == r["runs"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
