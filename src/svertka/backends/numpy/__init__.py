"""The NumPy engine: a from-scratch autograd with im2col convolution.

    from svertka.backends.numpy import compile, Tensor, no_grad, optim, functional as F
    model = compile(create_model("lenet5"))          # module tree, torch-like API
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = F.cross_entropy(model(Tensor(x)), y)      # x float32 (N, C, H, W), y int labels
    opt.zero_grad(); loss.backward(); opt.step()

Files: ``tensor.py`` (Tensor + autograd), ``conv.py`` (im2col -> GEMM ->
col2im), ``functional.py`` (the other ops), ``modules.py``, ``optim.py``,
``conv_transpose.py``, ``resample.py`` (interpolation, pixel shuffle),
``window.py`` (where a window meets its input),
``compile.py`` (spec -> modules, and taps).
"""
from . import functional, modules, optim
from .compile import compile, forward_with_taps
from .functional import manual_seed
from .tensor import Tensor, is_grad_enabled, no_grad

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "compile", "forward_with_taps", "functional", "modules",
           "optim", "manual_seed"]
