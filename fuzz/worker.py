"""A fuzz worker: ``python -m fuzz.worker SEEDS_DIR RESULT_FD``.

Reads jobs ("parser index seed" lines) on stdin, makes the input, runs the
parser, and answers one JSON line per job on RESULT_FD. Its address space is
capped (RLIMIT_AS) at what it holds after start-up plus the memory limit, so
a blow-up ends as a MemoryError here, never as a machine out of memory; its
peak RSS per job is measured (the kernel's VmHWM, reset before each job).
Anything the parsers print goes to /dev/null, away from the answers.
"""
from __future__ import annotations

import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

MEMORY_LIMIT = 2 << 30


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def classify(exc: BaseException | None) -> tuple[str, str, str]:
    """(outcome, exception type, first line of the message)."""
    from svertka.errors import SvertkaError

    if exc is None:
        return "accepted", "", ""
    name = type(exc).__name__
    text = str(exc)
    if isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower():
        return "memory", name, text[:200]
    if isinstance(exc, SvertkaError):
        if "\n" in text.strip() or not text.strip():
            return "other", f"{name} (not one line)", text[:200]
        return "svertka", name, text[:200]
    return "other", name, text.split("\n", 1)[0][:200]


def main() -> None:
    seeds_dir, fd = Path(sys.argv[1]), int(sys.argv[2])
    answers = os.fdopen(fd, "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    limit = sys.getrecursionlimit()  # the parsers run under Python's default, as in the CLI

    import torch  # noqa: F401 - imported before the cap, as the CLI would have it loaded

    torch.set_num_threads(1)
    import svertka.train  # noqa: F401
    from svertka.zoo import create_model  # noqa: F401

    from . import mutate, targets
    from .seeds import make_seeds

    seeds = make_seeds(seeds_dir)
    base_vm = _status_kb("VmSize") * 1024
    resource.setrlimit(resource.RLIMIT_AS, (base_vm + MEMORY_LIMIT + (256 << 20), resource.RLIM_INFINITY))
    can_reset = _reset_peak()
    work_root = Path(tempfile.mkdtemp(prefix="svertka-fuzz-"))
    answers.write(json.dumps({"ready": True}) + "\n")

    for line in sys.stdin:
        parser, index, seed = line.split()
        index, seed = int(index), int(seed)
        work = work_root / f"{parser}-{index}"
        work.mkdir()
        r = random.Random(f"{seed}:{parser}:{index}")
        exc = None
        sys.setrecursionlimit(20_000)  # the mutations build (and json.dumps) trees 5,000 deep
        try:
            path = mutate.make_input(parser, seeds, seeds_dir, r, work)
        except Exception as e:  # a bug of the harness, not of svertka: say so, do not count it
            answers.write(json.dumps({"parser": parser, "index": index, "outcome": "harness",
                                      "type": type(e).__name__, "msg": str(e)[:200]}) + "\n")
            shutil.rmtree(work, ignore_errors=True)
            continue
        finally:
            sys.setrecursionlimit(limit)
        base_rss = _status_kb("VmRSS") * 1024
        if can_reset:
            _reset_peak()
        t0 = time.process_time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                targets.run(parser, path, index, seeds_dir)
            except BaseException as e:  # noqa: BLE001 - classifying everything is the point
                exc = e
                if isinstance(e, KeyboardInterrupt):
                    raise
        outcome, etype, msg = classify(exc)
        tb = "".join(traceback.format_exception(exc)[-3:])[-600:] if outcome == "other" else ""
        exc = None
        peak = _status_kb("VmHWM") * 1024 if can_reset else 0
        if peak - base_rss > MEMORY_LIMIT:
            outcome = "memory"
        raw_warnings = sorted({type(w.message).__name__ if isinstance(w.message, Warning) else str(w.category)
                               for w in caught if not issubclass(w.category, (DeprecationWarning,))})
        answers.write(json.dumps({"parser": parser, "index": index, "outcome": outcome, "type": etype,
                                  "msg": msg, "tb": tb,
                                  "peak_mb": round(max(0, peak - base_rss) / 2**20, 1),
                                  "cpu_s": round(time.process_time() - t0, 3),
                                  "warnings": raw_warnings}) + "\n")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
