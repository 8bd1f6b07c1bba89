"""Models of the point and localisation tasks (64x64 canvases, one item), on one
small VGG-style backbone, as spec nodes like every zoo model: `svertka summary`
shows the head's params, MACs and receptive field.

The backbone: a stride-2 3x3 stem, then stages of 3x3 conv + BN + ReLU at 32, 16
and 8 px (widths ``w0-w1-w2``, a 2x2 max-pool between stages). Heads:

- ``points_direct``: Flatten + Linear to 2K numbers, the K (x, y) keypoints as
  fractions of the canvas side, offset by 0.5 (the lecture's "point coordinates
  regression"). Flatten, not global pooling: the position must survive.
- ``points_heatmap``: an hourglass (Newell et al. 2016): the 8 px stage is
  upsampled by transposed convs back to 16 and 32 px and added to the features
  there (``Residual`` blocks are the skips), then a 1x1 conv gives one 32x32 map
  per keypoint. The task decodes a map by soft-argmax (the expected position under
  the softmax of the map), see svertka.tasks.points.
- ``localize_net``: two branches on the 8x8 features, concatenated: class logits
  from global average pooling (where the item is does not matter), and 4 box
  numbers from an 8x8 conv over the whole map (a Linear on the flattened map,
  written as a conv so Concat can stack it). Output: num_classes + 4 values.

The ``_small`` variants halve every width (8-16-32): the NumPy engine trains them
in minutes. ``num_classes`` of a points model is its number of keypoints K.
"""
from __future__ import annotations

from ..spec.nodes import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Concat,
    Conv2d,
    ConvTranspose2d,
    Flatten,
    Linear,
    MaxPool2d,
    Network,
    ReLU,
    Residual,
    Sequential,
    seq,
)
from .common import FASHION_MEAN, FASHION_STD, conv_bn_act
from .registry import Reference, register_model

CANVAS = 64  # the points and localize canvases of svertka.data.canvas.TASK_PRESETS
WIDTHS, SMALL_WIDTHS = (16, 32, 64), (8, 16, 32)
SOURCE = "svertka (this repository): task models for the 64x64 canvases; counts computed here"


def _cbr(width: int, stride: int = 1) -> Sequential:
    return conv_bn_act(width, 3, stride, act=ReLU())


def _stage(width: int) -> list:
    """A 2x2 max-pool, then two 3x3 conv + BN + ReLU."""
    return [MaxPool2d(2), _cbr(width), _cbr(width)]


def backbone(widths) -> Sequential:
    """64 px in, ``widths[2]`` maps of 8x8 out (stride 8)."""
    w0, w1, w2 = widths
    return seq(_cbr(w0, 2), _cbr(w0), *_stage(w1), *_stage(w2))


def _up(width: int) -> Sequential:
    """Double the map's side: 4x4 transposed conv, stride 2, padding 1, + BN + ReLU."""
    return seq(ConvTranspose2d(width, 4, 2, 1, bias=False), BatchNorm2d(), ReLU())


def hourglass(widths) -> Sequential:
    """64 px in, ``widths[0]`` maps of 32x32 out, with the 8 px stage's context: each
    scale's features plus the upsampled coarser ones (skips as Residual blocks)."""
    w0, w1, w2 = widths
    inner = Residual(Sequential.named(down=seq(*_stage(w2)), up=_up(w1)), body_name=None)
    outer = Residual(Sequential.named(down=seq(*_stage(w1)), inner=inner, up=_up(w0)), body_name=None)
    return Sequential.named(stem=seq(_cbr(w0, 2), _cbr(w0)), hourglass=outer)


def _canvas_net(name: str, root, num_classes: int, in_chans: int) -> Network:
    # canvases are mostly black: the task passes the training canvases' own mean/std;
    # these are only the spec's defaults (Fashion-MNIST's, one per channel)
    return Network(name, root, (in_chans, CANVAS, CANVAS), num_classes, FASHION_MEAN * in_chans,
                   FASHION_STD * in_chans)


def _direct(name, widths, num_classes, in_chans):
    root = Sequential.named(features=backbone(widths), flatten=Flatten(), head=Linear(2 * num_classes))
    return _canvas_net(name, root, num_classes, in_chans)


def _heatmap(name, widths, num_classes, in_chans):
    root = Sequential.named(features=hourglass(widths),
                            head=seq(_cbr(widths[0]), Conv2d(num_classes, 1)))
    return _canvas_net(name, root, num_classes, in_chans)


def _localize(name, widths, num_classes, in_chans):
    head = Concat([("classes", seq(AdaptiveAvgPool2d(1), Conv2d(num_classes, 1))),
                   ("box", Conv2d(4, CANVAS // 8))])
    root = Sequential.named(features=backbone(widths), head=head, flatten=Flatten())
    return _canvas_net(name, root, num_classes, in_chans)


POINTS = "points task: K = 5 keypoints (centre of mass, top, bottom, left, right); num_classes is K"


@register_model(family="tasks", input_shape=(1, CANVAS, CANVAS), num_classes=5,
                description="points by direct regression: 16-32-64 backbone, Flatten, Linear to 2K",
                reference=Reference(SOURCE, dataset="canvases", params=112_986, macs=9_625_600,
                                    notes=POINTS))
def points_direct(num_classes=5, in_chans=1) -> Network:
    return _direct("points_direct", WIDTHS, num_classes, in_chans)


@register_model(family="tasks", input_shape=(1, CANVAS, CANVAS), num_classes=5,
                description="points by heatmaps: 16-32-64 hourglass to 32x32 maps, soft-argmax",
                reference=Reference(SOURCE, dataset="canvases", params=115_493, macs=16_220_160,
                                    notes=POINTS))
def points_heatmap(num_classes=5, in_chans=1) -> Network:
    return _heatmap("points_heatmap", WIDTHS, num_classes, in_chans)


@register_model(family="tasks", input_shape=(1, CANVAS, CANVAS), num_classes=5,
                description="points_direct at half width (8-16-32), for the NumPy engine",
                reference=Reference(SOURCE, dataset="canvases", params=38_642, macs=2_453_504,
                                    notes=POINTS))
def points_direct_small(num_classes=5, in_chans=1) -> Network:
    return _direct("points_direct_small", SMALL_WIDTHS, num_classes, in_chans)


@register_model(family="tasks", input_shape=(1, CANVAS, CANVAS), num_classes=5,
                description="points_heatmap at half width (8-16-32), for the NumPy engine",
                reference=Reference(SOURCE, dataset="canvases", params=29_077, macs=4_112_384,
                                    notes=POINTS))
def points_heatmap_small(num_classes=5, in_chans=1) -> Network:
    return _heatmap("points_heatmap_small", SMALL_WIDTHS, num_classes, in_chans)


LOCALIZE = "localize task: num_classes logits, then the box (x0, y0, x1, y1) as fractions of the side"


@register_model(family="tasks", input_shape=(1, CANVAS, CANVAS), num_classes=10,
                description="class + box: 16-32-64 backbone; pooled logits and an 8x8-conv box",
                reference=Reference(SOURCE, dataset="canvases", params=89_054, macs=9_601_664,
                                    notes=LOCALIZE))
def localize_net(num_classes=10, in_chans=1) -> Network:
    return _localize("localize_net", WIDTHS, num_classes, in_chans)


@register_model(family="tasks", input_shape=(1, CANVAS, CANVAS), num_classes=10,
                description="localize_net at half width (8-16-32), for the NumPy engine",
                reference=Reference(SOURCE, dataset="canvases", params=26_678, macs=2_441_536,
                                    notes=LOCALIZE))
def localize_net_small(num_classes=10, in_chans=1) -> Network:
    return _localize("localize_net_small", SMALL_WIDTHS, num_classes, in_chans)
