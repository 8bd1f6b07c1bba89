"""One-stage detectors for the detect canvases (96x96 grey, 1-5 Fashion-MNIST items):
CenterNet-style ("Objects as Points", Zhou et al. 2019), small enough to train
in minutes on 2 CPU cores.

The output is one map of stride 4 (24x24 cells for a 96x96 canvas) with
``num_classes + 4`` channels, read by :mod:`svertka.tasks.detect`:

- channels ``0 .. C-1``: a centre heatmap per class (logits, to which the task adds a
  fixed prior of log(0.1/0.9); their sigmoid is the probability that an item of that
  class has its box centre in the cell);
- ``C, C+1``: the sub-cell offset (x, y) of the centre, in cells;
- ``C+2, C+3``: the box width and height, in cells.

Layout (names used by ``svertka summary``):

- ``backbone.stem``, ``backbone.layer1``: 3x3 convs, stride 2 twice -> 24x24 (stride 4);
- ``backbone.layer2``: a residual hourglass of one level: down to 12x12
  (stride 8) for three 3x3 convs, the middle one dilated 2, then a 2x2
  transposed conv back to 24x24, added to its input. The 12x12 level gives
  each output cell a receptive field larger than the largest item (56 px at
  scale 2) at a quarter of the cost of the same convs at 24x24;
- ``head``: one shared 3x3 conv, then 1x1 convs for the heatmap and the box.
"""
from __future__ import annotations

from ..spec.nodes import (
    BatchNorm2d,
    Concat,
    Conv2d,
    ConvTranspose2d,
    Network,
    ReLU,
    Residual,
    Sequential,
    seq,
)
from .common import conv_bn_act
from .registry import Reference, register_model

STRIDE = 4  # input pixels per output cell
BOX_CHANNELS = 4  # offset x, y and size w, h per cell
# grey level statistics of detect canvases (TASK_PRESETS["detect"], 2,048 test canvases of the
# full Fashion-MNIST): mostly black, so far from Fashion-MNIST's own (0.286, 0.353)
CANVAS_MEAN, CANVAS_STD = (0.128,), (0.267,)


def _detector(name: str, widths: tuple[int, int, int, int], num_classes: int, in_chans: int,
              size: int) -> Network:
    w_stem, w_mid, w_low, w_head = widths
    low = seq(conv_bn_act(w_low, 3, stride=2, act=ReLU()),
              conv_bn_act(w_low, 3, act=ReLU()),
              Sequential.named(conv=Conv2d(w_low, 3, padding=2, dilation=2, bias=False), bn=BatchNorm2d(),
                               relu=ReLU()),
              conv_bn_act(w_low, 3, act=ReLU()),
              Sequential.named(up=ConvTranspose2d(w_mid, 2, stride=2, bias=False), bn=BatchNorm2d()))
    backbone = Sequential.named(
        stem=conv_bn_act(w_stem, 3, stride=2, act=ReLU()),
        layer1=seq(conv_bn_act(w_mid, 3, stride=2, act=ReLU()), conv_bn_act(w_mid, 3, act=ReLU())),
        layer2=Residual(low, post=ReLU(), body_name="body"),
    )
    head = Sequential.named(
        conv=Conv2d(w_head, 3, padding=1), relu=ReLU(),
        out=Concat([("heatmap", Conv2d(num_classes, 1)), ("box", Conv2d(BOX_CHANNELS, 1))]))
    return Network(name, Sequential.named(backbone=backbone, head=head), (in_chans, size, size), num_classes,
                   CANVAS_MEAN * in_chans, CANVAS_STD * in_chans,
                   {"task": "detect", "stride": STRIDE, "box_channels": BOX_CHANNELS})


DETECT_FIGURES = "benchmarks/README.md, detection"


@register_model(family="detect", input_shape=(1, 96, 96), num_classes=10,
                description="CenterNet-style detector for 96x96 canvases: stride-4 heatmaps + offset + size",
                reference=Reference(f"svertka, {DETECT_FIGURES}", params=161_630, macs=33_619_968,
                                    dataset="Fashion-MNIST detect canvases",
                                    notes="output (num_classes + 4) x 24 x 24; counts computed here; "
                                          "mAP in benchmarks/README.md"))
def centernet_fm(num_classes=10, in_chans=1) -> Network:
    return _detector("centernet_fm", (16, 32, 64, 32), num_classes, in_chans, 96)


@register_model(family="detect", input_shape=(1, 96, 96), num_classes=10,
                description="centernet_fm at half width (16-32 channels), for the NumPy engine and tests",
                reference=Reference(f"svertka, {DETECT_FIGURES}", params=40_758, macs=8_552_448,
                                    dataset="Fashion-MNIST detect canvases",
                                    notes="output (num_classes + 4) x 24 x 24; counts computed here"))
def centernet_fm_tiny(num_classes=10, in_chans=1) -> Network:
    return _detector("centernet_fm_tiny", (8, 16, 32, 16), num_classes, in_chans, 96)
