"""Analysis read off the spec vs building the torch model and counting with hooks.

    python benchmarks/analysis_speed.py [PATTERN]

For each model: time to analyse the spec (params, MACs, RF; no weights), and
time to compile the torch model, run one forward at batch 1 with hooks on
Conv2d/Linear, and sum params. Prints the ratio and checks both counts agree.
"""
from __future__ import annotations

import sys
import time

import torch

from machine import LoadMonitor, write_results
from svertka.analysis import analyze
from svertka.backends.torch import compile as compile_torch
from svertka.zoo import create_model, list_models


def hook_count(net):
    model = compile_torch(net).eval()
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, torch.nn.Conv2d):
            kh, kw = mod.kernel_size
            macs += out.numel() * mod.in_channels // mod.groups * kh * kw
        else:
            macs += mod.in_features * mod.out_features * out.numel() // out.shape[-1]

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    with torch.inference_mode():
        model(torch.zeros(1, *net.input_shape))
    return sum(p.numel() for p in model.parameters()), macs


def main(pattern="*"):
    torch.set_num_threads(2)
    rows = []
    with LoadMonitor() as load:
        for name in list_models(pattern):
            t = time.perf_counter()
            a = analyze(create_model(name))
            t_spec = time.perf_counter() - t
            t = time.perf_counter()
            params, macs = hook_count(create_model(name))
            t_torch = time.perf_counter() - t
            rows.append({"model": name, "spec_s": t_spec, "torch_hooks_s": t_torch,
                         "ratio": t_torch / t_spec, "agree": (params, macs) == (a.params, a.macs)})
            print(f"{name:18s} spec {t_spec * 1e3:7.1f} ms   torch+hooks {t_torch:7.2f} s   "
                  f"x{t_torch / t_spec:8.0f}   counts agree: {rows[-1]['agree']}", flush=True)
    total_spec = sum(r["spec_s"] for r in rows)
    total_torch = sum(r["torch_hooks_s"] for r in rows)
    print(f"\nall {len(rows)} models: spec {total_spec:.3f} s, torch+hooks {total_torch:.1f} s, "
          f"ratio x{total_torch / total_spec:.0f}; other processes used "
          f"{load.other_cores:.2f} cores{' (CONTENDED: rerun)' if load.contended else ''}")
    path = write_results("analysis_speed", {"rows": rows, "load": load.as_dict(),
                                            "total_spec_s": total_spec,
                                            "total_torch_s": total_torch})
    print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
