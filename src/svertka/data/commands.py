"""The `svertka data export canvas` and `svertka data shard` commands (wired into svertka.cli)."""
from __future__ import annotations

from ..argtypes import float_range, fraction, nonneg_int, positive_int
from ..errors import UsageError

EXPORTS = ("canvas",)
TASKS = ("detect", "localize", "points")


def add_parsers(sub):
    d = sub.add_parser("data", help="dataset tools: export canvases in COCO layout, write tar shards")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION")  # same parser class: one-line errors
    dsub.required = True
    s = dsub.add_parser("export", help="write a dataset to disk: canvas (PNG images + COCO annotations.json)")
    s.add_argument("what", choices=EXPORTS, help="what to export")
    s.add_argument("--task", choices=TASKS, default="detect",
                   help="the canvas preset: detect is 96 px with 1-5 items, "
                        "localize and points 64 px with one item")
    s.add_argument("--out", required=True,
                   help="new or empty folder for images/ and annotations.json (required)")
    s.add_argument("--n", type=positive_int, default=1000, help="number of canvases")
    s.add_argument("--seed", type=nonneg_int, default=0, help="canvas stream seed")
    s.add_argument("--split", choices=("test", "train"), default="test", help="items from this split only")
    s.add_argument("--data", default="auto", help="item dataset: auto (full fashion-mnist when found, else "
                   "fashion-mnist-mini), fashion-mnist, fashion-mnist-mini or mnist")
    s.add_argument("--root", help="folder with the dataset files (default: the usual search)")
    s.add_argument("--size", type=positive_int, help="canvas side in px (default: the task's, 96 or 64)")
    s.add_argument("--min-items", type=positive_int, help="fewest items per canvas (default: 1)")
    s.add_argument("--max-items", type=positive_int,
                   help="most items per canvas (default: the task's, 5 or 1)")
    s.add_argument("--scale", type=float_range, help="item scale range LOW,HIGH (default: 0.75,2)")
    s.add_argument("--max-iou", type=fraction, help="cap on the IoU of two items' boxes (default: 0.3)")
    s.add_argument("--keypoints", action="store_true", help="add the five keypoints per item (default: only "
                   "with --task points)")
    s.set_defaults(func=cmd_data_export)

    s = dsub.add_parser("shard", help="write an ImageFolder as WebDataset-layout tar shards "
                        "(NNNNNN.jpg + NNNNNN.cls), for `svertka train --stream`")
    s.add_argument("root", metavar="ROOT",
                   help="ImageFolder root: <class>/<image>, or train/ and test/ (or val/) holding them")
    s.add_argument("--out", required=True, help="new or empty folder for the shards (required)")
    s.add_argument("--shard-size", type=positive_int, default=1000,
                   help="images per shard (default: 1000, about 110 MB of ImageNet JPEGs)")
    s.set_defaults(func=cmd_data_shard)
    return d


def cmd_data_shard(args):
    from .streaming import write_shards

    written = write_shards(args.root, args.out, args.shard_size)
    parts = ", ".join(f"{split}: {n} images in {k} shards" for split, n, k in written)
    print(f"wrote {parts} to {args.out}; train on them with "
          f"`svertka train --data imagefolder --root {args.out} --stream`")


def cmd_data_export(args):
    from dataclasses import asdict, replace

    from .canvas import CHUNK, TASK_PRESETS, CanvasGenerator
    from .coco import check_export_dir, export_canvases

    changes = {k: getattr(args, k) for k in ("size", "min_items", "max_items", "scale", "max_iou")
               if getattr(args, k) is not None}
    config = replace(TASK_PRESETS[args.task], **changes)
    if args.min_items is not None and args.max_items is None and config.min_items > config.max_items:
        raise UsageError(f"--min-items {args.min_items} is above the {args.task} task's "
                         f"{config.max_items} items; add --max-items")
    check_export_dir(args.out)  # before minutes of work, not after
    gen = CanvasGenerator.from_dataset(args.data, split=args.split, config=config, root=args.root)
    seen = {"items": 0, "touching": 0}

    def parts():  # one chunk at a time, so the export never holds every canvas
        for start in range(0, args.n, CHUNK):
            part = gen.generate(min(CHUNK, args.n - start), seed=args.seed, start=start)
            seen["items"] += int(part.counts.sum())
            seen["touching"] += int(part.touching.sum())
            yield part

    keypoints = args.keypoints or args.task == "points"
    info = {"description": f"svertka canvases ({args.task}) of {gen.name} items",
            "svertka": {"task": args.task, "items": gen.name, "seed": args.seed, "n": args.n,
                        "config": asdict(config), "keypoints": keypoints}}
    path = export_canvases(parts(), args.out, keypoints=keypoints, info=info)
    print(f"wrote {args.n} canvases ({config.size}x{config.size}, {seen['items']} items from {gen.name}, "
          f"{seen['touching']} canvases with touching items) to {path.parent}/images and {path}")
