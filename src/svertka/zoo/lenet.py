"""LeNet-5: the modern textbook form and LeCun et al. 1998 as published."""
from __future__ import annotations

from ..spec.nodes import (
    Concat,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    Network,
    RBFOutput,
    ReLU,
    ScaledTanh,
    SelectChannels,
    Sequential,
    Subsample,
    seq,
)
from .common import fashion_mnist
from .registry import Reference, register_model


@register_model(family="lenet", input_shape=(1, 28, 28), num_classes=10,
                description="LeNet-5 as taught today: ReLU, max-pool, 6-16 conv, 120-84-10",
                reference=Reference("LeCun et al. 1998 (lecture: ~60k parameters)", params=61_706,
                                    macs=416_520, dataset="Fashion-MNIST",
                                    notes="61,706 = conv 156 + 2,416, fc 48,120 + 10,164 + 850"))
def lenet5(num_classes=10, in_chans=1, input_size=28) -> Network:
    """ReLU + max-pool LeNet-5 (6-16 channels, 120-84 classifier). A 28x28
    input is padded by 2 in conv1 so the layer sizes equal the 32x32 original."""
    if input_size not in (28, 32):
        raise TypeError("lenet5 input_size must be 28 (pad 2) or 32")
    pad = 2 if input_size == 28 else 0
    root = Sequential.named(
        features=seq(Conv2d(6, 5, padding=pad), ReLU(), MaxPool2d(2),
                     Conv2d(16, 5), ReLU(), MaxPool2d(2)),
        flatten=Flatten(),
        classifier=seq(Linear(120), ReLU(), Linear(84), ReLU(), Linear(num_classes)),
    )
    return fashion_mnist("lenet5", root, num_classes, in_chans, input_size)


# LeCun et al. 1998, Table I: which S2 maps each C3 map reads.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5),
)


@register_model(family="lenet", input_shape=(1, 32, 32), num_classes=10,
                description="LeNet-5 as published: C3 connection table, trainable subsampling, "
                            "RBF output",
                reference=Reference("LeCun, Bottou, Bengio, Haffner 1998, Gradient-based learning "
                                    "applied to document recognition, Sec. II-B", params=60_000,
                                    top1=99.05, dataset="MNIST",
                                    notes="C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164; "
                                          "0.95% test error"))
def lenet5_1998(num_classes=10, in_chans=1) -> Network:
    """As published: scaled tanh, trainable subsampling (S2, S4), C3's partial
    connection table (60 of 96 connections), Euclidean RBF outputs with fixed
    centres. Trainable parameters: exactly 60,000."""
    c3 = Concat([(str(i), Sequential.named(select=SelectChannels(maps), conv=Conv2d(1, 5)))
                 for i, maps in enumerate(C3_TABLE)])
    root = Sequential.named(
        c1=Conv2d(6, 5), act1=ScaledTanh(),
        s2=Subsample(2), act2=ScaledTanh(),
        c3=c3, act3=ScaledTanh(),
        s4=Subsample(2), act4=ScaledTanh(),
        c5=Conv2d(120, 5), act5=ScaledTanh(),
        flatten=Flatten(),
        f6=Linear(84), act6=ScaledTanh(),
        output=RBFOutput(num_classes),
    )
    return Network("lenet5_1998", root, (in_chans, 32, 32), num_classes, (0.1307,), (0.3081,))

