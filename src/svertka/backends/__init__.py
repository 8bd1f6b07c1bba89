"""Backends that compile a spec into something that runs: `numpy` (the
from-scratch engine) and `torch` (an nn.Module with torchvision's names)."""
