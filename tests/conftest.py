"""Suite-wide settings.

pytest-xdist runs one worker per core; each worker keeps torch to one thread so
two workers do not fight over the two cores (that slows torch 3-10x here).
Reset before every test: a training run sets torch's thread count itself.
"""
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

try:
    import torch
except ImportError:  # the core suite runs without torch
    torch = None


@pytest.fixture(autouse=True)
def _one_torch_thread():
    if torch is not None:
        torch.set_num_threads(1)
    yield
