"""What a task supplies to the one training loop: its data, its model (head
included, as spec nodes), its loss, its metrics and its predictions.

Classification is one task among them (``ClassifyTask``). The loop in
:mod:`svertka.train.loop` only moves images, targets and outputs around:

    task = get_task(cfg.task)(cfg)           # the class registered under that name
    train, val, test = task.load()           # TaskData: uint8 images + {name: array} targets
    net = task.network(train)                # a spec Network
    loss, stats = task.loss(F, out, targets) # per batch, on the backend (F: its functional module)
    ev = task.evaluator(); ev.add(outputs, targets); ev.result()   # NumPy, streamed over a split
    task.decode(outputs, meta)               # per-image predictions for `svertka predict`

A loss is written once for both backends where it can be: ``F`` is
``torch.nn.functional`` or the NumPy engine's ``functional``, ``out`` the backend's
tensor and ``targets`` its arrays. Where the engine lacks an op, the task lists
only ``torch`` in ``train_backends``.
"""
from __future__ import annotations

from argparse import ArgumentTypeError
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError

__all__ = ["TaskData", "Task", "Evaluator", "AccuracyEvaluator", "ClassifyTask", "TASKS", "register_task",
           "get_task", "task_names", "task_of_meta"]


@dataclass
class TaskData:
    """One split: uint8 images (N x H x W x C) and the targets, each an array whose
    first dimension is N."""

    images: np.ndarray
    targets: dict[str, np.ndarray]
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    location: str = ""
    extra: dict = field(default_factory=dict)  # anything else a task keeps with a split

    def __post_init__(self):
        n = len(self.images)
        for k, v in self.targets.items():
            if len(v) != n:
                raise ValueError(f"target {k!r} has {len(v)} rows for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """H, W, C, as ``data.Dataset.image_shape``."""
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index) -> TaskData:
        return TaskData(self.images[index], {k: v[index] for k, v in self.targets.items()}, self.classes,
                        self.mean, self.std, self.location, self.extra)


class Evaluator:
    """Metrics streamed over a split: ``add`` each batch's raw outputs (NumPy
    float32) and targets (NumPy), then ``result`` gives {metric: float}."""

    def add(self, outputs: np.ndarray, targets: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, float]:
        raise NotImplementedError


class AccuracyEvaluator(Evaluator):
    def __init__(self):
        self.correct = self.n = 0

    def add(self, outputs, targets):
        self.correct += int((outputs.argmax(1) == targets["label"]).sum())
        self.n += len(outputs)

    def result(self):
        return {"acc": self.correct / max(1, self.n)}


class Task:
    """The base of every task. A subclass sets the class attributes and supplies
    the methods that raise NotImplementedError here."""

    name = ""
    score = "acc"  # the metric (an evaluator key) that picks best.safetensors on the validation split
    higher_is_better = True
    train_backends = ("torch", "numpy")  # the backends its loss runs on
    augments = False  # whether --aug (image-only augmentation) is valid: not where targets are geometric
    shown = ("acc",)  # metrics on the per-epoch line
    # --task-opt key=value settings: {key: (default, parse function, help)}
    options: dict = {}
    default_model = ""  # the zoo model trained when none is named
    eval_options: tuple = ()  # what `svertka eval --task-opt` may change: the test split's, not the model's

    @classmethod
    def model_for(cls, options: dict) -> str:
        """The model to train when none is named, given the --task-opt strings."""
        return cls.default_model

    def __init__(self, cfg):
        self.cfg = cfg
        given = dict(getattr(cfg, "task_options", None) or {})
        self._check_known(given)
        self.opts = {key: (self._parse(key, given[key]) if key in given else default)
                     for key, (default, _parse, _help) in self.options.items()}
        if not getattr(cfg, "model", None):
            cfg.model = self.model_for(given)

    def override_for_eval(self, given: dict) -> None:
        """Apply `svertka eval --task-opt key=value` settings; only ``eval_options`` may change."""
        self._check_known(given)
        for key, value in given.items():
            if key not in self.eval_options:
                may = ", ".join(self.eval_options) or "none of them"
                raise UsageError(f"--task-opt {key} was fixed when the run trained; eval may change "
                                 f"{may}")
            self.opts[key] = self._parse(key, value)

    def _check_known(self, given: dict) -> None:
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise UsageError(f"--task-opt {unknown[0]} is not an option of task {self.name}; "
                             f"its options: {known}")

    def _parse(self, key: str, value: str):
        _default, parse, help_ = self.options[key]
        try:
            return parse(value)
        except (ValueError, TypeError, UsageError, ArgumentTypeError) as e:
            raise UsageError(f"--task-opt {key}={value}: {e}; {help_}") from None

    def check_training(self) -> None:
        """One-line errors for settings this task cannot train with (the loop calls this;
        inference on any backend is fine)."""
        cfg = self.cfg
        if cfg.backend not in self.train_backends:
            raise UsageError(f"task {self.name} trains on the {' or '.join(self.train_backends)} "
                             f"backend only; use --backend {self.train_backends[0]}")
        if cfg.aug and not self.augments:
            raise UsageError(f"--aug transforms the image only, which would break task "
                             f"{self.name}'s targets; drop --aug")
        if cfg.tta != "none" and self.name != "classify":
            raise UsageError(f"--tta flip averages class scores; it does not apply to task {self.name}")

    # ---- each task supplies these

    def load(self) -> tuple[TaskData, TaskData | None, TaskData]:
        """The train, validation (or None) and test splits."""
        raise NotImplementedError

    def load_test(self) -> TaskData:
        """The test split alone (`svertka eval`); override where the others cost time to make."""
        return self.load()[2]

    def network(self, train: TaskData):
        """The spec Network, head included, for data like ``train``."""
        raise NotImplementedError

    def loss(self, F, out, targets: dict):
        """(mean loss with its graph, {name: backend scalar summed over the batch})."""
        raise NotImplementedError

    def evaluator(self) -> Evaluator:
        raise NotImplementedError

    def decode(self, outputs: np.ndarray, meta: dict) -> list[dict]:
        """JSON-able predictions, one per row of ``outputs``."""
        raise NotImplementedError

    def draw(self, image: np.ndarray, prediction: dict, path) -> None:
        raise UsageError(f"task {self.name} cannot draw its predictions")

    # ---- shared

    def meta(self) -> dict:
        """What a checkpoint records about the task (read back by eval and predict)."""
        return {"task": self.name, "task_options": {k: str(v) for k, v in self.opts.items()}}


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    if not cls.name or cls.name in TASKS:
        raise ValueError(f"task name {cls.name!r} is empty or taken")
    TASKS[cls.name] = cls
    return cls


def _load_all() -> None:
    from . import registry_all  # noqa: F401  (each task module registers itself)


def task_names() -> list[str]:
    _load_all()
    return sorted(TASKS)


def get_task(name: str) -> type[Task]:
    _load_all()
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_of_meta(meta: dict, cfg) -> Task:
    """The task a checkpoint was trained for (classification when it does not say),
    with its options, for inference with ``cfg``."""
    cfg.task = str((meta or {}).get("task") or "classify")
    opts = (meta or {}).get("task_options") or {}
    cfg.task_options = {str(k): str(v) for k, v in opts.items()} if isinstance(opts, dict) else {}
    return get_task(cfg.task)(cfg)


# ---------------------------------------------------------------- classification


@register_task
class ClassifyTask(Task):
    """Image classification: cross-entropy, top-1 accuracy."""

    name = "classify"
    augments = True
    default_model = "lenet5"

    def load(self):
        from ..data import load_dataset

        cfg = self.cfg
        if cfg.stream:  # read from disk batch by batch (svertka.data.streaming): the same cuts and seeds
            from ..data.streaming import stream_splits
            return stream_splits(cfg.root, cfg.image_size, cfg.crop_pct, cfg.train_crop, cfg.seed,
                                 cfg.val_fraction, cfg.split_seed, cfg.workers, cfg.limit_train,
                                 cfg.limit_test)
        split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
        common = dict(root=cfg.root, val_fraction=cfg.val_fraction, seed=split_seed)
        train = load_dataset(cfg.data, split="train", **common)
        val = load_dataset(cfg.data, split="val", **common) if cfg.val_fraction > 0 else None
        test = load_dataset(cfg.data, split="test", root=cfg.root)
        if cfg.limit_train:
            train.images, train.labels = train.images[: cfg.limit_train], train.labels[: cfg.limit_train]
        if cfg.limit_test:
            test.images, test.labels = test.images[: cfg.limit_test], test.labels[: cfg.limit_test]
        if len(train) == 0:
            raise UsageError(f"{cfg.data}: the training split is empty")

        def as_task(ds):
            return None if ds is None else TaskData(ds.images, {"label": np.asarray(ds.labels, np.int64)},
                                                    tuple(ds.classes), tuple(ds.mean), tuple(ds.std),
                                                    ds.location or "")
        return as_task(train), as_task(val), as_task(test)

    def network(self, train):
        from ..spec.geometry import fmt_shape
        from ..zoo import resolve_model

        cfg = self.cfg
        h, w, c = train.image_shape
        net = resolve_model(cfg.model, num_classes=train.num_classes, in_chans=c, input_size=h)
        if tuple(net.input_shape) != (c, h, w):
            raise UsageError(f"{cfg.model} takes {fmt_shape(net.input_shape)} inputs but {cfg.data} "
                             f"images are {c}x{h}x{w}; pick a model for this data")
        return net

    def loss(self, F, out, targets):
        y = targets["label"]
        loss = F.cross_entropy(out, y, label_smoothing=self.cfg.label_smoothing)
        return loss, {"acc": (out.detach().argmax(1) == y).sum()}

    def evaluator(self):
        return AccuracyEvaluator()

    def decode(self, outputs, meta):
        classes = list(meta.get("classes") or [])
        z = outputs.astype(np.float64)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return [{"class": classes[int(i)] if int(i) < len(classes) else str(int(i)), "index": int(i),
                 "prob": float(row[i])} for row, i in zip(p, p.argmax(1))]
