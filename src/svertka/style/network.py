"""The VGG feature extractor style transfer looks through, on either backend.

Only VGG's ``features`` part runs, cut after the deepest tapped layer: the
classifier (123M of VGG-19's 144M parameters) never sees the image. The cut
keeps the zoo's module names, which are torchvision's (``features.28.weight``),
so a torchvision VGG-16/19 state_dict loads with no renaming; its classifier
keys and deeper layers are left unused.

Layers go by the names of Gatys et al. (``relu4_2``: the ReLU after the second
conv of the fourth block), mapped to their state_dict paths (``features.22`` in
VGG-19, ``features.20`` in VGG-16).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError, WeightsError
from ..spec.geometry import fmt_shape
from ..spec.nodes import Conv2d, MaxPool2d, Network, ReLU, Sequential
from ..zoo import create_model

MODELS = ("vgg19", "vgg16")
CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def layer_paths(model: str) -> dict[str, str]:
    """{'conv1_1': 'features.0', 'relu1_1': 'features.1', ...} for VGG-16/19."""
    features = _features(model)
    block, index, paths = 1, 0, {}
    for name, node in features.layers:
        if isinstance(node, Conv2d):
            index += 1
            paths[f"conv{block}_{index}"] = f"features.{name}"
        elif isinstance(node, ReLU):
            paths[f"relu{block}_{index}"] = f"features.{name}"
        elif isinstance(node, MaxPool2d):
            paths[f"pool{block}"] = f"features.{name}"
            block, index = block + 1, 0
    return paths


def _features(model: str) -> Sequential:
    if model not in MODELS:
        raise UsageError(f"style transfer looks through {' or '.join(MODELS)}, not {model!r}")
    return dict(create_model(model).root.layers)["features"]


def feature_network(model: str, layers, height: int, width: int) -> Network:
    """VGG's features up to the deepest of ``layers`` (Gatys names), for an RGB
    image of ``height`` x ``width``; state_dict paths as in torchvision."""
    paths = layer_paths(model)
    unknown = [la for la in layers if la not in paths]
    if unknown:
        raise UsageError(f"{model} has no layer {unknown[0]!r}; its layers are named like "
                         f"{', '.join(list(paths)[:4])} ... {list(paths)[-1]}")
    index = {la: int(paths[la].split(".")[1]) for la in layers}
    last = max(index, key=index.get)
    pools = sum(1 for la in paths if la.startswith("pool") and int(paths[la].split(".")[1]) < index[last])
    if min(height, width) < 2 ** pools:
        raise UsageError(f"a {width}x{height} image is too small for {model} up to {last}: "
                         f"{pools} 2x2 poolings need at least {2 ** pools} px a side; use a larger --size")
    cut = _features(model).layers[: index[last] + 1]
    return Network(f"{model}-features", Sequential.named(features=Sequential(cut)), (3, height, width),
                   num_classes=0)


def conv_shapes(net: Network) -> dict[str, tuple[int, ...]]:
    """The state_dict keys and shapes of the cut network (weight and bias of every conv)."""
    shapes, channels = {}, net.input_shape[0]
    for name, node in dict(net.root.layers)["features"].layers:
        if isinstance(node, Conv2d):
            k = node.kernel_size
            shapes[f"features.{name}.weight"] = (node.out_channels, channels, *k)
            shapes[f"features.{name}.bias"] = (node.out_channels,)
            channels = node.out_channels
    return shapes


def random_weights(net: Network, seed: int) -> dict[str, np.ndarray]:
    """He-normal conv weights (fan_out, as torchvision's VGG draws them) and zero
    biases, from ``seed``: the same arrays for either backend and any dtype."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in conv_shapes(net).items():
        if key.endswith(".weight"):
            fan_out = shape[0] * shape[2] * shape[3]
            state[key] = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_out))
        else:
            state[key] = np.zeros(shape, np.float32)
    return state


def detect_model(state: dict, source: str) -> str:
    """'vgg19' or 'vgg16' from a torchvision state_dict's conv layers in ``features``."""
    if any(k.startswith("features.") and k.endswith("running_mean") for k in state):
        raise WeightsError(f"{source} is a batch-norm VGG (vgg*_bn); stylize takes torchvision's plain "
                           f"vgg19 or vgg16 weights")
    convs = sum(1 for k, v in state.items()
                if k.startswith("features.") and k.endswith(".weight") and np.ndim(v) == 4)
    found = {13: "vgg16", 16: "vgg19"}.get(convs)
    if found is None:
        raise WeightsError(f"{source} does not hold VGG-16 or VGG-19 weights as torchvision names them "
                           f"({convs} conv weights under features.*, VGG-16 has 13 and VGG-19 16); "
                           f"pass torchvision's vgg19 or vgg16 state_dict, or leave out --weights")
    return found


def select_weights(state: dict, net: Network, source: str) -> dict[str, np.ndarray]:
    """The cut network's tensors out of a whole VGG state_dict; one WeightsError
    naming the first missing key or wrong shape."""
    out = {}
    for key, shape in conv_shapes(net).items():
        if key not in state:
            raise WeightsError(f"{source} does not fit {net.name}: no {key}; pass torchvision's "
                               f"{net.name.split('-')[0]} state_dict, or leave out --weights")
        value = np.asarray(state[key].numpy() if hasattr(state[key], "numpy") else state[key])
        if value.shape != shape:
            raise WeightsError(f"{source} does not fit {net.name}: {key} is {fmt_shape(value.shape)}, "
                               f"the model's is {fmt_shape(shape)}; "
                               f"pass torchvision's {net.name.split('-')[0]} state_dict")
        if not np.isfinite(value).all():
            raise WeightsError(f"{source}: {key} holds NaN or infinite values; re-download the file")
        out[key] = value.astype(np.float32)
    return out


def read_state(path) -> dict[str, np.ndarray]:
    """A weights file (.pth read with torch.load(weights_only=True), or safetensors) as NumPy arrays."""
    from pathlib import Path

    if Path(path).suffix.lower() in (".pth", ".pt", ".bin", ".ckpt"):
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise UsageError(f"reading {path} (a PyTorch file) needs PyTorch: pip install 'svertka[torch]', "
                             f"or convert it to safetensors")
    from ..train.checkpoint import read_checkpoint

    weights, _meta, _optim, _state = read_checkpoint(path)
    return weights


@dataclass
class Extractor:
    """A compiled feature network on one backend, with frozen weights; ``taps(x)``
    returns the outputs of the requested layers for an input tensor of that backend."""

    backend: str
    model: object
    paths: dict[str, str]  # Gatys name -> state_dict path
    dtype: np.dtype

    def tensor(self, array: np.ndarray, requires_grad: bool = False):
        """A NumPy array as this backend's tensor, in the extractor's dtype."""
        array = np.ascontiguousarray(array, dtype=self.dtype)
        if self.backend == "torch":
            import torch
            return torch.from_numpy(array.copy()).requires_grad_(requires_grad)
        from ..backends.numpy import Tensor
        return Tensor(array.copy(), requires_grad=requires_grad)

    @staticmethod
    def numpy(t) -> np.ndarray:
        return t.detach().numpy()  # both backends' tensors have torch's detach().numpy()

    def image_grad(self, loss, image) -> np.ndarray:
        """d loss / d image: the backend's own autograd carries it back to the pixels."""
        loss.backward()
        return image.grad.numpy() if self.backend == "torch" else image.grad  # the engine's grad is an array

    def taps(self, x) -> dict:
        outs = self._forward(x)
        return {name: outs[path] for name, path in self.paths.items()}

    def _forward(self, x):
        if self.backend == "torch":
            from ..backends.torch import forward_with_taps
        else:
            from ..backends.numpy import forward_with_taps
        return forward_with_taps(self.model, x, list(dict.fromkeys(self.paths.values())))[1]


def build_extractor(net: Network, state: dict[str, np.ndarray], layers, backend: str,
                    dtype=np.float32) -> Extractor:
    """Compile ``net`` on ``backend``, load ``state``, freeze the weights (only the
    image gets a gradient, so no weight gradient is computed)."""
    dtype = np.dtype(dtype)
    paths = layer_paths(net.name.split("-")[0])
    if backend == "torch":
        import torch

        from ..backends.torch import compile as compile_torch
        model = compile_torch(net).to(torch.float64 if dtype == np.float64 else torch.float32)
        model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
        model.requires_grad_(False)
    else:
        from ..backends.numpy import compile as compile_numpy
        model = compile_numpy(net, dtype=dtype)
        model.load_state_dict(state)
        for p in model.parameters():
            p.requires_grad = False
    model.eval()
    return Extractor(backend, model, {la: paths[la] for la in layers}, dtype)
