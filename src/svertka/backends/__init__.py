"""Backends that compile a spec into something that runs: `numpy` (the
from-scratch engine) and `torch` (an nn.Module with torchvision's names).
Both fill a ``build.Builders`` table and share its tree walk."""

from __future__ import annotations

from ..errors import UsageError
from .build import Builders, compile_target

__all__ = ["Builders", "NAMES", "backend_of", "compile_target", "get_backend"]


# ------------------------------------------------------------ the one switch
# Everything that picks a backend by name (training, evaluation) or by the
# array it holds (augmentation) asks here.

NAMES = ("torch", "numpy")


def get_backend(name: str):
    """The backend package for ``name``: ``svertka.backends.numpy`` (the
    engine) or ``svertka.backends.torch``. A missing torch is a one-line error."""
    if name == "numpy":
        from . import numpy as engine
        return engine
    if name == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise UsageError("--backend torch needs PyTorch: pip install 'svertka[torch]', "
                             "or use --backend numpy") from None
        from . import torch as backend
        return backend
    raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")


def backend_of(x) -> str | None:
    """'numpy' or 'torch' for an array of that backend, else None. Never
    imports torch: a torch tensor exists only where torch is loaded."""
    import sys

    import numpy as np

    if isinstance(x, np.ndarray):
        return "numpy"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    return None
