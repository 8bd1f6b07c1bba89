"""Batched data augmentation, the lecture's list: rotate, random crop with padding,
zoom, horizontal flip, Gaussian noise, plus cutout, random erasing and the
derandomised "altflip" (each image mirrored in every other epoch).

Every op transforms a whole float NCHW batch at once; there is no per-image
Python loop. Each image gets its own random parameters, drawn from ONE seeded
NumPy generator, so a pipeline given the same seed makes the same choices for
a NumPy array and for a torch tensor (which is transformed on its own device
with torch ops). Geometric ops resample with one affine map per image;
consecutive rotate/zoom ops are fused so the image is interpolated only once.

    aug = Compose("flip,crop:4,rotate:10,noise:0.05,erase:0.25")
    batch = aug(batch, rng=0)            # numpy float32 NCHW, or a torch tensor

Fill value for pixels that come from outside the image, and for erased boxes,
is 0: black for [0, 1] images, the mean for standardised ones.
"""

from __future__ import annotations

import math

import numpy as np

from svertka.errors import UsageError

__all__ = ["Op", "Flip", "AltFlip", "Crop", "Rotate", "Zoom", "Noise", "Erase", "Cutout", "Compose",
           "parse_pipeline", "OPS"]


# ------------------------------------------------------------------ backends
# The ops below are written once against these few primitives.


class _NumpyBackend:
    @staticmethod
    def flip(x, mask):
        return np.where(mask[:, None, None, None], x[..., ::-1], x)

    @staticmethod
    def shift(x, dy, dx, pad):
        n, c, h, w = x.shape
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        rows = (pad + dy)[:, None] + np.arange(h)  # N x H
        cols = (pad + dx)[:, None] + np.arange(w)  # N x W
        out = xp[np.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # N x H x W x C
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    @staticmethod
    def affine(x, theta, mode):
        """Sample ``x`` at ``theta @ [xc, yc, 1]`` (centred pixel coords), zero outside."""
        n, c, h, w = x.shape
        cy, cx = (h - 1) / 2, (w - 1) / 2
        yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
        grid = np.stack([xx.ravel(), yy.ravel(), np.ones(h * w)])  # 3 x HW
        src = theta @ grid  # N x 2 x HW, float64 so identity maps land exactly on pixels
        sx, sy = src[:, 0] + cx, src[:, 1] + cy
        flat = x.reshape(n, c, h * w)

        def gather(iy, ix):
            ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
            idx = np.where(ok, iy * w + ix, 0).astype(np.intp)
            return np.take_along_axis(flat, idx[:, None, :], axis=2) * ok[:, None, :]

        if mode == "nearest":
            out = gather(np.rint(sy), np.rint(sx))
        else:
            x0, y0 = np.floor(sx), np.floor(sy)
            wx, wy = (sx - x0)[:, None, :], (sy - y0)[:, None, :]
            out = (
                gather(y0, x0) * (1 - wx) * (1 - wy)
                + gather(y0, x0 + 1) * wx * (1 - wy)
                + gather(y0 + 1, x0) * (1 - wx) * wy
                + gather(y0 + 1, x0 + 1) * wx * wy
            )
        return out.reshape(n, c, h, w).astype(x.dtype)

    @staticmethod
    def add(x, noise):
        return x + noise.astype(x.dtype)

    @staticmethod
    def fill_boxes(x, y0, y1, x0, x1):
        h, w = x.shape[2:]
        r, c = np.arange(h), np.arange(w)
        rows_in = (r >= y0[:, None]) & (r < y1[:, None])
        cols_in = (c >= x0[:, None]) & (c < x1[:, None])
        inside = rows_in[:, :, None] & cols_in[:, None, :]
        return np.where(inside[:, None], np.zeros((), x.dtype), x)


class _TorchBackend:
    def __init__(self, torch):
        self.torch = torch

    def _t(self, a, like, dtype=None):
        return self.torch.as_tensor(np.ascontiguousarray(a), device=like.device, dtype=dtype)

    def flip(self, x, mask):
        return self.torch.where(self._t(mask, x).view(-1, 1, 1, 1), x.flip(-1), x)

    def shift(self, x, dy, dx, pad):
        t = self.torch
        n, c, h, w = x.shape
        xp = t.nn.functional.pad(x, (pad, pad, pad, pad))
        rows = self._t(pad + dy, x)[:, None] + t.arange(h, device=x.device)
        cols = self._t(pad + dx, x)[:, None] + t.arange(w, device=x.device)
        out = xp[t.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()

    def affine(self, x, theta, mode):
        # theta is in centred pixel units; affine_grid wants [-1, 1] units
        # (align_corners=False: x_norm = 2 * x_centred / W), so rescale it.
        f = self.torch.nn.functional
        h, w = x.shape[2:]
        norm = theta[:, :2, :].copy()
        norm[:, 0, 1] *= h / w
        norm[:, 1, 0] *= w / h
        norm[:, 0, 2] *= 2 / w
        norm[:, 1, 2] *= 2 / h
        grid = f.affine_grid(self._t(norm, x, x.dtype), list(x.shape), align_corners=False)
        return f.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)

    def add(self, x, noise):
        return x + self._t(noise, x, x.dtype)

    def fill_boxes(self, x, y0, y1, x0, x1):
        t = self.torch
        h, w = x.shape[2:]
        r, c = t.arange(h, device=x.device), t.arange(w, device=x.device)
        y0, y1, x0, x1 = (self._t(v, x)[:, None] for v in (y0, y1, x0, x1))
        inside = ((r >= y0) & (r < y1))[:, :, None] & ((c >= x0) & (c < x1))[:, None, :]
        return x.masked_fill(inside[:, None], 0)


# ----------------------------------------------------------------------- ops


class Op:
    """One augmentation. ``sample`` draws per-image parameters from a NumPy
    generator; ``apply`` uses them through a backend. Affine ops instead return
    N x 3 x 3 matrices from ``matrix`` so a pipeline can fuse them."""

    name = ""
    affine = False
    by_index = False  # True: parameters come from ``choose(index, epoch, n)``, not the generator

    def sample(self, rng: np.random.Generator, shape: tuple[int, int, int, int]):
        raise NotImplementedError

    def apply(self, be, x, params):
        raise NotImplementedError

    def spec(self) -> str:
        args = ":".join(f"{v:g}" for v in self._args())
        return f"{self.name}:{args}" if args else self.name

    def _args(self):
        return ()

    def __repr__(self):
        return f"<{self.spec()}>"


class Flip(Op):
    """Mirror left-right with probability ``p``."""

    name = "flip"

    def __init__(self, p: float = 0.5):
        self.p = _check(p, 0, 1, "flip probability")

    def _args(self):
        return (self.p,)

    def sample(self, rng, shape):
        n, _, h, w = shape
        return rng.random(n) < self.p

    def apply(self, be, x, mask):
        return be.flip(x, mask)


class AltFlip(Op):
    """Derandomised flip (Jordan, "94% on CIFAR-10 in 3.29 seconds", 2024): image
    ``i`` is mirrored in epoch ``e`` when ``b_i + e`` is odd, ``b_i`` a fixed
    pseudo-random bit of the image's index. Every image is seen both ways in
    alternate epochs, where random flips show it the same way twice in a row
    half the time. Draws nothing from the generator; without indices the batch
    counts as images 0..N-1 in epoch 0."""

    name = "altflip"
    by_index = True

    def choose(self, index, epoch: int, n: int):
        index = np.arange(n) if index is None else np.asarray(index)
        if index.shape != (n,):
            raise UsageError(f"altflip needs one index per image: {n} images, index of shape {index.shape}")
        # Fibonacci hashing: the top bit of index * 2^64/phi is a well-mixed bit of the index
        bit = (index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(63)
        return (bit.astype(np.int64) + int(epoch)) % 2 == 1

    def apply(self, be, x, mask):
        return be.flip(x, mask)


class Crop(Op):
    """Random crop with zero padding: pad by ``pad`` pixels, crop back to H x W at a random offset."""

    name = "crop"

    def __init__(self, pad: int = 4):
        self.pad = int(_check(pad, 0, 1024, "crop padding"))

    def _args(self):
        return (self.pad,)

    def sample(self, rng, shape):
        n, _, h, w = shape
        return rng.integers(-self.pad, self.pad + 1, size=(2, n))

    def apply(self, be, x, shifts):
        return be.shift(x, shifts[0], shifts[1], self.pad)


class Rotate(Op):
    """Rotate counter-clockwise by an angle drawn uniformly from ``degrees``
    (a number d means [-d, d]; a pair fixes the range)."""

    name = "rotate"
    affine = True

    def __init__(self, degrees=15.0):
        lo, hi = (-degrees, degrees) if np.isscalar(degrees) else degrees
        self.range = (_check(lo, -360, 360, "rotation angle"), _check(hi, -360, 360, "rotation angle"))

    def _args(self):
        lo, hi = self.range
        return (hi,) if lo == -hi else (lo, hi)

    def matrix(self, rng, shape):
        n, _, h, w = shape
        a = np.deg2rad(rng.uniform(*self.range, size=n))
        cos, sin = np.cos(a), np.sin(a)
        m = np.zeros((n, 3, 3))
        # maps an output pixel back to the input pixel it shows (y axis points down)
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = cos, -sin, sin, cos, 1
        return m


class Zoom(Op):
    """Scale about the centre by a factor drawn uniformly from [1 - amount, 1 + amount] (>1 zooms in)."""

    name = "zoom"
    affine = True

    def __init__(self, amount: float = 0.1):
        self.amount = _check(amount, 0, 0.95, "zoom amount")

    def _args(self):
        return (self.amount,)

    def matrix(self, rng, shape):
        n, _, h, w = shape
        s = rng.uniform(1 - self.amount, 1 + self.amount, size=n)
        m = np.zeros((n, 3, 3))
        m[:, 0, 0] = m[:, 1, 1] = 1 / s
        m[:, 2, 2] = 1
        return m


class Noise(Op):
    """Add Gaussian noise with standard deviation ``sigma`` (no clipping)."""

    name = "noise"

    def __init__(self, sigma: float = 0.05):
        self.sigma = _check(sigma, 0, 100, "noise sigma")

    def _args(self):
        return (self.sigma,)

    def sample(self, rng, shape):
        return self.sigma * rng.standard_normal(shape, dtype=np.float32)

    def apply(self, be, x, noise):
        return be.add(x, noise)


class Erase(Op):
    """Random erasing (Zhong et al., 2017): with probability ``p`` zero a box
    covering 2-33 % of the image with aspect ratio 0.3-3.3."""

    name = "erase"

    def __init__(self, p: float = 0.5, area=(0.02, 0.33), ratio=(0.3, 3.3)):
        self.p, self.area, self.ratio = _check(p, 0, 1, "erase probability"), area, ratio

    def _args(self):
        return (self.p,)

    def sample(self, rng, shape):
        n, _, h, w = shape
        on = rng.random(n) < self.p
        area = rng.uniform(*self.area, size=n) * h * w
        ratio = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1]), size=n))
        bh = np.clip(np.rint(np.sqrt(area * ratio)), 1, h).astype(np.int64)
        bw = np.clip(np.rint(np.sqrt(area / ratio)), 1, w).astype(np.int64)
        y0 = (rng.random(n) * (h - bh + 1)).astype(np.int64)
        x0 = (rng.random(n) * (w - bw + 1)).astype(np.int64)
        bh, bw = bh * on, bw * on  # an empty box where the coin said no
        return y0, y0 + bh, x0, x0 + bw

    def apply(self, be, x, box):
        return be.fill_boxes(x, *box)


class Cutout(Op):
    """Cutout (DeVries & Taylor, 2017): zero a ``size`` x ``size`` square centred
    anywhere in the image (clipped at the border)."""

    name = "cutout"

    def __init__(self, size: int = 8):
        self.size = int(_check(size, 1, 4096, "cutout size"))

    def _args(self):
        return (self.size,)

    def sample(self, rng, shape):
        n, _, h, w = shape
        cy, cx = rng.integers(0, h, size=n), rng.integers(0, w, size=n)
        lo = self.size // 2
        return cy - lo, cy - lo + self.size, cx - lo, cx - lo + self.size

    def apply(self, be, x, box):
        return be.fill_boxes(x, *box)


OPS: dict[str, type[Op]] = {op.name: op for op in (Flip, AltFlip, Crop, Rotate, Zoom, Noise, Erase, Cutout)}
_MAX_ARGS = {"rotate": 2, "altflip": 0}


def _check(value, lo, hi, what):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, got {value!r}") from None
    if not (lo <= v <= hi) or math.isnan(v):
        raise UsageError(f"{what} must be in [{lo}, {hi}], got {value!r}")
    return v


# ------------------------------------------------------------------- pipeline


def parse_pipeline(spec) -> list[Op]:
    """Ops from ``"flip,crop:4,rotate:10"``, a list of such strings and Op objects, or one Op."""
    if isinstance(spec, Op):
        return [spec]
    if isinstance(spec, str):
        spec = [s for s in spec.replace(" ", "").split(",") if s]
    ops = []
    for item in spec:
        if isinstance(item, Op):
            ops.append(item)
            continue
        if not isinstance(item, str):
            raise UsageError(f"augmentation step {item!r} is neither a name like 'rotate:10' nor an Op")
        name, *args = item.split(":")
        cls = OPS.get(name.lower())
        if cls is None:
            raise UsageError(f"unknown augmentation {name!r}; choose from {', '.join(OPS)} "
                             f"(e.g. 'flip,crop:4,rotate:10')")
        if len(args) > _MAX_ARGS.get(cls.name, 1):
            raise UsageError(f"too many arguments in {item!r}; write e.g. '{cls().spec()}'")
        try:
            nums = [float(a) for a in args]
        except ValueError:
            raise UsageError(f"bad number in augmentation {item!r}; write e.g. '{cls().spec()}'") from None
        if cls is Rotate and len(nums) == 2:
            ops.append(Rotate(tuple(nums)))
        else:
            ops.append(cls(*nums))
    return ops


def _backend(x):
    """The primitives for ``x``'s backend (the switch itself is svertka.backends.backend_of)."""
    from svertka.backends import backend_of

    name = backend_of(x)
    if name is None:
        raise UsageError(f"augmentation takes a NumPy array or a torch tensor, got {type(x).__name__}")
    floating = x.dtype.kind == "f" if name == "numpy" else x.is_floating_point()
    if x.ndim != 4 or not floating:
        raise UsageError(f"augmentation takes a float N x C x H x W batch, got {x.dtype} of shape "
                         f"{tuple(x.shape)}; convert with to_float_nchw")
    if name == "numpy":
        return _NumpyBackend
    import torch

    return _TorchBackend(torch)


class Compose:
    """A pipeline of ops, applied in order to whole batches.

    ``mode`` is the interpolation of the geometric ops: "bilinear" or "nearest".
    """

    def __init__(self, spec="", mode: str = "bilinear"):
        if mode not in ("bilinear", "nearest"):
            raise UsageError(f"interpolation mode must be 'bilinear' or 'nearest', got {mode!r}")
        self.ops = parse_pipeline(spec)
        self.mode = mode

    def __call__(self, x, rng: int | np.random.Generator | None = 0, index=None, epoch: int = 0):
        """Augment batch ``x``; ``rng`` is a seed or a Generator (pass the same
        Generator every step so each batch gets fresh choices). ``index`` (the
        images' positions in the dataset) and ``epoch`` feed ops such as
        ``altflip`` that choose by image and epoch."""
        be = _backend(x)
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        pending = None  # product of consecutive affine maps, applied lazily
        for op in self.ops:
            if op.affine:
                m = op.matrix(rng, tuple(x.shape))
                # sampling composes backwards: out2(p) = out1(A2 p) = x(A1 A2 p)
                pending = m if pending is None else pending @ m
                continue
            if pending is not None:
                x, pending = be.affine(x, pending, self.mode), None
            params = op.choose(index, epoch, x.shape[0]) if op.by_index else op.sample(rng, tuple(x.shape))
            x = op.apply(be, x, params)
        if pending is not None:
            x = be.affine(x, pending, self.mode)
        return x

    def spec(self) -> str:
        return ",".join(op.spec() for op in self.ops)

    def __repr__(self):
        return f"Compose({self.spec()!r})"

    def __len__(self):
        return len(self.ops)
