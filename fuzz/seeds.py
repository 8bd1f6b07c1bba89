"""Valid seed files of every format svertka reads, made by svertka itself.

``make_seeds(folder)`` writes them once (a tiny training run included, for the
checkpoint and --resume seeds) and returns {parser: [seed paths]}. The bombs
(gzip members of zeros, PNGs of huge declared size) are built here too, once,
so that a mutation only has to stitch them together.
"""
from __future__ import annotations

import gzip
import json
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

ZERO_MEMBER = "zeros-16MiB.gz"  # one gzip member that inflates to 16 MiB of zeros
BOMB_PNGS = {  # (width, height) of valid PNGs whose IDAT is all zeros
    "bomb-8000x8000.png": (8000, 8000),      # at svertka's pixel limit: accepted
    "bomb-12000x12000.png": (12000, 12000),  # Pillow warns (89 Mpx) before it decodes
    "bomb-20000x20000.png": (20000, 20000),  # Pillow refuses (179 Mpx)
}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png(width: int, height: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def _zero_rows_idat(width: int, height: int) -> bytes:
    """zlib stream of ``height`` rows of (filter byte 0 + ``width`` zeros), compressed row block by block."""
    comp = zlib.compressobj(9)
    block = bytes(1 + width) * max(1, (1 << 24) // (1 + width))
    rows_per_block = len(block) // (1 + width)
    out, left = [], height
    while left:
        n = min(left, rows_per_block)
        out.append(comp.compress(block[: n * (1 + width)]))
        left -= n
    out.append(comp.flush())
    return b"".join(out)


def _tiny_net_dict() -> dict:
    """A small spec using the combinators and leaves the zoo's small models do not."""
    from svertka.spec import (
        AdaptiveAvgPool2d,
        BatchNorm2d,
        Concat,
        Conv2d,
        Dropout,
        Flatten,
        Gate,
        Linear,
        LocalResponseNorm,
        MaxPool2d,
        Network,
        ReLU,
        Residual,
        Sequential,
        Sigmoid,
        SiLU,
        network_to_dict,
        seq,
    )

    se = Gate(Sequential.named(avgpool=AdaptiveAvgPool2d(1), fc1=Conv2d(2, 1), act=SiLU(), fc2=Conv2d(8, 1),
                               scale=Sigmoid()))
    block = Residual(Sequential.named(conv1=Conv2d(8, 3, padding=1, bias=False), bn1=BatchNorm2d(),
                                      relu=ReLU(), conv2=Conv2d(8, 3, padding=1, groups=2, bias=False),
                                      bn2=BatchNorm2d()),
                     post=ReLU())
    root = Sequential.named(
        stem=seq(Conv2d(8, 3, stride=1, padding=1), ReLU(), LocalResponseNorm(3)),
        mix=Concat([("a", Conv2d(4, 1)), ("b", seq(Conv2d(4, 3, padding=1), ReLU()))]),
        se=se, block=block, pool=MaxPool2d(2, ceil_mode=True), gap=AdaptiveAvgPool2d(2),
        flat=Flatten(), drop=Dropout(0.2), fc=Linear(10),
    )
    return network_to_dict(Network("tiny", root, (3, 16, 16), 10, mean=(0.5, 0.5, 0.5),
                                   std=(0.25, 0.25, 0.25)))


def make_seeds(folder) -> dict[str, list[Path]]:
    root = Path(folder)
    if (root / "seeds.json").is_file():
        return {k: [Path(p) for p in v] for k, v in json.loads((root / "seeds.json").read_text()).items()}
    import torch
    from PIL import Image

    from svertka.backends.torch import compile as torch_compile
    from svertka.backends.torch import save_weights
    from svertka.data.formats import write_idx
    from svertka.spec import network_to_dict
    from svertka.train import make_config, train
    from svertka.train.config import recipe_dir
    from svertka.zoo import create_model

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    seeds: dict[str, list[Path]] = {}

    def put(parser, name, data: bytes) -> Path:
        p = root / parser / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        seeds.setdefault(parser, []).append(p)
        return p

    # IDX, raw and gzipped
    arrays = {"images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "labels-idx1-ubyte": rng.integers(0, 10, 12, dtype=np.uint8),
              "floats-idx3": rng.standard_normal((3, 4, 5)).astype(np.float32)}
    for name, arr in arrays.items():
        (root / "tmp").mkdir(exist_ok=True)
        write_idx(root / "tmp" / name, arr, compress=False)
        raw = (root / "tmp" / name).read_bytes()
        put("idx_raw", name, raw)
        put("idx_gz", name + ".gz", gzip.compress(raw, mtime=0))
    (root / ZERO_MEMBER).write_bytes(gzip.compress(bytes(1 << 24), compresslevel=9, mtime=0))

    # CIFAR-10: binary records and python batches (protocol 2 with bytes keys, as the official files; and 4)
    labels = rng.integers(0, 10, 8)
    images = rng.integers(0, 256, (8, 3072), dtype=np.uint8)
    put("cifar_binary", "data_batch_1.bin",
        b"".join(bytes([int(lab)]) + img.tobytes() for lab, img in zip(labels, images)))
    batch = {"batch_label": "training batch 1 of 5", "labels": [int(v) for v in labels], "data": images,
             "filenames": [f"img_{i}.png" for i in range(8)]}
    put("cifar_python", "data_batch_1", pickle.dumps({k.encode(): v for k, v in batch.items()}, protocol=2))
    put("cifar_python", "test_batch", pickle.dumps(batch, protocol=4))

    # spec JSON: zoo models that exercise every layer type, plus a tiny custom net
    specs = {"lenet5.json": network_to_dict(create_model("lenet5")),
             "lenet5_1998.json": network_to_dict(create_model("lenet5_1998")),
             "resnet20.json": network_to_dict(create_model("resnet20")),
             "tiny.json": _tiny_net_dict()}
    for name, d in specs.items():
        for parser in ("spec_analysis", "spec_torch"):
            put(parser, name, json.dumps(d, indent=1).encode())

    # weights: safetensors (with svertka metadata) and a torch .pth state_dict
    torch.manual_seed(0)
    model = torch_compile(create_model("lenet5"))
    save_weights(model, root / "weights" / "lenet5.safetensors")
    seeds.setdefault("weights", []).append(root / "weights" / "lenet5.safetensors")
    torch.save(model.state_dict(), root / "weights" / "lenet5.pth")
    seeds["weights"].append(root / "weights" / "lenet5.pth")

    # recipes: the shipped ones
    for p in sorted(recipe_dir().glob("*.toml")):
        put("recipe", p.name, p.read_bytes())

    # images for predict and an image folder
    grey = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for name, img, fmt in (("grey.png", grey, "PNG"), ("rgb.png", rgb, "PNG"), ("rgb.jpg", rgb, "JPEG"),
                           ("palette.png", rgb, "PNG-P")):
        p = root / "image" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(img)
        if fmt == "PNG-P":
            im.convert("P").save(p, "PNG")
        else:
            im.save(p, fmt)
        seeds.setdefault("image", []).append(p)
    for name, (w, h) in BOMB_PNGS.items():
        (root / name).write_bytes(grey_png(w, h, _zero_rows_idat(w, h)))
    folder_seed = root / "image_folder" / "flowers"
    for cls in ("daisy", "rose"):
        for i in range(2):
            p = folder_seed / cls / f"{i}.{'png' if i == 0 else 'jpg'}"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(p)
    seeds["image_folder"] = [folder_seed]

    # a finished run (torch, 1 epoch on a few mini images): checkpoint and --resume seeds
    run = root / "run" / "lenet5-run"
    cfg = make_config({"model": "lenet5", "data": "fashion-mnist-mini", "backend": "torch", "epochs": 1,
                       "batch_size": 32, "limit_train": 64, "limit_test": 32, "output": str(run), "seed": 0,
                       "threads": 1})
    train(cfg, progress=False)
    seeds["resume"] = [run]
    for name in ("best.safetensors", "last.safetensors"):
        put("checkpoint", name, (run / name).read_bytes())
    shutil.rmtree(root / "tmp", ignore_errors=True)
    (root / "seeds.json").write_text(json.dumps({k: [str(p) for p in v] for k, v in seeds.items()}, indent=1))
    return seeds
