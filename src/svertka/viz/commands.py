"""`svertka plot KIND ...`: one subcommand per picture of the lecture."""
from __future__ import annotations

from ..argtypes import nonneg_int, positive_int


def add_parsers(sub) -> None:
    p = sub.add_parser("plot", help="pictures of the lecture as PNG + SVG: curves, confusion, filters, "
                       "features, rf, conv, toeplitz, zoo, depth")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", parser_class=type(p))
    kinds.required = True

    def kind(name, help, func):
        s = kinds.add_parser(name, help=help)
        files = "OUT.gif, OUT.png and OUT.svg" if name == "conv" else "OUT.png and OUT.svg"
        s.add_argument("--out", "-o", default=name, help=f"output path without extension; writes {files}")
        s.set_defaults(func=func)
        return s

    s = kind("curves", "loss and accuracy per epoch of one or more runs, overlaid", cmd_curves)
    s.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders of `svertka train` (their metrics.jsonl)")

    s = kind("confusion", "a run's confusion matrix on its test split, with class names and counts",
             cmd_confusion)
    s.add_argument("run", metavar="RUN", help="a run folder or a .safetensors file")
    s.add_argument("--data", help="dataset (default: the one it was trained on)")
    s.add_argument("--root", help="folder with the dataset files (default: as in train)")
    s.add_argument("--limit", type=positive_int, help="the first N test images only (default: all)")

    s = kind("filters", "a grid of a conv layer's kernels", cmd_filters)
    s.add_argument("run", metavar="RUN", help="a run folder or a .safetensors file")
    s.add_argument("--layer", help="a conv layer's path, e.g. features.3 (default: the first conv)")

    s = kind("features", "the feature maps of one image at every conv stage", cmd_features)
    s.add_argument("run", metavar="RUN", help="a run folder or a .safetensors file")
    s.add_argument("image", metavar="IMAGE", help="a PNG or JPEG, resized to the model's input")
    s.add_argument("--channels", type=positive_int, default=8,
                   help="feature maps per stage (the most active)")
    s.add_argument("--invert", choices=("auto", "yes", "no"), default="auto", help="invert the image, as in "
                   "`svertka predict`")

    s = kind("rf", "one unit's theoretical receptive field (box) and effective one (|d unit / d input|)",
             cmd_rf)
    s.add_argument("model", metavar="MODEL", help="zoo name, JSON network file or run folder")
    s.add_argument("image", metavar="IMAGE", nargs="?", help="a PNG or JPEG (default: N(0, 1) noise)")
    s.add_argument("--layer", required=True, help="the unit's layer, e.g. features.3 (required)")
    s.add_argument("--run", help="use this run's trained weights (default: random weights)")
    s.add_argument("--seed", type=int, default=0, help="random weights and noise input")

    s = kind("conv", "an animated GIF of a kernel sliding over its input, with the output size", cmd_conv)
    s.add_argument("--in", dest="size", type=positive_int, default=5, help="input height = width in px")
    s.add_argument("--kernel", "-k", type=positive_int, default=3, help="kernel size")
    s.add_argument("--stride", "-s", type=positive_int, default=1, help="stride")
    s.add_argument("--padding", "-p", type=nonneg_int, default=1, help="zero padding on each side")
    s.add_argument("--dilation", "-d", type=positive_int, default=1, help="dilation")

    s = kind("toeplitz", "a conv drawn as the sparse matrix it is (y = M x)", cmd_toeplitz)
    s.add_argument("--in", dest="size", default="4x4", help="input HxW (or one size)")
    s.add_argument("--kernel", "-k", type=positive_int, default=3, help="kernel size")
    s.add_argument("--stride", "-s", type=positive_int, default=1, help="stride")
    s.add_argument("--padding", "-p", type=nonneg_int, default=0, help="zero padding on each side")
    s.add_argument("--dilation", "-d", type=positive_int, default=1, help="dilation")
    s.add_argument("--seed", type=int, default=0, help="the kernel's random integer weights")

    s = kind("zoo", "ImageNet top-1 against MACs, bubble area = parameters", cmd_zoo)
    s.add_argument("pattern", nargs="?", default="*", help="wildcard over model names, e.g. 'resnet*'")

    s = kind("depth", "the 'stack more layers' slide, measured: activation and gradient std per layer "
             "at init", cmd_depth)
    s.add_argument("--depths", default="10,50,200,1000",
                   help="comma-separated depths; the figure shows the largest")
    s.add_argument("--backend", choices=("both", "numpy", "torch"), default="both",
                   help="which backends measure (both: they must agree)")
    s.add_argument("--seed", type=int, default=0, help="the weights and the batch")
    s.add_argument("--json", action="store_true", help="print the table as JSON")


def _wrote(paths, note: str = "") -> None:
    print("wrote " + ", ".join(str(p) for p in paths) + (f"\n{note}" if note else ""))


def cmd_curves(args):
    from .runs import plot_curves

    _wrote(plot_curves(args.runs, args.out))


def cmd_confusion(args):
    from .runs import plot_confusion

    _wrote(plot_confusion(args.run, args.out, data=args.data, root=args.root, limit=args.limit))


def cmd_filters(args):
    from .runs import plot_filters

    _wrote(plot_filters(args.run, args.layer, args.out))


def cmd_features(args):
    from .runs import plot_features

    _wrote(plot_features(args.run, args.image, args.out, channels=args.channels, invert=args.invert))


def cmd_rf(args):
    from ..zoo import resolve_spec
    from .fields import plot_rf

    net = resolve_spec(args.model)
    fm = plot_rf(net, args.layer, args.image, args.run, args.out, seed=args.seed)
    y0, y1, x0, x1 = fm.box
    side = fm.mass_within(0.95)
    _wrote(fm.paths, f"{fm.model} {fm.layer} unit {fm.unit}: theoretical field rows {y0}..{y1}, columns "
           f"{x0}..{x1} ({y1 - y0 + 1}x{x1 - x0 + 1} px); 95% of |d unit / d input| lies within "
           f"{side}x{side} px")


def cmd_conv(args):
    from .conv_arithmetic import plot_conv

    r = plot_conv(args.size, args.kernel, args.stride, args.padding, args.dilation, args.out)
    _wrote(r.paths, f"{r.frames} frames; {r.formula}")


def cmd_toeplitz(args):
    from .conv_matrix import parse_hw, plot_toeplitz

    cm = plot_toeplitz(parse_hw(args.size), args.kernel, args.stride, args.padding, args.dilation, args.seed,
                       args.out)
    rows, cols = cm.matrix.shape
    _wrote(cm.paths, f"M is {rows}x{cols} ({cm.out_hw[0]}x{cm.out_hw[1]} outputs, "
           f"{cm.in_hw[0]}x{cm.in_hw[1]} inputs), {100 * cm.zero_fraction:.1f}% zeros")


def cmd_zoo(args):
    from .zoo_chart import plot_zoo

    chart = plot_zoo(args.pattern, args.out)
    _wrote(chart.paths, f"{len(chart.points)} models with a published ImageNet-1k top-1")



def cmd_depth(args):
    import importlib.util
    import json
    import math

    from ..analysis.report import table
    from ..errors import UsageError
    from .depth import fmt_ratio, plot_depth, run_experiment
    from .figure import pyplot

    try:
        depths = sorted({int(d) for d in args.depths.split(",")})
    except ValueError:
        raise UsageError(f"malformed --depths {args.depths!r}; write comma-separated integers, "
                         "e.g. 10,50") from None
    if not depths or min(depths) < 1 or max(depths) > 5000:
        raise UsageError(f"--depths must lie in 1..5000, got {args.depths!r}")
    backends = ("numpy", "torch") if args.backend == "both" else (args.backend,)
    if "torch" in backends and importlib.util.find_spec("torch") is None:
        raise UsageError("the torch backend is not installed; pip install 'svertka[torch]' "
                         "or pass --backend numpy")
    pyplot()  # without matplotlib, fail before minutes of measuring
    results = run_experiment(depths, backends, seed=args.seed)
    paths = plot_depth(results, args.out)
    rows = [r.row() for r in results]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    fmt = fmt_ratio
    by_key = {}
    for r in rows:
        by_key.setdefault((r["bn"], r["residual"], r["init"], r["depth"]), {})[r["backend"]] = r
    out = []
    for (bn, res, init, depth), per in by_key.items():
        kind = "+".join(x for x, on in (("BN", bn), ("residual", res)) if on) or "plain"
        out.append([kind, init, depth] + [fmt(per[b]["grad_ratio_first_to_last"]) for b in backends]
                   + [fmt(per[backends[0]]["act_std_last"])])
    print(table(["net", "init", "depth"] + [f"grad std first/last ({b})" for b in backends]
                + ["act std last"], out, "<<>" + ">" * (len(backends) + 1)))
    if len(backends) == 2:
        pairs = [(p["numpy"]["grad_ratio_first_to_last"], p["torch"]["grad_ratio_first_to_last"])
                 for p in by_key.values()]
        gaps = [abs(math.log10(a / b)) for a, b in pairs if a and b]
        print(f"numpy vs torch: the ratios differ by at most {max(gaps, default=0):.2g} decades over "
              f"{len(gaps)} finite pairs")
    _wrote(paths)
