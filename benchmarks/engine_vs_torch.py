"""NumPy engine vs torch (CPU eager) vs a CS231n-style NumPy conv, in one process on 2 threads.

    .venv/bin/python benchmarks/engine_vs_torch.py [--repeats 7] [--quick]

Prints a table and writes benchmarks/results/engine_vs_torch-<time>.json.

- Timings are ratios against torch measured in the same run, interleaved
  round by round (torch, engine, peer, torch, ...); a ratio is the median of
  the per-round ratios. Absolute times on a shared 2-core machine are noise.
- GFLOP/s = 2 x MACs / time (MACs from svertka.analysis for the models, the
  conv formula for single layers; backward counts 2 more forward-sized GEMMs,
  so fwd+bwd FLOPs = 3 x forward). The fp32 GEMM peak is measured here with a
  2048^3 matmul in NumPy (OpenBLAS) and in torch.
- Peak memory of a training step: the rise of the process's resident peak
  (VmHWM, reset through /proc/self/clear_refs, freed memory given back with
  malloc_trim first) for both; tracemalloc's peak for the engine as a check.
- Machine load: busy CPU time of other processes during the run, from
  /proc/stat minus this process's own CPU time. More than 0.2 of a core on
  average flags the run as contended: torch on 2 threads slows 3-10x then.
- "cs231n-style" is a clean-room re-implementation of the method of CS231n's
  fast_layers (np.pad, im2col as one 6-D as_strided view copied to a matrix
  and cached for backward, one GEMM, col2im by adding strided slices per
  kernel tap), written for this benchmark; no CS231n code is used.
- "numpy-ml-style" is a clean-room re-implementation of the index-array
  method that numpy-ml's conv2D and CS231n's im2col.py use: im2col by fancy
  indexing with precomputed (channel, row, column) index arrays, col2im by
  np.add.at. Written for this benchmark; no numpy-ml code is used.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from numpy.lib.stride_tricks import as_strided  # noqa: E402

from svertka.analysis import analyze  # noqa: E402
from svertka.backends import numpy as engine  # noqa: E402
from svertka.backends.numpy import Tensor  # noqa: E402
from svertka.backends.numpy import functional as F  # noqa: E402
from svertka.backends.torch import compile as torch_compile  # noqa: E402
from svertka.zoo import create_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from machine import LoadMonitor  # noqa: E402

torch.set_num_threads(2)

# name, N, C_in, H, C_out, k, pad, groups
CONVS = [
    ("LeNet conv1 1->6 28x28 k5 p2", 256, 1, 28, 6, 5, 2, 1),
    ("LeNet conv2 6->16 14x14 k5", 256, 6, 14, 16, 5, 0, 1),
    ("64->64 32x32 k3 p1 (N=64)", 64, 64, 32, 64, 3, 1, 1),
    ("128->128 16x16 k3 p1 (N=32)", 32, 128, 16, 128, 3, 1, 1),
    ("depthwise C=64 32x32 k3 p1 (N=64)", 64, 64, 32, 64, 3, 1, 64),
]


def interleaved(fns: dict, repeats: int) -> dict:
    """Per-round times of each callable, called in turn; returns min times and
    the median ratio to 'torch' of the per-round times."""
    for f in fns.values():
        f()  # warm up (torch's first call per shape is slow)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            gc.collect()
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    out = {k: {"min_ms": 1e3 * min(v), "median_ms": 1e3 * statistics.median(v)} for k, v in times.items()}
    for k in fns:
        if k != "torch":
            out[k]["ratio"] = statistics.median(a / b for a, b in zip(times[k], times["torch"]))
    return out


def gemm_peak() -> dict:
    n = 2048
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    res = {}
    for name, f in (("numpy", lambda: a @ b), ("torch", lambda: ta @ tb)):
        f()
        best = min(_timed(f) for _ in range(5))
        res[name] = 2 * n ** 3 / best / 1e9
    return res


def _timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


# ------------------------------------------------------------------ peer: CS231n-style


def cs231n_conv_forward(x, w, b, pad, groups):
    """np.pad, 6-D as_strided im2col (cached), one GEMM per group (stride 1)."""
    N, C, H, W = x.shape
    Co, Cg, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = H + 2 * pad - k + 1, W + 2 * pad - k + 1
    s = xp.strides
    view = as_strided(xp, (C, k, k, N, Ho, Wo), (s[1], s[2], s[3], s[0], s[2], s[3]))
    cols = np.ascontiguousarray(view).reshape(groups, Cg * k * k, N * Ho * Wo)
    out = np.matmul(w.reshape(groups, Co // groups, -1), cols).reshape(Co, N, Ho, Wo) + b.reshape(-1, 1, 1, 1)
    return np.ascontiguousarray(out.transpose(1, 0, 2, 3)), (x.shape, xp.shape, cols, w, pad, groups)


def cs231n_conv_backward(dout, cache):
    (N, C, H, W), xp_shape, cols, w, pad, groups = cache
    Co, Cg, k, _ = w.shape
    Ho, Wo = dout.shape[2:]
    db = dout.sum(axis=(0, 2, 3))
    d = dout.transpose(1, 0, 2, 3).reshape(groups, Co // groups, -1)
    dw = np.matmul(d, cols.transpose(0, 2, 1)).reshape(w.shape)
    dcols = np.matmul(w.reshape(groups, Co // groups, -1).transpose(0, 2, 1), d).reshape(C, k, k, N, Ho, Wo)
    dxp = np.zeros(xp_shape, dout.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + Ho, j:j + Wo] += dcols[:, i, j].transpose(1, 0, 2, 3)
    return dxp[:, :, pad:pad + H, pad:pad + W], dw, db


# ------------------------------------------------------------------ peer: numpy-ml-style


def _patch_indices(C, Ho, Wo, k):
    """Index arrays (channel, row, col) of every im2col entry, rows (c, i, j), columns (ho, wo)."""
    tap_i = np.tile(np.repeat(np.arange(k), k), C)[:, None]
    tap_j = np.tile(np.arange(k), k * C)[:, None]
    out_i = np.repeat(np.arange(Ho), Wo)[None, :]
    out_j = np.tile(np.arange(Wo), Ho)[None, :]
    chan = np.repeat(np.arange(C), k * k)[:, None]
    return chan, tap_i + out_i, tap_j + out_j


def numpyml_conv_forward(x, w, b, pad, groups):
    N, C, H, W = x.shape
    Co, Cg, k, _ = w.shape
    Ho, Wo = H + 2 * pad - k + 1, W + 2 * pad - k + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    idx = _patch_indices(C, Ho, Wo, k)
    cols = xp[:, idx[0], idx[1], idx[2]]                       # (N, C*k*k, Ho*Wo) by fancy indexing
    cols = cols.transpose(1, 2, 0).reshape(groups, Cg * k * k, -1)
    out = np.matmul(w.reshape(groups, Co // groups, -1), cols).reshape(Co, Ho, Wo, N) + b.reshape(-1, 1, 1, 1)
    return np.ascontiguousarray(out.transpose(3, 0, 1, 2)), (x.shape, xp.shape, idx, cols, w, pad, groups)


def numpyml_conv_backward(dout, cache):
    (N, C, H, W), xp_shape, idx, cols, w, pad, groups = cache
    Co = w.shape[0]
    db = dout.sum(axis=(0, 2, 3))
    d = dout.transpose(1, 2, 3, 0).reshape(groups, Co // groups, -1)
    dw = np.matmul(d, cols.transpose(0, 2, 1)).reshape(w.shape)
    dcols = np.matmul(w.reshape(groups, Co // groups, -1).transpose(0, 2, 1), d)
    dcols = dcols.reshape(C * w.shape[2] * w.shape[3], -1, N).transpose(2, 0, 1)
    dxp = np.zeros(xp_shape, dout.dtype)
    np.add.at(dxp, (slice(None), idx[0], idx[1], idx[2]), dcols)  # scatter-add, one element at a time
    return dxp[:, :, pad:pad + H, pad:pad + W], dw, db


def check_peers():
    """The peers must compute the same conv as torch, or their timings mean nothing."""
    rng = np.random.default_rng(0)
    for C, Co, groups, pad in ((3, 4, 1, 1), (4, 4, 4, 1), (6, 8, 2, 0)):
        x = rng.standard_normal((2, C, 7, 6)).astype(np.float32)
        w = rng.standard_normal((Co, C // groups, 3, 3)).astype(np.float32)
        b = rng.standard_normal(Co).astype(np.float32)
        xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        yt = torch.nn.functional.conv2d(xt, wt, bt, 1, pad, 1, groups)
        g = rng.standard_normal(yt.shape).astype(np.float32)
        yt.backward(torch.from_numpy(g))
        for fwd, bwd in ((cs231n_conv_forward, cs231n_conv_backward),
                         (numpyml_conv_forward, numpyml_conv_backward)):
            y, cache = fwd(x, w, b, pad, groups)
            for ours, ref in zip((y, *bwd(g, cache)), (yt, xt.grad, wt.grad, bt.grad)):
                np.testing.assert_allclose(ours, ref.detach().numpy(), rtol=1e-4, atol=1e-4,
                                           err_msg=f"peer {fwd.__name__} disagrees with torch")


# ------------------------------------------------------------------ memory


_libc = ctypes.CDLL("libc.so.6") if platform.system() == "Linux" else None


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss_rise(fn) -> int:
    """Bytes the resident peak rises above the resident size while fn runs."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
    except OSError:
        return -1
    base = _status("VmRSS")
    fn()
    return _status("VmHWM") - base


def tracemalloc_peak(fn) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


# ------------------------------------------------------------------ benchmarks


def bench_convs(repeats, quick):
    rows = []
    rng = np.random.default_rng(0)
    for name, N, C, H, Co, k, pad, groups in CONVS:
        if quick:
            N = max(4, N // 8)
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        w = (rng.standard_normal((Co, C // groups, k, k)) * 0.1).astype(np.float32)
        b = np.zeros(Co, np.float32)
        Ho = H + 2 * pad - k + 1
        macs = N * Co * Ho * Ho * (C // groups) * k * k
        xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        xe, we, be = (Tensor(a.copy(), requires_grad=True) for a in (x, w, b))
        g = np.ones((N, Co, Ho, Ho), np.float32)
        gt = torch.from_numpy(g)

        def t_fwd():
            with torch.no_grad():
                torch.nn.functional.conv2d(xt, wt, bt, 1, pad, 1, groups)

        def t_fb():
            y = torch.nn.functional.conv2d(xt, wt, bt, 1, pad, 1, groups)
            y.backward(gt)

        def e_fwd():
            with engine.no_grad():
                F.conv2d(xe, we, be, 1, pad, 1, groups)

        def e_fb():
            F.conv2d(xe, we, be, 1, pad, 1, groups).backward(g)

        def p_fwd():
            cs231n_conv_forward(x, w, b, pad, groups)

        def p_fb():
            out, cache = cs231n_conv_forward(x, w, b, pad, groups)
            cs231n_conv_backward(g, cache)

        def m_fwd():
            numpyml_conv_forward(x, w, b, pad, groups)

        def m_fb():
            out, cache = numpyml_conv_forward(x, w, b, pad, groups)
            numpyml_conv_backward(g, cache)

        for phase, fns, mult in (("fwd", dict(torch=t_fwd, engine=e_fwd, cs231n=p_fwd, numpyml=m_fwd), 1),
                                 ("fwd+bwd", dict(torch=t_fb, engine=e_fb, cs231n=p_fb, numpyml=m_fb), 3)):
            with LoadMonitor() as load:
                r = interleaved(fns, repeats)
            flops = 2 * macs * mult
            rows.append({
                "case": f"conv {name}", "phase": phase, "N": N,
                **{f"{k}_ms": v["min_ms"] for k, v in r.items()},
                "engine_ratio": r["engine"]["ratio"], "cs231n_ratio": r["cs231n"]["ratio"],
                "numpyml_ratio": r["numpyml"]["ratio"],
                "engine_gflops": flops / r["engine"]["min_ms"] / 1e6,
                "torch_gflops": flops / r["torch"]["min_ms"] / 1e6,
                "other_cores": load.other_cores,
            })
            print(_fmt_row(rows[-1]), flush=True)
    return rows


def bench_models(repeats, quick):
    rows = []
    for model_name, batch in (("lenet5", 128), ("resnet20", 128)):
        if quick:
            batch = 16
        net = create_model(model_name)
        macs = analyze(net).macs * batch
        torch.manual_seed(0)
        tm = torch_compile(net).train()
        em = engine.compile(net).train()
        em.load_state_dict(tm.state_dict())
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
        y = rng.integers(0, net.num_classes, batch)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9)
        eopt = engine.optim.SGD(em.parameters(), lr=0.01, momentum=0.9)

        def t_step():
            loss = torch.nn.functional.cross_entropy(tm(xt), yt)
            topt.zero_grad()
            loss.backward()
            topt.step()

        def e_step():
            loss = F.cross_entropy(em(Tensor(x)), y)
            eopt.zero_grad()
            loss.backward()
            eopt.step()

        with LoadMonitor() as load:
            r = interleaved(dict(torch=t_step, engine=e_step), repeats)
        flops = 3 * 2 * macs
        row = {
            "case": f"train step {model_name} b{batch}", "phase": "fwd+bwd+SGD", "N": batch,
            "torch_ms": r["torch"]["min_ms"], "engine_ms": r["engine"]["min_ms"],
            "engine_ratio": r["engine"]["ratio"],
            "engine_gflops": flops / r["engine"]["min_ms"] / 1e6,
            "torch_gflops": flops / r["torch"]["min_ms"] / 1e6,
            "images_per_s_torch": batch / r["torch"]["min_ms"] * 1e3,
            "images_per_s_engine": batch / r["engine"]["min_ms"] * 1e3,
            "other_cores": load.other_cores,
        }
        row["torch_peak_rss_mb"] = peak_rss_rise(t_step) / 2 ** 20
        row["engine_peak_rss_mb"] = peak_rss_rise(e_step) / 2 ** 20
        row["engine_tracemalloc_mb"] = tracemalloc_peak(e_step) / 2 ** 20
        row["memory_ratio"] = row["engine_peak_rss_mb"] / max(row["torch_peak_rss_mb"], 1e-9)
        rows.append(row)
        print(_fmt_row(row), flush=True)
    return rows


def _fmt_row(r):
    flag = "  CONTENDED" if r["other_cores"] > 0.2 else ""
    s = (f"{r['case']:44s} {r['phase']:12s} torch {r['torch_ms']:8.2f} ms  engine {r['engine_ms']:8.2f} ms "
         f"x{r['engine_ratio']:5.2f}")
    if "cs231n_ratio" in r:
        s += f"  cs231n x{r['cs231n_ratio']:5.2f}  numpy-ml x{r['numpyml_ratio']:6.2f}"
    s += f"  | {r['engine_gflops']:6.1f} vs {r['torch_gflops']:6.1f} GFLOP/s"
    if "memory_ratio" in r:
        s += (f"  | peak MB torch {r['torch_peak_rss_mb']:.0f} engine {r['engine_peak_rss_mb']:.0f} "
              f"(tracemalloc {r['engine_tracemalloc_mb']:.0f}) x{r['memory_ratio']:.2f}")
    return s + f"  | other procs {r['other_cores']:.2f} cores{flag}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="small batches: a smoke run, not a measurement")
    ap.add_argument("--only", choices=["convs", "models"], default=None)
    args = ap.parse_args(argv)
    with LoadMonitor() as whole:
        peak = gemm_peak()
        print(f"fp32 GEMM peak (2048^3): numpy/OpenBLAS {peak['numpy']:.1f} GFLOP/s, "
              f"torch {peak['torch']:.1f} GFLOP/s; threads: torch {torch.get_num_threads()}, "
              f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
        rows = []
        check_peers()
        if args.only in (None, "convs"):
            rows += bench_convs(args.repeats, args.quick)
        if args.only in (None, "models"):
            rows += bench_models(args.repeats, args.quick)
    contended = [r["case"] + " " + r["phase"] for r in rows if r["other_cores"] > 0.2]
    print(f"\nmachine: other processes used {whole.other_cores:.2f} cores on average over "
          f"{whole.wall:.0f} s" + (f"; CONTENDED rows: {len(contended)} (rerun them)" if contended else
                                   "; no row contended"))
    result = {
        "command": "python benchmarks/engine_vs_torch.py " + " ".join(argv if argv is not None else
                                                                       __import__("sys").argv[1:]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch": torch.__version__, "numpy": np.__version__,
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "gemm_peak_gflops": peak, "other_cores_whole_run": whole.other_cores,
        "contended_rows": contended, "rows": rows,
    }
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"engine_vs_torch-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
