"""ResNets (He et al. 2015): torchvision's ImageNet models, the paper's
v1 bottleneck (stride in the first 1x1), and the CIFAR-10 family with
option-A (parameter-free) shortcuts."""
from __future__ import annotations

from ..spec.nodes import (
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Network, ReLU, Residual,
    Sequential, ShortcutA,
)
from .common import imagenet
from .registry import Reference, register


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


def resnet(layers, block="basic", v1=False, num_classes=1000, in_chans=3, name="resnet"):
    expansion = 1 if block == "basic" else 4
    stages, inplanes = [], 64
    for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
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
_IMAGENET = {  # depth: block, layers, params, MACs, top-1
    18: ("basic", (2, 2, 2, 2), 11_689_512, 1_814_073_344, 69.758),
    34: ("basic", (3, 4, 6, 3), 21_797_672, 3_663_761_408, 73.314),
    50: ("bottleneck", (3, 4, 6, 3), 25_557_032, 4_089_184_256, 76.130),
    101: ("bottleneck", (3, 4, 23, 3), 44_549_160, 7_801_405_440, 77.374),
    152: ("bottleneck", (3, 8, 36, 3), 60_192_808, 11_513_626_624, 78.312),
}
for _d, (_blk, _layers, _p, _m, _t) in _IMAGENET.items():
    register(f"resnet{_d}", resnet, family="resnet", input_shape=(3, 224, 224),
             description=f"ResNet-{_d} (torchvision; v1.5: stride in the 3x3 conv)"
             if _blk == "bottleneck" else f"ResNet-{_d}",
             reference=Reference(TV, params=_p, macs=_m, top1=_t,
                                 notes="lecture: ResNet ~26M parameters" if _d == 50 else ""),
             layers=_layers, block=_blk)
_PAPER_GFLOPS = {50: 3.8, 101: 7.6, 152: 11.3}
for _d, _g in _PAPER_GFLOPS.items():
    _blk, _layers, _p = _IMAGENET[_d][:3]
    register(f"resnet{_d}_v1", resnet, family="resnet", input_shape=(3, 224, 224),
             description=f"ResNet-{_d} as in the paper: stride 2 in the first 1x1 conv",
             reference=Reference("He et al. 2015, Deep residual learning, Table 1 ('FLOPs' "
                                 "there are multiply-adds)", params=_p, macs=_g * 1e9,
                                 exact=False),
             layers=_layers, block=_blk, v1=True)
_CIFAR = {20: (0.27e6, 8.75), 32: (0.46e6, 7.51), 44: (0.66e6, 7.17), 56: (0.85e6, 6.97),
          110: (1.7e6, 6.43)}
for _d, (_p, _err) in _CIFAR.items():
    register(f"resnet{_d}", resnet_cifar, family="resnet_cifar", input_shape=(3, 32, 32),
             num_classes=10, description=f"ResNet-{_d} for CIFAR-10 (option-A shortcuts)",
             reference=Reference("He et al. 2015, Sec. 4.2 and Table 6", params=_p,
                                 top1=round(100 - _err, 2), dataset="CIFAR-10", exact=False,
                                 notes=f"{_err}% test error"),
             depth=_d)
