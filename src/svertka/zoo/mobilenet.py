"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018)."""
from __future__ import annotations

from ..spec.nodes import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    Network,
    ReLU,
    ReLU6,
    Residual,
    Sequential,
    seq,
)
from .common import conv_bn_act, imagenet, make_divisible
from .registry import Reference, register_model

# (output channels, stride) of each depthwise-separable block, Table 1
V1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
            [(1024, 2), (1024, 1)]


def _mobilenet_v1(width: float = 1.0, num_classes=1000, in_chans=3) -> Network:
    """Each block: 3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU."""
    c = lambda ch: int(ch * width)  # noqa: E731  (the paper's alpha; all widths stay whole)
    layers, cin = [conv_bn_act(c(32), 3, 2, act=ReLU())], c(32)
    for out, stride in V1_BLOCKS:
        layers.append(Sequential.named(dw=conv_bn_act(cin, 3, stride, groups=cin, act=ReLU()),
                                       pw=conv_bn_act(c(out), 1, act=ReLU())))
        cin = c(out)
    root = Sequential.named(features=seq(*layers), avgpool=AdaptiveAvgPool2d(1),
                            flatten=Flatten(), classifier=Linear(num_classes))
    return imagenet("mobilenet_v1", root, 224, num_classes, in_chans)


# t (expansion), c (channels), n (repeats), s (first stride): Table 2
V2_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1)]


def inverted_residual(cin: int, out: int, stride: int, t: int):
    hidden = cin * t
    layers = [conv_bn_act(hidden, 1, act=ReLU6())] if t != 1 else []
    layers += [conv_bn_act(hidden, 3, stride, groups=hidden, act=ReLU6()),
               Conv2d(out, 1, bias=False), BatchNorm2d()]
    body = seq(*layers)
    if stride == 1 and cin == out:
        return Residual(body, body_name="conv")
    return Sequential.named(conv=body)


def _mobilenet_v2(width: float = 1.0, num_classes=1000, in_chans=3) -> Network:
    cin = make_divisible(32 * width)
    last = make_divisible(1280 * max(1.0, width))
    features = [conv_bn_act(cin, 3, 2, act=ReLU6())]
    for t, c, n, s in V2_SETTINGS:
        out = make_divisible(c * width)
        for i in range(n):
            features.append(inverted_residual(cin, out, s if i == 0 else 1, t))
            cin = out
    features.append(conv_bn_act(last, 1, act=ReLU6()))
    root = Sequential.named(features=seq(*features), avgpool=AdaptiveAvgPool2d(1),
                            flatten=Flatten(), classifier=seq(Dropout(0.2), Linear(num_classes)))
    return imagenet("mobilenet_v2", root, 224, num_classes, in_chans)



TV = "torchvision.models (IMAGENET1K_V1 weights metadata)"
V1_PAPER = "Howard et al. 2017, MobileNets, Tables 6 and 8"


@register_model(family="mobilenet",
                description="MobileNet v1, width 1.0, BN after every conv (as timm's mobilenetv1_100)",
                reference=Reference(V1_PAPER, params=4.2e6, macs=569e6, top1=70.6, exact=False,
                                    notes="4,231,976 with BN (timm mobilenetv1_100); conv+FC alone "
                                          "4,210,088"))
def mobilenet_v1(**kw):
    return _mobilenet_v1(**kw)


@register_model(family="mobilenet", description="MobileNet v1, width multiplier 0.75",
                reference=Reference(V1_PAPER, params=2.6e6, macs=325e6, top1=68.4, exact=False))
def mobilenet_v1_075(**kw):
    return _mobilenet_v1(width=0.75, **kw)


@register_model(family="mobilenet", description="MobileNet v1, width multiplier 0.5",
                reference=Reference(V1_PAPER, params=1.3e6, macs=149e6, top1=63.7, exact=False))
def mobilenet_v1_050(**kw):
    return _mobilenet_v1(width=0.5, **kw)


@register_model(family="mobilenet", description="MobileNet v1, width multiplier 0.25",
                reference=Reference(V1_PAPER, params=0.5e6, macs=41e6, top1=50.6, exact=False))
def mobilenet_v1_025(**kw):
    return _mobilenet_v1(width=0.25, **kw)


@register_model(family="mobilenet",
                description="MobileNet v2 (torchvision): inverted residuals, linear bottlenecks",
                reference=Reference(TV, params=3_504_872, macs=300_774_272, top1=71.878))
def mobilenet_v2(**kw):
    return _mobilenet_v2(**kw)
