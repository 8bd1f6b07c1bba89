"""A synthetic ImageFolder of real photographs: random crops of scikit-image's sample photos.

    python scripts/make_photo_folder.py OUT --per-class 400 --test-per-class 100   # 5,000 JPEGs

Ten classes, one per source photo (astronaut, coffee, a cat, a rocket, the Hubble
deep field, a stained tissue slide, a retina, a motorcycle, a colour wheel, the
cameraman). Each image is a random crop of its photo - 35-95 % of the shorter
side, aspect 3/4 to 4/3, so 100 to 1300 px on a side, about ImageNet's sizes -
saved as a JPEG (quality 90). ``--size S`` instead resizes every crop to S x S,
for a set the in-memory ImageFolder can also load (it needs one size).
Crops are drawn from a seeded generator: the same arguments write the same files.

The photos ship inside scikit-image (``pip install scikit-image``, in svertka's
dev extra); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "stereo_motorcycle", "colorwheel", "camera")


def load_photos() -> dict[str, np.ndarray]:
    """The ten photos as H x W x 3 uint8."""
    import skimage.data

    out = {}
    for name in PHOTOS:
        img = getattr(skimage.data, name)()
        img = img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out[name] = np.ascontiguousarray(img[..., :3].astype(np.uint8))
    return out


def random_crop(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = photo.shape[:2]
    side = min(h, w) * rng.uniform(0.35, 0.95)
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw, ch = min(w, round(side * math.sqrt(aspect))), min(h, round(side / math.sqrt(aspect)))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return photo[top:top + ch, left:left + cw]


def make_photo_folder(out, per_class: int, test_per_class: int = 0, size: int | None = None, seed: int = 0,
                      quality: int = 90) -> Path:
    """Write OUT/<class>/NNNN.jpg (or OUT/train/... and OUT/test/... with ``test_per_class``)."""
    from PIL import Image

    out = Path(out)
    photos = load_photos()
    splits = [("train", per_class, seed), ("test", test_per_class, seed + 1)] if test_per_class else \
        [("", per_class, seed)]
    for split, count, split_seed in splits:
        for c, (name, photo) in enumerate(photos.items()):
            folder = out / split / name if split else out / name
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([split_seed, c])
            for i in range(count):
                im = Image.fromarray(random_crop(photo, rng))
                if size is not None:
                    im = im.resize((size, size), Image.BILINEAR)
                im.save(folder / f"{i:04d}.jpg", quality=quality)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="folder to write (class folders, or train/ and test/)")
    p.add_argument("--per-class", type=int, default=400, help="training images per class (default 400)")
    p.add_argument("--test-per-class", type=int, default=0,
                   help="test images per class; > 0 writes train/ and test/ (default 0: one split)")
    p.add_argument("--size", type=int, help="resize every crop to SIZE x SIZE (default: the crop's own size)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = make_photo_folder(args.out, args.per_class, args.test_per_class, args.size, args.seed)
    n = 10 * (args.per_class + args.test_per_class)
    print(f"wrote {n} JPEGs in 10 class folders under {out}")


if __name__ == "__main__":
    main()
