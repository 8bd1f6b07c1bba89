"""Input pipeline: decode-and-augment images/s per core, streaming from disk at 224 x 224.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/input_pipeline.py [--images 300] [--workers 0,1,2]

On a synthetic ImageFolder of real photos (scripts/make_photo_folder.py: random crops of
scikit-image's photos, 100-1300 px a side, JPEG q90; or --root DIR), with the training
transform of the ImageNet recipe (RandomResizedCrop(224) + flip), batch 32, one pass each:

- stream folder: svertka's streaming ImageFolder (Pillow + Image.draft, DataLoader workers);
- stream tar: the same images from WebDataset-layout tar shards (`svertka data shard`);
- stream folder, no draft: the same pipeline decoding every JPEG at full size;
- plain PIL: the obvious loop written here - a torch Dataset that opens the file with
  Pillow, converts to RGB, crops the RandomResizedCrop box, resizes it, flips, and
  returns an array to the DataLoader's default collate (no draft).

Each row runs with 0, 1 and 2 workers. "Per core" is images per CPU-second: the CPU time
of this process and its workers together (getrusage, workers reaped before reading it),
so it does not depend on how many cores other processes left free. Wall-clock images/s
is shown too, with the load of other processes. The last line: how many such cores feed
a ResNet-50 training at 3,000 img/s (bf16 on a current data-centre GPU).
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from machine import LoadMonitor, write_results
from svertka.data.formats import list_image_folder
from svertka.data.streaming import RandomResizedCrop, StreamSplit, epoch_order, open_source, write_shards

ROOT = Path(__file__).resolve().parent.parent
GPU_RATE = 3000  # ResNet-50 training images/s, bf16, one current data-centre GPU


class PlainPIL(torch.utils.data.Dataset):
    """The tutorial pipeline: open, convert, crop, resize, flip, to array. No draft."""

    def __init__(self, files, labels, size, seed):
        self.files, self.labels, self.size, self.seed = files, labels, size, seed
        self.crop = RandomResizedCrop(size)  # only its box rule, so both draw the same boxes

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        rng = np.random.default_rng([self.seed, 0, i])
        im = Image.open(self.files[i]).convert("RGB")
        (left, top, right, bottom), flip = self.crop.box(*im.size, rng)
        im = im.crop((left, top, right, bottom)).resize((self.size, self.size), Image.BILINEAR)
        if flip:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        return np.array(im), self.labels[i]


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(make_batches, n: int) -> dict:
    """One pass: wall and CPU seconds (workers included) for ``n`` images."""
    gc.collect()
    cpu0, t0 = _cpu(), time.perf_counter()
    with LoadMonitor() as load:
        got = 0
        for images, _ in make_batches():
            assert images.shape[1:] == (224, 224, 3)
            got += len(images)
        gc.collect()  # drops the loader, so its workers are joined and their CPU time counted
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    assert got == n
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "images_per_s": round(n / wall, 1),
            "images_per_cpu_s": round(n / cpu, 1), "other_cores": round(load.other_cores, 2),
            "contended": load.contended}


def train_folder(root) -> Path:
    root = Path(root)
    return root / "train" if (root / "train").is_dir() else root


def stream_pass(root, workers, batch, draft=True):
    def run():
        source = open_source(train_folder(root))
        train = StreamSplit("bench", "train", source, RandomResizedCrop(224), source.classes, (0.5,), (0.5,),
                            seed=0, workers=workers, draft=draft)
        order = epoch_order(len(train), 0, 0)
        batches = [order[i:i + batch] for i in range(0, len(order), batch)]
        yield from train.batches(batches, epoch=0)
        train.close()
    return run


def plain_pass(root, workers, batch):
    def run():
        files, labels, _ = list_image_folder(train_folder(root))
        loader = torch.utils.data.DataLoader(PlainPIL(files, labels, 224, 0), batch_size=batch, shuffle=True,
                                             num_workers=workers,
                                             generator=torch.Generator().manual_seed(0))
        for images, labels in loader:
            yield images.numpy(), labels.numpy()
    return run


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="an ImageFolder to read (default: make --images photos in a temp folder)")
    p.add_argument("--images", type=int, default=300, help="photos to make when --root is not given")
    p.add_argument("--workers", default="0,1,2", help="worker counts, comma-separated")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--photo-size", type=int,
                   help="resize the made photos to SIZE x SIZE (e.g. 1024: phone-sized photos, where the "
                   "draft decode pays; default: the crops' own 100-1300 px)")
    args = p.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp) / "photos"
        if not args.root:
            spec = importlib.util.spec_from_file_location("mk", ROOT / "scripts" / "make_photo_folder.py")
            mk = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mk)
            mk.make_photo_folder(root, math.ceil(args.images / 10), size=args.photo_size, seed=0)
        files, _, _ = list_image_folder(train_folder(root))
        from PIL import Image

        px = [Image.open(f).size for f in files]
        data = {"images": len(files), "mean_bytes": round(float(np.mean([f.stat().st_size for f in files]))),
                "mean_width": round(float(np.mean([w for w, _ in px]))),
                "mean_height": round(float(np.mean([h for _, h in px])))}
        shards = Path(tmp) / "shards"
        write_shards(root, shards, shard_size=100)
        for f in files:  # page cache warm for every row alike
            f.read_bytes()
        n = len(files)
        pipelines = [("stream folder", lambda w: stream_pass(root, w, args.batch)),
                     ("stream tar", lambda w: stream_pass(shards, w, args.batch)),
                     ("stream folder, no draft", lambda w: stream_pass(root, w, args.batch, draft=False)),
                     ("plain PIL", lambda w: plain_pass(root, w, args.batch))]
        rows = []
        with LoadMonitor() as whole:
            for name, make in pipelines:
                for w in workers:
                    r = {"pipeline": name, "workers": w, **measure(make(w), n)}
                    rows.append(r)
                    print(f"{name:<24} workers {w}: {r['images_per_s']:7.1f} img/s wall, "
                          f"{r['images_per_cpu_s']:7.1f} img/s per core (CPU {r['cpu_s']:.1f} s), "
                          f"others {r['other_cores']:.2f} cores", flush=True)
    best = {}
    for r in rows:
        best[r["pipeline"]] = max(best.get(r["pipeline"], 0), r["images_per_cpu_s"])
    print(f"\nimages: {data['images']} JPEGs, mean {data['mean_width']}x{data['mean_height']} px, "
          f"{data['mean_bytes'] / 1000:.0f} kB")
    print(f"cores to feed a ResNet-50 at {GPU_RATE:,} img/s (best worker count of each pipeline):")
    for name, rate in best.items():
        print(f"  {name:<24} {rate:7.1f} img/s per core -> {GPU_RATE / rate:5.1f} cores")
    print(f"load: other processes {whole.other_cores:.2f} cores on average"
          + (" (CONTENDED)" if whole.contended else ""))
    cores = {k: round(GPU_RATE / v, 1) for k, v in best.items()}
    path = write_results("input_pipeline", {"args": vars(args), "data": data, "rows": rows,
                                            "cores_for_3000": cores, "load": whole.as_dict(),
                                            "torch": torch.__version__, "python_argv": sys.argv})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
