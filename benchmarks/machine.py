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

from svertka.sysload import OtherLoad

CONTENDED_CORES = 0.25  # other processes busy for more than a quarter of a core


class LoadMonitor:
    """with LoadMonitor() as load: ...; load.other_cores = mean cores used by others
    over load.wall seconds (svertka.sysload does the counting)."""

    def __enter__(self):
        self._probe = OtherLoad()
        return self

    def __exit__(self, *exc):
        self.wall = self._probe.wall
        self.other_cores = self._probe.other_cores() or 0.0
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
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    else:
        import torch
        a = torch.randn(n, n, dtype=torch.bfloat16)
        b = a.clone()
        a @ b
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
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
