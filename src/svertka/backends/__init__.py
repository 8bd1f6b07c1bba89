"""Backends that compile a spec into something that runs: `numpy` (the
from-scratch engine) and `torch` (an nn.Module with torchvision's names).
Both fill a ``build.Builders`` table and share its tree walk."""

from .build import Builders, compile_target

__all__ = ["Builders", "compile_target"]
