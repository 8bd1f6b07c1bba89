"""Imports every task module, so each registers itself in ``svertka.tasks.task.TASKS``.
A new task adds its import line here."""
from . import (  # noqa: F401  (each module registers its task)
    crops,
    detect,
    localize,
    points,
    segment,
    task,
    upscale,
)
