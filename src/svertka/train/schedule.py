"""Learning-rate schedules as plain functions of the step: one code path for both
backends, and nothing to save but the step number.

``lr_factor(step)`` multiplies each parameter group's base LR. Warmup is linear
from ``1/warmup_steps`` to 1 over the first ``warmup_steps`` steps; the schedule
proper runs over the steps after it:

- ``cosine``: 1 -> ``min_factor`` along half a cosine; the last step is exactly ``min_factor``;
- ``onecycle``: without explicit warmup, 30 % of the steps ramp up linearly from
  1/25; then cosine down to 1/25 * 1e-4 (torch's OneCycleLR shape);
- ``step``: times ``decay_rate`` every ``decay_steps``;
- ``constant``: 1.
"""
from __future__ import annotations

import math

from ..errors import UsageError

SCHEDULES = ("cosine", "onecycle", "step", "constant")


class Schedule:
    def __init__(self, name: str, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.0,
                 decay_steps: int | None = None, decay_rate: float = 0.1):
        if name not in SCHEDULES:
            raise UsageError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
        if total_steps < 1:
            raise UsageError(f"a schedule needs at least one step, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise UsageError(f"warmup ({warmup_steps} steps) must not exceed training ({total_steps} steps)")
        self.name, self.total, self.min_factor, self.decay_rate = name, total_steps, min_factor, decay_rate
        if name == "onecycle" and warmup_steps == 0:
            warmup_steps = max(1, round(0.3 * total_steps))
            self.warmup_start = 1 / 25
            self.min_factor = min_factor or 1 / 25 * 1e-4
        else:
            self.warmup_start = None
        self.warmup = warmup_steps
        self.decay_steps = decay_steps or max(1, (total_steps - warmup_steps) // 3)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            if self.warmup_start is not None:  # onecycle: from 1/25 up to 1
                t = step / max(1, self.warmup - 1) if self.warmup > 1 else 1.0
                return self.warmup_start + (1 - self.warmup_start) * t
            return (step + 1) / self.warmup
        rest = self.total - self.warmup
        s = min(step - self.warmup, rest - 1)
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            return self.decay_rate ** (s // self.decay_steps)
        t = s / (rest - 1) if rest > 1 else 1.0  # 0 at the first step after warmup, 1 at the last
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * t))

    def curve(self) -> list[float]:
        return [self(s) for s in range(self.total)]
