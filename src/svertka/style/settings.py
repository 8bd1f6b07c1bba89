"""What a style-transfer run does (``StyleSettings``): kept apart from the
optimisation code so that the command line reads its defaults without loading the engine."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from .network import CONTENT_LAYER, STYLE_LAYERS

OPTIMIZERS = ("adam", "lbfgs")
INITS = ("content", "noise")


@dataclass
class StyleSettings:
    """What the optimisation does; the defaults are the CLI's."""

    steps: int = 200
    optimizer: str = "adam"
    lr: float = 0.02  # Adam's step, in [0, 1] pixel units; L-BFGS's first step
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 0.0
    content_layer: str = CONTENT_LAYER
    style_layers: tuple[str, ...] = STYLE_LAYERS
    init: str = "content"

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; choose {' or '.join(OPTIMIZERS)}")
        if self.init not in INITS:
            raise UsageError(f"unknown init {self.init!r}; choose {' or '.join(INITS)}")
        if not self.style_layers:
            raise UsageError("style transfer needs at least one style layer")
        for name in ("content_weight", "style_weight", "tv_weight", "lr"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise UsageError(f"{name} must be a finite number >= 0, got {v!r}")
