"""Time-to-accuracy frontier on full Fashion-MNIST.

    python benchmarks/time_to_accuracy.py                          # 1, 2, 5, 10, 20 min; 3 seeds
    python benchmarks/time_to_accuracy.py --budget-minutes 1 --seeds 1   # a short version
    python benchmarks/time_to_accuracy.py --device cuda            # the same recipes on a GPU
    python benchmarks/time_to_accuracy.py --budget-minutes 5 --runs fashion-mnist-94:20  # one point

Each point is a complete run of a recipe with the epoch count scaled to fit a
budget (one-cycle schedules end where the budget ends, so every reported
accuracy is a run's *final* test accuracy, never an epoch picked by looking at
the test set). Wall time counts everything the run does: loading data,
training, per-epoch evaluation (flip-TTA at the last). For each budget the
frontier is the best median (over seeds) final test accuracy among the runs
whose median wall time fits in it. Achieved GFLOP/s is reported against the
measured fp32 and bf16 GEMM peaks.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import LoadMonitor, gemm_peak_gflops, write_results  # noqa: E402
from svertka.analysis import analyze  # noqa: E402
from svertka.errors import UsageError  # noqa: E402
from svertka.train import load_recipe, make_config, train  # noqa: E402
from svertka.train.allocator import keep_freed_memory  # noqa: E402
from svertka.zoo import resolve_model  # noqa: E402

BUDGETS = (1, 2, 5, 10, 20)
# (recipe, epochs) candidates per budget in minutes, sized from epoch times measured
# on the idle 2-core machine at batch 256, bf16 + channels_last, evaluation included:
# vgg_fm_small ~13 s (4,700 img/s), vgg_fm ~37 s (1,500-1,750 img/s: this VM drifts),
# plus ~5 s of start-up.
# Recipes were chosen on --val-fraction 0.1 (benchmarks/README.md, "Tuning").
PLAN = {
    1: [("fashion-mnist-92-1min", 3), ("fashion-mnist-92-1min", 4)],
    2: [("fashion-mnist-92-1min", 6), ("fashion-mnist-92-1min", 8)],
    5: [("fashion-mnist-94", 20)],
    10: [("fashion-mnist-95", 13), ("fashion-mnist-95", 14)],
    20: [("fashion-mnist-95", 26)],
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-minutes", type=float, nargs="*", default=list(BUDGETS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--epoch-scale", type=float, default=1.0, help="scale every plan's epochs (e.g. on a GPU)")
    p.add_argument("--runs", nargs="+", metavar="RECIPE:EPOCHS",
                   help="run these instead of the plan (the frontier still covers --budget-minutes)")
    args = p.parse_args(argv)
    if args.runs:
        try:
            todo = [(r.rsplit(":", 1)[0], int(r.rsplit(":", 1)[1])) for r in args.runs]
        except (IndexError, ValueError):
            p.error(f"--runs takes RECIPE:EPOCHS items (e.g. fashion-mnist-94:20), got {' '.join(args.runs)}")
        for recipe, epochs in todo:
            if epochs < 1:
                p.error(f"--runs {recipe}:{epochs}: epochs must be at least 1")
    else:
        todo = [(recipe, epochs) for b in args.budget_minutes
                for recipe, epochs in PLAN.get(int(b)) or PLAN[min(PLAN, key=lambda k: abs(k - b))]]
    for recipe, _ in todo:
        try:
            load_recipe(recipe)
        except UsageError as e:
            p.error(str(e))

    keep_freed_memory()  # as `svertka train` does
    fp32_peak, bf16_peak = gemm_peak_gflops("fp32"), gemm_peak_gflops("bf16")
    runs = []
    for recipe, epochs in dict.fromkeys(todo):  # in order, each once
        epochs = max(1, round(epochs * args.epoch_scale))
        accs, walls, ips, loads = [], [], [], []
        for seed in range(args.seeds):
            cfg = make_config({"data": args.data, "epochs": epochs, "seed": seed, "device": args.device,
                               "output": f"/tmp/svertka-tta-{recipe}-{epochs}-{seed}-{time.time_ns()}"},
                              recipe=recipe)
            with LoadMonitor() as load:
                t0 = time.perf_counter()
                r = train(cfg, progress=False)
                wall = time.perf_counter() - t0
            accs.append(r.history[-1]["test_acc"])
            walls.append(wall)
            ips.append(statistics.mean(h["images_per_s"] for h in r.history))
            loads.append(load.other_cores)
            print(f"  {recipe} x{epochs} seed {seed}: {100 * accs[-1]:.2f}% in {wall / 60:.2f} min, "
                  f"{ips[-1]:,.0f} img/s, other cores {load.other_cores:.2f}"
                  + (" CONTENDED" if load.contended else ""), flush=True)
        macs = analyze(resolve_model(cfg.model)).macs
        g = statistics.median(ips) * 6 * macs / 1e9
        runs.append({"recipe": recipe, "model": cfg.model, "epochs": epochs,
                     "median_acc": statistics.median(accs), "median_minutes": statistics.median(walls) / 60,
                     "accs": accs, "minutes": [w / 60 for w in walls], "gflops": round(g, 1),
                     "fp32_peak_frac": round(g / fp32_peak, 3), "bf16_peak_frac": round(g / bf16_peak, 3),
                     "other_cores": loads, "contended": any(load > 0.25 for load in loads)})
    frontier = []
    for budget in args.budget_minutes:
        fit = [r for r in runs if r["median_minutes"] <= budget]
        best = max(fit, key=lambda r: r["median_acc"], default=None)
        frontier.append({"budget_min": budget, "best": best})
    print(f"\nGEMM peaks: fp32 {fp32_peak:.0f}, bf16 {bf16_peak:.0f} GFLOP/s; "
          f"median of {args.seeds} seed(s)\n")
    print("| budget | best test acc | run | wall (median) | GFLOP/s | of fp32 / bf16 peak | contended |")
    print("|---:|---:|---|---:|---:|---:|---|")
    for f in frontier:
        b = f["best"]
        if b is None:
            print(f"| {f['budget_min']:g} min | - | nothing fit | - | - | - | - |")
            continue
        print(f"| {f['budget_min']:g} min | {100 * b['median_acc']:.2f}% | {b['recipe']} x{b['epochs']} ep | "
              f"{b['median_minutes']:.2f} min | {b['gflops']:.0f} | {100 * b['fp32_peak_frac']:.0f}% / "
              f"{100 * b['bf16_peak_frac']:.0f}% | {'yes' if b['contended'] else 'no'} |")
    tag = "-".join(f"{b:g}" for b in args.budget_minutes)
    path = write_results(f"time_to_accuracy-{tag}min-{args.seeds}seeds",
                         {"args": vars(args), "fp32_peak_gflops": fp32_peak, "bf16_peak_gflops": bf16_peak,
                          "runs": runs, "frontier": frontier})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
