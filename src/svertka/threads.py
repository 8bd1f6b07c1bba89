"""How many threads torch should use: as many as there are *free* cores.

torch's intra-op threads meet at a barrier after every op. When another
process holds one of the cores, the thread that lands there stalls the others:
on the 2-core machine LeNet-5 trained at 1,326 img/s with 2 threads against
6,661 with 1 while one other process was busy (issue 16). So unless ``--threads N`` fixes
it, the count is picked from the load of other processes (svertka.sysload),
measured over a short window at start and over each epoch after that.

The thread count changes float rounding (reductions split differently), not
results beyond it: a run is bit-reproducible only with a fixed ``--threads``.
"""
from __future__ import annotations

import math
import os
import time

from .errors import UsageError
from .sysload import LoadSample, allowed_cpus, other_cores_between, sample

# A core counts as taken once other processes keep it busy more than this share
# of the time: a stalled barrier costs several times what the lost thread gives.
TAKEN_AT = 0.2
START_WINDOW_S = 0.2  # long enough for /proc/stat's 10 ms ticks to tell a busy core from an idle one


def available_cores() -> int:
    cpus = allowed_cpus()
    return len(cpus) if cpus else os.cpu_count() or 1


def pick_threads(other_cores: float | None, cores: int) -> int:
    """The policy: one thread per core not taken by other processes, at least one.
    Unknown load (no /proc) keeps every core."""
    if other_cores is None:
        return cores
    taken = max(0, math.ceil(other_cores - TAKEN_AT))
    return max(1, min(cores, cores - taken))


def threads_from_samples(before: LoadSample | None, after: LoadSample | None, cores: int,
                         clk_tck: int | None = None) -> int:
    """pick_threads over the load between two /proc/stat samples."""
    return pick_threads(other_cores_between(before, after, clk_tck), cores)


def check_threads(n, cores: int | None = None) -> None:
    """A fixed thread count must be a whole number from 1 to the cores this process may use."""
    cores = cores or available_cores()
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= cores:
        raise UsageError(f"--threads must be a whole number from 1 to this machine's {cores} cores, "
                         f"got {n!r}; "
                         f"or leave it out to use the cores other processes leave free")


class ThreadPolicy:
    """Owns torch's thread count for one run: ``start()`` once, then
    ``recheck(other_cores)`` after each epoch. ``n`` is the count in force,
    ``note`` says why in words."""

    def __init__(self, fixed: int | None, set_threads, cores: int | None = None):
        self.fixed, self.set_threads = fixed, set_threads
        self.cores = cores or available_cores()
        self.n, self.note = None, ""

    def _apply(self, n: int, note: str) -> bool:
        changed = n != self.n
        if changed:
            self.set_threads(n)
        self.n, self.note = n, note
        return changed

    def start(self) -> int:
        if self.fixed is not None:
            self._apply(self.fixed, "")  # the user's choice: nothing to explain
        elif self.cores == 1:
            self._apply(1, "threads: 1 (one core)")
        else:
            before = sample()
            time.sleep(START_WINDOW_S)
            self._explain(other_cores_between(before, sample()), "at start")
        return self.n

    def recheck(self, other_cores: float | None) -> bool:
        """Re-pick from the last epoch's load; True when the count changed."""
        if self.fixed is not None or self.cores == 1:
            return False
        return self._explain(other_cores, "over the last epoch")

    def _explain(self, other: float | None, when: str) -> bool:
        n = pick_threads(other, self.cores)
        if other is None:
            why = "load unknown"
        else:
            why = f"other processes kept {other:.1f} cores busy {when}"
        return self._apply(n, f"threads: {n} of {self.cores} cores ({why}; --threads N fixes it)")
