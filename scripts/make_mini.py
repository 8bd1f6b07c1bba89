"""Regenerate src/svertka/data/mini/: a class-balanced sample of the real Fashion-MNIST.

    python scripts/make_mini.py [--source /usr/share/datasets/fashion-mnist]

The selection is deterministic (seeded permutation, first k of each class, then
the original order), and the gzip files carry no timestamp, so rerunning gives
byte-identical files. Prints the sha256 values that registry.py records.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from svertka.data.formats import read_bytes, read_idx, write_idx  # noqa: E402
from svertka.data.registry import MINI_TEST, MINI_TRAIN, REGISTRY  # noqa: E402

SEED = 20170825  # Fashion-MNIST's release date; any fixed value would do

LICENCE = """\
The files in this folder are a subset of Fashion-MNIST
(https://github.com/zalandoresearch/fashion-mnist), selected by
scripts/make_mini.py: {train} training and {test} test images, an equal number
per class. Fashion-MNIST is distributed under the MIT License:

The MIT License (MIT)

Copyright (c) 2017 Zalando SE

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def balanced_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` random examples of each class, in the original order."""
    perm = np.random.default_rng(seed).permutation(len(labels))
    picked = [perm[labels[perm] == c][:per_class] for c in range(int(labels.max()) + 1)]
    return np.sort(np.concatenate(picked))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default=str(REPO / "src/svertka/data/mini"))
    args = ap.parse_args()
    src, out = Path(args.source), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    full = REGISTRY["fashion-mnist"].idx
    for split, n in (("train", MINI_TRAIN), ("test", MINI_TEST)):
        img_name, lab_name = full[split].images[0], full[split].labels[0]
        images, labels = read_idx(src / img_name), read_idx(src / lab_name)
        keep = balanced_subset(labels, n // 10, SEED)
        for name, arr in ((img_name, images[keep]), (lab_name, labels[keep])):
            write_idx(out / name, arr)
            sha = hashlib.sha256(read_bytes(out / name)).hexdigest()
            print(f"{name:28s} {(out / name).stat().st_size:>9d} bytes  sha256(raw) {sha}")
    (out / "LICENSE").write_text(LICENCE.format(train=MINI_TRAIN, test=MINI_TEST))


if __name__ == "__main__":
    main()
