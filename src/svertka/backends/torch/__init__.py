"""The PyTorch backend: spec -> torch.nn.Module (with taps), and weights I/O
(safetensors; .pth only through torch.load(weights_only=True))."""
from .compile import compile, forward_with_taps
from .weights import check_state_dict, load_weights, model_meta, read_weights, save_weights

__all__ = ["compile", "forward_with_taps", "check_state_dict", "load_weights", "model_meta",
           "read_weights", "save_weights"]
