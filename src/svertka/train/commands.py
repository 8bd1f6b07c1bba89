"""The `svertka train / eval / predict / augment` commands (wired into svertka.cli)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..argtypes import nonneg_float, positive_int
from ..errors import UsageError

THREADS_HELP = "torch threads (default: one per core that other processes leave free, re-checked each epoch)"

# Flags whose value is copied into TrainConfig when given (default None = not given).
_TRAIN_KEYS = ("task", "model", "data", "root", "backend", "device", "epochs", "batch_size", "opt", "lr",
               "momentum",
               "weight_decay", "sched", "warmup_epochs", "min_lr_factor", "decay_epochs", "decay_rate",
               "label_smoothing", "aug", "amp", "seed", "val_fraction", "split_seed", "eval_batch_size",
               "tta", "output", "limit_train", "limit_test", "threads", "image_size", "crop_pct",
               "train_crop", "workers")


# The biggest grid `svertka augment` draws: 256 images make 64 rows; more is unreadable, and a
# request like -n 100000 once wrote a 109 MB PNG.
AUGMENT_MAX = 256


def add_parsers(sub):
    from ..data.registry import list_datasets
    from ..tasks.task import get_task, task_names
    from .config import AMP, BACKENDS, OPTIMIZERS, TrainConfig
    from .schedule import SCHEDULES

    D = TrainConfig()  # train's flags default to None ("not given"); their help shows the config's value

    def dflt(name, shown=None):
        return f" (default: {shown if shown is not None else getattr(D, name)})"

    s = sub.add_parser("train", help="train a model (torch or numpy backend); see --recipe",
                       description="Train a model. Flags override the recipe, which overrides the defaults.")
    s.add_argument("--task", help="what to train: " + ", ".join(task_names()) + dflt("task"))
    s.add_argument("--task-opt", dest="task_opt", action="append", type=task_option, metavar="KEY=VALUE",
                   help="a task's own setting, repeatable (e.g. head=heatmap); a wrong key lists the "
                   "task's keys (default: none)")
    model_default = dflt("model", "the task's own: " + ", ".join(
        f"{t} {get_task(t).model_for({})}" for t in task_names()))
    s.add_argument("model_pos", nargs="?", metavar="MODEL",
                   help="model name (same as --model)" + model_default)
    s.add_argument("--model", "-m",
                   help="zoo name, cnn2, vgg_fm, vgg_fm_small, or a JSON network file" + model_default)
    s.add_argument("--data", help=f"dataset: {', '.join(list_datasets())}" + dflt("data"))
    s.add_argument("--root", help="folder with the dataset files (default: $SVERTKA_DATA or "
                   "~/.cache/svertka, then system copies, then a download)")
    s.add_argument("--recipe",
                   help="named TOML recipe, e.g. fashion-mnist-94, or a .toml file (default: none)")
    s.add_argument("--backend", choices=BACKENDS,
                   help="torch, or numpy (the from-scratch engine)" + dflt("backend"))
    s.add_argument("--device",
                   help="auto (cuda if present), cpu, cuda, cuda:N, mps (torch backend)" + dflt("device"))
    s.add_argument("--epochs", type=positive_int, help="passes over the training set" + dflt("epochs"))
    s.add_argument("-b", "--batch-size", type=positive_int, help="training batch size" + dflt("batch_size"))
    s.add_argument("--eval-batch-size", type=positive_int,
                   help="evaluation batch size" + dflt("eval_batch_size"))
    s.add_argument("--opt", choices=OPTIMIZERS, help="sgd (momentum), nesterov, adam, adamw" + dflt("opt"))
    s.add_argument("--lr", type=nonneg_float, help="peak learning rate" + dflt("lr"))
    s.add_argument("--momentum", type=nonneg_float, help="SGD momentum, in [0, 1) (sgd and nesterov only)"
                   + dflt("momentum"))
    s.add_argument("--weight-decay", "--wd", dest="weight_decay", type=nonneg_float, help="weight decay"
                   + dflt("weight_decay"))
    s.add_argument("--no-decay-norm-bias", dest="no_decay_norm_bias", action="store_true", default=None,
                   help="no weight decay on biases and norm weights (default: on)")
    s.add_argument("--decay-norm-bias", dest="no_decay_norm_bias", action="store_false",
                   help="decay every parameter (default: off)")
    s.add_argument("--sched", choices=SCHEDULES, help="learning-rate schedule" + dflt("sched"))
    s.add_argument("--warmup-epochs", type=nonneg_float, help="linear warmup before the schedule (onecycle "
                   "without it ramps over 30%% of the steps)" + dflt("warmup_epochs"))
    s.add_argument("--min-lr-factor", type=nonneg_float,
                   help="cosine/onecycle end LR as a fraction of --lr, "
                   "in [0, 1] (0: onecycle's 4e-6)" + dflt("min_lr_factor"))
    s.add_argument("--decay-epochs", type=nonneg_float, help="step schedule: epochs between decays "
                   "(default: a third of the run)")
    s.add_argument("--decay-rate", type=nonneg_float, help="step schedule: LR factor per decay, in (0, 1]"
                   + dflt("decay_rate"))
    s.add_argument("--label-smoothing", "--smoothing", dest="label_smoothing", type=nonneg_float,
                   help="label smoothing, in [0, 1)" + dflt("label_smoothing"))
    s.add_argument("--aug", help="augmentation, e.g. 'flip,crop:2,rotate:10,noise:0.05,erase:0.25'; "
                   "'altflip' mirrors each image in every other epoch instead of at random (default: none)")
    s.add_argument("--amp", choices=AMP,
                   help="bf16 autocast (torch, CPU or GPU); auto: bf16 only where the CPU "
                   "has native bf16 or a short probe finds it faster (the recipes use auto)" + dflt("amp"))
    s.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format (torch)" + dflt("channels_last", "off"))
    s.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (torch)" + dflt("compile", "off"))
    s.add_argument("--tta", choices=("none", "flip"), help="flip test-time augmentation at the last epoch's "
                   "evaluation" + dflt("tta"))
    s.add_argument("--seed", type=int, help="seed of the weights, data order and augmentation" + dflt("seed"))
    s.add_argument("--val-fraction", type=nonneg_float, help="carve a validation split from train (e.g. 0.1)"
                   + dflt("val_fraction"))
    s.add_argument("--split-seed", type=int,
                   help="seed of the validation split (needs --val-fraction); fix it to "
                   "compare seeds or ensemble runs on one validation set (default: --seed)")
    s.add_argument("--output", "-o", help="run folder (default: runs/MODEL-DATA-BACKEND-TIME)")
    s.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run from its last checkpoint (default: a new run)")
    s.add_argument("--limit-train", type=positive_int,
                   help="use only the first N training images (default: all)")
    s.add_argument("--limit-test", type=positive_int, help="use only the first N test images (default: all)")
    s.add_argument("--threads", type=positive_int, help=THREADS_HELP + "; --resume may change it (float "
                   "rounding then differs from an uninterrupted run)")
    s.add_argument("--sync-bn", action="store_true", default=None,
                   help="BatchNorm statistics over all ranks' batches (torchrun; no effect in one process) "
                   "(default: off)")
    s.add_argument("--nproc", type=positive_int,
                   help="train on N processes: starts `torchrun --standalone --nproc-per-node N -m svertka "
                   "train ...` (torch backend; --batch-size stays the global batch) (default: one process)")
    s.add_argument("--dist-timeout", type=positive_int, default=None, metavar="SECONDS",
                   help="under torchrun: how long a rank waits for a hung peer before the job stops "
                   "(a dead peer stops it at once) (default: 300)")
    s.add_argument("--stream", action="store_true", default=None,
                   help="read --data imagefolder from disk batch by batch (class folders or the tar shards "
                   "of `svertka data shard`), decoded by --workers processes, for data that does not fit in "
                   "memory; training crops are RandomResizedCrop + flip (default: off, all images in memory)")
    s.add_argument("--image-size", type=positive_int,
                   help="--stream: side of the square crops the model sees" + dflt("image_size"))
    s.add_argument("--crop-pct", type=nonneg_float, help="--stream: evaluation resizes the shorter side to "
                   "image-size / crop-pct and takes the centre crop" + dflt("crop_pct"))
    s.add_argument("--train-crop", choices=("rrc", "center"),
                   help="--stream: rrc (RandomResizedCrop + flip) or center (the evaluation crop)"
                   + dflt("train_crop"))
    s.add_argument("--workers", type=int, help="--stream: decoding processes, 0 decodes in the training "
                   "process; --resume may change it (default: half the cores, at most 8)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    s.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    s.set_defaults(func=cmd_train)

    backend_help = "torch or numpy (default: the backend the run was trained with)"
    s = sub.add_parser("eval", help="top-1/top-5, per-class accuracy, confusion matrix of trained weights")
    s.add_argument("path", metavar="RUN_DIR|WEIGHTS",
                   help="a run folder (its best checkpoint) or a .safetensors file")
    s.add_argument("--model", help="model name (default: from the file's metadata)")
    s.add_argument("--data", help="dataset (default: the one it was trained on)")
    s.add_argument("--root", help="folder with the dataset files (default: as in train)")
    s.add_argument("--num-classes", type=positive_int,
                   help="classifier outputs (default: from the file's metadata)")
    s.add_argument("--backend", choices=BACKENDS, help=backend_help)
    s.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps (torch backend) (default: auto)")
    s.add_argument("--tta", choices=("none", "flip"), default="none", help="flip test-time augmentation")
    s.add_argument("--limit", type=positive_int,
                   help="evaluate on the first N test images only (default: all)")
    s.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    s.add_argument("--png",
                   help="confusion-matrix PNG, or none (default: RUN_DIR/confusion.png; none for a file)")
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.add_argument("--coco-results", metavar="PREDS_JSON",
                   help="detection runs: also write the test canvases' detections as a COCO results "
                        "file (image ids as `svertka data export canvas --task detect` numbers them; "
                        "default: none)")
    s.add_argument("--second-stage", metavar="CROPS_RUN",
                   help="detection runs: re-class the detector's boxes with this crop classifier (a run of "
                        "`svertka train --task crops`) and score the two stages together (default: none)")
    s.add_argument("--task-opt", dest="task_opt", action="append", type=task_option, metavar="KEY=VALUE",
                   help="task runs: change a setting of the test split, e.g. test_canvases=5000 (detect, "
                        "crops) or test=2000 (segment); the model's settings stay the run's (default: none)")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("predict", help="top-k classes, or a task model's points, boxes or mask, of PNG/JPEG "
                       "images: svertka predict RUN IMAGE...",
                       usage="svertka predict [-h] RUN IMAGE [IMAGE ...] [options]\n"
                             "       svertka predict [-h] -w WEIGHTS IMAGE [IMAGE ...] [options]")
    s.add_argument("images", nargs="+", metavar="RUN IMAGE",
                   help="a run folder of svertka train (or a .safetensors/.onnx weights file), then PNG or "
                   "JPEG files, resized to the model's input; with -w, images only")
    s.add_argument("--weights", "-w", help="weights file or run folder, instead of the first argument "
                   "(default: the first argument)")
    s.add_argument("--model", help="model name (default: from the weights' metadata)")
    s.add_argument("--num-classes", type=positive_int,
                   help="classifier outputs (default: from the weights' metadata)")
    s.add_argument("--backend", choices=BACKENDS, help=backend_help)
    s.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps (torch backend) (default: auto)")
    s.add_argument("-k", "--top", dest="k", type=positive_int,
                   help="how many classes to list (default: 5, or all when fewer)")
    s.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="invert the image (dark item on white -> white on black, as in MNIST/Fashion-MNIST); "
                   "auto: when the model was trained on light-on-dark data and the image's border is light")
    s.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    s.add_argument("--out", help="task models (points, boxes, ...): draw the first image's prediction into "
                   "this PNG (default: none)")
    s.add_argument("--second-stage", metavar="CROPS_RUN",
                   help="detection runs: re-class the boxes with this crop classifier (a run of "
                        "`svertka train --task crops`) (default: none)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_predict)

    def grid_size(text):
        n = positive_int(text)
        if n > AUGMENT_MAX:
            raise argparse.ArgumentTypeError(f"{n} images make an unreadable grid; "
                                             f"ask for at most {AUGMENT_MAX}")
        return n

    s = sub.add_parser("augment", help="a PNG grid of training images and their augmented copies")
    s.add_argument("--data", default="fashion-mnist", help="dataset")
    s.add_argument("--root", help="folder with the dataset files (default: as in train)")
    s.add_argument("--aug", default="flip,crop:4,rotate:10,zoom:0.1,noise:0.05,erase:0.25",
                   help="augmentation pipeline, as train's --aug")
    s.add_argument("-n", type=grid_size, default=32, help=f"number of images, at most {AUGMENT_MAX}")
    s.add_argument("--seed", type=int, default=0, help="which images, and their augmentation")
    s.add_argument("--out", default="augment.png", help="the PNG to write")
    s.set_defaults(func=cmd_augment)


def task_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def cmd_train(args):
    from .allocator import keep_freed_memory
    from .config import make_config
    from .distributed import DEFAULT_TIMEOUT_S, launch_torchrun, session
    from .loop import resume_config, train

    if args.nproc is not None:
        return launch_torchrun(args)
    keep_freed_memory()  # this process only trains: reuse activation buffers across steps
    if args.model_pos and args.model and args.model_pos != args.model:
        raise UsageError(f"two models given: {args.model_pos} and --model {args.model}")
    over = {k: getattr(args, k) for k in _TRAIN_KEYS}
    over["model"] = args.model or args.model_pos
    over["no_decay_norm_bias"] = args.no_decay_norm_bias
    over["channels_last"] = args.channels_last
    over["compile"] = args.compile
    over["sync_bn"] = args.sync_bn
    over["task_options"] = dict(args.task_opt) if args.task_opt else None
    over["stream"] = args.stream
    if args.resume:
        how_fast = ("epochs", "threads", "workers")  # change the speed or the length, not the results
        given = sorted(k for k, v in over.items() if v is not None and k not in how_fast)
        if given or args.recipe:
            flag = (given or ["recipe"])[0].replace("_", "-")
            raise UsageError(f"--resume continues the run's saved config; drop --{flag}"
                             f" (only --epochs, --threads and --workers may change)")
        cfg = resume_config(args.resume, args.epochs, args.threads)
        if args.workers is not None:
            if not cfg.stream:
                raise UsageError(f"--workers applies to streamed data, and {args.resume} holds its data "
                                 "in memory; drop --workers")
            cfg.workers = args.workers
            cfg.validate()
    else:
        cfg = make_config(over, args.recipe)
    with session(cfg, args.dist_timeout or DEFAULT_TIMEOUT_S) as job:  # several ranks under torchrun
        result = train(cfg, resume=args.resume, progress=not args.quiet)
    if not job.is_main:  # rank 0 reports for the job
        return result
    last = result.history[-1] if result.history else {}
    if args.json:
        print(json.dumps({"run_dir": str(result.run_dir), "seconds": round(result.seconds, 2), **last}))
    elif result.task == "classify":
        print(f"test accuracy {100 * result.test_acc:.2f}% after {last.get('epoch', 0)} epochs "
              f"({result.seconds:.1f} s); run saved in {result.run_dir}")
    else:
        print(f"test {result.score} {result.test_acc:.4g} after {last.get('epoch', 0)} epochs "
              f"({result.seconds:.1f} s); run saved in {result.run_dir}")
    return result


def cmd_eval(args):
    from .evaluate import confusion_png, evaluate, load_trained

    loaded = load_trained(args.path, args.model, args.num_classes, args.backend, args.device, args.threads)
    if loaded.task.name != "classify":
        return eval_task(args, loaded)
    if args.second_stage:
        from .second_stage import load_second_stage
        load_second_stage(loaded, args.second_stage)  # refuses a classifier in one line
    if args.coco_results:
        raise UsageError(f"--coco-results writes detections; {loaded.source} is a classifier")
    if args.task_opt:
        raise UsageError(f"--task-opt sets a task run's test split; {loaded.source} is a classifier, "
                         f"evaluated on --data (and --limit)")
    aug = loaded.meta.get("aug")
    if args.tta == "flip" and aug is not None and "flip" not in aug:
        # measured: the demo-style LeNet-5 drops from 89.9% to 83.6% (shoes all face one way)
        print("svertka: note: this model was trained without --aug flip; flip TTA usually lowers "
              "its accuracy", file=sys.stderr)
    r = evaluate(loaded, args.data, args.root, args.tta, limit=args.limit)
    from ..viz.figure import plots_available  # without matplotlib, write the PNG only when asked to

    png = args.png or (str(Path(args.path) / "confusion.png")
                       if Path(args.path).is_dir() and plots_available() else None)
    if png and png != "none":
        confusion_png(r["confusion"], png, r["classes"] or loaded.classes)
    elif args.png is None and Path(args.path).is_dir():
        print("svertka: note: no confusion.png without matplotlib (pip install 'svertka[plots]'); the matrix "
              "is printed below", file=sys.stderr)
    if args.json:
        print(json.dumps({"top1": r["top1"], "top5": r["top5"], "per_class": r["per_class"], "n": r["n"]}))
        return
    tta = ", flip TTA" if args.tta == "flip" else ""
    print(f"{loaded.net.name} on {r['data']} test ({r['n']} images, {loaded.adapter.backend} backend{tta}): "
          f"top-1 {100 * r['top1']:.2f}%  top-5 {100 * r['top5']:.2f}%")
    width = max(len(c) for c in r["classes"]) if r["classes"] else 5
    print("\nper class:")
    for name, acc in r["per_class"].items():
        print(f"  {name:<{width}}  {'-' if acc is None else f'{100 * acc:6.2f}%'}")
    print("\nconfusion matrix (rows true, columns predicted):")
    conf = r["confusion"]
    cell = max(4, len(str(max(max(row) for row in conf))) + 1)
    print(" " * (width + 2) + "".join(f"{i:>{cell}}" for i in range(len(conf))))
    for i, row in enumerate(conf):
        print(f"  {r['classes'][i] if i < len(r['classes']) else i:<{width}}"
              + "".join(f"{v:>{cell}}" for v in row) + f"   {i}")
    if png and png != "none":
        print(f"\nconfusion matrix PNG: {png}")


def eval_task(args, loaded):
    """`svertka eval` of a run of any task but classification: its metrics."""
    from .evaluate import evaluate_task

    loaded.task.override_for_eval(dict(args.task_opt or []))
    for flag, given in (("--data", args.data), ("--tta", args.tta != "none"), ("--png", args.png)):
        if given:
            raise UsageError(f"{flag} is for classifiers; {loaded.source} is a {loaded.task.name} model "
                             f"evaluated on its own test data")
    if args.coco_results and not hasattr(loaded.task, "write_coco_results"):
        raise UsageError(f"--coco-results writes detections; {loaded.source} is a {loaded.task.name} model")
    second = None
    if args.second_stage:
        from .second_stage import evaluate_two_stage, load_second_stage
        second = load_second_stage(loaded, args.second_stage, args.backend, args.device, args.threads)
    r = evaluate_task(loaded, args.root, limit=args.limit)
    if second is not None:
        r = evaluate_two_stage(r, second)
    if args.coco_results:
        n = loaded.task.write_coco_results(r["evaluator"], args.coco_results)
        print(f"wrote {n} detections on {r['n']} test canvases to {args.coco_results} (COCO results format)",
              file=sys.stderr)
    if args.json:
        staged = {"second_stage": str(second.source)} if second is not None else {}
        print(json.dumps({"task": r["task"], "n": r["n"], **staged, **r["metrics"]}))
        return r
    staged = (f", boxes re-classed by the second stage {second.net.name} ({second.source})"
              if second is not None else "")
    print(f"{loaded.net.name} ({r['task']}) on {r['data']} test canvases ({r['n']} images, "
          f"{loaded.adapter.backend} backend{staged}):")
    for k, v in r["metrics"].items():
        print(f"  {k:<20} {v:.4f}" if isinstance(v, float) else f"  {k:<20} {v}")
    return r


# files `svertka predict RUN IMAGE...` takes as weights in first place: what svertka writes
# (train's checkpoints, export's ONNX); other weights files go through -w
WEIGHTS_SUFFIXES = (".safetensors", ".onnx")


def is_weights(path) -> bool:
    """A run folder of svertka train (it holds a checkpoint) or a weights file svertka writes."""
    p = Path(path)
    if p.is_dir():
        return any((p / f).is_file() for f in ("best.safetensors", "last.safetensors"))
    return p.is_file() and p.suffix.lower() in WEIGHTS_SUFFIXES


def predict_inputs(weights, paths) -> tuple[str, list[str]]:
    """(weights, images) of `svertka predict`: with -w every argument is an image; without,
    the first must be a run folder or a weights file and the rest are images. Anything
    else is a one-line error, never a guess."""
    first, rest = paths[0], list(paths[1:])
    if weights is not None:
        if is_weights(first):
            raise UsageError(f"two sets of weights: -w {weights} and {first}; give one, as in "
                             f"`svertka predict RUN IMAGE...` or `svertka predict -w RUN IMAGE...`")
        return weights, list(paths)
    if not is_weights(first):
        usage = "`svertka predict RUN IMAGE...` or `svertka predict -w WEIGHTS IMAGE...`"
        p = Path(first)
        if p.is_dir():
            raise UsageError(f"{first} holds no best.safetensors or last.safetensors, so it is not a run "
                             f"folder of svertka train; use {usage}")
        what = ("does not exist" if not p.exists() else
                f"is not a run folder or a {' or '.join(WEIGHTS_SUFFIXES)} weights file")
        raise UsageError(f"{first} {what}, and no -w was given; use {usage}")
    if not rest:
        raise UsageError(f"no image after {first}; use `svertka predict {first} IMAGE...`")
    return first, rest


def cmd_predict(args):
    from .evaluate import load_trained, predict, predict_task

    args.weights, args.images = predict_inputs(args.weights, args.images)
    loaded = load_trained(args.weights, args.model, args.num_classes, args.backend, args.device, args.threads)
    decode = None
    if args.second_stage:
        from .second_stage import decode_two_stage, load_second_stage
        second = load_second_stage(loaded, args.second_stage, args.backend, args.device, args.threads)
        decode = decode_two_stage(loaded, second)
    from ..tasks.task import ClassifyTask

    if not isinstance(loaded.task, ClassifyTask):  # a crops run predicts as a classifier: top-k
        if args.k is not None:
            raise UsageError(f"-k lists classes of a classifier; {loaded.source} is a "
                             f"{loaded.task.name} model")
        out = predict_task(loaded, args.images, args.out, decode)
        print(json.dumps(out if args.json or len(out) > 1 else out[0], indent=None if args.json else 1))
        if args.out:
            print(f"drew {args.images[0]}'s prediction in {args.out}", file=sys.stderr)
        return out
    if args.out:
        raise UsageError("--out draws boxes or points; a classifier's prediction is its top-k list")
    if args.k is not None and args.k > loaded.net.num_classes:
        raise UsageError(f"-k {args.k} is more than the model's {loaded.net.num_classes} classes; "
                         f"pass at most {loaded.net.num_classes}")
    out = predict(loaded, args.images, args.k or 5, args.invert)
    if args.json:
        print(json.dumps([{"image": o["image"], "inverted": o["inverted"], "top": o["top"]} for o in out]))
        return
    for o in out:
        note = f" ({o['invert_reason']})" if o["invert_reason"] else ""
        print(o["image"] + note + ": " + ", ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in o["top"]))


def cmd_augment(args):
    from ..viz import augment_grid

    path = augment_grid(args.data, args.out, pipeline=args.aug, n=args.n, seed=args.seed, root=args.root)
    print(f"wrote {path}: rows of originals, each followed by its augmented copies ({args.aug})")


def find_demo_data(root=None) -> tuple[str, str]:
    """(dataset name, where) for the demo: full Fashion-MNIST if its files are
    found locally (no download), else the packaged fashion-mnist-mini."""
    from ..data import load_dataset
    from ..errors import DataError

    try:
        ds = load_dataset("fashion-mnist", root=root, split="test", download=False)
        return "fashion-mnist", ds.location
    except DataError:
        return "fashion-mnist-mini", "packaged with svertka"


def cmd_demo_train(args=None, out=None):
    """What `make demo` runs: LeNet-5 on Fashion-MNIST (full if found, else the mini set)."""
    from .config import make_config
    from .loop import train

    out = out or sys.stdout  # looked up per call: a test may have replaced sys.stdout
    data, where = find_demo_data()
    full = data == "fashion-mnist"
    backend = getattr(args, "backend", None)  # numpy where torch is missing (svertka.cli)
    cfg = make_config({"data": data, "epochs": None if full else 15, "backend": backend,
                       "threads": getattr(args, "threads", None)}, recipe="lenet5-demo")
    what = ("the full Fashion-MNIST (60,000 train / 10,000 test)" if full else
            "fashion-mnist-mini (Fashion-MNIST not found; install dataset-fashion-mnist for the full set)")
    print(f"svertka demo: training LeNet-5 on {what}, data from {where}", file=out, flush=True)
    result = train(cfg)
    print(f"\ntest accuracy {100 * result.test_acc:.2f}% on {data} test set "
          f"({len(result.history)} epochs, {result.seconds:.0f} s); run saved in {result.run_dir}\n"
          f"evaluate it: svertka eval {result.run_dir}", file=out)
    busy = [h["other_cores"] for h in result.history if h.get("other_cores") is not None]
    if busy and sum(busy) / len(busy) > 0.25:
        print(f"note: other processes kept {sum(busy) / len(busy):.1f} of this machine's cores busy "
              f"during the run, "
              f"so it ran slower than on an idle machine", file=out)
    return result
