"""Training throughput: the plain PyTorch tutorial loop vs `svertka train`.

    python benchmarks/train_throughput.py                      # full: 1 epoch of 60k, both nets
    python benchmarks/train_throughput.py --limit-train 12800 --numpy-limit 2560   # a short run

In one process, on LeNet-5 and the Keras-style 2-conv CNN (cnn2, 1.2 M params),
batch 128, Fashion-MNIST:

- plain: DataLoader over a TensorDataset of normalised float32 images, fp32,
  NCHW, eager, AdamW at a constant LR (the tutorial loop);
- svertka torch fp32 (`svertka train --backend torch`);
- svertka torch with `--amp bf16 --channels-last`;
- svertka numpy (`--backend numpy`, on --numpy-limit images: it is slow).

Reports training images/s (evaluation excluded), the ratio to the plain loop,
test accuracy after the same epochs, and achieved GFLOP/s (training = 3 x
forward = 6 x MACs per image) as a fraction of the fp32 and bf16 GEMM peaks
measured in the same run. Each measurement records the load of other processes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import LoadMonitor, gemm_peak_gflops, write_results  # noqa: E402
from svertka.analysis import analyze  # noqa: E402
from svertka.backends.torch import compile as compile_torch  # noqa: E402
from svertka.data import load_dataset  # noqa: E402
from svertka.threads import available_cores as cpu_count  # noqa: E402
from svertka.train import make_config, train  # noqa: E402
from svertka.zoo import resolve_model  # noqa: E402


def with_stock_layers(module):
    """Swap svertka's faster CPU Dropout and Flatten back to torch's own, so the
    plain loop runs the layers a tutorial would."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Dropout):
            setattr(module, name, torch.nn.Dropout(child.p))
        elif isinstance(child, torch.nn.Flatten):
            setattr(module, name, torch.nn.Flatten(child.start_dim, child.end_dim))
        else:
            with_stock_layers(child)
    return module


def plain_loop(net_name, train_ds, test_ds, epochs, batch, limit, seed=0):
    """The PyTorch tutorial loop."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    net = resolve_model(net_name)
    model = with_stock_layers(compile_torch(net))
    mean, std = train_ds.mean[0], train_ds.std[0]
    X = (torch.from_numpy(train_ds.images[:limit].transpose(0, 3, 1, 2).copy()).float() / 255 - mean) / std
    Y = torch.from_numpy(train_ds.labels[:limit])
    loader = DataLoader(TensorDataset(X, Y), batch_size=batch, shuffle=True, drop_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    seen, t_train = 0, 0.0
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
        t_train += time.perf_counter() - t0
    model.eval()
    Xt = (torch.from_numpy(test_ds.images.transpose(0, 3, 1, 2).copy()).float() / 255 - mean) / std
    with torch.inference_mode():
        pred = torch.cat([model(Xt[i:i + 1000]).argmax(1) for i in range(0, len(Xt), 1000)])
    acc = float((pred.numpy() == test_ds.labels).mean())
    return seen / t_train, acc


def svertka_loop(net_name, data, epochs, batch, limit, backend="torch", amp="none", channels_last=False,
                 seed=0):
    out = f"/tmp/svertka-bench-{net_name}-{backend}-{amp}-{time.time_ns()}"
    cfg = make_config({"model": net_name, "data": data, "epochs": epochs, "batch_size": batch,
                       "backend": backend, "amp": amp, "channels_last": channels_last, "seed": seed,
                       "limit_train": limit, "output": out})
    r = train(cfg, progress=False)
    seen = sum(h["images_per_s"] * h["train_seconds"] for h in r.history)
    ips = seen / sum(h["train_seconds"] for h in r.history)
    return ips, r.history[-1]["test_acc"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", default="lenet5,cnn2")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N images (a short run)")
    p.add_argument("--numpy-limit", type=int, default=6400,
                   help="images the numpy backend trains on (0: skip it)")
    p.add_argument("--variants", default="plain,torch,torch-bf16-cl,numpy")
    args = p.parse_args(argv)

    torch.set_num_threads(cpu_count())
    train_ds = load_dataset(args.data, split="train")
    test_ds = load_dataset(args.data, split="test")
    limit = args.limit_train or len(train_ds)
    with LoadMonitor() as peak_load:
        fp32_peak, bf16_peak = gemm_peak_gflops("fp32"), gemm_peak_gflops("bf16")
    print(f"GEMM peaks: fp32 {fp32_peak:.0f} GFLOP/s, bf16 {bf16_peak:.0f} GFLOP/s "
          f"(other processes: {peak_load.other_cores:.2f} cores); torch threads {torch.get_num_threads()}; "
          f"{limit} train images x {args.epochs} epoch(s), batch {args.batch}", flush=True)
    variants = args.variants.split(",")
    rows, results = [], []
    for net_name in args.nets.split(","):
        macs = analyze(resolve_model(net_name)).macs
        base = None
        for v in variants:
            if v == "numpy" and not args.numpy_limit:
                continue
            with LoadMonitor() as load:
                if v == "plain":
                    ips, acc = plain_loop(net_name, train_ds, test_ds, args.epochs, args.batch, limit)
                elif v == "torch":
                    ips, acc = svertka_loop(net_name, args.data, args.epochs, args.batch, limit)
                elif v == "torch-bf16-cl":
                    ips, acc = svertka_loop(net_name, args.data, args.epochs, args.batch, limit, amp="bf16",
                                            channels_last=True)
                elif v == "numpy":
                    ips, acc = svertka_loop(net_name, args.data, 1, args.batch, min(limit, args.numpy_limit),
                                            backend="numpy")
                else:
                    raise SystemExit(f"unknown variant {v}")
            if v == "plain":
                base = ips
            gflops = ips * 6 * macs / 1e9
            rec = {"net": net_name, "variant": v, "images_per_s": round(ips, 1),
                   "ratio_vs_plain": round(ips / base, 3) if base else None,
                   "test_acc": acc if v != "numpy" or args.numpy_limit >= limit else None,
                   "gflops": round(gflops, 2), "fp32_peak_frac": round(gflops / fp32_peak, 4),
                   "bf16_peak_frac": round(gflops / bf16_peak, 4), **load.as_dict(),
                   "train_images": min(limit, args.numpy_limit) if v == "numpy" else limit,
                   "epochs": 1 if v == "numpy" else args.epochs}
            results.append(rec)
            acc_s = "-" if rec["test_acc"] is None else f"{100 * acc:.2f}%"
            rows.append([net_name, v, f"{ips:,.0f}", f"x{ips / base:.2f}" if base else "-", acc_s,
                         f"{gflops:.1f}", f"{100 * gflops / fp32_peak:.0f}%",
                         f"{100 * gflops / bf16_peak:.0f}%",
                         f"{load.other_cores:.2f}" + (" CONTENDED" if load.contended else "")])
            print(" | ".join(rows[-1]), flush=True)
    head = ["net", "variant", "img/s", "vs plain", "test acc", "GFLOP/s", "of fp32 peak", "of bf16 peak",
            "other cores"]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    path = write_results("train_throughput", {"args": vars(args), "fp32_peak_gflops": round(fp32_peak, 1),
                                              "bf16_peak_gflops": round(bf16_peak, 1),
                                              "peak_load": peak_load.as_dict(), "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
