"""How much CPU *other* processes took: busy jiffies of the whole machine
(/proc/stat) minus this process's own. Throughput on a shared 2-core machine
is only comparable when that is near zero, so training epochs and benchmarks
record it. None where /proc is not there."""
from __future__ import annotations

import os
import time


def _jiffies() -> tuple[int, int] | None:
    """(busy jiffies of the machine, jiffies of this process and its children)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        with open("/proc/self/stat") as f:
            own = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15])  # utime..cstime
    except (OSError, ValueError):
        return None
    return sum(v) - v[3] - v[4], own  # all but idle and iowait


class OtherLoad:
    """Starts counting when made; ``other_cores()`` = mean cores used by other
    processes since then."""

    def __init__(self):
        self.t0, self.mark = time.perf_counter(), _jiffies()

    @property
    def wall(self) -> float:
        return time.perf_counter() - self.t0

    def other_cores(self) -> float | None:
        now, wall = _jiffies(), self.wall
        if self.mark is None or now is None or wall <= 0:
            return None
        other = max(0, (now[0] - self.mark[0]) - (now[1] - self.mark[1])) / os.sysconf("SC_CLK_TCK")
        return other / wall
