"""Image upscaling (single-image super-resolution) on luma, as the SR literature does it.

Data:

- **Photos:** the real photographs that scikit-image ships inside its package
  (``pip install 'svertka[images]'``; nothing is downloaded). Training patches come
  from ``TRAIN_PHOTOS`` only; the scores are on ``TEST_PHOTOS``, four photos never
  seen in training (astronaut, camera, coffee, chelsea).
- **Fashion-MNIST** 14 -> 28: each 28x28 item is the high-resolution image.

Every image is reduced to its luma: Y of YCbCr in BT.601 studio range (16..235,
MATLAB's ``rgb2ycbcr``, as SRCNN's and ESPCN's code) for colour images; a grey
image is its own luma. The high-resolution image is cropped to a multiple of the
scale; the low-resolution one is its bicubic downscale by Pillow (``Image.BICUBIC``,
which low-pass filters as it shrinks, like MATLAB's ``imresize``). SRCNN reads the
bicubic upscale of that (the baseline), ESPCN the low-resolution image itself.

Scores: PSNR and SSIM on Y, in [0, 1], after cropping ``scale`` pixels from each
side, with the model's output rounded to 8 bits as a saved image would be
(``image_metrics``).

Inference on any image (``svertka upscale``) runs the model over overlapping
tiles, so memory is bounded by the tile, not the image; the overlap is the
model's reach, so the result equals one pass over the whole image.
"""
from __future__ import annotations

import math

import numpy as np

from ..argtypes import positive_int
from ..errors import DataError, ShapeError, UsageError
from .image_metrics import psnr, ssim
from .task import Evaluator, Task, TaskData, register_task

__all__ = [
    "TRAIN_PHOTOS", "TEST_PHOTOS", "luma", "rgb_to_ycbcr", "ycbcr_to_rgb", "bicubic", "load_photo",
    "make_pair", "photo_pairs", "fashion_pairs", "patches", "tiles", "as_uint8", "score_images",
    "model_reach", "run_tiled", "upscaler", "upscale_image", "upscale_file", "UpscaleTask",
    "PsnrSsimEvaluator",
]

# skimage.data's photographs (all bundled with the package); motorcycle is the left view of
# stereo_motorcycle. Test photos are never cut into training patches.
TRAIN_PHOTOS = ("motorcycle", "rocket", "hubble_deep_field", "retina", "immunohistochemistry", "brick",
                "grass", "gravel", "coins", "moon", "clock", "page", "text")
TEST_PHOTOS = ("astronaut", "camera", "coffee", "chelsea")
INPUT_KINDS = ("low-res", "bicubic")


# ----------------------------------------------------------------------------- colour


# BT.601 studio range, RGB in [0, 1] -> Y in 16..235, Cb/Cr in 16..240 (MATLAB's rgb2ycbcr)
_YCBCR = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 -> float64 H x W x 3 YCbCr (BT.601, studio range)."""
    return rgb.astype(np.float64) / 255.0 @ _YCBCR.T + _OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """The inverse of ``rgb_to_ycbcr``, rounded and clipped to uint8."""
    rgb = (ycbcr - _OFFSET) @ np.linalg.inv(_YCBCR).T * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def luma(image: np.ndarray) -> np.ndarray:
    """uint8 luma of an H x W (grey: itself) or H x W x C image (RGB or RGBA: Y of YCbCr)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return image.astype(np.uint8)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ShapeError(f"an image must be H x W or H x W x 3 (or 4), got shape {image.shape}")
    y = rgb_to_ycbcr(image[..., :3])[..., 0]
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def bicubic(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow's bicubic resize of a 2-D image to (H, W): uint8 stays uint8, float stays float32."""
    from PIL import Image

    h, w = size
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))
    return np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((w, h), Image.BICUBIC))


# ------------------------------------------------------------------------------- data


def load_photo(name: str) -> np.ndarray:
    """One skimage.data photograph's luma (uint8 H x W)."""
    try:
        import skimage.data as sd
    except ImportError:
        raise UsageError("the upscale task's photos come with scikit-image: pip install 'svertka[images]'") \
            from None
    if name == "motorcycle":
        image = sd.stereo_motorcycle()[0]
    elif name in TRAIN_PHOTOS + TEST_PHOTOS:
        image = getattr(sd, name)()
    else:
        raise UsageError(f"unknown photo {name!r}; the upscale photos are "
                         f"{', '.join(TRAIN_PHOTOS + TEST_PHOTOS)}")
    return luma(image)


def make_pair(hr: np.ndarray, scale: int) -> dict:
    """High-res luma cropped to a multiple of ``scale``, its bicubic downscale, and the
    bicubic upscale of that back to the high-res size (all uint8 2-D)."""
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    if h < scale or w < scale:
        raise ShapeError(f"an image of {hr.shape[0]}x{hr.shape[1]} is smaller than the scale {scale}")
    hr = np.ascontiguousarray(hr[:h, :w])
    lr = bicubic(hr, (h // scale, w // scale))
    return {"hr": hr, "lr": lr, "bicubic": bicubic(lr, (h, w))}


def photo_pairs(names, scale: int) -> list[dict]:
    return [dict(make_pair(load_photo(n), scale), name=n) for n in names]


def fashion_pairs(split: str, scale: int = 2, limit: int | None = None, root=None,
                  dataset: str | None = None) -> list[dict]:
    """Fashion-MNIST items as pairs: ``dataset``, or the full set where it is installed,
    else the packaged sample."""
    from ..data import load_dataset

    names = (dataset,) if dataset else ("fashion-mnist", "fashion-mnist-mini")
    for name in names:
        try:
            ds = load_dataset(name, split=split, root=root)
            break
        except DataError:
            if name == names[-1]:
                raise
    images = ds.images[:limit, ..., 0] if limit else ds.images[..., 0]
    return [make_pair(im, scale) for im in images]


def _key(input_kind: str) -> str:
    if input_kind not in INPUT_KINDS:
        raise UsageError(f"input kind {input_kind!r} is not one of {', '.join(INPUT_KINDS)}")
    return "lr" if input_kind == "low-res" else "bicubic"


def patches(pairs, scale: int, n: int, size: int, input_kind: str, seed: int):
    """``n`` random aligned crops, ``size`` high-res pixels wide (a multiple of the scale),
    each in one of the 8 flips/rotations: (inputs uint8 N x h x w x 1, targets float32
    N x 1 x size x size in [0, 1]). Photos are drawn in proportion to their area."""
    if size % scale:
        raise UsageError(f"patch size {size} is not a multiple of the scale {scale}")
    key = _key(input_kind)
    f = scale if key == "lr" else 1  # input pixels per high-res pixel
    usable = [p for p in pairs if min(p["hr"].shape) >= size]
    if not usable:
        raise ShapeError(f"no image is {size} pixels on both sides")
    rng = np.random.default_rng(seed)
    area = np.array([p["hr"].size for p in usable], np.float64)
    which = rng.choice(len(usable), size=n, p=area / area.sum())
    xs, ys = [], []
    for i in which:
        p = usable[i]
        H, W = p["hr"].shape
        top = int(rng.integers(0, (H - size) // scale + 1)) * scale
        left = int(rng.integers(0, (W - size) // scale + 1)) * scale
        hr = p["hr"][top:top + size, left:left + size]
        x = p[key][top // f:(top + size) // f, left // f:(left + size) // f]
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        hr, x = np.rot90(hr, k), np.rot90(x, k)
        if flip:
            hr, x = hr[:, ::-1], x[:, ::-1]
        xs.append(x)
        ys.append(hr)
    inputs = np.ascontiguousarray(np.stack(xs)[..., None])
    targets = (np.stack(ys)[:, None] / np.float32(255)).astype(np.float32)
    return inputs, targets


def tiles(pairs, scale: int, size: int, input_kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Every whole, non-overlapping ``size``-pixel tile of each image (for scores inside a
    training run, where a batch needs one shape); same layout as ``patches``."""
    key = _key(input_kind)
    f = scale if key == "lr" else 1
    xs, ys = [], []
    for p in pairs:
        H, W = p["hr"].shape
        for top in range(0, H - size + 1, size):
            for left in range(0, W - size + 1, size):
                ys.append(p["hr"][top:top + size, left:left + size])
                xs.append(p[key][top // f:(top + size) // f, left // f:(left + size) // f])
    if not xs:
        raise ShapeError(f"no image holds a {size}-pixel tile")
    return np.stack(xs)[..., None], (np.stack(ys)[:, None] / np.float32(255)).astype(np.float32)


# ----------------------------------------------------------------------------- scores


def as_uint8(y: np.ndarray) -> np.ndarray:
    """A model's output in [0, 1] (float) as the 8-bit image it would be saved as."""
    return np.clip(np.rint(np.asarray(y, np.float64) * 255.0), 0, 255).astype(np.uint8)


def score_images(predictions, truths, scale: int) -> dict:
    """Mean PSNR and SSIM over images (uint8 2-D each), ``scale`` pixels cropped per side."""
    ps, ss = [], []
    for pred, true in zip(predictions, truths):
        a, b = np.asarray(pred, np.float64) / 255.0, np.asarray(true, np.float64) / 255.0
        ps.append(psnr(a, b, 1.0, scale))
        ss.append(ssim(a, b, 1.0, scale))
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "images": len(ps)}


# ------------------------------------------------------------------------ tiled inference


def model_reach(net) -> int:
    """How many input pixels beyond a tile can change its output: half the widest
    receptive field among the layers, from the spec's analysis, plus one."""
    from ..analysis import analyze

    a = analyze(net)
    return max(math.ceil(max(la.rf.size) / 2) for la in a.leaves) + 1


def run_tiled(forward, image: np.ndarray, out_scale: int, tile: int, reach: int) -> np.ndarray:
    """``forward`` (float32 H x W in [0, 1] -> float H*s x W*s) over ``tile``-pixel tiles
    of a 2-D image, each read with ``reach`` pixels of its neighbours around it and
    cropped back, so the result equals ``forward(image)`` (float32)."""
    if tile < 1 or reach < 0:
        raise UsageError(f"tile {tile} must be positive and reach {reach} non-negative")
    H, W = image.shape
    s = out_scale
    out = np.zeros((H * s, W * s), np.float32)
    x = image.astype(np.float32) / np.float32(255)
    for top in range(0, H, tile):
        for left in range(0, W, tile):
            t0, l0 = max(top - reach, 0), max(left - reach, 0)
            b1, r1 = min(top + tile, H), min(left + tile, W)
            y = np.asarray(forward(x[t0:min(b1 + reach, H), l0:min(r1 + reach, W)]))
            keep = y[(top - t0) * s:(b1 - t0) * s, (left - l0) * s:(r1 - l0) * s]
            out[top * s:b1 * s, left * s:r1 * s] = keep
    return out


# ------------------------------------------------------------------------- the task

PHOTOS, FASHION = "photos", ("fashion-mnist", "fashion-mnist-mini")


class PsnrSsimEvaluator(Evaluator):
    """Mean PSNR and SSIM over the rows of a split (1 x H x W outputs in [0, 1]),
    rounded to 8 bits and border-cropped by the scale, as ``score_images``."""

    def __init__(self, scale: int):
        self.scale, self.psnr, self.ssim, self.n = scale, 0.0, 0.0, 0

    def add(self, outputs, targets):
        got = score_images(as_uint8(outputs[:, 0]), as_uint8(targets["hr"][:, 0]), self.scale)
        self.psnr += got["psnr"] * got["images"]
        self.ssim += got["ssim"] * got["images"]
        self.n += got["images"]

    def result(self):
        n = max(1, self.n)
        return {"psnr": self.psnr / n, "ssim": self.ssim / n}


@register_task
class UpscaleTask(Task):
    """Single-image super-resolution on luma (``--data photos`` or ``fashion-mnist``):
    MSE loss on both backends, PSNR and SSIM scores. Training data are random
    patches (photos) or the items (Fashion-MNIST), validation the same with another
    seed; the test split is the held-out photos cut into whole tiles (one batch
    shape), or the Fashion-MNIST test items. `benchmarks/upscale.py` scores whole
    photos instead, as the literature does."""

    name = "upscale"
    default_model = "espcn_x2"
    score = "psnr"
    shown = ("psnr", "ssim")
    options = {
        "patches": (4000, positive_int, "patches=N: training patches cut from the training photos"),
        "patch": (36, positive_int, "patch=N: high-res patch side in pixels (a multiple of the scale)"),
        "tile": (96, positive_int, "tile=N: high-res tile side of the held-out photos scored in training"),
    }

    def _model(self):
        from ..zoo import resolve_model

        net = resolve_model(self.cfg.model)
        if net.meta.get("task") != "upscale" or net.meta.get("input") not in INPUT_KINDS:
            raise UsageError(f"task upscale trains an upscaling model (srcnn_x2, srcnn_x3, espcn_x2, "
                             f"espcn_x3), not {self.cfg.model}")
        return net

    def _source(self) -> str:
        data = self.cfg.data
        if data != PHOTOS and data not in FASHION:
            raise UsageError(f"task upscale learns from --data photos (skimage's) or fashion-mnist "
                             f"(14 -> 28), not {data}")
        return data

    def _split(self, xy, where):
        return None if xy is None else TaskData(xy[0], {"hr": xy[1]}, (), (0.0,), (1.0,), where)

    def _test(self, scale, kind):
        cfg, data = self.cfg, self._source()
        if data == PHOTOS:
            tile = self.opts["tile"] - self.opts["tile"] % scale
            x, y = tiles(photo_pairs(TEST_PHOTOS, scale), scale, tile, kind)
            n = cfg.limit_test or len(x)
            return self._split((x[:n], y[:n]), f"skimage.data: {', '.join(TEST_PHOTOS)}")
        test = fashion_pairs("test", scale, cfg.limit_test or None, cfg.root, data)
        return self._split(tiles(test, scale, 28, kind), data)

    def load(self):
        net, cfg, data = self._model(), self.cfg, self._source()
        scale, kind = int(net.meta["scale"]), net.meta["input"]
        if data == PHOTOS:
            pairs, n, size = photo_pairs(TRAIN_PHOTOS, scale), cfg.limit_train or self.opts["patches"], \
                self.opts["patch"]
            where = f"skimage.data: {', '.join(TRAIN_PHOTOS)}"
        else:
            if scale != 2:
                raise UsageError("Fashion-MNIST is upscaled 14 -> 28 only; use a x2 model")
            pairs = fashion_pairs("train", scale, cfg.limit_train or None, cfg.root, data)
            n, size, where = len(pairs), 28, data
        train = self._split(patches(pairs, scale, n, size, kind, cfg.seed), where)
        val = self._split(patches(pairs, scale, max(1, n // 8), size, kind, cfg.seed + 1), where) \
            if cfg.val_fraction > 0 else None
        return train, val, self._test(scale, kind)

    def load_test(self):
        net = self._model()
        return self._test(int(net.meta["scale"]), net.meta["input"])

    def network(self, train):
        from ..zoo import resolve_model

        return resolve_model(self.cfg.model, input_size=train.image_shape[0])

    def loss(self, F, out, targets):
        loss = F.mse_loss(out, targets["hr"])
        return loss, {"mse": loss.detach() * out.shape[0]}

    def evaluator(self):
        return PsnrSsimEvaluator(int(self._model().meta["scale"]))

    def decode(self, outputs, meta):
        return [{"size": list(o.shape[-2:]), "mean": float(o.mean())} for o in outputs]

    def draw(self, image, prediction, path):
        raise UsageError("an upscaling run writes its images with `svertka upscale RUN in.png --out out.png`")

    def meta(self):
        net = self._model()
        return {**super().meta(), "scale": int(net.meta["scale"]), "input": net.meta["input"]}


# ----------------------------------------------------------------------- svertka upscale


def upscaler(loaded):
    """(scale, input kind, forward, reach) of a trained upscaling model (``load_trained``)."""
    net, meta = loaded.net, loaded.meta
    scale, kind = meta.get("scale") or net.meta.get("scale"), meta.get("input") or net.meta.get("input")
    if not scale or kind not in INPUT_KINDS:
        raise UsageError(f"{loaded.source} holds {net.name or 'a model'}, not an upscaling model (its "
                         f"metadata has no scale); pass a run of an srcnn_x* or espcn_x* model")
    mean, std = np.float32(loaded.mean[0]), np.float32(loaded.std[0])

    def forward(x):
        return loaded.adapter.logits_of(((x - mean) / std)[None, None].astype(np.float32))[0, 0]
    return int(scale), kind, forward, model_reach(net)


def upscale_image(loaded, image: np.ndarray, tile: int = 128) -> np.ndarray:
    """A uint8 H x W (grey) or H x W x 3 image, ``scale`` times larger: the model
    upscales the luma, bicubic the colour (Cb, Cr), in ``tile``-pixel tiles."""
    scale, kind, forward, reach = upscaler(loaded)
    # a grey image (all channels equal) is its own luma, as in training
    grey = image.ndim == 2 or bool((image[..., 0] == image[..., 1]).all() and
                                   (image[..., 1] == image[..., 2]).all())
    y = luma(image[..., 0] if grey and image.ndim == 3 else image)
    H, W = y.shape
    if min(H, W) < reach:
        raise ShapeError(f"the image is {H}x{W} pixels; {loaded.net.name} reads {reach} pixels around each "
                         f"one, so give it an image of at least {reach}x{reach}")
    size = (H * scale, W * scale)
    if kind == "bicubic":
        out_y = run_tiled(forward, bicubic(y, size), 1, tile * scale, reach)
    else:
        out_y = run_tiled(forward, y, scale, tile, reach)
    out_y = as_uint8(out_y)
    if grey:
        return out_y
    ycbcr = rgb_to_ycbcr(image[..., :3])
    chroma = [bicubic(ycbcr[..., c].astype(np.float32), size) for c in (1, 2)]
    return ycbcr_to_rgb(np.stack([out_y.astype(np.float64), *chroma], axis=-1))


def upscale_file(run, src, out, tile: int = 128, backend: str | None = None, threads: int | None = None):
    """`svertka upscale RUN in.png --out out.png`."""
    from ..data.formats import decode_image
    from ..train.evaluate import load_trained
    from ..viz.image import image_format, write_image

    image_format(out)  # a bad --out extension fails before any work
    loaded = load_trained(run, backend=backend, threads=threads)
    upscaler(loaded)  # not an upscaling run: say so before decoding the image
    image = decode_image(src, "RGB")
    result = upscale_image(loaded, image, tile)
    write_image(out, result)
    return {"in": f"{image.shape[0]}x{image.shape[1]}", "out": f"{result.shape[0]}x{result.shape[1]}",
            "model": loaded.net.name, "path": str(out)}
