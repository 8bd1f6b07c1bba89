"""What every benchmark records beside its ratios: the machine's load while it
ran (busy time of *other* processes, from /proc/stat), and the fp32 / bf16
GEMM peaks measured in the same run. Absolute times on a shared 2-core machine
are noise; a run where others took a sizeable share of a core is flagged."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

CONTENDED_CORES = 0.25  # other processes busy for more than a quarter of a core


def _cpu_jiffies() -> int:
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in parts[:8])
    return user + nice + system + irq + softirq + steal


def _own_jiffies() -> int:
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime


class LoadMonitor:
    """with LoadMonitor() as load: ...; load.other_cores = mean cores used by others."""

    def __enter__(self):
        self.t0, self.all0, self.own0 = time.perf_counter(), _cpu_jiffies(), _own_jiffies()
        return self

    def __exit__(self, *exc):
        hz = os.sysconf("SC_CLK_TCK")
        wall = time.perf_counter() - self.t0
        other = max(0, (_cpu_jiffies() - self.all0) - (_own_jiffies() - self.own0)) / hz
        self.other_cores = other / wall if wall > 0 else 0.0
        self.contended = self.other_cores > CONTENDED_CORES
        return False

    def as_dict(self) -> dict:
        return {"other_processes_cores": round(self.other_cores, 3), "contended": self.contended}


def gemm_peak_gflops(dtype: str = "fp32", n: int = 2048, repeats: int = 5) -> float:
    """Best-of GEMM throughput: NumPy/OpenBLAS for fp32, torch for bf16."""
    best = float("inf")
    if dtype == "fp32":
        import numpy as np
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        b = a.copy()
        a @ b
        for _ in range(repeats):
            t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
    else:
        import torch
        a = torch.randn(n, n, dtype=torch.bfloat16)
        b = a.clone()
        a @ b
        for _ in range(repeats):
            t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def describe() -> dict:
    return {"cpus": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version()}


def write_results(name: str, payload: dict) -> Path:
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"machine": describe(), **payload}, indent=1))
    return path
