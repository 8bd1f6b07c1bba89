"""The canvas tasks' geometry as ``--task-opt`` settings, named as `svertka data export
canvas` names its flags: ``size`` (canvas side, px), ``min_items`` and ``max_items`` (items
per canvas), ``scale`` (item scale range LOW,HIGH) and ``max_iou`` (the overlap cap).

Each setting overrides the task's preset in a copy of its ``CanvasConfig``, checked when the
task is made, so a geometry no canvas can have fails in one line before any canvas is drawn
(`svertka train --task detect --task-opt size=20`). The settings are task options, so the
checkpoint records them and `svertka eval` / `svertka predict` of the run use the same
geometry. (More items than fit under the overlap cap shows only by trying: the generator
raises that one-line error while drawing the first canvases.)

A task uses the functions here::

    options = {..., **canvas_options(PRESET, GEOMETRY)}             # the class's options
    self.canvas = canvas_config(self, PRESET)                        # in __init__
    check_model_size(name, self.canvas, fits)                        # before drawing (check_training)
    check_memory(self.canvas, count)                                 # before drawing count canvases
"""
from __future__ import annotations

from dataclasses import replace

from ..argtypes import Range, float_range, fraction, positive_int
from ..data.canvas import CHUNK, MAX_SIZE, CanvasConfig
from ..errors import SvertkaError, UsageError

__all__ = ["GEOMETRY", "ONE_ITEM", "canvas_options", "canvas_config", "check_model_size", "check_memory"]

GEOMETRY = ("size", "min_items", "max_items", "scale", "max_iou")  # canvases of several items
ONE_ITEM = ("size", "scale")  # one item per canvas: no item count, nothing to overlap


def canvas_options(preset: CanvasConfig, keys=GEOMETRY) -> dict:
    """Task option entries ``{key: (default, parse, help)}`` for the geometry ``keys``,
    defaulting to ``preset``'s values."""
    entries = {
        "size": (preset.size, positive_int, f"size=N: the canvas side in px (default {preset.size})"),
        "min_items": (preset.min_items, positive_int,
                      f"min_items=N: fewest items per canvas (default {preset.min_items})"),
        "max_items": (preset.max_items, positive_int,
                      f"max_items=N: most items per canvas (default {preset.max_items})"),
        "scale": (Range(preset.scale), float_range,
                  f"scale=LOW,HIGH: the item scale range (default {Range(preset.scale)})"),
        "max_iou": (preset.max_iou, fraction,
                    f"max_iou=F: cap on the IoU of two items' boxes (default {preset.max_iou})"),
    }
    return {k: entries[k] for k in keys}


def canvas_config(task, preset: CanvasConfig) -> CanvasConfig:
    """``preset`` with the task's geometry options, checked: a one-line UsageError naming the
    options given when no canvas can be drawn with it."""
    changes = {k: (tuple(v) if k == "scale" else v) for k, v in task.opts.items() if k in GEOMETRY}
    config = replace(preset, **changes)
    try:
        return config.check()
    except UsageError as e:
        given = dict(getattr(task.cfg, "task_options", None) or {})
        named = " ".join(f"{k}={given[k]}" for k in GEOMETRY if k in given)
        raise UsageError(f"--task-opt {named}: {e}" if named else str(e)) from None


def check_model_size(model: str, canvas: CanvasConfig, fits, search: int = 4) -> None:
    """A one-line UsageError when zoo model ``model`` cannot work on ``canvas``-sized inputs
    (a U-Net needs a multiple of 16, a fixed head one size), naming the nearest sizes it
    takes; ``fits(output_shape, size)`` says whether an output suits the task. Silent for a
    model that does not suit the task at its own size either, or that is no zoo name: the
    task's ``network`` gives that error. Only shapes are inferred (no weights), a few ms a size."""
    from ..analysis import output_shape
    from ..zoo import create_model, list_models

    if model not in list_models():
        return

    def ok(size) -> bool:
        try:
            net = create_model(model, input_size=size)
            return bool(fits(tuple(output_shape(net)), size))
        except SvertkaError:
            return False

    size, own = canvas.size, create_model(model).input_shape[1]
    if ok(size) or not ok(own):
        return
    lowest = canvas.patch  # a canvas holds the largest item
    highest = min(search * max(size, lowest), MAX_SIZE)
    below = next((s for s in range(size - 1, lowest - 1, -1) if ok(s)), None)
    above = next((s for s in range(size + 1, highest + 1) if ok(s)), None)
    found = [s for s in (below, above) if s is not None]
    if found:
        sizes = " and ".join(str(s) for s in found)
        hint = f"the nearest {'sizes' if len(found) > 1 else 'size'} it takes: {sizes}"
        hint += f" (its own: {own})" if len(found) == 1 and own not in found else ""  # a one-size model
    else:
        hint = f"it takes no size from {lowest} to {highest} px; use another model"
    raise UsageError(f"--task-opt size={size}: {model} cannot work on {size}x{size} canvases; {hint}")


HELD, DRAWING = 2, 8  # bytes a canvas pixel takes: kept (image + owner mask), and while a chunk is drawn


def check_memory(canvas: CanvasConfig, count: int) -> None:
    """A one-line UsageError, before any drawing, when ``count`` canvases cannot fit in the
    memory the system has free (a large ``size`` with the default counts), instead of a
    MemoryError after minutes of drawing."""
    from ..data.formats import available_memory

    free = available_memory()
    need = (count * HELD + CHUNK * DRAWING) * canvas.size ** 2
    if free is not None and need > free:
        s = canvas.size
        raise UsageError(f"{count:,} canvases of {s}x{s} px take about {need / 1e9:.1f} GB in memory, "
                         f"more than the {free / 1e9:.1f} GB free; draw fewer (--task-opt canvases=N, "
                         f"--limit-train, --limit-test) or smaller ones (--task-opt size=N)")
