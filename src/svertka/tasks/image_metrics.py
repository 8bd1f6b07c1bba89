"""Image quality scores of super-resolution: PSNR and SSIM, on one channel (luma).

As the SR literature scores them (SRCNN, ESPCN, and the benchmarks since):
on the Y channel only, after cropping ``border`` pixels (the scale factor) from
every side, where a model never sees both neighbours of a pixel.

- PSNR = 10 log10(R**2 / MSE), R the data range (1.0 for images in [0, 1]).
- SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5, cut at 3.5
  sigma), K1 = 0.01, K2 = 0.03 and population (not sample) covariances, averaged
  over the positions where the window lies inside the image: what
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=R)`` computes (a test checks it).

NumPy only: the core does not depend on scikit-image.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError

__all__ = ["crop_border", "psnr", "ssim", "gaussian_window"]


def crop_border(img: np.ndarray, border: int) -> np.ndarray:
    """The image without ``border`` pixels on each side (H x W, or ... x H x W)."""
    if border <= 0:
        return img
    return img[..., border:-border, border:-border]


def _pair(pred, true, border: int, need: int = 1):
    a = np.asarray(pred, np.float64)
    b = np.asarray(true, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ShapeError(f"image scores need two H x W images of one shape, got {a.shape} and {b.shape}")
    a, b = crop_border(a, border), crop_border(b, border)
    if min(a.shape) < need:
        raise ShapeError(f"image {pred.shape[0]}x{pred.shape[1]} less a {border}-pixel border is smaller "
                         f"than {need} pixels")
    return a, b


def psnr(pred, true, data_range: float = 1.0, border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB; inf for identical images."""
    a, b = _pair(pred, true, border)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
    """The normalised 1-D Gaussian taps, radius int(truncate * sigma + 0.5) (11 taps at 1.5)."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _filter_valid(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable weighted mean over every window that lies inside the image."""
    k = len(w)
    rows = sum(w[i] * img[i:img.shape[0] - k + 1 + i] for i in range(k))
    return sum(w[j] * rows[:, j:rows.shape[1] - k + 1 + j] for j in range(k))


def ssim(pred, true, data_range: float = 1.0, border: int = 0, sigma: float = 1.5) -> float:
    """Mean structural similarity over the windows inside the (border-cropped) image."""
    w = gaussian_window(sigma)
    x, y = _pair(pred, true, border, need=len(w))
    mx, my = _filter_valid(x, w), _filter_valid(y, w)
    vx = _filter_valid(x * x, w) - mx * mx
    vy = _filter_valid(y * y, w) - my * my
    cxy = _filter_valid(x * y, w) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())
