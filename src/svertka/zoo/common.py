"""Building blocks shared by the zoo families."""
from __future__ import annotations

from ..spec.nodes import BatchNorm2d, Conv2d, Network, Node, Sequential

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)  # one grey channel


def conv_bn_act(out: int, k: int, stride: int = 1, groups: int = 1, act: Node | None = None,
                bn: BatchNorm2d | None = None, padding: int | None = None) -> Sequential:
    """torchvision's Conv2dNormActivation: indices 0 conv (no bias), 1 BN, 2 activation."""
    layers = [("0", Conv2d(out, k, stride, (k - 1) // 2 if padding is None else padding,
                           groups=groups, bias=False)),
              ("1", bn or BatchNorm2d())]
    if act is not None:
        layers.append(("2", act))
    return Sequential(layers)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10%
    (the rule torchvision and the MobileNet/EfficientNet code use)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def imagenet(name: str, root: Node, size: int, num_classes: int, in_chans: int, **meta) -> Network:
    return Network(name, root, (in_chans, size, size), num_classes, IMAGENET_MEAN, IMAGENET_STD, meta)



def fashion_mnist(name: str, root: Node, num_classes: int, in_chans: int, size: int = 28) -> Network:
    """A net for 28x28 Fashion-MNIST; the grey mean/std repeat on every input channel."""
    return Network(name, root, (in_chans, size, size), num_classes, FASHION_MEAN * in_chans,
                   FASHION_STD * in_chans)
