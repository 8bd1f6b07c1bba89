"""Segmentation nets: every pixel gets a class (background + 10 Fashion-MNIST classes
on the 96x96 canvases of the segment task), so the output is num_classes x H x W.

- ``fcn``: FCN-style (Long et al. 2015) on a zoo backbone: the features of
  ``vgg_fm_small`` (stride 4, same keys, so its Fashion-MNIST weights load), a 1x1
  conv to the classes, then one learned x4 up-sampling (a transposed conv, as FCN's
  "deconvolution") back to the input size.
- ``unet``: U-Net (Ronneberger et al. 2015), built from the spec's combinators
  only. Each level is ``enc`` (two 3x3 conv+BN+ReLU), a ``Concat`` of the skip (the
  encoder's map as is) with the path down (max-pool, the next level, a 2x2 stride-2
  transposed conv back up), then ``dec`` (two more convs). The levels nest: the
  Concat of level d holds level d + 1. Inputs must be a multiple of 2**depth.
"""
from __future__ import annotations

from ..spec.nodes import (
    BatchNorm2d,
    Concat,
    Conv2d,
    ConvTranspose2d,
    Identity,
    MaxPool2d,
    Network,
    ReLU,
    Sequential,
    seq,
)
from .common import FASHION_MEAN, FASHION_STD
from .registry import Reference, create_model, register_model

SEG_CLASSES = 11  # background + the 10 Fashion-MNIST classes
CANVAS = (1, 96, 96)
BENCH = "svertka, benchmarks/README.md (segmentation); counts computed here at 1x96x96"


def _net(name: str, root, num_classes: int, in_chans: int) -> Network:
    return Network(name, root, (in_chans, CANVAS[1], CANVAS[2]), num_classes, FASHION_MEAN * in_chans,
                   FASHION_STD * in_chans, {"task": "segment"})


def double_conv(width: int) -> Sequential:
    """Two 3x3 conv + BN + ReLU, padded so the map keeps its size."""
    layers = []
    for _ in range(2):
        layers += [Conv2d(width, 3, padding=1, bias=False), BatchNorm2d(), ReLU()]
    return seq(*layers)


def unet_level(widths: tuple[int, ...]) -> Sequential:
    """One U-Net level at widths[0] channels, holding the levels below it."""
    w = widths[0]
    if len(widths) == 1:  # the bottom: no skip, no way further down
        return Sequential.named(enc=double_conv(w))
    down = Sequential.named(pool=MaxPool2d(2), inner=unet_level(widths[1:]),
                            up=ConvTranspose2d(w, 2, stride=2))
    return Sequential.named(enc=double_conv(w), merge=Concat([("skip", Identity()), ("down", down)]),
                            dec=double_conv(w))


@register_model(family="segment", input_shape=CANVAS, num_classes=SEG_CLASSES,
                description="U-Net, 8-16-32-64-128, Concat skips and 2x2 transposed convs (segment task)",
                reference=Reference(BENCH, params=486_499, macs=107_053_056, dataset="svertka canvases",
                                    notes="Ronneberger et al. 2015, narrowed and padded ('same' convs)"))
def unet(num_classes=SEG_CLASSES, in_chans=1, widths=(8, 16, 32, 64, 128)) -> Network:
    root = Sequential.named(body=unet_level(tuple(widths)), classifier=Conv2d(num_classes, 1))
    return _net("unet", root, num_classes, in_chans)


@register_model(family="segment", input_shape=CANVAS, num_classes=SEG_CLASSES,
                description="FCN head on vgg_fm_small's features: 1x1 conv, learned x4 up-sampling",
                reference=Reference(BENCH, params=80_486, macs=91_127_808, dataset="svertka canvases",
                                    notes="Long et al. 2015, FCN-32s style (one up-sampling), at stride 4"))
def fcn(num_classes=SEG_CLASSES, in_chans=1) -> Network:
    features = dict(create_model("vgg_fm_small", in_chans=in_chans).root.children())["features"]
    stride = 2 ** sum(isinstance(m, MaxPool2d) for _, m in features.children())  # two 2x2 pools: x4
    root = Sequential.named(
        features=features, classifier=Conv2d(num_classes, 1),
        # kernel 2s, padding s/2: exactly s times the input size, each output fed by 2x2 inputs
        upsample=ConvTranspose2d(num_classes, 2 * stride, stride=stride, padding=stride // 2))
    return _net("fcn", root, num_classes, in_chans)
