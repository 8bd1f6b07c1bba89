"""What the Zoo, Model and Conv pages show, as JSON-ready dicts. Every number
comes from the analysis (``svertka.analysis``), the zoo's reference metadata,
the zoo chart's points (``svertka.viz.zoo_chart``), the receptive-field
explorer of ``svertka.viz.fields`` and ``svertka.spec.geometry.conv_out``."""
from __future__ import annotations

import dataclasses
import functools
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UsageError

# The RF explorer backpropagates through the NumPy engine on the CPU; beyond this
# many MACs one click takes many seconds (`svertka plot rf` draws any model).
MAX_RF_MACS = 2_000_000_000
# The conv playground's ranges (the sliders' ends)
CONV_LIMITS = {"in": (1, 32), "kernel": (1, 11), "stride": (1, 5), "padding": (0, 5), "dilation": (1, 4)}
SAMPLE_DATA = "fashion-mnist-mini"


@functools.lru_cache(maxsize=1)
def zoo() -> dict:
    """Every zoo model's row (as `svertka models --json`) and the zoo chart's points."""
    from ..analysis import analyze
    from ..viz.zoo_chart import zoo_points
    from ..zoo import create_model, get_entry, list_models

    rows = []
    for name in list_models():
        a, entry = analyze(create_model(name)), get_entry(name)
        rows.append({"name": name, "family": entry.family, "description": entry.description,
                     "params": a.params, "macs": a.macs, "input": list(a.input_shape),
                     "rf": a.feature_rf.as_dict(), "reference": entry.reference.as_dict()})
    return {"models": rows, "chart": [dataclasses.asdict(p) for p in zoo_points()]}


@functools.lru_cache(maxsize=8)
def model_page(name: str) -> dict:
    """One zoo model: totals, the per-layer table (leaves) and the block tree."""
    from ..analysis import analyze
    from ..zoo import create_model, get_entry

    net = create_model(name)
    a = analyze(net)
    d = a.as_dict()
    d["description"] = get_entry(name).description
    d["tree"] = block_tree(net, a)
    d["rf_layers"] = [la.name for la in a.leaves if len(la.out_shape) == 3 and not la.rf.global_]
    d["rf_ok"] = a.macs <= MAX_RF_MACS
    return d


def block_tree(net, analysis) -> dict:
    """The spec as nested blocks for the diagram: Sequential stacks its children;
    Residual, Concat and Gate keep their roles (body and shortcut, branches, the
    gated branch). Shapes and counts are the analysis's rows of the same paths."""
    from ..spec.geometry import join_path
    from ..spec.nodes import Concat, Gate, Leaf, Residual

    rows = {la.name: la for la in analysis.layers[1:]}
    rows[""] = analysis.layers[0]

    def node(path: str, n) -> dict:
        la = rows[path]
        d = {"path": path or net.name, "type": n.type, "out": list(la.out_shape), "params": la.params}
        kids = lambda pairs: [node(join_path(path, k), c) for k, c in pairs]  # noqa: E731
        if isinstance(n, Residual):
            d["kind"] = "residual"
            d["body"] = kids(n.body_children())
            d["shortcut"] = kids([(n.shortcut_name, n.shortcut)]) if n.shortcut is not None else []
            d["post"] = kids([(n.post_name, n.post)]) if n.post is not None else []
        elif isinstance(n, Concat):
            d["kind"], d["branches"] = "concat", kids(n.branches)
        elif isinstance(n, Gate):
            d["kind"], d["branch"] = "gate", kids(n.branch.children())
        elif isinstance(n, Leaf):
            d["kind"], d["args"] = "leaf", leaf_args(n)
        else:  # Sequential
            d["kind"], d["children"] = "seq", kids(n.children())
        return d

    return node("", net.root)


def leaf_args(n) -> str:
    """A leaf's settings that differ from their defaults, e.g. 'out_channels=6, kernel_size=5'."""
    out = []
    for f in dataclasses.fields(n):
        v = getattr(n, f.name)
        if f.default is not dataclasses.MISSING and v == f.default:
            continue
        if isinstance(v, tuple) and len(v) > 4:
            v = f"({len(v)} values)"
        out.append(f"{f.name}={v}")
    return ", ".join(out)


# ------------------------------------------------------------------ receptive fields


@functools.lru_cache(maxsize=1)
def samples() -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """(uint8 N x 28 x 28 x 1 images, labels, class names, one image index per class) of the packaged
    test set: the RF explorer's inputs, chosen by index, so no client path reaches the disk."""
    from ..data import load_dataset

    ds = load_dataset(SAMPLE_DATA, split="test", download=False)
    first = [int(np.argmax(ds.labels == c)) for c in range(ds.num_classes)]
    return ds.images, ds.labels, list(ds.classes), first


def sample_list() -> list[dict]:
    _, _, classes, first = samples()
    return [{"index": i, "class": classes[c]} for c, i in enumerate(first)]


def pixel_to_unit(la, y: int, x: int) -> tuple[int, int]:
    """The unit of layer ``la`` whose field is centred nearest to input pixel (y, x)."""
    _, oh, ow = la.out_shape
    if la.rf.global_:
        return oh // 2, ow // 2
    unit = []
    for axis, (p, n) in enumerate(((y, oh), (x, ow))):
        first, last = la.rf.span(0, axis)
        u = round((p - (first + last) / 2) / la.rf.stride[axis])
        unit.append(int(min(max(u, 0), n - 1)))
    return unit[0], unit[1]


def receptive_field(name: str, layer: str, y: int, x: int, sample: int, run: Path | None = None) -> dict:
    """The theoretical box and the effective field of the unit nearest to pixel (y, x)
    of a packaged sample image, with random weights or ``run``'s."""
    from ..analysis import analyze
    from ..viz.fields import layer_info
    from ..viz.fields import receptive_field as field_of
    from ..zoo import create_model

    net = create_model(name)
    if run is not None:  # the run's own spec: its head and input may differ from the zoo default
        from ..spec import load_network

        if (run / "model.json").is_file():
            net = load_network(run / "model.json")
    a = analyze(net)
    if a.macs > MAX_RF_MACS:
        raise UsageError(f"{name} has {a.macs / 1e9:.1f} GMACs; the explorer draws effective fields up to "
                         f"{MAX_RF_MACS / 1e9:.0f} GMACs (use `svertka plot rf {name} --layer {layer}`)")
    la = layer_info(a, layer)
    _, h, w = net.input_shape
    if not (0 <= y < h and 0 <= x < w):
        raise UsageError(f"pixel ({y}, {x}) is outside the {h}x{w} input")
    images, labels, classes, _ = samples()
    if not 0 <= sample < len(images):
        raise UsageError(f"sample {sample} does not exist; pick 0 to {len(images) - 1}")
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="svertka-rf-") as d:
        path = Path(d) / f"{SAMPLE_DATA}-{sample}.png"
        Image.fromarray(images[sample][..., 0]).save(path)
        fm = field_of(net, layer, image=path, run=run, unit=pixel_to_unit(la, y, x))
    return {"model": net.name, "layer": layer, "unit": list(fm.unit), "box": list(fm.box),
            "global": fm.global_, "size": [h, w], "rf": la.rf.as_dict(),
            "image": fm.image[..., 0].ravel().tolist(),  # the grey sample, resized to the input
            "erf": np.round(fm.erf * 255).astype(np.uint8).ravel().tolist(),
            "erf95": fm.mass_within(0.95), "weights": fm.weights,
            "sample": {"index": sample, "class": classes[int(labels[sample])]}}


# ------------------------------------------------------------------ conv arithmetic


def conv_geometry(size: int, kernel: int, stride: int, padding: int, dilation: int) -> dict:
    """The output size of one conv, from the analysis's own formula, with the numbers put in."""
    from ..viz.conv_arithmetic import formula_text

    given = {"in": size, "kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}
    for key, v in given.items():
        lo, hi = CONV_LIMITS[key]
        if not lo <= v <= hi:
            raise UsageError(f"{key} must be in {lo} to {hi}, got {v}")
    out, formula = formula_text(size, kernel, stride, padding, dilation)
    if out < 1:
        span = dilation * (kernel - 1) + 1
        raise UsageError(f"a {kernel}x{kernel} kernel with dilation {dilation} spans {span} px, more than "
                         f"the {size} + 2*{padding} px padded input: no output")
    return {**given, "out": out, "formula": formula}
