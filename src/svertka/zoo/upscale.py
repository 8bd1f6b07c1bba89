"""Super-resolution nets: a low-resolution luma (Y) image in, a sharper one out.

- ``srcnn_x2``, ``srcnn_x3``: SRCNN (Dong et al. 2014, "Learning a Deep Convolutional
  Network for Image Super-Resolution", ECCV; the 9-1-5 net of its Sec. 4 with
  n1 = 64, n2 = 32 filters). Three convs, 9x9 -> 1x1 -> 5x5, ReLU between. It
  refines an image already upscaled by bicubic interpolation, so its input and
  output are the high-resolution size; the x2 and x3 nets share the layers and
  differ in the data they learn from. Padded here (4, 0, 2) so the output keeps
  the input's size (the paper trains unpadded, 33 px in, 21 px out).
- ``espcn_x2``, ``espcn_x3``: ESPCN (Shi et al. 2016, "Real-Time Single Image and
  Video Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural
  Network", CVPR; l = 3, (f1, n1) = (5, 64), (f2, n2) = (3, 32), f3 = 3, tanh).
  Every conv runs on the low-resolution image; the last gives r*r channels per
  output channel and PixelShuffle(r) lays them out as an r-times larger image.

``num_classes`` is the number of output channels (1: luma), as a segmenter's is
its classes per pixel. Inputs are luma in [0, 1] (mean 0, std 1). The default
inputs give every net a 96x96 output, so ``svertka models`` compares them at
the same work; MACs per output pixel are the counts / 96**2.
"""
from __future__ import annotations

from ..spec.nodes import Conv2d, Network, PixelShuffle, ReLU, Sequential, Tanh
from .registry import Reference, register_model

OUT = 96  # the output side every default input gives
SRCNN_PAPER = "Dong et al. 2014 (ECCV), SRCNN 9-1-5, n1=64, n2=32"
SRCNN_NOTE = "the paper's 8,032 parameters are the weights alone; MACs computed here at 96x96"
ESPCN_PAPER = "Shi et al. 2016 (CVPR), ESPCN l=3, (5,64)-(3,32)-3, tanh"


def _net(name: str, root, in_side: int, in_chans: int, out_chans: int, scale: int, input_kind: str):
    return Network(name, root, (in_chans, in_side, in_side), out_chans, (0.0,) * in_chans, (1.0,) * in_chans,
                   {"task": "upscale", "scale": scale, "input": input_kind})


def srcnn(name: str, scale: int, num_classes: int, in_chans: int) -> Network:
    root = Sequential.named(conv1=Conv2d(64, 9, padding=4), relu1=ReLU(),
                            conv2=Conv2d(32, 1), relu2=ReLU(),
                            conv3=Conv2d(num_classes, 5, padding=2))
    return _net(name, root, OUT, in_chans, num_classes, scale, "bicubic")


def espcn(name: str, scale: int, num_classes: int, in_chans: int) -> Network:
    root = Sequential.named(conv1=Conv2d(64, 5, padding=2), act1=Tanh(),
                            conv2=Conv2d(32, 3, padding=1), act2=Tanh(),
                            conv3=Conv2d(num_classes * scale * scale, 3, padding=1),
                            shuffle=PixelShuffle(scale))
    return _net(name, root, OUT // scale, in_chans, num_classes, scale, "low-res")


# MACs per output pixel (bias excluded): SRCNN 81*64 + 64*32 + 25*32 = 8,032 at any scale;
# ESPCN (25*64 + 9*64*32 + 9*32*r*r) / (r*r): 5,296 at x2, 2,513.8 at x3
@register_model(family="upscale", input_shape=(1, OUT, OUT), num_classes=1,
                description="SRCNN 9-1-5 (64-32) x2: refines a bicubic x2 upscale, luma",
                reference=Reference(SRCNN_PAPER, params=8_129, macs=OUT * OUT * 8_032, dataset="91 images",
                                    notes=SRCNN_NOTE))
def srcnn_x2(num_classes=1, in_chans=1) -> Network:
    return srcnn("srcnn_x2", 2, num_classes, in_chans)


@register_model(family="upscale", input_shape=(1, OUT, OUT), num_classes=1,
                description="SRCNN 9-1-5 (64-32) x3: refines a bicubic x3 upscale, luma",
                reference=Reference(SRCNN_PAPER, params=8_129, macs=OUT * OUT * 8_032, dataset="91 images",
                                    notes=SRCNN_NOTE))
def srcnn_x3(num_classes=1, in_chans=1) -> Network:
    return srcnn("srcnn_x3", 3, num_classes, in_chans)


@register_model(family="upscale", input_shape=(1, OUT // 2, OUT // 2), num_classes=1,
                description="ESPCN x2: three convs at low resolution, PixelShuffle(2), luma",
                reference=Reference(ESPCN_PAPER, params=21_284, macs=48 * 48 * 21_184, dataset="ImageNet",
                                    notes="params and MACs computed here (48x48 in, 96x96 out); "
                                          "the paper gives none"))
def espcn_x2(num_classes=1, in_chans=1) -> Network:
    return espcn("espcn_x2", 2, num_classes, in_chans)


@register_model(family="upscale", input_shape=(1, OUT // 3, OUT // 3), num_classes=1,
                description="ESPCN x3: three convs at low resolution, PixelShuffle(3), luma",
                reference=Reference(ESPCN_PAPER, params=22_729, macs=32 * 32 * 22_624, dataset="ImageNet",
                                    notes="params and MACs computed here (32x32 in, 96x96 out); "
                                          "the paper gives none"))
def espcn_x3(num_classes=1, in_chans=1) -> Network:
    return espcn("espcn_x3", 3, num_classes, in_chans)
