"""The `svertka` command. Every user error is printed as one line, no traceback."""
from __future__ import annotations

import argparse
import json
import re
import sys

from .errors import SvertkaError, UsageError


def parse_shape(text: str) -> tuple[int, int, int]:
    """'3x224x224' (or '224', meaning 3x224x224) -> (3, 224, 224)."""
    m = re.fullmatch(r"\s*(?:(\d+)\s*[xX,]\s*)?(\d+)(?:\s*[xX,]\s*(\d+))?\s*", text or "")
    if not m:
        raise UsageError(f"malformed --input {text!r}; write CxHxW, e.g. 3x224x224 or 1x28x28")
    c, h, w = m.groups()
    if c is not None and w is None:  # "28x28": H x W
        c, h, w = None, c, h
    shape = (int(c) if c else 3, int(h), int(w or h))
    if min(shape) < 1:
        raise UsageError(f"--input {text!r} has a zero size; every dimension must be >= 1")
    return shape


def load_model_spec(name_or_path: str, num_classes=None, in_chans=None):
    """A zoo name, a training net (cnn2, vgg_fm, ...) or a JSON network file."""
    from .train.nets import resolve_model

    return resolve_model(name_or_path, num_classes=num_classes, in_chans=in_chans)


def _analyze(args, name):
    from .analysis import analyze

    net = load_model_spec(name, getattr(args, "num_classes", None))
    shape = parse_shape(args.input) if getattr(args, "input", None) else None
    if shape and shape[0] != net.input_shape[0]:
        net = load_model_spec(name, getattr(args, "num_classes", None), in_chans=shape[0])
    return analyze(net, shape)


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

    a = _analyze(args, args.model)
    if args.json:
        print(json.dumps(a.as_dict(), indent=1))
    else:
        print(summary_table(a, args.depth))


def cmd_rf(args):
    from .analysis import stacked_convs_to_see

    if args.model is None:
        n = stacked_convs_to_see(args.pixels, args.kernel)
        r = 1 + n * (args.kernel - 1)
        print(f"To see a {args.pixels}x{args.pixels} px cat, one unit needs a receptive field of "
              f"{args.pixels} px.\nEach stride-1 {args.kernel}x{args.kernel} conv grows the field by "
              f"{args.kernel - 1}: r = 1 + n*{args.kernel - 1} >= {args.pixels}  ->  n = {n} stacked "
              f"convolutions (r = {r}).\nPooling or strides multiply the growth: that is why CNNs "
              f"downsample.")
        return
    a = _analyze(args, args.model)
    layers = [l for l in a.layers[1:]]
    if args.layer:
        try:
            l = a.layer(args.layer)
        except KeyError:
            names = [x.name for x in layers if x.leaf]
            raise UsageError(f"{a.name} has no layer {args.layer!r}; e.g. {', '.join(names[:3])}"
                             f" ... (see `svertka summary {args.model}`)") from None
        d = l.rf.as_dict()
        print(f"{a.name} {l.name} ({l.type}): receptive field {d['size']} px, effective stride "
              f"{d['stride']}, effective padding {d['padding']}"
              + (" (global)" if l.rf.global_ else "")
              + (" (paths misaligned)" if l.rf.misaligned else ""))
        return
    from .analysis.report import table
    rows = [[l.name, l.type, "x".join(map(str, l.out_shape)), l.rf.label(), l.rf.stride[0],
             l.rf.padding[0]] for l in layers if l.leaf]
    print(table(["layer", "type", "output", "RF", "stride", "padding"], rows, "<<>>>>"))


def cmd_params(args):
    if args.layer == "conv":
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


def cmd_demo(args):
    """Train LeNet-5 on Fashion-MNIST (full if found, else the packaged mini set)."""
    from .train.commands import cmd_demo_train

    cmd_demo_train(args)


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as every other user error
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="svertka", description="Convolutional networks from the lecture, made real.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("models", help="every zoo model: params, MACs, RF, published figures")
    s.add_argument("pattern", nargs="?", default="*", help="wildcard, e.g. 'resnet*'")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("summary", help="per-layer table (shapes, params, MACs, RF) of one model")
    s.add_argument("model", help="zoo name or a JSON network file")
    s.add_argument("--input", help="CxHxW, e.g. 3x224x224 (default: the model's)")
    s.add_argument("--num-classes", type=_positive_int)
    s.add_argument("--depth", type=int, help="show containers at this depth instead of leaves")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser("rf", help="receptive fields: the lecture's cat question, or a model's")
    s.add_argument("model", nargs="?")
    s.add_argument("--layer", help="one layer's field, e.g. features.29")
    s.add_argument("--input", help="CxHxW")
    s.add_argument("--pixels", type=_positive_int, default=100, help="object size (default 100)")
    s.add_argument("--kernel", type=_positive_int, default=3)
    s.set_defaults(func=cmd_rf)

    s = sub.add_parser("params", help="parameter arithmetic of one layer, e.g. conv --in 32 --out 64 -k 3")
    s.add_argument("layer", choices=["conv", "linear", "bn"])
    s.add_argument("--in", dest="inp", type=_positive_int, required=True)
    s.add_argument("--out", type=_positive_int, default=1)
    s.add_argument("-k", "--kernel", type=_positive_int, default=3)
    s.add_argument("--groups", type=_positive_int, default=1)
    s.add_argument("--no-bias", action="store_true")
    s.set_defaults(func=cmd_params)

    s = sub.add_parser("compare", help="the MobileNet paper's Table 8 for any models")
    s.add_argument("models", nargs="*", default=["mobilenet_v1", "googlenet_2014", "vgg16"])
    s.set_defaults(func=cmd_compare)

    from .train.commands import add_parsers as add_train_parsers
    add_train_parsers(sub, _positive_int)  # train, eval, predict, augment

    s = sub.add_parser("demo", help="the main job (what `make demo` runs)")
    from .train.commands import THREADS_HELP
    s.add_argument("--threads", type=_positive_int, help=THREADS_HELP)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "params" and args.layer == "conv" and args.inp % args.groups:
            raise UsageError(f"--in {args.inp} is not divisible by --groups {args.groups}")
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
