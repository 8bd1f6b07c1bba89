"""AlexNet: torchvision's single-tower variant and the 2012 paper's two-GPU one."""
from __future__ import annotations

from ..spec.nodes import (
    AdaptiveAvgPool2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    Network,
    ReLU,
    Sequential,
    seq,
)
from .common import imagenet
from .registry import Reference, register_model

TV = "torchvision.models (IMAGENET1K_V1 weights metadata)"


def _classifier(num_classes, order):
    fc = lambda: [Linear(4096), ReLU()]  # noqa: E731
    if order == "torchvision":  # dropout before each hidden Linear
        return seq(Dropout(0.5), *fc(), Dropout(0.5), *fc(), Linear(num_classes))
    return seq(*fc(), Dropout(0.5), *fc(), Dropout(0.5), Linear(num_classes))


@register_model(family="alexnet", description="torchvision AlexNet, 64-192-384-256-256",
                reference=Reference(TV, params=61_100_840, macs=714_188_480, top1=56.522))
def alexnet(num_classes=1000, in_chans=3) -> Network:
    """torchvision's AlexNet (64-192-384-256-256, after Krizhevsky 2014's 'one weird trick')."""
    features = seq(
        Conv2d(64, 11, 4, 2), ReLU(), MaxPool2d(3, 2),
        Conv2d(192, 5, padding=2), ReLU(), MaxPool2d(3, 2),
        Conv2d(384, 3, padding=1), ReLU(),
        Conv2d(256, 3, padding=1), ReLU(),
        Conv2d(256, 3, padding=1), ReLU(), MaxPool2d(3, 2),
    )
    root = Sequential.named(features=features, avgpool=AdaptiveAvgPool2d(6), flatten=Flatten(),
                            classifier=_classifier(num_classes, "torchvision"))
    return imagenet("alexnet", root, 224, num_classes, in_chans)


@register_model(family="alexnet", input_shape=(3, 227, 227),
                description="AlexNet as in the 2012 paper: 96-256-384-384-256, groups=2, LRN",
                reference=Reference("Krizhevsky et al. 2012, ImageNet classification with deep "
                                    "CNNs (lecture: 60M parameters)", params=60_965_224, top1=59.3,
                                    notes="top-1 error 40.7% for one CNN"))
def alexnet_2012(num_classes=1000, in_chans=3) -> Network:
    """Krizhevsky, Sutskever, Hinton 2012: 96-256-384-384-256 with the two-GPU
    split kept as groups=2 on conv2, conv4 and conv5, LRN after conv1 and conv2,
    overlapping 3x3/2 max-pool, 227x227 input."""
    lrn = lambda: LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)  # noqa: E731
    features = seq(
        Conv2d(96, 11, 4), ReLU(), lrn(), MaxPool2d(3, 2),
        Conv2d(256, 5, padding=2, groups=2), ReLU(), lrn(), MaxPool2d(3, 2),
        Conv2d(384, 3, padding=1), ReLU(),
        Conv2d(384, 3, padding=1, groups=2), ReLU(),
        Conv2d(256, 3, padding=1, groups=2), ReLU(), MaxPool2d(3, 2),
    )
    root = Sequential.named(features=features, flatten=Flatten(),
                            classifier=_classifier(num_classes, "paper"))
    return imagenet("alexnet_2012", root, 227, num_classes, in_chans)

