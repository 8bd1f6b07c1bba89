"""Writing images (PNG or JPEG, through Pillow) and a grid of sample images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from svertka.errors import UsageError

__all__ = ["image_format", "write_image", "save_grid", "to_uint8_nhwc"]

# The file name's extension picks the format, so `--out grid.jpg` really is a JPEG.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def image_format(path) -> str:
    """Pillow's format name for ``path``'s extension; a UsageError for any other extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"cannot write {path}: unknown image extension {suffix or '(none)'!r}; "
                         f"name the file .png or .jpg")
    return FORMATS[suffix]


def write_image(path, image: np.ndarray) -> Path:
    """Write a uint8 H x W (grey) or H x W x C (C = 1, 2, 3, 4) image as PNG or JPEG, by extension.

    JPEG has no alpha channel: it is dropped there.
    """
    path = Path(path)
    fmt = image_format(path)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype != np.uint8 or image.ndim != 3 or not 1 <= image.shape[2] <= 4 or 0 in image.shape:
        raise UsageError(f"an image must be a non-empty uint8 H x W x C array with C in 1..4, "
                         f"got {image.dtype} {image.shape}")
    if fmt == "JPEG" and image.shape[2] in (2, 4):
        image = image[..., :-1]
    pil = Image.fromarray(np.ascontiguousarray(image[..., 0] if image.shape[2] == 1 else image))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pil.save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}; choose a writable location") from None
    return path


def to_uint8_nhwc(images) -> np.ndarray:
    """uint8 NHWC as is; float NCHW (values in [0, 1], e.g. augmented) scaled and clipped.

    Torch tensors are moved to the CPU first.
    """
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None] if images.dtype == np.uint8 else images[:, None]
    if images.ndim != 4:
        raise UsageError(f"expected a batch of images (N x H x W x C uint8 or N x C x H x W float), "
                         f"got shape {images.shape}")
    if images.dtype == np.uint8:
        return images
    return np.rint(np.clip(images, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)


# A 3 x 5 pixel font, enough to caption a tile with a class name or number.
_GLYPHS = {
    "A": "010101111101101", "B": "110101110101110", "C": "011100100100011", "D": "110101101101110",
    "E": "111100110100111", "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "J": "001001001101010", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "010101101101010", "P": "110101110100100",
    "Q": "010101101110011", "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "U": "101101101101111", "V": "101101101101010", "W": "101101111111101", "X": "101101010101101",
    "Y": "101101010010010", "Z": "111001010100111", "0": "111101101101111", "1": "010110010010111",
    "2": "110001010100111", "3": "110001010001110", "4": "101101111001001", "5": "111100110001110",
    "6": "011100111101111", "7": "111001010010010", "8": "111101111101111", "9": "111101111001110",
    "-": "000000111000000", "/": "001001010100100", ".": "000000000000010", " ": "000000000000000",
    "?": "110001010000010",
}
_FONT = {k: np.array([int(b) for b in v], np.uint8).reshape(5, 3) for k, v in _GLYPHS.items()}


def _text(s: str, width: int, scale: int) -> np.ndarray:
    """A (5 + 2) * scale tall, ``width`` wide white-on-black caption, cut to fit."""
    canvas = np.zeros((7 * scale, width), np.uint8)
    step = 4 * scale
    for i, ch in enumerate(s.upper()[: max(0, (width - 1) // step)]):
        glyph = np.kron(_FONT.get(ch, _FONT["?"]), np.ones((scale, scale), np.uint8)) * 255
        canvas[scale : 6 * scale, 1 + i * step : 1 + i * step + 3 * scale] = glyph
    return canvas


def save_grid(images, path, nrow: int = 8, labels=None, padding: int = 2, scale: int | None = None) -> Path:
    """Write ``images`` as a grid with ``nrow`` images per row (PNG or JPEG, by ``path``'s extension).

    ``images``: uint8 NHWC or float NCHW in [0, 1] (NumPy or torch).
    ``labels``: optional captions, one per image (strings or numbers).
    ``scale``: integer upscaling; by default small images are enlarged so a
    tile is at least 56 pixels wide and a caption stays readable.
    """
    image_format(path)  # a bad extension fails before any work
    images = to_uint8_nhwc(images)
    n, h, w, c = images.shape
    if n == 0:
        raise UsageError("save_grid got an empty batch; pass at least one image")
    if nrow < 1:
        raise UsageError(f"nrow must be at least 1, got {nrow}")
    if labels is not None and len(labels) != n:
        raise UsageError(f"{len(labels)} labels for {n} images; pass one label per image")
    if c == 2 or c == 4:  # drop alpha: tiles sit on a black background
        images, c = images[..., : c - 1], c - 1
    scale = scale or max(1, -(-56 // w))
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    cap_scale = max(1, w // 48)
    cap_h = 7 * cap_scale if labels is not None else 0
    ncol, nrows = min(nrow, n), -(-n // nrow)
    th, tw = h + cap_h + padding, w + padding
    grid = np.zeros((nrows * th + padding, ncol * tw + padding, c), np.uint8)
    for i in range(n):  # one slice assignment per tile; images are already converted in bulk
        r, k = divmod(i, nrow)
        y, x = padding + r * th, padding + k * tw
        grid[y : y + h, x : x + w] = images[i]
        if labels is not None:
            grid[y + h : y + h + cap_h, x : x + w] = _text(str(labels[i]), w, cap_scale)[..., None]
    return write_image(path, grid)
