"""Imports every task module, so each registers itself in ``svertka.tasks.task.TASKS``.
A new task adds its import line here."""
from . import task  # noqa: F401  (classify)
