"""The model registry: create_model(name, num_classes=..., in_chans=...) and
list_models("resnet*"), as in timm. Each model is one small function decorated
with ``@register_model``; its entry carries the reference numbers (params, MACs,
top-1) and where they come from."""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Callable

from ..errors import UnknownModelError, UsageError
from ..spec.nodes import Network


@dataclass
class Reference:
    """Published figures for a model. ``params``/``macs`` are exact counts where
    the source gives them (torchvision's metadata) or the paper's rounded ones."""

    source: str
    params: int | float | None = None
    macs: int | float | None = None
    top1: float | None = None
    dataset: str = "ImageNet-1k"
    notes: str = ""
    exact: bool = True  # False: the paper's rounded figure (e.g. 4.2M)
    # the MobileNet paper's Table 8 figures, where they differ from the exact ones
    paper_params: float | None = None
    paper_macs: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass
class ModelEntry:
    name: str
    builder: Callable[..., Network]
    family: str
    input_shape: tuple[int, int, int]
    num_classes: int
    reference: Reference
    description: str


_REGISTRY: dict[str, ModelEntry] = {}
_loaded = False


def register_model(*, family: str, input_shape=(3, 224, 224), num_classes: int = 1000,
                   reference: Reference, description: str):
    """Register the decorated function under its own name, as timm's
    ``@register_model`` does, with the model's default input and reference
    figures written beside it. The function takes ``num_classes``, ``in_chans``
    and the family builder's options, and returns the spec."""
    def decorate(builder):
        _ensure_loaded()  # a model registered from outside the zoo must not shadow it
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, family, tuple(input_shape), num_classes,
                                     reference, description)
        return builder
    return decorate


def _ensure_loaded():
    global _loaded
    if not _loaded:
        _loaded = True  # first: the family modules call register_model while they load
        from . import (  # noqa: F401
            alexnet,
            detect,
            efficientnet,
            googlenet,
            lenet,
            mobilenet,
            resnet,
            segment,
            small,
            tasks,
            upscale,
            vgg,
        )


def list_models(pattern: str = "*") -> list[str]:
    """Model names matching a shell-style wildcard, in registration order."""
    _ensure_loaded()
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownModelError(f"unknown model {name!r}; {hint}run `svertka models` to list all "
                                f"{len(_REGISTRY)}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int | None = None, in_chans: int | None = None,
                 input_size: int | None = None, **kwargs) -> Network:
    """Build the spec of a zoo model. No weights are allocated."""
    entry = get_entry(name)
    for label, v in (("num_classes", num_classes), ("in_chans", in_chans), ("input_size", input_size)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise UsageError(f"{label} must be a positive integer, got {v!r}")
    c, h, w = entry.input_shape
    nc = num_classes or entry.num_classes
    try:
        net = entry.builder(num_classes=nc, in_chans=in_chans or c, **kwargs)
    except TypeError as e:
        raise UsageError(f"{name}: bad option ({e})") from None
    net.name = name
    if input_size:
        net.input_shape = (net.input_shape[0], input_size, input_size)
    net.meta.setdefault("family", entry.family)
    net.meta["reference"] = entry.reference.as_dict()
    net.meta["description"] = entry.description
    return net
