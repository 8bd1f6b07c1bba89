"""The lecture's cat question, drawn: one unit's theoretical receptive field as
a box on the image, and its effective receptive field (Luo et al. 2016) as a
heat map of |d unit / d input|, computed with the NumPy engine's autograd
through a tap on the layer.

The theoretical field (``svertka.analysis``) bounds which pixels can reach the
unit at all; the effective one shows how much each actually does. Most of the
gradient sits near the centre: the ERF is much smaller than the box.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .figure import FORMATS, pyplot, save

NOISE_SAMPLES = 4  # without an image, |grad| is averaged over this many N(0, 1) inputs


@dataclass
class FieldMap:
    """One unit's fields, in input pixels (rows, columns)."""

    model: str
    layer: str
    unit: tuple[int, int]            # (row, column) in the layer's output map
    box: tuple[int, int, int, int]   # theoretical field, unclipped: first row, last row, first col, last col
    global_: bool
    erf: np.ndarray                  # H x W, |d unit / d input| summed over channels, max = 1
    image: np.ndarray                # H x W x C uint8 shown under the box
    source: str                      # what the input was
    weights: str                     # "random" or the run
    paths: list[Path] = field(default_factory=list)

    def support(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns of the pixels with a nonzero gradient."""
        return np.nonzero(self.erf > 0)

    def mass_within(self, fraction: float = 0.95) -> int:
        """Side in px of the smallest square around the unit's centre that holds
        ``fraction`` of the gradient mass (the ERF's size)."""
        h, w = self.erf.shape
        cy = (self.box[0] + self.box[1]) / 2
        cx = (self.box[2] + self.box[3]) / 2
        yy, xx = np.mgrid[0:h, 0:w]
        radius = np.maximum(np.abs(yy - cy), np.abs(xx - cx)).ravel()
        order = np.argsort(radius, kind="stable")
        mass = np.cumsum(self.erf.ravel()[order])
        k = int(np.searchsorted(mass, fraction * mass[-1]))
        return int(np.ceil(2 * radius[order][min(k, len(order) - 1)] + 1))


def layer_info(analysis, name: str):
    """The analysed layer ``name``, which must have a spatial output."""
    try:
        la = analysis.layer(name)
    except KeyError:
        spatial = [x.name for x in analysis.layers[1:] if x.leaf and len(x.out_shape) == 3]
        raise UsageError(f"{analysis.name} has no layer {name!r}; e.g. {', '.join(spatial[:3])} ... "
                         f"(see `svertka summary {analysis.name}`)") from None
    if len(la.out_shape) != 3:
        raise UsageError(f"{name} ({la.type}) outputs {len(la.out_shape)}-d features, not a feature map; "
                         f"pick a layer before the network turns global")
    return la


def receptive_field(net, layer: str, image=None, run=None, unit=None, seed: int = 0,
                    invert: str = "auto") -> FieldMap:
    """Theoretical and effective receptive field of one unit of ``layer``.

    ``unit``: (row, column) in the layer's output map; default the centre.
    ``run``: a run folder whose weights to use (else random weights, seeded).
    ``image``: a PNG/JPEG (else the mean over N(0, 1) noise inputs)."""
    from ..analysis import analyze
    from ..backends import numpy as engine
    from ..train.evaluate import invert_choice, load_image
    from .runs import load_engine_model, run_label

    a = analyze(net)
    la = layer_info(a, layer)
    c, h, w = net.input_shape
    _, oh, ow = la.out_shape
    cy, cx = unit if unit is not None else (oh // 2, ow // 2)
    if not (0 <= cy < oh and 0 <= cx < ow):
        raise UsageError(f"unit ({cy}, {cx}) is outside {layer}'s {oh}x{ow} output map")
    if run is not None:
        loaded, model = load_engine_model(run)
        if loaded.net.name != net.name:
            raise UsageError(f"{run} holds weights of {loaded.net.name}, not {net.name}; "
                             "pass the run's model")
        mean, std, weights = loaded.mean, loaded.std, f"trained ({run_label(run)})"
    else:
        engine.manual_seed(seed)
        model = engine.compile(net).eval()
        loaded, mean, std, weights = None, net.mean, net.std, f"random (seed {seed})"
    if image is not None:
        shown = load_image(image, (c, h, w))
        if loaded is not None and invert_choice(loaded, shown, invert)[0]:
            shown = 255 - shown
        x = shown.transpose(2, 0, 1)[None].astype(np.float32) / 255
        x = ((x - np.asarray(mean, np.float32).reshape(1, -1, 1, 1))
             / np.asarray(std, np.float32).reshape(1, -1, 1, 1))
        source = Path(image).name
    else:
        x = np.random.default_rng(seed).standard_normal((NOISE_SAMPLES, c, h, w)).astype(np.float32)
        # noise is not worth drawing (nor storing: it does not compress)
        shown = np.full((h, w, 1), 128, np.uint8)
        source = f"{NOISE_SAMPLES} N(0, 1) noise images (grey: not drawn)"
    xt = engine.Tensor(np.ascontiguousarray(x, np.float32), requires_grad=True)
    _, taps = engine.forward_with_taps(model, xt, [layer])
    taps[layer][:, :, cy, cx].sum().backward()  # the unit: every channel at one position
    erf = np.abs(xt.grad).sum(axis=1).mean(axis=0).astype(np.float64)
    if erf.max() > 0:
        erf /= erf.max()
    if la.rf.global_:
        box = (0, h - 1, 0, w - 1)
    else:
        (y0, y1), (x0, x1) = la.rf.span(cy, 0), la.rf.span(cx, 1)
        box = tuple(int(np.floor(v)) if i % 2 == 0 else int(np.ceil(v))
                    for i, v in enumerate((y0, y1, x0, x1)))
    return FieldMap(net.name, layer, (cy, cx), box, la.rf.global_, erf, shown, source, weights)


def plot_rf(net, layer: str, image=None, run=None, out="rf", formats=FORMATS, unit=None,
            seed: int = 0) -> FieldMap:
    """Draw ``receptive_field``: the image with the box, and the ERF heat map with the same box."""
    plt = pyplot()  # first: without matplotlib, a one-line error before any work
    from matplotlib.patches import Rectangle

    fm = receptive_field(net, layer, image, run, unit, seed)
    h, w = fm.erf.shape
    fig, (ax_img, ax_erf) = plt.subplots(1, 2, figsize=(10, 4.8))
    img = fm.image
    ax_img.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=255)
    im = ax_erf.imshow(fm.erf, cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax_erf, fraction=0.046, pad=0.04, label="|d unit / d pixel|, max = 1")
    y0, y1, x0, x1 = fm.box
    size = f"{y1 - y0 + 1}x{x1 - x0 + 1} px" if not fm.global_ else "global"
    for ax in (ax_img, ax_erf):
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, lw=2,
                               ec="#22c55e", ls="-", label=f"theoretical RF ({size})"))
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set(xlabel="x (px)", ylabel="y (px)")
    ax_img.legend(loc="lower left", fontsize=7, framealpha=0.8)
    side = fm.mass_within(0.95)
    ax_img.set_title(f"input: {fm.source}\ntheoretical field (box), clipped to the {h}x{w} image")
    ax_erf.set_title(f"effective field (Luo et al. 2016): 95% of the\ngradient within {side}x{side} px "
                     "of the centre")
    fig.suptitle(f"{fm.model} {fm.layer}, unit (row {fm.unit[0]}, column {fm.unit[1]}), weights {fm.weights}")
    fig.tight_layout()
    fm.paths = save(fig, out, formats)
    return fm
