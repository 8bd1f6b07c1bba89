"""EfficientNet B0-B7 (Tan & Le 2019) as torchvision builds them: MBConv with
squeeze-and-excitation, SiLU, stochastic depth 0.2, compound width/depth scaling."""
from __future__ import annotations

import math

from ..spec.nodes import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Gate,
    Linear,
    Network,
    Residual,
    Sequential,
    Sigmoid,
    SiLU,
    seq,
)
from .common import conv_bn_act, imagenet, make_divisible
from .registry import Reference, register_model

# expand ratio, kernel, stride, in, out, repeats: the B0 baseline (Table 1)
B0_STAGES = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
             (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
             (6, 3, 1, 192, 320, 1)]

# width, depth, resolution, dropout (torchvision's table)
VARIANTS = {
    0: (1.0, 1.0, 224, 0.2), 1: (1.0, 1.1, 240, 0.2), 2: (1.1, 1.2, 288, 0.3),
    3: (1.2, 1.4, 300, 0.3), 4: (1.4, 1.8, 380, 0.4), 5: (1.6, 2.2, 456, 0.4),
    6: (1.8, 2.6, 528, 0.5), 7: (2.0, 3.1, 600, 0.5),
}


def squeeze_excitation(channels: int, squeeze: int) -> Gate:
    return Gate(Sequential.named(avgpool=AdaptiveAvgPool2d(1), fc1=Conv2d(squeeze, 1),
                                 activation=SiLU(), fc2=Conv2d(channels, 1),
                                 scale_activation=Sigmoid()))


def mbconv(cin, out, k, stride, t, drop_path, bn):
    hidden = make_divisible(cin * t)
    layers = [conv_bn_act(hidden, 1, act=SiLU(), bn=bn())] if hidden != cin else []
    layers += [conv_bn_act(hidden, k, stride, groups=hidden, act=SiLU(), bn=bn()),
               squeeze_excitation(hidden, max(1, cin // 4)),
               conv_bn_act(out, 1, bn=bn())]
    block = seq(*layers)
    if stride == 1 and cin == out:
        return Residual(block, body_name="block", drop_path=drop_path)
    return Sequential.named(block=block)


def efficientnet(variant: int, num_classes=1000, in_chans=3, stochastic_depth=0.2) -> Network:
    width, depth, size, dropout = VARIANTS[variant]
    # B5-B7 use TF's BatchNorm settings in torchvision
    eps, momentum = (1e-3, 0.01) if variant >= 5 else (1e-5, 0.1)
    bn = lambda: BatchNorm2d(eps=eps, momentum=momentum)  # noqa: E731
    ch = lambda c: make_divisible(c * width)  # noqa: E731
    repeats = [int(math.ceil(r * depth)) for *_, r in B0_STAGES]
    total, done = sum(repeats), 0
    features = [conv_bn_act(ch(32), 3, 2, act=SiLU(), bn=bn())]
    for (t, k, s, cin, cout, _), n in zip(B0_STAGES, repeats, strict=True):
        cin, cout, stage = ch(cin), ch(cout), []
        for i in range(n):
            stage.append(mbconv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, t,
                                stochastic_depth * done / total, bn))
            done += 1
        features.append(seq(*stage))
    last_in = ch(320)
    features.append(conv_bn_act(4 * last_in, 1, act=SiLU(), bn=bn()))
    root = Sequential.named(features=seq(*features), avgpool=AdaptiveAvgPool2d(1),
                            flatten=Flatten(),
                            classifier=seq(Dropout(dropout), Linear(num_classes)))
    return imagenet(f"efficientnet_b{variant}", root, size, num_classes, in_chans)



TV = "torchvision.models (IMAGENET1K_V1 weights metadata)"
LECTURE = "lecture: EfficientNet 4-66M parameters"


@register_model(family="efficientnet", input_shape=(3, 224, 224),
                description="EfficientNet-B0 (torchvision)",
                reference=Reference(TV, params=5_288_548, macs=385_814_752, top1=77.692, notes=LECTURE))
def efficientnet_b0(**kw):
    return efficientnet(0, **kw)


@register_model(family="efficientnet", input_shape=(3, 240, 240),
                description="EfficientNet-B1 (torchvision)",
                reference=Reference(TV, params=7_794_184, macs=686_802_832, top1=78.642, notes=LECTURE))
def efficientnet_b1(**kw):
    return efficientnet(1, **kw)


@register_model(family="efficientnet", input_shape=(3, 288, 288),
                description="EfficientNet-B2 (torchvision)",
                reference=Reference(TV, params=9_109_994, macs=1_087_529_456, top1=80.608, notes=LECTURE))
def efficientnet_b2(**kw):
    return efficientnet(2, **kw)


@register_model(family="efficientnet", input_shape=(3, 300, 300),
                description="EfficientNet-B3 (torchvision)",
                reference=Reference(TV, params=12_233_232, macs=1_827_141_392, top1=82.008, notes=LECTURE))
def efficientnet_b3(**kw):
    return efficientnet(3, **kw)


@register_model(family="efficientnet", input_shape=(3, 380, 380),
                description="EfficientNet-B4 (torchvision)",
                reference=Reference(TV, params=19_341_616, macs=4_393_771_024, top1=83.384, notes=LECTURE))
def efficientnet_b4(**kw):
    return efficientnet(4, **kw)


@register_model(family="efficientnet", input_shape=(3, 456, 456),
                description="EfficientNet-B5 (torchvision)",
                reference=Reference(TV, params=30_389_784, macs=10_266_384_752, top1=83.444, notes=LECTURE))
def efficientnet_b5(**kw):
    return efficientnet(5, **kw)


@register_model(family="efficientnet", input_shape=(3, 528, 528),
                description="EfficientNet-B6 (torchvision)",
                reference=Reference(TV, params=43_040_704, macs=19_067_593_536, top1=84.008, notes=LECTURE))
def efficientnet_b6(**kw):
    return efficientnet(6, **kw)


@register_model(family="efficientnet", input_shape=(3, 600, 600),
                description="EfficientNet-B7 (torchvision)",
                reference=Reference(TV, params=66_347_960, macs=37_745_884_192, top1=84.122, notes=LECTURE))
def efficientnet_b7(**kw):
    return efficientnet(7, **kw)
