"""The `svertka` command. Every user error is printed as one line, no traceback."""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
import re
import sys

from . import __version__
from .argtypes import positive_int
from .errors import SvertkaError, UsageError
from .spec.geometry import fmt_shape


def parse_shape(text: str) -> tuple[int | None, int, int]:
    """--input: 'CxHxW' (3x224x224), 'HxW' (224x224) or 'N' (N x N) -> (C, H, W).

    Without C the channel count is the model's, returned here as None."""
    parts = re.split(r"\s*[xX,]\s*", (text or "").strip())
    if not 1 <= len(parts) <= 3 or not all(re.fullmatch(r"[0-9]+", p) for p in parts):
        raise UsageError(f"malformed --input {text!r}; write CxHxW (3x224x224), HxW (224x224) "
                         f"or one size (224)")
    nums = [int(p) for p in parts]
    if min(nums) < 1:
        raise UsageError(f"--input {text!r} has a zero size; every dimension must be >= 1")
    if len(nums) == 1:
        nums *= 2
    return tuple(nums) if len(nums) == 3 else (None, *nums)


def _analyze(args, name):
    from .analysis import analyze
    from .zoo import resolve_spec

    given = parse_shape(args.input) if getattr(args, "input", None) else None
    side = given[1] if given and given[1] == given[2] else None  # for an .onnx file with an open size
    net = resolve_spec(name, getattr(args, "num_classes", None), input_size=side)
    if not given:
        return analyze(net)
    c, h, w = given
    model_c = net.input_shape[0]
    if c is None and h != w and h == model_c:  # "3x224": 3 channels of 224x224, or a 3x224 image?
        raise UsageError(f"--input {args.input!r} is ambiguous: {h} channels at {w}x{w} is {h}x{w}x{w}, "
                         f"an image {h} px high is {model_c}x{h}x{w}; write all three numbers")
    c = model_c if c is None else c
    if c != model_c:
        net = resolve_spec(name, getattr(args, "num_classes", None), in_chans=c)
    return analyze(net, (c, h, w))


def _reject(args, names, why):
    """A flag that does not apply is an error, never silently ignored."""
    given = [n for n in names if getattr(args, n.lstrip("-").replace("-", "_")) not in (None, False)]
    if given:
        raise UsageError(f"{given[0]} {why}; drop it")


# ------------------------------------------------------------------------- commands


def cmd_models(args):
    from .analysis import analyze
    from .analysis.report import models_table
    from .zoo import create_model, get_entry, list_models

    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r}; try `svertka models` for the list")
    analyses = [analyze(create_model(n)) for n in names]
    if args.json:
        out = []
        for a in analyses:
            entry = get_entry(a.name)
            out.append({"name": a.name, "family": entry.family, "description": entry.description,
                        "params": a.params, "macs": a.macs, "input": list(a.input_shape),
                        "activation_bytes": a.activation_bytes, "rf": a.feature_rf.as_dict(),
                        "reference": entry.reference.as_dict()})
        print(json.dumps(out, indent=1))
    else:
        print(models_table(analyses))


def cmd_summary(args):
    from .analysis.report import summary_table

    if args.json:
        _reject(args, ["--depth"], "shapes the table, and --json lists every layer")
    a = _analyze(args, args.model)
    if args.json:
        print(json.dumps(a.as_dict(), indent=1))
    else:
        print(summary_table(a, args.depth))


def cmd_rf(args):
    from .analysis import stacked_convs_to_see

    if args.model is None:
        _reject(args, ["--layer", "--input"], "applies to a model's fields (`svertka rf MODEL`)")
        args.pixels = 100 if args.pixels is None else args.pixels
        args.kernel = 3 if args.kernel is None else args.kernel
        n = stacked_convs_to_see(args.pixels, args.kernel)
        r = 1 + n * (args.kernel - 1)
        print(f"To see a {args.pixels}x{args.pixels} px cat, one unit needs a receptive field of "
              f"{args.pixels} px.\nEach stride-1 {args.kernel}x{args.kernel} conv grows the field by "
              f"{args.kernel - 1}: r = 1 + n*{args.kernel - 1} >= {args.pixels}  ->  n = {n} stacked "
              f"convolutions (r = {r}).\nPooling or strides multiply the growth: that is why CNNs "
              f"downsample.")
        return
    _reject(args, ["--pixels", "--kernel"],
            f"belongs to the lecture's question (`svertka rf` without a model), "
            f"not to {args.model}'s fields")
    a = _analyze(args, args.model)
    layers = [la for la in a.layers[1:]]
    if args.layer:
        try:
            la = a.layer(args.layer)
        except KeyError:
            names = [x.name for x in layers if x.leaf]
            raise UsageError(f"{a.name} has no layer {args.layer!r}; e.g. {', '.join(names[:3])}"
                             f" ... (see `svertka summary {args.model}`)") from None
        d = la.rf.as_dict()
        print(f"{a.name} {la.name} ({la.type}): receptive field {d['size']} px, effective stride "
              f"{d['stride']}, effective padding {d['padding']}"
              + (" (global)" if la.rf.global_ else "")
              + (" (paths misaligned)" if la.rf.misaligned else ""))
        return
    from .analysis.report import table
    rows = [[la.name, la.type, fmt_shape(la.out_shape), la.rf.label(), la.rf.stride[0],
             la.rf.padding[0]] for la in layers if la.leaf]
    print(table(["layer", "type", "output", "RF", "stride", "padding"], rows, "<<>>>>"))


def cmd_params(args):
    if args.layer == "bn":
        _reject(args, ["--out", "--kernel", "--groups", "--no-bias"],
                "does not apply to BatchNorm (only --in)")
    else:
        if args.out is None:
            what = "channels" if args.layer == "conv" else "features"
            raise UsageError(f"params {args.layer} needs --out (the output {what})")
        if args.layer == "linear":
            _reject(args, ["--kernel", "--groups"], "does not apply to a linear layer")
    if args.layer == "conv":
        args.kernel = 3 if args.kernel is None else args.kernel
        args.groups = 1 if args.groups is None else args.groups
        if args.inp % args.groups:
            raise UsageError(f"--in {args.inp} is not divisible by --groups {args.groups}")
        k = args.kernel
        weights = k * k * (args.inp // args.groups) * args.out
        bias = 0 if args.no_bias else args.out
        group = f"({args.inp}/{args.groups})" if args.groups > 1 else f"{args.inp}"
        print(f"Conv2d {args.inp}->{args.out}, {k}x{k}"
              + (f", groups {args.groups}" if args.groups > 1 else "")
              + f": {k}*{k}*{group}*{args.out}" + ("" if args.no_bias else f" + {args.out}")
              + f" = {weights + bias:,} parameters")
    elif args.layer == "linear":
        bias = 0 if args.no_bias else args.out
        print(f"Linear {args.inp}->{args.out}: {args.inp}*{args.out}"
              + ("" if args.no_bias else f" + {args.out}")
              + f" = {args.inp * args.out + bias:,} parameters")
    else:  # batchnorm
        print(f"BatchNorm2d({args.inp}): 2*{args.inp} = {2 * args.inp:,} trainable parameters "
              f"(gamma, beta) + {2 * args.inp} running statistics")


def cmd_compare(args):
    from .analysis import analyze
    from .analysis.report import compare_table
    from .zoo import create_model

    print(compare_table([analyze(create_model(n)) for n in args.models]))


def _torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def _version_line() -> str:
    numpy = importlib.metadata.version("numpy")
    torch = importlib.metadata.version("torch") if _torch_installed() else "not installed (NumPy engine only)"
    return f"svertka {__version__} (Python {platform.python_version()}, numpy {numpy}, torch {torch})"


def use_numpy_without_torch(args) -> None:
    """Without PyTorch, `train` and `demo` run on the NumPy engine rather than fail asking for torch.

    Only when no backend was chosen and nothing torch-only was asked for (``--amp``, ``--compile``,
    ``--channels-last``, a GPU, or a recipe that sets them): those runs still say they need torch.
    """
    if args.backend is not None or getattr(args, "resume", None) or _torch_installed():
        return
    recipe = {}
    if getattr(args, "recipe", None):
        from .train.config import load_recipe

        recipe = load_recipe(args.recipe)

    def setting(key):  # the flag if given, else the recipe's value
        value = getattr(args, key, None)
        return recipe.get(key) if value is None else value

    if setting("amp") not in (None, "none", "auto") or setting("channels_last") or setting("compile") \
            or setting("device") not in (None, "auto", "cpu"):
        return
    args.backend = "numpy"
    print("svertka: note: PyTorch is not installed, so this run uses the NumPy engine (--backend numpy)",
          file=sys.stderr, flush=True)


def cmd_export(args):
    from .export import export_model

    info = export_model(args.source, args.out, weights=args.weights, dynamic_batch=args.dynamic_batch,
                        opset=args.opset)
    print(f"wrote {info['path']}: {info['model']}, input {fmt_shape(info['input_shape'])}, "
          f"opset {info['opset']}, batch {'dynamic' if info['dynamic_batch'] else 'fixed at 1'}; "
          f"onnx.checker passed; classes, mean and std are in its metadata_props (svertka.*)")


def cmd_upscale(args):
    from .tasks.upscale import upscale_file

    done = upscale_file(args.run, args.image, args.out, args.tile, args.backend)
    print(f"{done['model']}: {done['in']} -> {done['out']}, wrote {done['path']}")


def cmd_demo(args):
    """Train LeNet-5 on Fashion-MNIST (full if found, else the packaged mini set)."""
    from .train.commands import cmd_demo_train

    cmd_demo_train(args)


# --------------------------------------------------------------------------- parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to every flag's help, except where there is nothing
    to show (None, an on/off switch) or the help already names its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or isinstance(action.default, bool):
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        # no prefix matching: timm's --min-lr must not silently become --min-lr-factor
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, exit 2, as every other user error
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class _VersionAction(argparse.Action):
    """--version, looked up only when asked for (reading package metadata costs time)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the versions of svertka, Python, numpy and torch, and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="svertka", description="Convolutional networks from the lecture, made real.")
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("models", help="every zoo model: params, MACs, RF, published figures")
    s.add_argument("pattern", nargs="?", default="*", help="wildcard, e.g. 'resnet*'")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("summary", help="per-layer table (shapes, params, MACs, RF) of one model")
    s.add_argument("model", help="zoo name, a JSON network file, a run folder or an .onnx file")
    s.add_argument("--input", help="CxHxW (3x224x224), HxW (224x224, the model's channels) or one size (224) "
                   "(default: the model's)")
    s.add_argument("--num-classes", type=positive_int, help="classifier outputs (default: the model's)")
    s.add_argument("--depth", type=positive_int, help="show the blocks at this depth (1: top level) instead "
                   "of every layer (default: every layer)")
    s.add_argument("--json", action="store_true", help="print JSON (every layer) instead of a table")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser("rf", help="receptive fields: the lecture's cat question, or a model's")
    s.add_argument("model", nargs="?",
                   help="zoo name or JSON network file (default: none, answer the cat question)")
    s.add_argument("--layer", help="one layer's field, e.g. features.29 (default: every layer)")
    s.add_argument("--input", help="CxHxW, HxW or one size (default: the model's)")
    s.add_argument("--pixels", type=positive_int,
                   help="without a model: object size in px (default: 100)")
    s.add_argument("--kernel", type=positive_int, help="without a model: kernel size of the stacked convs "
                   "(default: 3)")
    s.set_defaults(func=cmd_rf)

    s = sub.add_parser("params", help="parameter arithmetic of one layer, e.g. conv --in 32 --out 64 -k 3")
    s.add_argument("layer", choices=["conv", "linear", "bn"], help="the layer type")
    s.add_argument("--in", dest="inp", type=positive_int, required=True, help="input channels or features "
                   "(required)")
    s.add_argument("--out", type=positive_int,
                   help="output channels or features (required for conv and linear)")
    s.add_argument("-k", "--kernel", type=positive_int, help="conv kernel size (default: 3)")
    s.add_argument("--groups", type=positive_int,
                   help="conv groups; --groups = --in is depthwise (default: 1)")
    s.add_argument("--no-bias", action="store_true", help="conv or linear without bias (default: with)")
    s.set_defaults(func=cmd_params)

    s = sub.add_parser("compare", help="the MobileNet paper's Table 8 for any models")
    s.add_argument("models", nargs="*", default=["mobilenet_v1", "googlenet_2014", "vgg16"],
                   help="zoo names")
    s.set_defaults(func=cmd_compare)

    from .train.commands import add_parsers as add_train_parsers
    from .train.config import BACKENDS
    add_train_parsers(sub)  # train, eval, predict, augment
    from .viz.commands import add_parsers as add_plot_parsers
    add_plot_parsers(sub)  # plot KIND

    from .data.commands import add_parsers as add_data_parsers
    add_data_parsers(sub)  # data export
    from .serve.commands import add_parsers as add_serve_parsers
    add_serve_parsers(sub)  # serve: the explorer in the browser

    from .style.commands import add_parser as add_style_parser
    add_style_parser(sub)  # stylize

    from .export import DEFAULT_OPSET
    s = sub.add_parser("export", help="write a run or a zoo model as ONNX, checked by onnx.checker")
    s.add_argument("source",
                   help="a run folder of `svertka train`, or a zoo name (random weights unless --weights)")
    s.add_argument("--format", choices=["onnx"], default="onnx", help="the file format")
    s.add_argument("--out", required=True, help="the file to write, e.g. model.onnx (required)")
    s.add_argument("--dynamic-batch", action="store_true",
                   help="let the batch size vary (default: fixed at 1)")
    s.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, help="ONNX opset version (7 to 20)")
    s.add_argument("--weights", help="weights file (.safetensors or .pth) for a zoo model (default: random)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("upscale", help="upscale a PNG/JPEG with a trained SRCNN/ESPCN run, in tiles")
    s.add_argument("run", help="a run folder of an upscaling model (or its .safetensors)")
    s.add_argument("image", help="the PNG or JPEG (colour: the model does the luma, bicubic the rest)")
    s.add_argument("--out", required=True, help="the image to write, .png or .jpg (required)")
    s.add_argument("--tile", type=positive_int, default=128, help="tile side in input pixels; bounds memory")
    s.add_argument("--backend", choices=BACKENDS, help="default: the backend the run was trained with")
    s.set_defaults(func=cmd_upscale)

    s = sub.add_parser("demo", help="the main job (what `make demo` runs)")
    s.add_argument("--backend", choices=BACKENDS, help="default: torch; numpy where PyTorch is not installed")
    from .train.commands import THREADS_HELP
    s.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    s.set_defaults(func=cmd_demo)
    return p


def _unrecognized(parser, command, extra, kind=None) -> str:
    """The message for flags no parser took: the nearest real flag, and the subcommand's help.
    ``kind``: the second word of a two-word command (`plot conv`)."""
    import difflib

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    if kind:
        sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[kind]
        command = f"{command} {kind}"
    flags = {o: a for a in sub._actions for o in a.option_strings}
    msg = f"unrecognized arguments: {' '.join(extra)}"
    unknown = next((x.split("=")[0] for x in extra if x.startswith("-")), None)
    near = difflib.get_close_matches(unknown, flags, n=1, cutoff=0.6) if unknown else []
    if near:
        about = (flags[near[0]].help or "").split(" (default")[0].replace("%%", "%")
        msg += f"; the nearest flag is {near[0]} ({about})"
    return f"{msg} (see `svertka {command} --help`)"


def main(argv=None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:
            raise UsageError(_unrecognized(parser, args.command, extra, getattr(args, "kind", None)))
        if args.command in ("train", "demo"):
            use_numpy_without_torch(args)
        args.func(args)
        return 0
    except SvertkaError as e:
        print(f"svertka: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("svertka: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
