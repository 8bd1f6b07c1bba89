"""The classical detection baseline: threshold the canvas, label its connected
components, box each one, and let a classifier name each crop.

It is exact on separated items whose visible pixels form one piece, or pieces
whose boxes nest (a component is an item), and fails where items touch (two
items make one component, one box, one class): the CNN detector's job is to
beat it there. Items that fall apart into side-by-side pieces (strappy sandals,
dark coats) give it a box per piece.

Connected components are labelled here, vectorised over a whole batch, as a
parallel union-find: every pixel starts as its own tree; each round, for every
edge between foreground neighbours whose trees differ, the larger root is
hooked under the smaller one, then pointer jumping (parent = parent[parent])
makes every pixel point at its root. Roots only ever get smaller parents, so
no cycle can form; rounds repeat until no edge joins two trees (a few rounds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from svertka.data.canvas import ITEM, bilinear_matrices, resample
from svertka.errors import ShapeError, UsageError

__all__ = ["label_components", "Components", "find_components", "Detections", "detect_components",
           "crop_components", "crop_boxes"]


def _roots(parent: np.ndarray) -> np.ndarray:
    """Pointer jumping: follow parents until every entry names its tree's root."""
    while True:
        up = parent[parent]
        if np.array_equal(up, parent):
            return parent
        parent = up


def label_components(foreground: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Label the connected components of a boolean B x H x W batch.

    Returns (labels, counts): labels int64 B x H x W with 0 for background and
    1..counts[b] per image, numbered in raster order of each component's first pixel.
    """
    fg = np.asarray(foreground, bool)
    if fg.ndim != 3:
        raise ShapeError(f"label_components needs a B x H x W mask, got shape {fg.shape}")
    if connectivity not in (4, 8):
        raise UsageError(f"connectivity is 4 or 8, got {connectivity}")
    b, h, w = fg.shape
    n = int(fg.sum())
    idx = np.full((b, h, w), -1, np.int64)
    idx[fg] = np.arange(n)  # foreground pixels only, numbered in raster order
    # edges between foreground neighbours: right and down, plus both diagonals for 8-connectivity
    pairs = [(np.s_[:, :, :-1], np.s_[:, :, 1:]), (np.s_[:, :-1, :], np.s_[:, 1:, :])]
    if connectivity == 8:
        pairs += [(np.s_[:, :-1, :-1], np.s_[:, 1:, 1:]), (np.s_[:, :-1, 1:], np.s_[:, 1:, :-1])]
    both = [fg[p] & fg[q] for p, q in pairs]
    a = np.concatenate([idx[p][m] for (p, _), m in zip(pairs, both)])
    c = np.concatenate([idx[q][m] for (_, q), m in zip(pairs, both)])
    parent = np.arange(n)
    while len(a):  # hook the larger root under the smaller, compress, drop edges inside one tree
        ra, rc = parent[a], parent[c]
        split = ra != rc
        a, c, ra, rc = a[split], c[split], ra[split], rc[split]
        if not len(a):
            break
        parent[np.maximum(ra, rc)] = np.minimum(ra, rc)  # on repeats any smaller root will do
        parent = _roots(parent)
    # a component's root is its first pixel in raster order: number the roots per image
    roots = np.flatnonzero(parent == np.arange(n))
    image_of_root = np.flatnonzero(fg.ravel())[roots] // (h * w)
    counts = np.bincount(image_of_root, minlength=b)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    number = np.zeros(n, np.int64)
    number[roots] = np.arange(len(roots)) - first[image_of_root] + 1
    labels = np.zeros((b, h, w), np.int64)
    labels[fg] = number[parent]
    return labels, counts


@dataclass
class Components:
    image: np.ndarray  # int64 n: which image each component is in
    number: np.ndarray  # int64 n: its label in that image (1..)
    boxes: np.ndarray  # float32 n x 4, xyxy, x1/y1 exclusive
    pixels: np.ndarray  # int64 n: foreground pixels
    labels: np.ndarray  # int64 B x H x W label map (0: background or a dropped component)


def _describe(lab: np.ndarray, counts: np.ndarray):
    """Per component of a label map: image, number, xyxy box and pixel count, via one
    sort of the labelled pixels and a min/max reduction per component."""
    b = len(lab)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    img_i, yy, xx = np.nonzero(lab)
    comp = offsets[img_i] + lab[img_i, yy, xx] - 1  # global component index
    by_comp = np.argsort(comp, kind="stable")
    comp, yy, xx = comp[by_comp], yy[by_comp], xx[by_comp]
    n = int(counts.sum())
    pixels = np.bincount(comp, minlength=n)
    image = np.repeat(np.arange(b), counts)
    number = np.arange(n) - offsets[image] + 1
    boxes = np.zeros((n, 4), np.float32)
    if len(comp):
        starts = np.concatenate([[0], np.cumsum(pixels)[:-1]])  # every component has a pixel
        boxes = np.stack([np.minimum.reduceat(xx, starts), np.minimum.reduceat(yy, starts),
                          np.maximum.reduceat(xx, starts) + 1, np.maximum.reduceat(yy, starts) + 1],
                         1).astype(np.float32)
    return image, number, boxes, pixels


def _merge_nested(lab: np.ndarray, counts: np.ndarray):
    """Merge every component whose box lies inside another's box of the same image
    into the largest such box's component (a fragment of a dark or strappy item)."""
    image, number, boxes, _ = _describe(lab, counts)
    b, m = len(lab), int(counts.max(initial=0))
    if m < 2:
        return lab, counts
    pad = np.full((b, m, 4), np.nan, np.float32)
    pad[image, number - 1] = boxes
    area = (pad[..., 2] - pad[..., 0]) * (pad[..., 3] - pad[..., 1])
    inner, outer = pad[:, :, None, :], pad[:, None, :, :]  # i inside j
    inside = ((outer[..., 0] <= inner[..., 0]) & (outer[..., 1] <= inner[..., 1])
              & (inner[..., 2] <= outer[..., 2]) & (inner[..., 3] <= outer[..., 3]))
    order = np.arange(m)
    bigger = ((area[:, None, :] > area[:, :, None])
              | ((area[:, None, :] == area[:, :, None]) & (order[None, :] < order[:, None])))
    inside &= bigger  # the same box twice: the first one hosts
    host = np.where(inside.any(2), np.argmax(np.where(inside, area[:, None, :], -1), 2), order[None, :])
    is_host = (host == order[None, :]) & ~np.isnan(area)
    renumber = np.cumsum(is_host, 1)  # host j -> its new number
    new = np.take_along_axis(renumber, host, 1)  # b x m: old number - 1 -> new number
    new = np.concatenate([np.zeros((b, 1), new.dtype), new], 1)  # label 0 stays 0
    return np.take_along_axis(new, lab.reshape(b, -1), 1).reshape(lab.shape), is_host.sum(1)


def find_components(images: np.ndarray, threshold: int = 16, min_pixels: int = 1, bridge: int = 0,
                    merge_nested: bool = True, connectivity: int = 8, chunk: int = 512) -> Components:
    """Boxes of the connected components of ``images > threshold`` (uint8 B x H x W or B x H x W x 1).

    ``merge_nested``: a component whose box lies inside another's joins it
    (fragments of an item split by dark or thin parts). ``bridge`` > 0 joins
    pieces less than 2 * bridge + 1 px apart (the mask is dilated by a
    (2 * bridge + 1)^2 square before labelling; boxes still come from the
    undilated pixels). Components under ``min_pixels`` are dropped. Works
    ``chunk`` images at a time to bound memory.
    """
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ShapeError(f"find_components needs B x H x W (or B x H x W x 1) images, got shape {x.shape}")
    parts = [_find_chunk(x[lo:lo + chunk] > threshold, min_pixels, bridge, merge_nested, connectivity)
             for lo in range(0, max(len(x), 1), chunk)]
    if len(parts) == 1:
        return parts[0]
    starts = np.arange(len(parts)) * chunk
    return Components(np.concatenate([p.image + s for p, s in zip(parts, starts)]),
                      *(np.concatenate([getattr(p, f) for p in parts])
                        for f in ("number", "boxes", "pixels", "labels")))


def _find_chunk(fg, min_pixels, bridge, merge_nested, connectivity) -> Components:
    grown = fg
    for _ in range(bridge):  # separable 3x3 max filter, bridge times
        p = np.pad(grown, ((0, 0), (1, 1), (1, 1)))
        grown = p[:, :-2, 1:-1] | p[:, 1:-1, 1:-1] | p[:, 2:, 1:-1]
        grown = np.pad(grown, ((0, 0), (0, 0), (1, 1)))
        grown = grown[:, :, :-2] | grown[:, :, 1:-1] | grown[:, :, 2:]
    lab, counts = label_components(grown, connectivity)
    if bridge:
        lab = np.where(fg, lab, 0)
    if merge_nested:
        lab, counts = _merge_nested(lab, counts)
    image, number, boxes, pixels = _describe(lab, counts)
    keep = pixels >= max(min_pixels, 1)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gone = np.append(~keep, False)  # dropped components leave the label map; the rest keep their numbers
    lab = np.where(gone[np.where(lab > 0, offsets[:, None, None] + lab - 1, len(keep))], 0, lab)
    return Components(image[keep], number[keep], boxes[keep], pixels[keep], lab)


def crop_components(images: np.ndarray, comps: Components, size: int = ITEM, chunk: int = 512) -> np.ndarray:
    """Each component as a size x size uint8 crop, Fashion-MNIST style: its box
    padded to a square about the box centre, only its own pixels kept (the
    rest black), resampled bilinearly. Returns n x size x size x 1."""
    x = _grey(images)
    return crop_boxes(images, comps.image, comps.boxes, size, chunk,
                      own=lambda img, part: x[img] * (comps.labels[img] == comps.number[part][:, None, None]))


def crop_boxes(images: np.ndarray, image: np.ndarray, boxes: np.ndarray, size: int = ITEM, chunk: int = 512,
               own=None) -> np.ndarray:
    """Box ``i`` of image ``image[i]`` (xyxy) as a size x size uint8 crop: the box
    padded to a square about its centre and resampled bilinearly, n x size x size x 1.
    ``own(img, part)``, if given, returns the chunk's images with what does not belong
    to the box blacked out. Works ``chunk`` boxes at a time to bound memory (a float
    copy of each one's image)."""
    x = _grey(images)
    h, w = x.shape[1:]
    image, boxes = np.asarray(image, np.int64), np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.zeros((len(image), size, size, 1), np.uint8)
    for lo in range(0, len(image), chunk):
        part = slice(lo, lo + chunk)
        img = image[part]
        pixels = x[img] if own is None else own(img, part)
        x0, y0, x1, y1 = boxes[part].T
        side = np.maximum(np.maximum(x1 - x0, y1 - y0), 1.0)
        top, left = (y0 + y1 - side) / 2, (x0 + x1 - side) / 2
        n = len(side)
        rows = bilinear_matrices(top, side / size, h, size, np.full(n, size))
        cols = bilinear_matrices(left, side / size, w, size, np.full(n, size))
        out[part, ..., 0] = np.clip(np.rint(resample(pixels, rows, cols)), 0, 255)
    return out


def _grey(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    return x[..., 0] if x.ndim == 4 else x


@dataclass
class Detections:
    image: np.ndarray  # int64 n
    boxes: np.ndarray  # float32 n x 4, xyxy
    scores: np.ndarray  # float64 n
    labels: np.ndarray  # int64 n, class index


def detect_components(images: np.ndarray, classify, threshold: int = 16, min_pixels: int = 8, bridge: int = 0,
                      merge_nested: bool = True, connectivity: int = 8) -> Detections:
    """The baseline detector: one box per connected component, classed by
    ``classify(crops)``, which takes n x 28 x 28 x 1 uint8 crops (see
    :func:`crop_components`) and returns n x C class probabilities; a box's
    score is its top probability."""
    comps = find_components(images, threshold, min_pixels, bridge, merge_nested, connectivity)
    crops = crop_components(images, comps)
    if len(crops):
        probs = np.asarray(classify(crops), np.float64)
        if probs.ndim != 2 or len(probs) != len(crops):
            raise ShapeError(f"classify must return one row of class probabilities per crop: "
                             f"got {probs.shape} for {len(crops)} crops")
        labels, scores = probs.argmax(1), probs.max(1)
    else:
        labels, scores = np.zeros(0, np.int64), np.zeros(0)
    return Detections(comps.image, comps.boxes, scores, labels.astype(np.int64))
