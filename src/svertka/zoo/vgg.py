"""VGG-11/13/16/19 (Simonyan & Zisserman 2014), with and without BatchNorm."""
from __future__ import annotations

from ..spec.nodes import (
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU,
    Sequential, seq,
)
from .common import imagenet
from .registry import Reference, register

CONFIGS = {  # numbers are 3x3 conv widths, "M" a 2x2 max-pool
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def vgg(depth: int, batch_norm: bool = False, num_classes=1000, in_chans=3):
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


_FIGURES = {  # torchvision: params, MACs (same with BN), top-1 without / with BN
    11: (132_863_336, 132_868_840, 7_609_090_048, 69.020, 70.370),
    13: (133_047_848, 133_053_736, 11_308_466_176, 69.928, 71.586),
    16: (138_357_544, 138_365_992, 15_470_264_320, 71.592, 73.360),
    19: (143_667_240, 143_678_248, 19_632_062_464, 72.376, 74.218),
}
for _d, (_p, _pbn, _macs, _top, _topbn) in _FIGURES.items():
    for _bn, _params, _t in ((False, _p, _top), (True, _pbn, _topbn)):
        register(f"vgg{_d}{'_bn' if _bn else ''}", vgg, family="vgg", input_shape=(3, 224, 224),
                 description=f"VGG-{_d}{' with BatchNorm' if _bn else ''}",
                 reference=Reference("torchvision.models (IMAGENET1K_V1 weights metadata)",
                                     params=_params, macs=_macs, top1=_t,
                                     paper_params=138e6 if (_d, _bn) == (16, False) else None,
                                     paper_macs=15300e6 if (_d, _bn) == (16, False) else None,
                                     notes="lecture / MobileNet paper: VGG-16 138M params, "
                                           "15,300M mult-adds" if _d == 16 else ""),
                 depth=_d, batch_norm=_bn)
