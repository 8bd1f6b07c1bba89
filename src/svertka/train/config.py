"""The training configuration: defaults < recipe (TOML) < explicit flags.

Every field is JSON-able; the whole config is saved as ``RUN_DIR/config.json``
and read back by ``--resume``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..backends import NAMES as BACKENDS
from ..errors import UsageError
from ..untrusted import check_nesting
from .schedule import SCHEDULES

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")
AMP = ("none", "bf16", "auto")
DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?|mps")  # what --device takes
# Options only the torch backend has: (field, its off value, the flag that turns it off).
# --amp auto is not among them: on the numpy backend it simply means none.
TORCH_ONLY = (("amp", "none", "--amp none"), ("channels_last", False, "--no-channels-last"),
              ("compile", False, "--no-compile"))


@dataclass
class TrainConfig:
    task: str = "classify"  # svertka.tasks.task: what the loop trains (its data, head, loss and metrics)
    task_options: dict = field(default_factory=dict)  # --task-opt key=value, as strings; the task parses them
    model: str | None = None  # None: the task's own (Task.model_for), set by validate()
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
    sync_bn: bool = False  # BatchNorm statistics over every rank's batch (torchrun); no-op in one process
    seed: int = 0
    val_fraction: float = 0.0
    split_seed: int | None = None  # draws the validation split; None: --seed (one val set per seed)
    eval_batch_size: int = 1024
    tta: str = "none"  # "flip": average logits over the image and its mirror at the last epoch's evaluation
    limit_train: int | None = None  # use only the first N training images (tests, quick looks)
    limit_test: int | None = None
    threads: int | None = None  # torch threads; None: from the cores other processes leave free, each epoch
    # --stream: read an imagefolder (or its tar shards) from disk batch by batch (svertka.data.streaming)
    stream: bool = False
    image_size: int = 224  # streamed images are cropped to image_size x image_size
    crop_pct: float = 0.875  # evaluation: shorter side resized to image_size / crop_pct, centre crop
    train_crop: str = "rrc"  # "rrc": RandomResizedCrop + flip (the ImageNet recipe); "center": as evaluation
    workers: int | None = None  # decoding processes; None: half the cores, at most 8
    output: str | None = None
    recipe: str | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        def bad(msg):
            raise UsageError(msg)

        from ..tasks.task import get_task

        task = get_task(self.task)  # one line for an unknown name
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.task_options.items()):
            bad("task_options must map names to strings, as --task-opt key=value gives them")
        if not self.model:
            self.model = task.model_for(self.task_options)
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
        if not self.momentum < 1:  # at 1 or more the velocity never decays: training blows up
            bad(f"--momentum must be in [0, 1), got {self.momentum}")
        if not self.min_lr_factor <= 1:
            bad(f"--min-lr-factor is the end LR as a fraction of --lr, in [0, 1]; got {self.min_lr_factor}")
        if not (isinstance(self.decay_rate, (int, float)) and 0 < self.decay_rate <= 1):
            bad(f"--decay-rate must be in (0, 1], got {self.decay_rate!r}")
        if self.decay_epochs is not None and not (isinstance(self.decay_epochs, (int, float))
                                                  and 0 < self.decay_epochs < math.inf):
            bad(f"--decay-epochs must be a number > 0, got {self.decay_epochs!r}")
        if not isinstance(self.device, str) or not DEVICE.fullmatch(self.device):
            bad(f"unknown --device {self.device!r}; choose auto, cpu, cuda, cuda:N or mps")
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
        if self.backend == "numpy" and (self.amp not in ("none", "auto") or self.channels_last
                                        or self.compile):
            bad("--amp, --channels-last and --compile are torch options; drop them for --backend numpy")
        if self.backend == "numpy" and self.sync_bn:
            bad("--sync-bn is for the torch backend under torchrun; the NumPy engine trains in one process")
        if self.backend == "numpy" and self.device not in ("auto", "cpu"):
            bad(f"--backend numpy runs on the CPU; --device {self.device} is for torch")
        if self.aug:
            from ..data.augment import parse_pipeline
            parse_pipeline(self.aug)  # UsageError on a bad spec
        self._validate_stream()
        return self

    def _validate_stream(self) -> None:
        if not isinstance(self.stream, bool):
            raise UsageError(f"stream must be true or false, got {self.stream!r}")
        if self.stream and self.task != "classify":
            raise UsageError(f"--stream reads class folders for classification; task {self.task} keeps its "
                             "data in memory")
        if self.stream and self.data != "imagefolder":
            raise UsageError(f"--stream reads an image folder or tar shards from disk; it needs --data "
                             f"imagefolder --root DIR, not --data {self.data}")
        if not self.stream:
            return
        from ..data.streaming.decode import check_crop
        from ..data.streaming.splits import TRAIN_CROPS

        check_crop(self.image_size, self.crop_pct)
        if self.train_crop not in TRAIN_CROPS:
            raise UsageError(f"unknown --train-crop {self.train_crop!r}; choose rrc (RandomResizedCrop + "
                             "flip) or center (the evaluation crop)")
        if self.workers is not None and (not isinstance(self.workers, int) or isinstance(self.workers, bool)
                                         or not 0 <= self.workers <= 256):
            raise UsageError(f"--workers must be an integer in [0, 256], got {self.workers!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        """A config from a dict read from a file (a recipe, a run's config.json):
        every value is type-checked here, so a wrong one is one UsageError."""
        if not isinstance(d, dict):
            raise UsageError(f"{source}: expected an object of settings, found {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UsageError(f"{source}: unknown config keys {', '.join(sorted(map(str, unknown)))[:200]}; "
                             f"known: {', '.join(sorted(names))}")
        for f in dataclasses.fields(cls):
            if f.name in d and not _has_type(d[f.name], f.type):
                raise UsageError(f"{source}: {f.name} = {str(d[f.name])[:40]!r} is not {_type_words(f.type)}")
        return cls(**d)


# Field annotations are strings (``from __future__ import annotations``): "int | None", ...
_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,),
          "None": (type(None),)}


def _has_type(value, annotation: str) -> bool:
    for name in annotation.split("|"):
        kinds = _TYPES[name.strip()]
        if isinstance(value, bool) and bool not in kinds:
            continue  # True is an int to Python, not to a config
        if isinstance(value, kinds):
            if isinstance(value, float) and not math.isfinite(value):
                return False
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
                return False
            return True
    return False


def _type_words(annotation: str) -> str:
    words = {"str": "a string", "int": "an integer", "float": "a finite number", "bool": "true or false",
             "dict": "a table", "None": "empty"}
    return " or ".join(words[n.strip()] for n in annotation.split("|"))


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
        text = path.read_text()
        check_nesting(text, f"recipe {path}", UsageError, toml=True)
        d = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise UsageError(f"recipe {path} is not valid TOML: {str(e)[:120]}") from None
    except OSError as e:
        raise UsageError(f"recipe {path} cannot be read ({e.strerror})") from None
    d = {k.replace("-", "_"): v for k, v in d.items() if k != "description"}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(d) - names
    if unknown:
        raise UsageError(f"recipe {path.name}: unknown keys {', '.join(sorted(unknown))[:200]}")
    TrainConfig.from_dict(d, f"recipe {path.name}")  # types checked here, where the file is named
    return d


def make_config(overrides: dict, recipe: str | None = None) -> TrainConfig:
    """Defaults, then the recipe, then the explicit ``overrides`` (None = not given)."""
    d = {}
    if recipe:
        d.update(load_recipe(recipe))
        d["recipe"] = recipe
    given = {k: v for k, v in overrides.items() if v is not None}
    from_recipe = {k for k in d if k not in given}
    d.update(given)
    cfg = TrainConfig.from_dict(d)
    if cfg.backend == "numpy":  # torch-only options the user never typed: say where they come from
        torch_only = [(k, off, flag) for k, off, flag in TORCH_ONLY
                      if k in from_recipe and d[k] not in (off, "auto")]
        if torch_only:
            sets = ", ".join(f"{k} = {json.dumps(d[k])}" for k, _, _ in torch_only)
            raise UsageError(f"recipe {recipe} sets {sets} for the torch backend; with --backend numpy add "
                             f"{' '.join(flag for _, _, flag in torch_only)}")
    cfg.validate()
    check_flags_apply(cfg, set(given))
    return cfg


def check_flags_apply(cfg: TrainConfig, given: set[str]) -> None:
    """A flag the run would not use is an error, never silently ignored."""
    rules = [  # (field, whether the run uses it, the message when it does not)
        ("momentum", cfg.opt in ("sgd", "nesterov"),
         f"--momentum applies to --opt sgd or nesterov, not {cfg.opt}"),
        ("decay_epochs", cfg.sched == "step", f"--decay-epochs applies to --sched step, not {cfg.sched}"),
        ("decay_rate", cfg.sched == "step", f"--decay-rate applies to --sched step, not {cfg.sched}"),
        ("min_lr_factor", cfg.sched in ("cosine", "onecycle"),
         f"--min-lr-factor applies to --sched cosine or onecycle, not {cfg.sched}"),
        ("split_seed", cfg.val_fraction > 0,
         "--split-seed draws the validation split, and there is none (add --val-fraction)"),
        ("no_decay_norm_bias", cfg.weight_decay > 0,
         "--(no-)decay-norm-bias chooses what weight decay applies to, and --weight-decay is 0"),
    ] + [(key, cfg.stream, f"--{key.replace('_', '-')} applies to streamed data (--stream)")
         for key in ("image_size", "crop_pct", "train_crop", "workers")]
    for key, applies, message in rules:
        if key in given and not applies:
            raise UsageError(f"{message}; drop the flag or change the setting it depends on")
