"""VGG-11/13/16/19 (Simonyan & Zisserman 2014), with and without BatchNorm."""
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
from .common import imagenet
from .registry import Reference, register_model

CONFIGS = {  # numbers are 3x3 conv widths, "M" a 2x2 max-pool
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def vgg(depth: int, batch_norm: bool = False, num_classes=1000, in_chans=3) -> Network:
    layers = []
    for v in CONFIGS[depth]:
        if v == "M":
            layers.append(MaxPool2d(2, 2))
        else:
            layers += [Conv2d(v, 3, padding=1)] + ([BatchNorm2d()] if batch_norm else []) + [ReLU()]
    root = Sequential.named(
        features=seq(*layers), avgpool=AdaptiveAvgPool2d(7), flatten=Flatten(),
        classifier=seq(Linear(4096), ReLU(), Dropout(0.5), Linear(4096), ReLU(), Dropout(0.5),
                       Linear(num_classes)),
    )
    return imagenet(f"vgg{depth}{'_bn' if batch_norm else ''}", root, 224, num_classes, in_chans)



TV = "torchvision.models (IMAGENET1K_V1 weights metadata)"
LECTURE = "lecture / MobileNet paper: VGG-16 138M params, 15,300M mult-adds"
# torchvision's MACs are the same with and without BatchNorm


@register_model(family="vgg", description="VGG-11",
                reference=Reference(TV, params=132_863_336, macs=7_609_090_048, top1=69.020))
def vgg11(**kw):
    return vgg(11, **kw)


@register_model(family="vgg", description="VGG-11 with BatchNorm",
                reference=Reference(TV, params=132_868_840, macs=7_609_090_048, top1=70.370))
def vgg11_bn(**kw):
    return vgg(11, batch_norm=True, **kw)


@register_model(family="vgg", description="VGG-13",
                reference=Reference(TV, params=133_047_848, macs=11_308_466_176, top1=69.928))
def vgg13(**kw):
    return vgg(13, **kw)


@register_model(family="vgg", description="VGG-13 with BatchNorm",
                reference=Reference(TV, params=133_053_736, macs=11_308_466_176, top1=71.586))
def vgg13_bn(**kw):
    return vgg(13, batch_norm=True, **kw)


@register_model(family="vgg", description="VGG-16",
                reference=Reference(TV, params=138_357_544, macs=15_470_264_320, top1=71.592,
                                    paper_params=138e6, paper_macs=15300e6, notes=LECTURE))
def vgg16(**kw):
    return vgg(16, **kw)


@register_model(family="vgg", description="VGG-16 with BatchNorm",
                reference=Reference(TV, params=138_365_992, macs=15_470_264_320, top1=73.360,
                                    notes=LECTURE))
def vgg16_bn(**kw):
    return vgg(16, batch_norm=True, **kw)


@register_model(family="vgg", description="VGG-19",
                reference=Reference(TV, params=143_667_240, macs=19_632_062_464, top1=72.376))
def vgg19(**kw):
    return vgg(19, **kw)


@register_model(family="vgg", description="VGG-19 with BatchNorm",
                reference=Reference(TV, params=143_678_248, macs=19_632_062_464, top1=74.218))
def vgg19_bn(**kw):
    return vgg(19, batch_norm=True, **kw)
