"""Classification of 28x28 box crops of the detect task's canvases: the data of a
detector's second stage (:mod:`svertka.tasks.two_stage`).

Each item's box is cut from its canvas as it is (the neighbours' pixels that fall
inside stay, as they do in a detector's box), padded to a square about its centre
and resampled to 28x28 (:func:`svertka.tasks.baseline.crop_boxes`). The training
and validation boxes are the true ones with each side moved by up to ``jitter`` of
the box's width or height, because a detector's boxes are a little off; the test
boxes are the true ones, so the test accuracy is the crop classifier's alone.

Canvases as the detect task draws them (same preset, geometry options and stream
seeds): training items with seed 1 (train) and 2 (validation), test items with
seed 0, so the test crops come from the detect task's test canvases.
"""
from __future__ import annotations

import numpy as np

from ..argtypes import _number, positive_int
from ..data.canvas import TASK_PRESETS
from .baseline import ITEM, crop_boxes
from .canvas_options import GEOMETRY, canvas_config, canvas_options, check_memory
from .detect import DetectTask
from .task import ClassifyTask, TaskData, register_task

__all__ = ["ITEM_SHAPE", "jittered", "box_crops", "CropsTask"]

ITEM_SHAPE = (ITEM, ITEM, 1)  # a crop: H, W, C
JITTER = 0.06  # the default: up to 6% of the box's size per side
JITTER_SEEDS = {"train": 0, "val": 1}  # the generators that move the box sides; test boxes are not moved


def jittered(boxes: np.ndarray, frac: float, rng) -> np.ndarray:
    """Each side of each xyxy box moved by up to ``frac`` of the box's width or height
    (uniformly, one draw per side), kept at least 1 px wide and high."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    out = boxes + rng.uniform(-frac, frac, boxes.shape) * np.stack([w, h, w, h], 1)
    out[:, 2:] = np.maximum(out[:, 2:], out[:, :2] + 1)
    return out


def box_crops(canvases, jitter: float = 0.0, rng=None) -> tuple[np.ndarray, np.ndarray]:
    """(n x 28 x 28 x 1 uint8 crops, their int64 labels) of every item of ``canvases``
    (a :class:`svertka.data.canvas.Canvases`), canvas by canvas; with ``jitter`` > 0 the
    boxes are first moved by :func:`jittered` with ``rng``."""
    live = canvases.labels >= 0
    boxes = canvases.boxes[live]
    if jitter > 0:
        boxes = jittered(boxes, jitter, rng)
    return crop_boxes(canvases.images, np.nonzero(live)[0], boxes), canvases.labels[live].astype(np.int64)


def _jitter(text) -> float:
    return _number(text, float, lambda v: 0 <= v < 0.5, "a fraction of the box size in [0, 0.5)")


@register_task
class CropsTask(ClassifyTask):
    """`svertka train --task crops`: a classifier (lenet5 by default) of the detect task's
    box crops, trained as any classifier (cross-entropy, top-1, --aug flip)."""

    name = "crops"
    eval_options = ("test_canvases",)  # the test split; the rest is the model's
    options = {
        "canvases": (40_000, positive_int, "the number of training canvases, e.g. canvases=40000"),
        "test_canvases": (5_000, positive_int, "the number of test canvases, e.g. test_canvases=5000"),
        "jitter": (JITTER, _jitter, f"jitter=F: each side of a training box moved by up to F of its size "
                                    f"(default {JITTER})"),
        **canvas_options(TASK_PRESETS["detect"], GEOMETRY),
    }
    SEEDS = DetectTask.SEEDS  # the detect task's canvases

    def __init__(self, cfg):
        super().__init__(cfg)
        self.canvas = canvas_config(self, TASK_PRESETS["detect"])

    def _split(self, which: str, n: int, limit: int | None = None) -> TaskData:
        """Crops of ``n`` canvases of split ``which``, the first ``limit`` of them when given."""
        from ..data.canvas import CanvasGenerator
        from ..data.registry import REGISTRY

        items = "test" if which == "test" else "train"
        gen = CanvasGenerator.from_dataset(self.cfg.data, split=items, config=self.canvas, root=self.cfg.root)
        c = gen.generate(n, seed=self.SEEDS[which])
        jitter = 0.0 if which == "test" else self.opts["jitter"]
        crops, labels = box_crops(c, jitter, np.random.default_rng(JITTER_SEEDS.get(which, 0)))
        crops, labels = crops[:limit], labels[:limit]
        info = REGISTRY[gen.name.split("/")[0]]  # the items' dataset: Fashion-MNIST's mean and std
        moved = f", sides moved by up to {jitter:g} of the box" if jitter else ""
        where = (f"{len(crops):,} box crops of {n:,} {gen.name} canvases of {c.config.size}x{c.config.size} "
                 f"(seed {self.SEEDS[which]}{moved})")
        return TaskData(crops, {"label": labels}, tuple(c.classes), tuple(info.mean), tuple(info.std), where)

    def _count(self, option: str, limit: int | None) -> int:
        # each canvas holds at least one item, so `limit` canvases give at least `limit` crops
        return min(self.opts[option], limit or self.opts[option])

    def load(self):
        cfg = self.cfg
        n = self._count("canvases", cfg.limit_train)
        n_val = round(cfg.val_fraction * n)
        n_test = self._count("test_canvases", cfg.limit_test)
        check_memory(self.canvas, n + n_val + n_test)
        train = self._split("train", n, cfg.limit_train)
        val = self._split("val", n_val) if n_val else None
        return train, val, self._split("test", n_test, cfg.limit_test)

    def load_test(self) -> TaskData:
        n = self._count("test_canvases", self.cfg.limit_test)
        check_memory(self.canvas, n)
        return self._split("test", n, self.cfg.limit_test)
