"""Upscaling: train SRCNN and ESPCN (x2, x3) on skimage photo patches and on
Fashion-MNIST 14->28, then score them against bicubic on the held-out photos
(whole images) and the Fashion-MNIST test items: PSNR / SSIM on luma, border
cropped by the scale. Each model's MACs per output pixel come from the analysis.

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/upscale.py --out runs/upscale

Training: torch, one thread, Adam, MSE on [0, 1] luma, cosine learning rate.
Each trained model is saved as a run folder (model.json, best.safetensors)
that `svertka upscale RUN in.png --out out.png` reads. Prints a table, writes
upscale.json (with the other processes' mean CPU use during each training).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np


def train(name, pairs, scale, args, seed=0):
    """A trained torch model of zoo ``name`` on patches of ``pairs``."""
    import torch

    from svertka.backends.torch import compile as torch_compile
    from svertka.sysload import OtherLoad
    from svertka.tasks.upscale import patches
    from svertka.zoo import create_model

    net = create_model(name)
    kind = net.meta["input"]
    size = args.patch_fm if args.fashion else args.patch
    x, y = patches(pairs, scale, args.patches, size, kind, seed)
    torch.manual_seed(seed)
    model = torch_compile(net, (1, *x.shape[1:3]))
    x = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    y = torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    epochs = args.epochs_srcnn if name.startswith("srcnn") and args.epochs_srcnn else args.epochs
    steps = epochs * math.ceil(len(x) / args.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    load, step = OtherLoad(), 0
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), args.batch):
            idx = order[i:i + args.batch]
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            step += 1
        print(f"  {name} epoch {epoch + 1}/{epochs}: train mse {total / len(x):.6f} "
              f"(psnr {10 * math.log10(len(x) / total):.2f} dB), {load.wall:.0f} s", flush=True)
    model.eval()
    return net, model, {"seconds": round(load.wall, 1), "other_cores": load.other_cores(),
                        "patches": len(x), "patch": size, "epochs": epochs}


def predict(net, model, pair):
    """The model's uint8 high-res luma for one pair (the whole image in one pass)."""
    import torch

    from svertka.tasks.upscale import as_uint8

    x = pair["lr"] if net.meta["input"] == "low-res" else pair["bicubic"]
    with torch.inference_mode():
        y = model(torch.from_numpy(x.astype(np.float32)[None, None] / 255))[0, 0].numpy()
    return as_uint8(y)


def save_run(folder, net, model, scale, data):
    from svertka.spec import save_network
    from svertka.train.checkpoint import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    save_network(net, folder / "model.json")
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    meta = {"model": net.name, "num_classes": net.num_classes, "input_shape": list(net.input_shape),
            "backend": "torch", "task": "upscale", "scale": scale, "input": net.meta["input"],
            "mean": list(net.mean), "std": list(net.std), "data": data}
    save_checkpoint(folder / "best.safetensors", weights, meta)


def macs_per_output_pixel(name):
    from svertka.analysis import analyze
    from svertka.zoo import create_model

    a = analyze(create_model(name))
    return a.macs / (a.output_shape[1] * a.output_shape[2])


def figure(run, out, photo="astronaut", box=(40, 170, 120, 120), zoom=3):
    """A crop of a held-out photo: bicubic, the run's model, the original (each upscaled
    from the same bicubic-downscaled crop, shown ``zoom`` x with nearest pixels)."""
    import skimage.data as sd

    from svertka.tasks.upscale import bicubic, upscale_image
    from svertka.train.evaluate import load_trained
    from svertka.viz.image import save_grid

    loaded = load_trained(run)
    scale = int(loaded.meta["scale"])
    top, left, h, w = box
    hr = getattr(sd, photo)()[top:top + h, left:left + w, :3]
    lr = np.stack([bicubic(np.ascontiguousarray(hr[..., c]), (h // scale, w // scale)) for c in range(3)], -1)
    bic = np.stack([bicubic(lr[..., c], (h, w)) for c in range(3)], -1)
    model = upscale_image(loaded, lr)
    labels = ["bicubic", loaded.net.name.split("_")[0], "original"]
    save_grid(np.stack([bic, model, hr]), out, nrow=3, labels=labels, scale=zoom, padding=4)
    print(f"wrote {out}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/upscale")
    p.add_argument("--models", default="espcn,srcnn")
    p.add_argument("--scales", default="2,3")
    p.add_argument("--fashion", action="store_true", help="Fashion-MNIST 14->28 (x2) instead of the photos")
    p.add_argument("--patches", type=int, default=4000)
    p.add_argument("--patch", type=int, default=36, help="high-res patch side (x2, x3 divide it)")
    p.add_argument("--patch-fm", type=int, default=28, help="Fashion-MNIST: the whole item")
    p.add_argument("--fashion-test", type=int, default=2000, help="Fashion-MNIST test items scored")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--epochs-srcnn", type=int, default=3, help="SRCNN runs at high resolution: fewer epochs")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--figure", metavar="RUN", help="only draw the crop picture of this run to --out (a .png)")
    args = p.parse_args(argv)
    if args.figure:
        return figure(args.figure, args.out)

    import torch

    from svertka.tasks.upscale import TEST_PHOTOS, TRAIN_PHOTOS, fashion_pairs, photo_pairs, score_images

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = []
    scales = [2] if args.fashion else [int(s) for s in args.scales.split(",")]
    for scale in scales:
        if args.fashion:
            data = "fashion-mnist 14->28"
            train_pairs = fashion_pairs("train", scale, args.patches)
            test_pairs = fashion_pairs("test", scale, args.fashion_test)
        else:
            data = "skimage photos"
            train_pairs, test_pairs = photo_pairs(TRAIN_PHOTOS, scale), photo_pairs(TEST_PHOTOS, scale)
        truth = [q["hr"] for q in test_pairs]
        base = score_images([q["bicubic"] for q in test_pairs], truth, scale)
        rows.append({"data": data, "scale": scale, "model": "bicubic", **base, "macs_per_px": None})
        print(f"x{scale} {data}: bicubic {base['psnr']:.2f} dB / {base['ssim']:.4f}", flush=True)
        for family in args.models.split(","):
            name = f"{family}_x{scale}"
            net, model, info = train(name, train_pairs, scale, args)
            got = score_images([predict(net, model, q) for q in test_pairs], truth, scale)
            if not args.fashion:
                got["per_image"] = {q["name"]: score_images([predict(net, model, q)], [q["hr"]],
                                                            scale)["psnr"] for q in test_pairs}
            save_run(out / f"{name}-{'fashion' if args.fashion else 'photos'}", net, model, scale, data)
            rows.append({"data": data, "scale": scale, "model": name, **got,
                         "macs_per_px": macs_per_output_pixel(name), **info})
            print(f"x{scale} {data}: {name} {got['psnr']:.2f} dB / {got['ssim']:.4f} "
                  f"(bicubic {base['psnr']:.2f}); {info}", flush=True)
            _write(out, args, rows)
    print(f"\n{'data':22} {'scale':>5} {'model':10} {'PSNR dB':>8} {'SSIM':>7} {'MACs/px':>8}")
    for r in rows:
        macs = f"{r['macs_per_px']:,.0f}" if r["macs_per_px"] else "-"
        print(f"{r['data']:22} {'x' + str(r['scale']):>5} {r['model']:10} {r['psnr']:8.2f} {r['ssim']:7.4f} "
              f"{macs:>8}")
    _write(out, args, rows)


def _write(out, args, rows):
    """The rows so far as JSON (after every model: a long run keeps what it finished)."""
    out.mkdir(parents=True, exist_ok=True)
    name = "upscale-fashion.json" if args.fashion else "upscale.json"
    (out / name).write_text(json.dumps({"args": vars(args), "rows": rows, "argv": sys.argv,
                                        "time": time.strftime("%Y-%m-%d %H:%M")}, indent=1))


if __name__ == "__main__":
    main()
