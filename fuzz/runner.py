"""The worker pool and the outcome table.

Each input ends as one of:
- ``accepted``; ``svertka`` (svertka's own error, one line) -- both fine;
- ``other``: any other exception, a traceback for the user;
- ``hang``: more than 5 s of CPU (or 60 s of wall clock) on one input;
- ``memory``: a MemoryError or more than 2 GiB of peak RSS over the worker's base;
- ``signal``: the worker died (SIGSEGV, SIGABRT, ...).
Workers are restarted after a hang or a death; the input that did it is
named by (parser, index, seed) and can be replayed with ``--replay``.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

CPU_LIMIT_S = 5.0
WALL_LIMIT_S = 60.0
FAILURES = ("other", "hang", "memory", "signal")
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _child_setup(nice: int) -> None:
    """In the worker, before exec: die with the pool (Linux prctl PR_SET_PDEATHSIG), then be nice."""
    import ctypes

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if nice:
        os.nice(nice)


class Worker:
    def __init__(self, seeds_dir: Path, nice: int = 0):
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([str(Path(root) / "src"), root]
                                            + [p for p in [env.get("PYTHONPATH")] if p])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fuzz.worker", str(seeds_dir), str(write_fd)],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env, cwd=root, text=True,
            preexec_fn=lambda: _child_setup(nice))
        os.close(write_fd)
        self.answers = os.fdopen(read_fd, "r")
        self.job = None
        self.started = self.cpu0 = 0.0
        ready = self.answers.readline()
        if not ready:
            raise RuntimeError("a fuzz worker died while starting; run `python -m fuzz.worker` to see why")

    def send(self, job):
        self.job = job
        self.started, self.cpu0 = time.monotonic(), _cpu_seconds(self.proc.pid)
        self.proc.stdin.write(f"{job[0]} {job[1]} {job[2]}\n")
        self.proc.stdin.flush()

    def over_time(self, cpu_limit: float) -> bool:
        return (_cpu_seconds(self.proc.pid) - self.cpu0 > cpu_limit
                or time.monotonic() - self.started > WALL_LIMIT_S)

    def kill(self):
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.answers.close()
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass


def run_campaign(counts: dict[str, int], seed: int, seeds_dir: Path, jobs: int = 2, nice: int = 0,
                 progress=None, cpu_limit: float = CPU_LIMIT_S, log: Path | None = None,
                 done: list[dict] = ()) -> list[dict]:
    """Run ``counts[parser]`` inputs per parser; return one record per input
    (also appended to ``log`` as JSON lines, as they come, when given).
    Inputs already in ``done`` (records of an interrupted run of the same
    seed) are not run again; their records are kept."""
    from .seeds import make_seeds

    make_seeds(seeds_dir)  # once, before the workers read them
    finished = {(r["parser"], r["index"]) for r in done}
    queue = [(p, i, seed) for i in range(max(counts.values(), default=0)) for p in counts
             if i < counts[p] and (p, i) not in finished]
    queue.reverse()
    results: list[dict] = [r for r in done if r["parser"] in counts and r["index"] < counts[r["parser"]]]
    log_file = open(log, "a") if log else None  # noqa: SIM115 - closed below
    sel = selectors.DefaultSelector()
    workers = []

    def start():
        w = Worker(seeds_dir, nice)
        sel.register(w.answers, selectors.EVENT_READ, w)
        workers.append(w)
        return w

    def feed(w):
        if queue:
            w.send(queue.pop())
        else:
            w.job = None

    def replace(w):
        sel.unregister(w.answers)
        workers.remove(w)
        w.kill()
        feed(start())

    for _ in range(jobs):
        feed(start())
    total = len(queue) + sum(1 for w in workers if w.job) + len(results)
    t0, shown, logged = time.monotonic(), 0, len(results)
    while any(w.job for w in workers):
        if log_file and len(results) > logged:
            log_file.write("".join(json.dumps(r) + "\n" for r in results[logged:]))
            log_file.flush()
            logged = len(results)
        for key, _ in sel.select(timeout=0.25):
            w = key.data
            line = w.answers.readline()
            if line:
                results.append(json.loads(line))
                feed(w)
                continue
            code = w.proc.wait()  # dead: no answer
            parser, index, _ = w.job
            name = signal.Signals(-code).name if code < 0 else f"exit {code}"
            results.append({"parser": parser, "index": index, "outcome": "signal", "type": name, "msg": ""})
            replace(w)
        for w in list(workers):
            if w.job and w.over_time(cpu_limit):
                parser, index, _ = w.job
                results.append({"parser": parser, "index": index, "outcome": "hang", "type": "",
                                "msg": f"over {cpu_limit:g} s CPU or {WALL_LIMIT_S:g} s wall"})
                replace(w)
        if progress and len(results) >= shown + 1000:
            shown = len(results) // 1000 * 1000
            progress(f"{len(results):,}/{total:,} inputs, {time.monotonic() - t0:.0f} s")
    for w in workers:
        w.kill()
    if log_file:
        log_file.write("".join(json.dumps(r) + "\n" for r in results[logged:]))
        log_file.close()
    return results


def summarize(results: list[dict]) -> dict:
    table = defaultdict(lambda: {"inputs": 0, **{k: 0 for k in ("accepted", "svertka", *FAILURES, "harness")},
                                 "other_types": Counter(), "raw_warnings": 0, "examples": [], "cpu_s": 0.0,
                                 "max_cpu_s": 0.0, "max_peak_mb": 0.0})
    for r in results:
        row = table[r["parser"]]
        row["inputs"] += 1
        row["cpu_s"] = round(row["cpu_s"] + r.get("cpu_s", 0), 3)
        row["max_cpu_s"] = max(row["max_cpu_s"], r.get("cpu_s", 0))
        row["max_peak_mb"] = max(row["max_peak_mb"], r.get("peak_mb", 0))
        row[r["outcome"]] += 1
        if r["outcome"] == "other":
            row["other_types"][r["type"]] += 1
        if r.get("warnings"):
            row["raw_warnings"] += 1
        if (r["outcome"] in FAILURES or r.get("warnings")) and len(row["examples"]) < 5:
            row["examples"].append(r)
    return {p: {**row, "other_types": dict(row["other_types"])} for p, row in table.items()}


def format_table(summary: dict, order) -> str:
    lines = ["| parser | inputs | accepted | svertka error | other exceptions (tracebacks) "
             "| hangs > 5 s | > 2 GiB | killed by signal | raw warnings |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    totals = Counter()
    for p in order:
        if p not in summary:
            continue
        row = summary[p]
        other = f"{row['other']:,}" + (" (" + ", ".join(f"{n} {t}" for t, n in sorted(
            row["other_types"].items(), key=lambda kv: -kv[1])) + ")" if row["other"] else "")
        lines.append(f"| {p} | {row['inputs']:,} | {row['accepted']:,} | {row['svertka']:,} | {other} | "
                     f"{row['hang']:,} | {row['memory']:,} | {row['signal']:,} | {row['raw_warnings']:,} |")
        for k in ("inputs", "accepted", "svertka", *FAILURES, "raw_warnings"):
            totals[k] += row[k]
    lines.append(f"| **all** | {totals['inputs']:,} | {totals['accepted']:,} | {totals['svertka']:,} | "
                 f"{totals['other']:,} | {totals['hang']:,} | {totals['memory']:,} | {totals['signal']:,} | "
                 f"{totals['raw_warnings']:,} |")
    return "\n".join(lines)
