"""The training configuration: defaults < recipe (TOML) < explicit flags.

Every field is JSON-able; the whole config is saved as ``RUN_DIR/config.json``
and read back by ``--resume``.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from .schedule import SCHEDULES

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")
BACKENDS = ("torch", "numpy")
AMP = ("none", "bf16", "auto")


@dataclass
class TrainConfig:
    model: str = "lenet5"
    data: str = "fashion-mnist"
    root: str | None = None
    backend: str = "torch"
    device: str = "auto"
    epochs: int = 10
    batch_size: int = 128
    opt: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 0.05
    no_decay_norm_bias: bool = True
    sched: str = "onecycle"
    warmup_epochs: float = 0.0
    min_lr_factor: float = 0.0
    decay_epochs: float | None = None
    decay_rate: float = 0.1
    label_smoothing: float = 0.0
    aug: str = ""
    amp: str = "none"  # "auto": bf16 where the CPU/GPU runs it natively or a probe finds it faster
    amp_choice: str | None = None  # what "auto" chose when the run started; --resume keeps it
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    val_fraction: float = 0.0
    split_seed: int | None = None  # draws the validation split; None: --seed (one val set per seed)
    eval_batch_size: int = 1024
    tta: str = "none"  # "flip": average logits over the image and its mirror at the last epoch's evaluation
    limit_train: int | None = None  # use only the first N training images (tests, quick looks)
    limit_test: int | None = None
    threads: int | None = None  # torch threads; None: from the cores other processes leave free, each epoch
    output: str | None = None
    recipe: str | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        def bad(msg):
            raise UsageError(msg)

        if self.backend not in BACKENDS:
            bad(f"unknown --backend {self.backend!r}; choose torch or numpy")
        if self.opt not in OPTIMIZERS:
            bad(f"unknown --opt {self.opt!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.sched not in SCHEDULES:
            bad(f"unknown --sched {self.sched!r}; choose from {', '.join(SCHEDULES)}")
        if self.amp not in AMP:
            bad(f"unknown --amp {self.amp!r}; choose none, bf16 or auto")
        if self.amp_choice not in (None, "none", "bf16"):
            bad(f"amp_choice must be none or bf16, got {self.amp_choice!r}")
        if self.threads is not None:
            from ..threads import check_threads
            check_threads(self.threads)
        if self.tta not in ("none", "flip"):
            bad(f"unknown --tta {self.tta!r}; choose none or flip")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        for name in ("lr", "weight_decay", "label_smoothing", "momentum", "warmup_epochs", "min_lr_factor"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                bad(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v!r}")
        if self.lr <= 0:
            bad(f"--lr must be > 0, got {self.lr}")
        if not self.label_smoothing < 1:
            bad(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.val_fraction < 1:
            bad(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("seed", "split_seed"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                bad(f"--{name.replace('_', '-')} must be an integer >= 0, got {v!r}")
        if self.warmup_epochs > self.epochs:
            bad(f"--warmup-epochs {self.warmup_epochs} exceeds --epochs {self.epochs}")
        # amp auto is a default that means fp32 where bf16 does not pay, as on the NumPy engine
        if self.backend == "numpy" and (self.amp not in ("none", "auto") or self.channels_last or self.compile):
            bad("--amp, --channels-last and --compile are torch options; drop them for --backend numpy")
        if self.backend == "numpy" and self.device not in ("auto", "cpu"):
            bad(f"--backend numpy runs on the CPU; --device {self.device} is for torch")
        if self.aug:
            from ..data.augment import parse_pipeline
            parse_pipeline(self.aug)  # UsageError on a bad spec
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UsageError(f"unknown config keys {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
        return cls(**d)


def recipe_dir() -> Path:
    return Path(str(resources.files("svertka.train") / "recipes"))


def list_recipes() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob("*.toml"))


def load_recipe(name: str) -> dict:
    """A recipe's settings: a shipped name (``fashion-mnist-94``) or a path to a TOML file."""
    path = Path(name)
    if not (name.endswith(".toml") and path.is_file()):
        path = recipe_dir() / f"{name}.toml"
        if not path.is_file():
            raise UsageError(f"unknown recipe {name!r}; shipped recipes: {', '.join(list_recipes())} "
                             f"(or pass a .toml file)")
    try:
        d = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"recipe {path} is not valid TOML: {e}") from None
    d = {k.replace("-", "_"): v for k, v in d.items() if k != "description"}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(d) - names
    if unknown:
        raise UsageError(f"recipe {path.name}: unknown keys {', '.join(sorted(unknown))}")
    return d


def make_config(overrides: dict, recipe: str | None = None) -> TrainConfig:
    """Defaults, then the recipe, then the explicit ``overrides`` (None = not given)."""
    d = {}
    if recipe:
        d.update(load_recipe(recipe))
        d["recipe"] = recipe
    d.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(d).validate()
