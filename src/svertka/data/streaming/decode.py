"""Decode one encoded image straight to its square training or evaluation crop.

The standard ImageNet recipe, as torchvision's reference scripts run it:

- training: RandomResizedCrop (a box of 8-100 % of the area, aspect 3/4-4/3,
  resized to ``size``) and a horizontal flip with probability 1/2;
- evaluation: resize the shorter side to ``size / crop_pct`` (256 for 224)
  and take the centre ``size`` x ``size``.

Both are one box in the source image resampled to ``size`` x ``size``: Pillow's
``resize(box=...)`` crops and scales in one pass. A JPEG is first decoded at
1/2, 1/4 or 1/8 scale (``Image.draft``: the DCT skips the detail) whenever the
box still covers ``size`` pixels at that scale, so a 2000 px photo cropped to
224 px never decodes 4 megapixels. Pillow's BILINEAR downscale is antialiased.

The random choices of image ``i`` in epoch ``e`` come from
``numpy.random.default_rng([seed, e, i])``: the same crops whatever the worker
count or the order workers finish in.
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np

from ...errors import DataError, UsageError
from ..formats import MAX_IMAGE_PIXELS

__all__ = ["RandomResizedCrop", "CenterCrop", "decode_crop"]


@dataclass(frozen=True)
class RandomResizedCrop:
    """Training crop: random box, resized to ``size``; mirrored with probability ``flip``."""

    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    random = True

    def box(self, w: int, h: int, rng: np.random.Generator) -> tuple[tuple[float, float, float, float], bool]:
        area = w * h
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):  # torchvision's 10 tries, then the centre fallback below
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(log_lo, log_hi))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
                return (left, top, left + cw, top + ch), bool(rng.random() < self.flip)
        # the whole image, its aspect clamped into the ratio range, centred
        aspect = w / h
        if aspect < self.ratio[0]:
            cw, ch = w, round(w / self.ratio[0])
        elif aspect > self.ratio[1]:
            cw, ch = round(h * self.ratio[1]), h
        else:
            cw, ch = w, h
        left, top = (w - cw) // 2, (h - ch) // 2
        return (left, top, left + cw, top + ch), bool(rng.random() < self.flip)


@dataclass(frozen=True)
class CenterCrop:
    """Evaluation crop: shorter side scaled to ``size / crop_pct``, then the centre ``size`` square.
    ``crop_pct=1`` keeps the whole shorter side (a square image is only resized)."""

    size: int = 224
    crop_pct: float = 0.875
    random = False

    def box(self, w: int, h: int, rng=None) -> tuple[tuple[float, float, float, float], bool]:
        side = min(w, h) * self.crop_pct  # the source pixels that become the crop
        left, top = (w - side) / 2, (h - side) / 2
        return (left, top, left + side, top + side), False


def check_crop(size: int, crop_pct: float) -> None:
    if not isinstance(size, int) or size < 8 or size > 4096:
        raise UsageError(f"--image-size must be a whole number of pixels in [8, 4096], got {size!r}")
    if not 0.1 <= crop_pct <= 1:
        raise UsageError(f"--crop-pct is the evaluation crop's share of the resized side, in [0.1, 1]; "
                         f"got {crop_pct!r}")


def decode_crop(data: bytes, name: str, crop, rng: np.random.Generator | None = None,
                draft: bool = True) -> np.ndarray:
    """``data`` (a JPEG or PNG file's bytes) as ``crop.size`` x ``crop.size`` x 3 uint8 RGB.
    Any file Pillow cannot decode, or one declaring too many pixels, is a DataError naming ``name``."""
    from PIL import Image

    size = crop.size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise DataError(f"{name}: {w}x{h} pixels is more than svertka decodes "
                                    f"({MAX_IMAGE_PIXELS:,}); shrink the image or remove it")
                box, mirror = crop.box(w, h, rng)
                if draft and im.format == "JPEG":
                    # ask for the smallest DCT scale at which the box still spans `size` pixels
                    bw, bh = box[2] - box[0], box[3] - box[1]
                    im.draft("RGB", (math.ceil(w * size / bw), math.ceil(h * size / bh)))
                    if im.size != (w, h):
                        fx, fy = im.size[0] / w, im.size[1] / h
                        box = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
                rgb = im.convert("RGB")
        out = rgb.resize((size, size), Image.BILINEAR, box=box)
        arr = np.asarray(out, dtype=np.uint8)
    except DataError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DataError(f"{name}: the image declares more pixels than svertka decodes "
                        f"({MAX_IMAGE_PIXELS:,}); shrink it or remove it") from None
    # Pillow's plugins raise many types on corrupt or truncated data (OSError, SyntaxError, ...)
    except Exception as exc:
        raise DataError(f"{name}: not an image Pillow can decode ({type(exc).__name__}: {str(exc)[:80]}); "
                        "remove or replace the file") from None
    return arr[:, ::-1] if mirror else arr
