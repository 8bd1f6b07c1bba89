"""Neural style transfer (Gatys, Ecker & Bethge 2016) on either backend.

The image itself is the variable: its pixels go through VGG's features, the
losses are read off tapped layers, and the backend's autograd returns
d loss / d pixels. ``StyleObjective`` is that function; ``stylize`` runs an
optimiser (``optimize.py``) over it and records the losses per iteration.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from ..zoo.common import IMAGENET_MEAN, IMAGENET_STD
from .losses import gram_matrix, relative_error, squared_norm, total_variation
from .network import (
    Extractor,
    build_extractor,
    feature_network,
    random_weights,
    select_weights,
)
from .optimize import adam, lbfgs
from .settings import StyleSettings


def to_chw(image: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 -> float (1, 3, H, W) in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UsageError(f"style transfer takes uint8 H x W x 3 RGB images, got {image.dtype} {image.shape}")
    return (image.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """float (1, 3, H, W) in [0, 1] -> uint8 H x W x 3."""
    return np.round(np.clip(pixels[0].transpose(1, 2, 0), 0.0, 1.0) * 255.0).astype(np.uint8)


class StyleObjective:
    """pixels (1, 3, H, W) in [0, 1] -> (losses, d total / d pixels), on the
    extractor's backend. The targets (content features, style Gram matrices)
    are computed once, at construction."""

    def __init__(self, extractor: Extractor, content: np.ndarray, style: np.ndarray,
                 settings: StyleSettings):
        self.x, self.s = extractor, settings
        shape = (1, 3, 1, 1)
        self.mean = extractor.tensor(np.reshape(IMAGENET_MEAN, shape))
        self.std = extractor.tensor(np.reshape(IMAGENET_STD, shape))
        feats = self._features(extractor.tensor(content))
        c = extractor.numpy(feats[settings.content_layer])
        self.content = (extractor.tensor(c), squared_norm(c))
        feats = self._features(extractor.tensor(style))
        self.grams = {}
        for layer in settings.style_layers:
            g = extractor.numpy(gram_matrix(feats[layer]))
            self.grams[layer] = (extractor.tensor(g), squared_norm(g))

    def _features(self, image) -> dict:
        # torchvision's VGG weights expect ImageNet-normalised input
        return self.x.taps((image - self.mean) / self.std)

    def losses(self, image) -> dict:
        """The terms as backend scalars: content, style (mean over layers), tv, total."""
        s = self.s
        feats = self._features(image)
        content = relative_error(feats[s.content_layer], *self.content)
        style = None
        for layer, (target, norm) in self.grams.items():
            term = relative_error(gram_matrix(feats[layer]), target, norm)
            style = term if style is None else style + term
        style = style * (1.0 / len(self.grams))
        total = content * s.content_weight + style * s.style_weight
        out = {"content": content, "style": style}
        if s.tv_weight:
            out["tv"] = total_variation(image)
            total = total + out["tv"] * s.tv_weight
        out["total"] = total
        return out

    def __call__(self, pixels: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        image = self.x.tensor(pixels, requires_grad=True)
        terms = self.losses(image)
        grad = self.x.image_grad(terms["total"], image)
        return {k: float(v.item()) for k, v in terms.items()}, np.array(grad, dtype=pixels.dtype)


@dataclass
class StyleResult:
    image: np.ndarray  # uint8 H x W x 3
    history: list[dict] = field(default_factory=list)  # one row per iteration: step, losses, seconds
    model: str = ""
    weights: str = ""  # "random (seed N)" or the file's name
    backend: str = ""

    def seconds_per_step(self) -> float:
        """Mean time of one iteration (loss, image gradient, update), the first left out (warm-up)."""
        times = [h["seconds"] for h in self.history[2:]] or [h["seconds"] for h in self.history[1:]]
        return float(np.mean(times)) if times else float("nan")


def stylize(content: np.ndarray, style: np.ndarray, settings: StyleSettings | None = None, *,
            backend: str = "numpy", model: str = "vgg19", state: dict | None = None, seed: int = 0,
            weights_name: str = "", dtype=np.float32, log=None) -> StyleResult:
    """Paint ``content`` in the style of ``style`` (uint8 H x W x 3 each; the style
    image may have another size). ``state``: VGG weights (a whole torchvision
    state_dict is fine); None draws random ones from ``seed``."""
    from ..backends import get_backend

    settings = settings or StyleSettings()
    settings.check()
    get_backend(backend)  # a missing torch is one line
    c, s = to_chw(content), to_chw(style)
    layers = [settings.content_layer, *settings.style_layers]
    net = feature_network(model, layers, *c.shape[2:])
    feature_network(model, layers, *s.shape[2:])  # only to check that the style image is large enough
    weights = random_weights(net, seed) if state is None else select_weights(state, net, weights_name)
    extractor = build_extractor(net, weights, dict.fromkeys(layers), backend, dtype)
    objective = StyleObjective(extractor, c.astype(dtype), s.astype(dtype), settings)

    result = StyleResult(np.empty(0), model=model, backend=backend,
                         weights=f"random (seed {seed})" if state is None else weights_name)
    last_terms: dict[str, float] = {}
    clock = [time.perf_counter()]

    def f(pixels):
        terms, grad = objective(pixels)
        last_terms.clear()
        last_terms.update(terms)
        return terms["total"], grad

    def record(pixels, loss):
        now = time.perf_counter()
        row = {"step": len(result.history), **last_terms, "seconds": now - clock[0]}
        clock[0] = now
        result.history.append(row)
        if log:
            log(row)

    if settings.init == "content":
        x0 = c.astype(dtype)
    else:
        x0 = np.random.default_rng(seed).random(c.shape, dtype=np.float32).astype(dtype)
    run = adam if settings.optimizer == "adam" else lbfgs
    pixels = run(f, x0, settings.steps, settings.lr, record)
    result.image = to_uint8(pixels)
    return result
