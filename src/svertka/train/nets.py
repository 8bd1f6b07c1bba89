"""Small networks for the training benchmarks and recipes (specs, like the zoo's).

- ``cnn2``: the Keras ``mnist_cnn`` example, two 3x3 convs (32, 64), max-pool,
  dropout, a 128-unit dense layer: 1,199,882 parameters on 1x28x28.
- ``vgg_fm``: a VGG-style net for Fashion-MNIST, 32-64-128 channels, two 3x3
  conv + BatchNorm + ReLU per stage, global average pool: about 290 k parameters.
- ``vgg_fm_small``: the same at 16-32-64 channels, about 72 k parameters.

``resolve_model`` turns a name into a spec: one of these, a JSON network file,
or any zoo model.
"""
from __future__ import annotations

import os

from ..errors import UsageError
from ..spec.nodes import (
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Network, ReLU,
    Sequential, seq,
)

FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)


def cnn2(num_classes=10, in_chans=1, input_size=28) -> Network:
    h = (input_size - 4) // 2
    if h < 1:
        raise UsageError(f"cnn2 needs inputs of at least 6x6 pixels, got {input_size}")
    root = Sequential.named(
        features=seq(Conv2d(32, 3), ReLU(), Conv2d(64, 3), ReLU(), MaxPool2d(2), Dropout(0.25)),
        flatten=Flatten(),
        classifier=seq(Linear(128), ReLU(), Dropout(0.5), Linear(num_classes)),
    )
    return Network("cnn2", root, (in_chans, input_size, input_size), num_classes,
                   FASHION_MEAN * in_chans, FASHION_STD * in_chans)


def _vgg(name, widths, num_classes, in_chans, input_size) -> Network:
    layers = []
    for i, w in enumerate(widths):
        for _ in range(2):
            layers += [Conv2d(w, 3, padding=1, bias=False), BatchNorm2d(), ReLU()]
        if i < len(widths) - 1:
            layers.append(MaxPool2d(2))
    root = Sequential.named(features=seq(*layers), avgpool=AdaptiveAvgPool2d(1), flatten=Flatten(),
                            classifier=Linear(num_classes))
    return Network(name, root, (in_chans, input_size, input_size), num_classes,
                   FASHION_MEAN * in_chans, FASHION_STD * in_chans)


def vgg_fm(num_classes=10, in_chans=1, input_size=28) -> Network:
    return _vgg("vgg_fm", (32, 64, 128), num_classes, in_chans, input_size)


def vgg_fm_small(num_classes=10, in_chans=1, input_size=28) -> Network:
    return _vgg("vgg_fm_small", (16, 32, 64), num_classes, in_chans, input_size)


NETS = {"cnn2": cnn2, "vgg_fm": vgg_fm, "vgg_fm_small": vgg_fm_small}


def resolve_model(name: str, num_classes: int | None = None, in_chans: int | None = None,
                  input_size: int | None = None) -> Network:
    """A spec from a name: the nets above, a JSON network file, or a zoo model.

    ``input_size`` is passed to builders that take it when it differs from
    the model's default (e.g. lenet5 at 32x32)."""
    from ..spec import load_network
    from ..zoo import create_model, get_entry

    if name.endswith(".json") or os.path.sep in name:
        net = load_network(name)
        if num_classes and net.num_classes != num_classes:
            raise UsageError(f"{name} has {net.num_classes} classes but the data has {num_classes}")
        return net
    if name in NETS:
        kw = {"num_classes": num_classes or 10, "in_chans": in_chans or 1}
        if input_size:
            kw["input_size"] = input_size
        return NETS[name](**kw)
    entry = get_entry(name)  # UnknownModelError with suggestions
    if input_size and entry.input_shape[1] != input_size:
        try:
            return create_model(name, num_classes=num_classes, in_chans=in_chans, input_size=input_size)
        except Exception:
            raise UsageError(f"{name} takes {entry.input_shape[1]}x{entry.input_shape[2]} inputs, "
                             f"the data is {input_size}x{input_size}; pick a model for this size") from None
    return create_model(name, num_classes=num_classes, in_chans=in_chans)
