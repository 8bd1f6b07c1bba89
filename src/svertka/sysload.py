"""How much CPU *other* processes took: busy jiffies of the CPUs this process
may run on (/proc/stat) minus this process's own. Throughput on a shared 2-core
machine is only comparable when that is near zero, so training epochs and
benchmarks record it, and the torch backend sizes its thread pool from it
(svertka.threads). None where /proc is not there.

The parsing is pure (text in, numbers out) so tests feed it synthetic samples.
"""
from __future__ import annotations

import os
import time
from typing import NamedTuple


class LoadSample(NamedTuple):
    """One reading: when, busy jiffies of the watched CPUs, jiffies of this process."""
    t: float
    busy: int
    own: int


def allowed_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return None


def busy_jiffies(proc_stat: str, cpus: set[int] | None = None) -> int:
    """Busy jiffies (all but idle and iowait) from /proc/stat text: of the ``cpus``
    given (their ``cpuN`` lines), else of the whole machine (the ``cpu`` line).
    Restricting to this process's CPUs keeps load on CPUs it cannot use out of the count."""
    total = 0
    for line in proc_stat.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu"):
            break  # the cpu lines come first
        if cpus is None and name != "cpu":
            continue
        if cpus is not None and (name == "cpu" or int(name[3:]) not in cpus):
            continue
        v = [int(x) for x in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(v) - v[3] - v[4]
        if cpus is None:
            break
    return total


def own_jiffies(self_stat: str) -> int:
    """utime + stime + cutime + cstime from /proc/self/stat text (the command name
    may hold spaces and parentheses, so split after its last ')')."""
    return sum(int(x) for x in self_stat.rsplit(")", 1)[1].split()[11:15])


def sample(cpus: set[int] | None = None) -> LoadSample | None:
    """Read the machine now; None where /proc cannot be read."""
    if cpus is None:
        cpus = allowed_cpus()
        if cpus is not None and len(cpus) >= (os.cpu_count() or 0):
            cpus = None  # all of them: the summary line is enough
    try:
        with open("/proc/stat") as f:
            stat = f.read()
        with open("/proc/self/stat") as f:
            own = own_jiffies(f.read())
        return LoadSample(time.perf_counter(), busy_jiffies(stat, cpus), own)
    except (OSError, ValueError, IndexError):
        return None


def other_cores_between(a: LoadSample | None, b: LoadSample | None,
                        clk_tck: int | None = None) -> float | None:
    """Mean cores busy with other processes between two samples."""
    if a is None or b is None or b.t <= a.t:
        return None
    clk_tck = clk_tck or os.sysconf("SC_CLK_TCK")
    other = max(0, (b.busy - a.busy) - (b.own - a.own)) / clk_tck
    return other / (b.t - a.t)


class OtherLoad:
    """Starts counting when made; ``other_cores()`` = mean cores used by other
    processes since then."""

    def __init__(self):
        self.mark = sample()
        self.t0 = self.mark.t if self.mark else time.perf_counter()

    @property
    def wall(self) -> float:
        return time.perf_counter() - self.t0

    def other_cores(self) -> float | None:
        return other_cores_between(self.mark, sample())
