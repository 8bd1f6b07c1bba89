"""GoogLeNet / Inception v1 (Szegedy et al. 2014).

torchvision's ``googlenet`` departs from the paper: BatchNorm after every conv,
no conv biases, and a 3x3 conv where the paper's "5x5" branch has a 5x5 (a
long-standing quirk of the port). ``googlenet_2014`` is the paper's network:
true 5x5, biases, no BN, LRN after the stem. Auxiliary heads are left out
(they only exist in training)."""
from __future__ import annotations

from ..spec.nodes import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Concat,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    ReLU,
    Sequential,
    seq,
)
from .common import imagenet
from .registry import Reference, register_model

# in Table 1 order: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def _googlenet(paper: bool, num_classes: int, in_chans: int):
    def conv(out, k, stride=1, padding=0):
        if paper:  # conv with bias, then ReLU
            return Sequential.named(conv=Conv2d(out, k, stride, padding), relu=ReLU())
        return Sequential.named(conv=Conv2d(out, k, stride, padding, bias=False),
                                bn=BatchNorm2d(eps=1e-3), relu=ReLU())

    def inception(c1, c3r, c3, c5r, c5, pp):
        k5 = 5 if paper else 3
        return Concat([
            ("branch1", conv(c1, 1)),
            ("branch2", seq(conv(c3r, 1), conv(c3, 3, padding=1))),
            ("branch3", seq(conv(c5r, 1), conv(c5, k5, padding=k5 // 2))),
            ("branch4", seq(MaxPool2d(3, 1, 1, ceil_mode=True), conv(pp, 1))),
        ])

    lrn = lambda: LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)  # noqa: E731
    layers = [("conv1", conv(64, 7, 2, 3)), ("maxpool1", MaxPool2d(3, 2, ceil_mode=True))]
    layers += [("lrn1", lrn())] if paper else []
    layers += [("conv2", conv(64, 1)), ("conv3", conv(192, 3, padding=1))]
    layers += [("lrn2", lrn())] if paper else []
    layers += [("maxpool2", MaxPool2d(3, 2, ceil_mode=True))]
    for name in ("3a", "3b"):
        layers.append((f"inception{name}", inception(*INCEPTION[name])))
    layers.append(("maxpool3", MaxPool2d(3, 2, ceil_mode=True)))
    for name in ("4a", "4b", "4c", "4d", "4e"):
        layers.append((f"inception{name}", inception(*INCEPTION[name])))
    layers.append(("maxpool4", MaxPool2d(2, 2, ceil_mode=True)))
    for name in ("5a", "5b"):
        layers.append((f"inception{name}", inception(*INCEPTION[name])))
    layers += [("avgpool", AdaptiveAvgPool2d(1)), ("flatten", Flatten()),
               ("dropout", Dropout(0.4 if paper else 0.2)), ("fc", Linear(num_classes))]
    return imagenet("googlenet_2014" if paper else "googlenet", Sequential(layers), 224,
                    num_classes, in_chans)


@register_model(family="googlenet",
                description="torchvision GoogLeNet: BN, no biases, 3x3 in the '5x5' branch; "
                            "no aux heads",
                reference=Reference("torchvision.models (IMAGENET1K_V1 weights metadata)",
                                    params=6_624_904, macs=1_498_376_192, top1=69.778,
                                    notes="13,004,888 params with the two auxiliary heads"))
def googlenet(num_classes=1000, in_chans=3):
    return _googlenet(False, num_classes, in_chans)


@register_model(family="googlenet",
                description="GoogLeNet as in the paper: true 5x5 branch, biases, LRN, no BN",
                reference=Reference("Szegedy et al. 2014, Going deeper with convolutions; MobileNet "
                                    "paper Table 8: 1550M mult-adds, 6.8M params, 69.8% top-1",
                                    params=6_998_552, macs=1_582_671_872, top1=69.8,
                                    paper_params=6.8e6, paper_macs=1550e6))
def googlenet_2014(num_classes=1000, in_chans=3):
    return _googlenet(True, num_classes, in_chans)


def aux_heads(num_classes=1000) -> dict:
    """torchvision's two training-time auxiliary classifiers (aux1 after 4a,
    aux2 after 4d), as (spec, input shape) pairs. They are side outputs, so
    they are not part of the main network's spec."""
    def head():
        return Sequential.named(
            avgpool=AdaptiveAvgPool2d(4),
            conv=Sequential.named(conv=Conv2d(128, 1, bias=False), bn=BatchNorm2d(eps=1e-3),
                                  relu=ReLU()),
            flatten=Flatten(), fc1=Linear(1024), relu=ReLU(), dropout=Dropout(0.7),
            fc2=Linear(num_classes))
    return {"aux1": (head(), (512, 14, 14)), "aux2": (head(), (528, 14, 14))}
