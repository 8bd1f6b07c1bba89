"""Style transfer: time per iteration on the NumPy engine against torch, at 128x128.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/style_speed.py [--size 128] [--steps 8] [--rounds 3]

One iteration is what `svertka stylize` repeats: VGG-19's features up to relu5_1
forward (content at relu4_2, Gram matrices at relu1_1 ... relu5_1), the image
gradient back through them, and one Adam step on the pixels. Random weights
(the time does not depend on them). Both backends run in this process, one
round each in turn, torch and NumPy's BLAS on one thread; each round's first
iteration is left out (warm-up). The ratio NumPy / torch is the figure; the
machine's load is recorded beside it.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from machine import LoadMonitor, write_results
from svertka.analysis import analyze
from svertka.style import CONTENT_LAYER, STYLE_LAYERS, StyleSettings, stylize
from svertka.style.network import feature_network


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8, help="iterations per round (the first is warm-up)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="vgg19")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    content = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    style = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    macs = analyze(feature_network(args.model, [CONTENT_LAYER, *STYLE_LAYERS], args.size, args.size)).macs
    settings = StyleSettings(steps=args.steps)
    times = {"numpy": [], "torch": []}
    with LoadMonitor() as load:
        for _ in range(args.rounds):
            for backend in times:
                r = stylize(content, style, settings, backend=backend, model=args.model, seed=0)
                times[backend] += [h["seconds"] for h in r.history[2:]]  # row 1: the warm-up iteration
    rows = []
    for backend, ts in times.items():
        median = float(np.median(ts))
        rows.append({"backend": backend, "iterations": len(ts), "median_s": round(median, 4),
                     "min_s": round(float(np.min(ts)), 4),
                     "forward_gmacs_per_s": round(macs / median / 1e9, 2)})
    ratio = rows[0]["median_s"] / rows[1]["median_s"]
    print(f"{args.model} features to relu5_1 at {args.size}x{args.size}: {macs / 1e9:.2f} GMACs forward")
    print(f"{'backend':8s} {'iterations':>10s} {'median s/it':>12s} {'min s/it':>9s} {'fwd GMAC/s':>11s}")
    for r in rows:
        print(f"{r['backend']:8s} {r['iterations']:>10d} {r['median_s']:>12.3f} {r['min_s']:>9.3f} "
              f"{r['forward_gmacs_per_s']:>11.2f}")
    flag = " (contended: rerun on a quiet machine for clean figures)" if load.contended else ""
    print(f"numpy / torch time per iteration: {ratio:.2f}x")
    print(f"other processes used {load.other_cores:.2f} cores during the run{flag}")
    path = write_results("style_speed", {"size": args.size, "model": args.model, "macs": macs, "rows": rows,
                                         "numpy_over_torch": round(ratio, 3), "load": load.as_dict()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
