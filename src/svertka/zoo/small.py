"""Small nets that train in minutes on 2 CPU cores: the models of the training
benchmarks and the Fashion-MNIST recipes.

- ``cnn2``: the Keras ``mnist_cnn`` example, two 3x3 convs (32, 64), max-pool,
  dropout, a 128-unit dense layer.
- ``vgg_fm``: VGG-style for Fashion-MNIST, 32-64-128 channels, two 3x3
  conv + BatchNorm + ReLU per stage, global average pool (recipe fashion-mnist-95).
- ``vgg_fm_small``: the same at 16-32-64 channels (recipes fashion-mnist-94, -92-1min).

All default to 1x28x28 inputs, 10 classes and Fashion-MNIST's mean/std.
"""
from __future__ import annotations

from ..spec.nodes import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    Network,
    ReLU,
    Sequential,
    seq,
)
from .common import fashion_mnist
from .registry import Reference, register_model

TTA = "benchmarks/README.md, time-to-accuracy"


def _vgg_fm(name: str, widths, num_classes: int, in_chans: int) -> Network:
    """Per stage two 3x3 conv + BN + ReLU; a 2x2 max-pool between stages."""
    layers = []
    for i, w in enumerate(widths):
        for _ in range(2):
            layers += [Conv2d(w, 3, padding=1, bias=False), BatchNorm2d(), ReLU()]
        if i < len(widths) - 1:
            layers.append(MaxPool2d(2))
    root = Sequential.named(features=seq(*layers), avgpool=AdaptiveAvgPool2d(1), flatten=Flatten(),
                            classifier=Linear(num_classes))
    return fashion_mnist(name, root, num_classes, in_chans)


@register_model(family="small", input_shape=(1, 28, 28), num_classes=10,
                description="the Keras mnist_cnn example: conv 32-64, max-pool, dense 128",
                reference=Reference("Keras examples, mnist_cnn.py (model.summary(): 1,199,882 "
                                    "params)", params=1_199_882, macs=11_992_448, top1=99.25,
                                    dataset="MNIST",
                                    notes="99.25% test accuracy after 12 epochs; MACs computed "
                                          "here (Keras gives params only)"))
def cnn2(num_classes=10, in_chans=1) -> Network:
    root = Sequential.named(
        features=seq(Conv2d(32, 3), ReLU(), Conv2d(64, 3), ReLU(), MaxPool2d(2), Dropout(0.25)),
        flatten=Flatten(),
        classifier=seq(Linear(128), ReLU(), Dropout(0.5), Linear(num_classes)),
    )
    return fashion_mnist("cnn2", root, num_classes, in_chans)


@register_model(family="small", input_shape=(1, 28, 28), num_classes=10,
                description="VGG-style 32-64-128 net for Fashion-MNIST (recipe fashion-mnist-95)",
                reference=Reference(f"svertka recipe fashion-mnist-95 ({TTA}, 20 min)",
                                    params=288_170, macs=29_128_448, top1=94.74,
                                    dataset="Fashion-MNIST",
                                    notes="median of 3 seeds, 26 epochs in 16.5 min on 2 CPU "
                                          "cores; the README rounds to 288 k params, 29.1 M MACs"))
def vgg_fm(num_classes=10, in_chans=1) -> Network:
    return _vgg_fm("vgg_fm", (32, 64, 128), num_classes, in_chans)


@register_model(family="small", input_shape=(1, 28, 28), num_classes=10,
                description="VGG-style 16-32-64 net for Fashion-MNIST (recipe fashion-mnist-94)",
                reference=Reference(f"svertka recipe fashion-mnist-94 ({TTA}, 5 min)",
                                    params=72_666, macs=7_338_880, top1=94.03,
                                    dataset="Fashion-MNIST",
                                    notes="median of 3 seeds, 20 epochs in 4.35 min on 2 CPU "
                                          "cores"))
def vgg_fm_small(num_classes=10, in_chans=1) -> Network:
    return _vgg_fm("vgg_fm_small", (16, 32, 64), num_classes, in_chans)
