"""ResNets (He et al. 2015): torchvision's ImageNet models, the paper's
v1 bottleneck (stride in the first 1x1), and the CIFAR-10 family with
option-A (parameter-free) shortcuts."""
from __future__ import annotations

from ..spec.nodes import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    Network,
    ReLU,
    Residual,
    Sequential,
    ShortcutA,
)
from .common import imagenet
from .registry import Reference, register_model


def basic_block(out: int, stride: int, downsample) -> Residual:
    body = Sequential.named(
        conv1=Conv2d(out, 3, stride, 1, bias=False), bn1=BatchNorm2d(), relu1=ReLU(),
        conv2=Conv2d(out, 3, 1, 1, bias=False), bn2=BatchNorm2d())
    return Residual(body, shortcut=downsample, post=ReLU())


def bottleneck(width: int, stride: int, downsample, stride_in_1x1: bool = False) -> Residual:
    s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
    body = Sequential.named(
        conv1=Conv2d(width, 1, s1, bias=False), bn1=BatchNorm2d(), relu1=ReLU(),
        conv2=Conv2d(width, 3, s3, 1, bias=False), bn2=BatchNorm2d(), relu2=ReLU(),
        conv3=Conv2d(width * 4, 1, bias=False), bn3=BatchNorm2d())
    return Residual(body, shortcut=downsample, post=ReLU())


def resnet(layers, block="basic", v1=False, num_classes=1000, in_chans=3, name="resnet") -> Network:
    expansion = 1 if block == "basic" else 4
    stages, inplanes = [], 64
    for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
        stride = 1 if i == 0 else 2
        stage = []
        for b in range(blocks):
            s = stride if b == 0 else 1
            ds = None
            if s != 1 or inplanes != width * expansion:
                ds = Sequential([("0", Conv2d(width * expansion, 1, s, bias=False)),
                                 ("1", BatchNorm2d())])
            blk = basic_block(width, s, ds) if block == "basic" else bottleneck(width, s, ds, v1)
            stage.append((str(b), blk))
            inplanes = width * expansion
        stages.append((f"layer{i + 1}", Sequential(stage)))
    root = Sequential([
        ("conv1", Conv2d(64, 7, 2, 3, bias=False)), ("bn1", BatchNorm2d()), ("relu", ReLU()),
        ("maxpool", MaxPool2d(3, 2, 1)), *stages,
        ("avgpool", AdaptiveAvgPool2d(1)), ("flatten", Flatten()), ("fc", Linear(num_classes)),
    ])
    return imagenet(name, root, 224, num_classes, in_chans)


def resnet_cifar(depth: int, num_classes=10, in_chans=3) -> Network:
    """He et al. 2015, Sec. 4.2: 6n+2 layers, 16-32-64 widths on 32x32, and
    option-A shortcuts (subsample + zero-pad channels: no parameters)."""
    n = (depth - 2) // 6
    stages, inplanes = [], 16
    for i, width in enumerate((16, 32, 64)):
        stage = []
        for b in range(n):
            s = 2 if (i > 0 and b == 0) else 1
            sc = ShortcutA(width, s) if (s != 1 or inplanes != width) else None
            body = Sequential.named(
                conv1=Conv2d(width, 3, s, 1, bias=False), bn1=BatchNorm2d(), relu1=ReLU(),
                conv2=Conv2d(width, 3, 1, 1, bias=False), bn2=BatchNorm2d())
            stage.append((str(b), Residual(body, shortcut=sc, post=ReLU(), shortcut_name="shortcut")))
            inplanes = width
        stages.append((f"layer{i + 1}", Sequential(stage)))
    root = Sequential([
        ("conv1", Conv2d(16, 3, 1, 1, bias=False)), ("bn1", BatchNorm2d()), ("relu", ReLU()),
        *stages, ("avgpool", AdaptiveAvgPool2d(1)), ("flatten", Flatten()),
        ("fc", Linear(num_classes)),
    ])
    return Network(f"resnet{depth}", root, (in_chans, 32, 32), num_classes,
                   (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))



TV = "torchvision.models (IMAGENET1K_V1 weights metadata)"
PAPER = "He et al. 2015, Deep residual learning, Table 1 ('FLOPs' there are multiply-adds)"
CIFAR = "He et al. 2015, Sec. 4.2 and Table 6"


@register_model(family="resnet", description="ResNet-18",
                reference=Reference(TV, params=11_689_512, macs=1_814_073_344, top1=69.758))
def resnet18(**kw):
    return resnet((2, 2, 2, 2), "basic", **kw)


@register_model(family="resnet", description="ResNet-34",
                reference=Reference(TV, params=21_797_672, macs=3_663_761_408, top1=73.314))
def resnet34(**kw):
    return resnet((3, 4, 6, 3), "basic", **kw)


@register_model(family="resnet", description="ResNet-50 (torchvision; v1.5: stride in the 3x3 conv)",
                reference=Reference(TV, params=25_557_032, macs=4_089_184_256, top1=76.130,
                                    notes="lecture: ResNet ~26M parameters"))
def resnet50(**kw):
    return resnet((3, 4, 6, 3), "bottleneck", **kw)


@register_model(family="resnet", description="ResNet-101 (torchvision; v1.5: stride in the 3x3 conv)",
                reference=Reference(TV, params=44_549_160, macs=7_801_405_440, top1=77.374))
def resnet101(**kw):
    return resnet((3, 4, 23, 3), "bottleneck", **kw)


@register_model(family="resnet", description="ResNet-152 (torchvision; v1.5: stride in the 3x3 conv)",
                reference=Reference(TV, params=60_192_808, macs=11_513_626_624, top1=78.312))
def resnet152(**kw):
    return resnet((3, 8, 36, 3), "bottleneck", **kw)


@register_model(family="resnet",
                description="ResNet-50 as in the paper: stride 2 in the first 1x1 conv",
                reference=Reference(PAPER, params=25_557_032, macs=3.8e9, exact=False))
def resnet50_v1(**kw):
    return resnet((3, 4, 6, 3), "bottleneck", v1=True, **kw)


@register_model(family="resnet",
                description="ResNet-101 as in the paper: stride 2 in the first 1x1 conv",
                reference=Reference(PAPER, params=44_549_160, macs=7.6e9, exact=False))
def resnet101_v1(**kw):
    return resnet((3, 4, 23, 3), "bottleneck", v1=True, **kw)


@register_model(family="resnet",
                description="ResNet-152 as in the paper: stride 2 in the first 1x1 conv",
                reference=Reference(PAPER, params=60_192_808, macs=11.3e9, exact=False))
def resnet152_v1(**kw):
    return resnet((3, 8, 36, 3), "bottleneck", v1=True, **kw)


@register_model(family="resnet_cifar", input_shape=(3, 32, 32), num_classes=10,
                description="ResNet-20 for CIFAR-10 (option-A shortcuts)",
                reference=Reference(CIFAR, params=0.27e6, top1=91.25, dataset="CIFAR-10",
                                    exact=False, notes="8.75% test error"))
def resnet20(**kw):
    return resnet_cifar(20, **kw)


@register_model(family="resnet_cifar", input_shape=(3, 32, 32), num_classes=10,
                description="ResNet-32 for CIFAR-10 (option-A shortcuts)",
                reference=Reference(CIFAR, params=0.46e6, top1=92.49, dataset="CIFAR-10",
                                    exact=False, notes="7.51% test error"))
def resnet32(**kw):
    return resnet_cifar(32, **kw)


@register_model(family="resnet_cifar", input_shape=(3, 32, 32), num_classes=10,
                description="ResNet-44 for CIFAR-10 (option-A shortcuts)",
                reference=Reference(CIFAR, params=0.66e6, top1=92.83, dataset="CIFAR-10",
                                    exact=False, notes="7.17% test error"))
def resnet44(**kw):
    return resnet_cifar(44, **kw)


@register_model(family="resnet_cifar", input_shape=(3, 32, 32), num_classes=10,
                description="ResNet-56 for CIFAR-10 (option-A shortcuts)",
                reference=Reference(CIFAR, params=0.85e6, top1=93.03, dataset="CIFAR-10",
                                    exact=False, notes="6.97% test error"))
def resnet56(**kw):
    return resnet_cifar(56, **kw)


@register_model(family="resnet_cifar", input_shape=(3, 32, 32), num_classes=10,
                description="ResNet-110 for CIFAR-10 (option-A shortcuts)",
                reference=Reference(CIFAR, params=1.7e6, top1=93.57, dataset="CIFAR-10",
                                    exact=False, notes="6.43% test error"))
def resnet110(**kw):
    return resnet_cifar(110, **kw)
