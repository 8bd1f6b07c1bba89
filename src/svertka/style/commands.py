"""`svertka stylize content.png style.png --out out.png`: the command around ``stylize``."""
from __future__ import annotations

import sys

import numpy as np

from ..argtypes import nonneg_float, nonneg_int, positive_int
from ..errors import UsageError
from .network import MODELS
from .settings import INITS, OPTIMIZERS, StyleSettings

MAX_SIZE = 1024  # px on the longer side: 64 channels x 1024^2 float32 is 256 MiB per early feature map

RANDOM_NOTE = ("svertka: note: no --weights, so {model} has random weights (He init, seed {seed}); random "
               "networks still capture texture statistics (Ustyuzhaninov et al. 2016), but the result is "
               "weaker than with torchvision's ImageNet weights (--weights vgg19.pth)")


def add_parser(sub) -> None:
    defaults = StyleSettings()
    s = sub.add_parser("stylize", help="neural style transfer (Gatys et al. 2016): paint an image in "
                       "another's style")
    s.add_argument("content", help="the image whose content to keep (PNG or JPEG)")
    s.add_argument("style", help="the image whose style to take (PNG or JPEG)")
    s.add_argument("--out", required=True, help="the result, .png or .jpg (required)")
    s.add_argument("--steps", type=nonneg_int, default=defaults.steps, help="optimisation iterations")
    s.add_argument("--size", type=positive_int, default=256,
                   help="longer side of both images in px (each keeps its aspect ratio)")
    s.add_argument("--backend", choices=("numpy", "torch"),
                   help="default: torch; numpy (the from-scratch engine) where PyTorch is not installed")
    s.add_argument("--weights", help="torchvision's VGG-19 or VGG-16 state_dict (.pth or .safetensors) "
                   "(default: random weights)")
    s.add_argument("--model", choices=MODELS, help="the VGG without --weights (default: vgg19; with "
                   "--weights, the file's)")
    s.add_argument("--seed", type=nonneg_int, default=0, help="random weights and the noise init")
    s.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer,
                   help="adam (one gradient per step) or lbfgs (as Gatys et al.; a line search per step)")
    s.add_argument("--lr", type=nonneg_float, default=defaults.lr,
                   help="Adam's step in pixel units ([0, 1]); L-BFGS's first step")
    s.add_argument("--style-weight", type=nonneg_float, default=defaults.style_weight,
                   help="weight of the style loss against the content loss (weight 1)")
    s.add_argument("--tv-weight", type=nonneg_float, default=defaults.tv_weight,
                   help="weight of the total-variation term (smoothness)")
    s.add_argument("--init", choices=INITS, default=defaults.init,
                   help="start from the content image or from noise")
    s.add_argument("--plot", help="also draw the losses per iteration, as PLOT.png and PLOT.svg "
                   "(needs matplotlib; default: no plot)")
    from ..train.commands import THREADS_HELP
    s.add_argument("--threads", type=positive_int, help=THREADS_HELP.split(", re-checked")[0] + ")")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    s.set_defaults(func=cmd_stylize)


def load_rgb(path, size: int) -> np.ndarray:
    """A PNG/JPEG as uint8 H x W x 3 with its longer side ``size`` px (aspect kept)."""
    from PIL import Image

    from ..data.formats import decode_image

    image = decode_image(path, "RGB")
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(new, Image.BICUBIC))


def cmd_stylize(args) -> None:
    import importlib.util

    from ..backends import get_backend
    from ..viz.image import image_format, write_image
    from .network import CONTENT_LAYER, STYLE_LAYERS, detect_model, feature_network, read_state
    from .transfer import stylize

    image_format(args.out)  # a bad --out fails now, not after the optimisation
    if args.plot:
        from ..viz.figure import output_paths, pyplot
        pyplot()  # no matplotlib: say so before the run
        output_paths(args.plot)
    if args.size > MAX_SIZE:
        raise UsageError(f"--size {args.size} is more than stylize takes ({MAX_SIZE}): one of VGG's first "
                         f"feature maps alone would be {64 * 4 * args.size ** 2 / 2 ** 30:.0f} GiB; use a "
                         f"smaller --size")
    backend = args.backend or ("torch" if importlib.util.find_spec("torch") else "numpy")
    if backend == "numpy" and args.threads:
        raise UsageError("--threads sets torch's threads; with --backend numpy set OMP_NUM_THREADS instead")
    get_backend(backend)  # a missing torch is one line, now
    content, style = load_rgb(args.content, args.size), load_rgb(args.style, args.size)
    state, model = None, args.model or "vgg19"
    if args.weights:
        from pathlib import Path

        state = read_state(args.weights)
        model = detect_model(state, Path(args.weights).name)
        if args.model and args.model != model:
            raise UsageError(f"--model {args.model} does not match {args.weights}, which holds {model} "
                             f"weights; drop --model")
    for image in (content, style):  # too small an image fails now, in one line, before any note
        feature_network(model, [CONTENT_LAYER, *STYLE_LAYERS], *image.shape[:2])
    if not args.weights and not args.quiet:
        print(RANDOM_NOTE.format(model=model, seed=args.seed), file=sys.stderr)
    if backend == "torch":
        import torch

        from ..threads import ThreadPolicy
        policy = ThreadPolicy(args.threads, torch.set_num_threads)
        policy.start()
        if policy.note and not args.quiet:
            print(f"svertka: {policy.note}", file=sys.stderr)

    settings = StyleSettings(steps=args.steps, optimizer=args.optimizer, lr=args.lr,
                             style_weight=args.style_weight, tv_weight=args.tv_weight, init=args.init)
    every = max(1, args.steps // 10)

    def log(row):
        if not args.quiet and row["step"] % every == 0:
            print(f"step {row['step']:>4}: total {row['total']:.4g} (content {row['content']:.4g}, "
                  f"style {row['style']:.4g}) {row['seconds']:.2f} s", file=sys.stderr, flush=True)

    from pathlib import Path

    result = stylize(content, style, settings, backend=backend, model=model, state=state, seed=args.seed,
                     weights_name=Path(args.weights).name if args.weights else "", log=log)
    write_image(args.out, result.image)
    h, w = result.image.shape[:2]
    first, last = result.history[0], result.history[-1]
    speed = f", {result.seconds_per_step():.2f} s/step" if args.steps else ""
    print(f"wrote {args.out}: {w}x{h}, {model} with {result.weights} weights, {backend} backend, "
          f"{args.optimizer} {args.steps} steps{speed}; style loss {first['style']:.4g} -> "
          f"{last['style']:.4g}, content loss {first['content']:.4g} -> {last['content']:.4g}")
    if args.plot:
        from .figures import plot_losses
        paths = plot_losses([result], args.plot)
        print(f"wrote {', '.join(str(p) for p in paths)}")
