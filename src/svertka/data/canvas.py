"""Canvas datasets: real Fashion-MNIST (or MNIST) items on a larger black canvas,
with exact ground truth per item. The lecture's "other CV tasks" (points,
box regression, detection, segmentation) train and are scored on these.

    gen = CanvasGenerator.from_dataset(split="test", config=CanvasConfig(size=96, max_items=5))
    c = gen.generate(1000, seed=0)       # Canvases: images, masks, labels, boxes, keypoints

How a canvas is made (all of it batched over canvases; the only Python loops
run over the item *slots* of a canvas, at most ``max_items``, and over redraw rounds):

* **Items** come from one split only: training canvases from training images,
  test canvases from test images. Each canvas holds ``min_items..max_items``
  items (uniform), drawn uniformly with replacement from the split.
* **Scale:** each item is resized to ``round(28 * s)`` px, ``s`` uniform in
  ``scale`` (0.75x-2x by default), by a bilinear resample written here in NumPy
  as two small matrix products per item (pixel centres aligned as in Pillow
  and torch's ``align_corners=False``, zero outside the 28x28 image; no
  antialiasing, so below 1x it may alias slightly), then rounded to uint8.
* **Position:** uniform, with the whole resized item inside the canvas.
* **Silhouette:** an item's pixels brighter than ``threshold`` (uint8 value).
  Boxes, masks, keypoints and the overlap cap are all defined on silhouettes.
* **Overlap cap:** the silhouette boxes of any two items have IoU <= ``max_iou``;
  each slot tries 64 random positions at once and takes the first that passes.
* **Compositing, "top wins":** items are drawn in order, later ones on top. A
  pixel belongs to the top-most item whose silhouette covers it and shows that
  item's value; a pixel no silhouette covers shows the brightest faint
  (below-threshold) value there, so the bilinear halo stays but belongs to no
  one. Hence ``canvas > threshold`` is exactly the union of the items' masks.
* **Visibility:** every item keeps at least ``min_visible`` of its silhouette
  pixels after occlusion.
* **Redraws:** a canvas whose items cannot all be placed, or where an item is
  hidden too much, is drawn again with new scales and positions (its item count
  and items stay), so crowded canvases lean towards smaller scales. After
  ``MAX_ROUNDS`` failed rounds it is an error: more items than fit (after
  ``HOPELESS_ROUNDS`` already, when no canvas of the chunk has fitted at all).
* **Seeded:** canvases come in chunks of ``CHUNK``; chunk ``c`` is drawn from
  ``numpy.random.default_rng([seed, c])``, so canvas ``i`` depends only on the
  seed, ``i``, the split's images and the config.

Ground truth per item (slots past a canvas's count hold label -1 and zeros):

* ``labels``: the class index; ``sources``: the index of the item in the split;
* ``boxes``: xyxy tight box of the *visible* pixels, x1/y1 exclusive (pixel
  column ``c`` spans [c, c + 1));
* ``keypoints``: (x, y) of, in ``KEYPOINT_NAMES`` order, the intensity-weighted
  centre of mass of the visible pixels, then the top-, bottom-, left- and
  right-most visible pixel; where several pixels share the extreme row or
  column, the centre of them (as ExtremeNet does). Pixel centres are at +0.5;
* ``masks``: per canvas pixel, 0 for background, else 1 + the index of the
  item that owns it (top wins);
* ``areas``: visible pixel count; ``touching``: per canvas, whether two
  items' masks overlap or are 8-neighbours;
* ``full_boxes``: the box of the whole silhouette, hidden parts included (the
  overlap cap holds between these).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from svertka.errors import DataError, UsageError
from svertka.tasks.boxes import iou

__all__ = ["CanvasConfig", "Canvases", "CanvasGenerator", "TASK_PRESETS", "KEYPOINT_NAMES", "ITEM",
           "CHUNK", "MAX_ROUNDS", "MAX_SIZE", "MAX_ITEMS", "resize_items", "bilinear_matrices", "resample",
           "find_items_dataset"]

ITEM = 28  # side of a Fashion-MNIST / MNIST image
KEYPOINT_NAMES = ("center", "top", "bottom", "left", "right")
CHUNK = 256  # canvases drawn from one generator
MAX_ROUNDS = 50  # redraws before a layout counts as impossible
HOPELESS_ROUNDS = 10  # ... or this many, when not one canvas of the chunk has fitted yet
TRIES = 64  # candidate positions per item slot and round
MIN_ITEM_PIXELS = 16  # pool items with fewer silhouette pixels (at 28x28) are left out
MAX_SIZE = 1024  # px: a chunk of CHUNK canvases takes ~8 bytes a pixel while drawn (2 GB at 1024)
MAX_ITEMS = 255  # the masks number an item's pixels in one byte


@dataclass(frozen=True)
class CanvasConfig:
    size: int = 96
    min_items: int = 1
    max_items: int = 5
    scale: tuple[float, float] = (0.75, 2.0)
    max_iou: float = 0.3
    threshold: int = 16  # uint8 value a silhouette pixel must exceed
    min_visible: float = 0.5  # fraction of its silhouette an item keeps after occlusion

    @property
    def patch(self) -> int:
        """Side of the largest resized item."""
        return item_side(self.scale[1])

    def check(self) -> CanvasConfig:
        """Raise a one-line UsageError for a config no canvas can satisfy."""
        if not (isinstance(self.size, (int, np.integer)) and 1 <= self.size <= MAX_SIZE):
            raise UsageError(f"canvas size must be an integer from 1 to {MAX_SIZE} px "
                             f"(canvases are drawn {CHUNK} at a time, in memory), got {self.size!r}")
        if not 1 <= self.min_items <= self.max_items <= MAX_ITEMS:
            raise UsageError(f"items per canvas: need 1 <= min_items <= max_items <= {MAX_ITEMS}, "
                             f"got {self.min_items}..{self.max_items}")
        lo, hi = self.scale
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.25 <= lo <= hi):
            raise UsageError(f"bad scale range {lo}..{hi}: need 0.25 <= low <= high "
                             f"(items of at least 7 px), e.g. 0.75,2")
        if self.patch > self.size:
            raise UsageError(f"a {self.size}x{self.size} canvas is smaller than an item at scale {hi} "
                             f"({self.patch} px); use a canvas of at least {self.patch} px "
                             f"or a smaller maximum scale")
        if not 0.0 <= self.max_iou <= 1.0:
            raise UsageError(f"max_iou must be in [0, 1], got {self.max_iou}")
        if not 0 <= self.threshold < 255:
            raise UsageError(f"threshold must be a uint8 value in 0..254, got {self.threshold}")
        if not 0.0 < self.min_visible <= 1.0:
            raise UsageError(f"min_visible must be in (0, 1], got {self.min_visible}")
        return self


# The three tasks: a 64x64 canvas with one item for points and localize,
# 96x96 with 1-5 items for detect.
TASK_PRESETS = {
    "points": CanvasConfig(size=64, min_items=1, max_items=1),
    "localize": CanvasConfig(size=64, min_items=1, max_items=1),
    "detect": CanvasConfig(size=96, min_items=1, max_items=5),
}


def item_side(scale) -> np.ndarray | int:
    """Side in px of an item resized by ``scale``."""
    side = np.maximum(np.rint(np.asarray(scale) * ITEM), 1).astype(np.int64)
    return int(side) if side.ndim == 0 else side


@dataclass
class Canvases:
    """A batch of canvases with their ground truth (see the module docstring)."""

    images: np.ndarray  # uint8 N x H x W x 1
    masks: np.ndarray  # uint8 N x H x W: 0 background, k = item k-1
    labels: np.ndarray  # int64 N x K, -1 past the count
    boxes: np.ndarray  # float32 N x K x 4, xyxy
    keypoints: np.ndarray  # float32 N x K x 5 x 2, (x, y)
    areas: np.ndarray  # int64 N x K, visible pixels
    counts: np.ndarray  # int64 N
    touching: np.ndarray  # bool N
    sources: np.ndarray  # int64 N x K, index into the split's images
    scales: np.ndarray  # float32 N x K, the item's side / 28
    full_boxes: np.ndarray  # float32 N x K x 4, xyxy box of the whole silhouette, occluded parts too
    classes: tuple[str, ...] = ()
    config: CanvasConfig = field(default_factory=CanvasConfig)
    dataset: str = ""  # the items' dataset and split, e.g. "fashion-mnist-mini/test"

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> Canvases:
        """Canvases at ``index`` (a slice, an index array or a boolean mask)."""
        arrays = {k: getattr(self, k)[index] for k in _ARRAY_FIELDS}
        return Canvases(**arrays, classes=self.classes, config=self.config, dataset=self.dataset)

    @staticmethod
    def concat(parts: list[Canvases]) -> Canvases:
        first = parts[0]
        arrays = {k: np.concatenate([getattr(p, k) for p in parts]) for k in _ARRAY_FIELDS}
        return Canvases(**arrays, classes=first.classes, config=first.config, dataset=first.dataset)

    def objects(self, i: int) -> list[dict]:
        """The items of canvas ``i`` as plain dicts (label, class, box, keypoints, area)."""
        out = []
        for k in range(int(self.counts[i])):
            out.append({"label": int(self.labels[i, k]), "class": self.classes[self.labels[i, k]],
                        "box": self.boxes[i, k].tolist(), "keypoints": self.keypoints[i, k].tolist(),
                        "area": int(self.areas[i, k]), "source": int(self.sources[i, k])})
        return out


_ARRAY_FIELDS = ("images", "masks", "labels", "boxes", "keypoints", "areas", "counts", "touching", "sources",
                 "scales", "full_boxes")


def bilinear_matrices(start, step, n_src: int, n_out: int, n_valid) -> np.ndarray:
    """K x n_out x n_src bilinear sampling matrices: output pixel u (u < n_valid[k])
    reads source coordinate start[k] + (u + 0.5) * step[k] - 0.5 (pixel centres
    aligned, as Pillow and torch's ``align_corners=False``); the source is zero
    outside [0, n_src). Rows from n_valid on are zero."""
    start, step, n_valid = (np.asarray(v, np.float64).reshape(-1) for v in (start, step, n_valid))
    k = len(start)
    u = np.arange(n_out)
    src = start[:, None] + (u[None, :] + 0.5) * step[:, None] - 0.5  # K x n_out
    i0 = np.floor(src)
    w = src - i0
    live = u[None, :] < n_valid[:, None]
    # columns 0 and n_src + 1 stand for "outside" and are dropped
    col0 = (np.clip(i0, -1, n_src) + 1).astype(np.intp)
    col1 = (np.clip(i0 + 1, -1, n_src) + 1).astype(np.intp)
    a = np.zeros((k, n_out, n_src + 2), np.float32)
    np.put_along_axis(a, col0[..., None], ((1 - w) * live)[..., None].astype(np.float32), 2)
    # two taps land in one column only when both are outside; adding keeps the weights exact
    a += np.eye(n_src + 2, dtype=np.float32)[col1] * (w * live)[..., None].astype(np.float32)
    return a[:, :, 1:-1]


def resample(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear resampling of K images (K x H x W) as two matrix products per image,
    A_rows @ X @ A_cols.T (see :func:`bilinear_matrices`); float32 out."""
    return rows @ images.astype(np.float32) @ cols.transpose(0, 2, 1)


@functools.lru_cache(maxsize=1024)
def _item_matrix(side: int, s: int, patch: int) -> np.ndarray:
    """The patch x s bilinear matrix that resizes an s x s item to ``side`` px (cached:
    only a few dozen sides occur)."""
    a = bilinear_matrices([0.0], [s / side], s, patch, [side])[0]
    a.flags.writeable = False
    return a


def resize_items(items: np.ndarray, sides: np.ndarray, patch: int) -> np.ndarray:
    """Resize K square uint8 items (K x s x s) to ``sides[k]`` px each, returned in a
    zero-padded K x patch x patch uint8 array (top-left aligned).

    Resizing is linear: an item X becomes A @ X @ A.T with A the patch x s
    bilinear matrix of its side. Items of one side share A, so each side is two
    large GEMMs over all its items (a loop over the distinct sides, never over items).
    """
    k, s = items.shape[0], items.shape[1]
    sides = np.asarray(sides)
    out = np.zeros((k, patch, patch), np.uint8)
    x = items.astype(np.float32)
    for side in np.unique(sides):
        sel = np.flatnonzero(sides == side)
        n = len(sel)
        a = _item_matrix(int(side), s, patch)  # patch x s
        rows = a @ x[sel].transpose(1, 0, 2).reshape(s, n * s)  # patch x (n * s)
        both = rows.reshape(patch, n, s).transpose(1, 0, 2).reshape(n * patch, s) @ a.T
        out[sel] = np.rint(both.reshape(n, patch, patch))
    return out


def _extremes(any_: np.ndarray):
    """First and last True index along the last axis (an all-False row gives 0, -1)."""
    n = any_.shape[-1]
    has = any_.any(-1)
    first = np.where(has, np.argmax(any_, -1), 0)
    last = np.where(has, n - 1 - np.argmax(any_[..., ::-1], -1), -1)
    return first, last


def _silhouette_boxes(sil: np.ndarray) -> np.ndarray:
    """xyxy tight boxes (x1/y1 exclusive) of boolean ... x S x S silhouettes; empty ones give zeros."""
    y0, y1 = _extremes(sil.any(-1))
    x0, x1 = _extremes(sil.any(-2))
    return np.stack([x0, y0, x1 + 1, y1 + 1], -1).astype(np.float64)


def find_items_dataset(root=None) -> str:
    """The dataset canvases use by default: the full Fashion-MNIST when its files
    are found locally (no download), else the packaged fashion-mnist-mini."""
    from svertka.data.datasets import load_dataset

    try:
        load_dataset("fashion-mnist", root=root, split="test", download=False)
        return "fashion-mnist"
    except DataError:
        return "fashion-mnist-mini"


class CanvasGenerator:
    """Draws canvases from one split's item images (uint8 P x 28 x 28) and labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes, config: CanvasConfig | None = None,
                 name: str = ""):
        self.config = (config or CanvasConfig()).check()
        images = np.asarray(images)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
            raise UsageError(f"canvas items must be uint8 P x S x S (or P x S x S x 1) images, "
                             f"got {images.dtype} {images.shape}")
        if images.shape[1] != ITEM:
            raise UsageError(f"canvas items must be {ITEM}x{ITEM} (MNIST-style), "
                             f"got {images.shape[1]}x{images.shape[2]}")
        keep = (images > self.config.threshold).sum((1, 2)) >= MIN_ITEM_PIXELS
        self.items = np.ascontiguousarray(images[keep])
        self.item_ids = np.flatnonzero(keep)  # back to the split's indices
        self.item_labels = np.asarray(labels, np.int64)[keep]
        if not len(self.items):
            raise DataError(f"{name or 'the dataset'}: no item has {MIN_ITEM_PIXELS} pixels "
                            f"above {self.config.threshold}")
        self.classes = tuple(classes)
        self.name = name
        self._cache: tuple[tuple, Canvases] | None = None

    @classmethod
    def from_dataset(cls, data: str = "auto", split: str = "train", config: CanvasConfig | None = None,
                     root=None):
        """Items from a dataset split: ``data`` is "auto" (full Fashion-MNIST when found,
        else fashion-mnist-mini), or a 28x28 grey dataset name (fashion-mnist, mnist, ...)."""
        from svertka.data.datasets import load_dataset

        if split not in ("train", "test"):
            raise UsageError(f"canvases are drawn from the train or test split, got {split!r}")
        name = find_items_dataset(root) if data == "auto" else data
        ds = load_dataset(name, root=root, split=split)
        if ds.image_shape != (ITEM, ITEM, 1):
            raise UsageError(f"{name} has {ds.image_shape} images; canvases need 28x28 grey items "
                             f"(fashion-mnist, fashion-mnist-mini or mnist)")
        return cls(ds.images, ds.labels, ds.classes, config, name=f"{name}/{split}")

    # ------------------------------------------------------------------ public

    def generate(self, n: int, seed: int = 0, start: int = 0) -> Canvases:
        """Canvases ``start .. start + n - 1`` of the stream fixed by ``seed``."""
        if n < 1 or start < 0:
            raise UsageError(f"need n >= 1 canvases from start >= 0, got n={n}, start={start}")
        if not (isinstance(seed, (int, np.integer)) and seed >= 0):
            raise UsageError(f"the canvas seed must be a non-negative integer, got {seed!r}")
        first, last = start // CHUNK, (start + n - 1) // CHUNK
        parts = [self._chunk(int(seed), c) for c in range(first, last + 1)]
        out = parts[0] if len(parts) == 1 else Canvases.concat(parts)
        lo = start - first * CHUNK
        return out.subset(slice(lo, lo + n))

    # ---------------------------------------------------------------- drawing

    def _chunk(self, seed: int, c: int) -> Canvases:
        key = (seed, c)
        if self._cache is not None and self._cache[0] == key:  # consecutive batches share a chunk
            return self._cache[1]
        out = self._draw(np.random.default_rng([seed, c]), CHUNK)
        self._cache = (key, out)
        return out

    def _draw(self, rng: np.random.Generator, b: int) -> Canvases:
        cfg = self.config
        k, side = cfg.max_items, cfg.size
        counts = rng.integers(cfg.min_items, cfg.max_items + 1, b)
        active = np.arange(k)[None, :] < counts[:, None]
        picks = rng.integers(0, len(self.items), (b, k))
        images = np.zeros((b, side, side), np.uint8)
        masks = np.zeros((b, side, side), np.uint8)
        scales = np.zeros((b, k), np.float32)
        full = np.zeros((b, k, 4), np.float32)
        todo = np.arange(b)
        for rounds in range(1, MAX_ROUNDS + 1):
            sides = item_side(rng.uniform(cfg.scale[0], cfg.scale[1], (len(todo), k)))
            ok, img, own, placed = self._layout(rng, picks[todo], sides, active[todo])
            done = todo[ok]
            images[done], masks[done], scales[done], full[done] = img, own, sides[ok] / ITEM, placed
            todo = todo[~ok]
            if not len(todo) or (rounds == HOPELESS_ROUNDS and len(todo) == b):
                break
        if len(todo):
            raise UsageError(
                f"cannot fit up to {cfg.max_items} items at scale {cfg.scale[0]}-{cfg.scale[1]} "
                f"on a {side}x{side} canvas with box IoU <= {cfg.max_iou} "
                f"and {cfg.min_visible:.0%} of each item visible "
                f"({len(todo)} of {b} canvases failed {rounds} redraws); use a larger canvas, fewer items, "
                f"smaller scales or a higher overlap cap")
        truth = _ground_truth(images, masks, k, cfg.threshold)
        labels = np.where(active, self.item_labels[picks], -1)
        sources = np.where(active, self.item_ids[picks], -1)
        return Canvases(images=images[..., None], masks=masks, labels=labels, sources=sources,
                        scales=np.where(active, scales, 0).astype(np.float32), counts=counts.astype(np.int64),
                        full_boxes=full * active[..., None],
                        classes=self.classes, config=cfg, dataset=self.name, **truth)

    def _layout(self, rng, picks, sides, active):
        """One round for m canvases: place, then composite those placed. Returns ok (m,)
        and the images, masks and silhouette boxes of the canvases that are ok."""
        cfg = self.config
        m, k = picks.shape
        p, size = cfg.patch, cfg.size
        patches = np.zeros((m, k, p, p), np.uint8)
        patches[active] = resize_items(self.items[picks[active]], sides[active], p)  # empty slots stay black
        sil = patches > cfg.threshold
        rel = _silhouette_boxes(sil)  # m x k x 4, relative to the patch
        sil_px = sil.sum((2, 3))
        ok = ((sil_px > 0) | ~active).all(1)
        # positions, slot by slot, TRIES candidates at once for every canvas
        tops, lefts = np.zeros((m, k), np.intp), np.zeros((m, k), np.intp)
        placed = np.zeros((m, k, 4))
        for j in range(k):
            span = (size - sides[:, j] + 1)[:, None]
            ty = (rng.random((m, TRIES)) * span).astype(np.intp)
            tx = (rng.random((m, TRIES)) * span).astype(np.intp)
            cand = rel[:, None, j, :] + np.stack([tx, ty, tx, ty], -1)  # m x TRIES x 4
            fits = np.ones((m, TRIES), bool)
            if j:
                overlap = iou(cand[:, :, None, :], placed[:, None, :j, :])  # m x TRIES x j
                fits = ((overlap <= cfg.max_iou) | ~active[:, None, :j]).all(2)
            first = np.argmax(fits, 1)
            tops[:, j], lefts[:, j] = ty[np.arange(m), first], tx[np.arange(m), first]
            placed[:, j] = cand[np.arange(m), first]
            ok &= fits.any(1) | ~active[:, j]
        # composite the placed canvases, bottom slot first: a silhouette pixel of a later
        # item wins. Each slot reads and writes back one p x p window per canvas, through
        # a writeable sliding-window view (windows of different canvases never share memory).
        go = np.flatnonzero(ok)
        patches, sil, sil_px, active, tops, lefts, placed = (
            a[go] for a in (patches, sil, sil_px, active, tops, lefts, placed))
        m = len(go)
        pad = size + p  # room for the zero padding of every patch
        val, faint, own = (np.zeros((m, pad, pad), np.uint8) for _ in range(3))
        views = [np.lib.stride_tricks.sliding_window_view(a, (p, p), axis=(1, 2), writeable=True)
                 for a in (val, faint, own)]
        for j in range(k):
            on = np.flatnonzero(active[:, j])  # canvases with an item in slot j
            at = (on, tops[on, j], lefts[on, j])
            s, patch = sil[on, j], patches[on, j]
            # masks by multiplication, not np.where: no branch per pixel, several times faster
            keep = ~s
            views[0][at] = views[0][at] * keep + patch * s
            views[1][at] = np.maximum(views[1][at], patch * keep)
            views[2][at] = views[2][at] * keep + np.uint8(j + 1) * s
        val, faint, own = (a[:, :size, :size] for a in (val, faint, own))
        mine = own > 0
        images = val * mine + faint * ~mine
        visible = np.stack([(own == j + 1).sum((1, 2)) for j in range(k)], 1)
        seen = ((visible >= cfg.min_visible * sil_px) | ~active).all(1)
        ok[go] = seen
        return ok, images[seen], own[seen], placed[seen]


def _ground_truth(images: np.ndarray, masks: np.ndarray, k: int, threshold: int) -> dict:
    """Boxes, keypoints, areas and the touching flag from composited canvases,
    vectorised over canvases, one item slot at a time: per slot only row and
    column reductions of the item's mask and of its masked image (integers,
    so the centre of mass is exact before the final division)."""
    b, h, w = masks.shape
    ys, xs = np.arange(h) + 0.5, np.arange(w) + 0.5
    boxes = np.zeros((b, k, 4), np.float32)
    points = np.zeros((b, k, len(KEYPOINT_NAMES), 2), np.float32)
    areas = np.zeros((b, k), np.int64)
    bi = np.arange(b)

    def mean_along(line, coords):  # mean coordinate of the item's pixels in each b x n line
        return (line @ coords) / np.maximum(line.sum(1), 1)

    for j in range(k):
        vis = masks == j + 1  # b x h x w
        row_n, col_n = vis.sum(2, dtype=np.int32), vis.sum(1, dtype=np.int32)  # pixels per row / column
        areas[:, j] = row_n.sum(1)
        has = areas[:, j] > 0
        y0, y1 = _extremes(row_n > 0)
        x0, x1 = _extremes(col_n > 0)
        boxes[:, j] = np.stack([x0, y0, x1 + 1, y1 + 1], -1) * has[:, None]
        lit = images * vis
        row_mass, col_mass = lit.sum(2, dtype=np.int64), lit.sum(1, dtype=np.int64)
        total = np.maximum(row_mass.sum(1), 1)
        top, bottom = vis[bi, np.maximum(y0, 0)], vis[bi, np.maximum(y1, 0)]  # b x w: the extreme rows
        # b x h: the extreme columns
        left, right = vis[bi, :, np.maximum(x0, 0)], vis[bi, :, np.maximum(x1, 0)]
        pts = [(col_mass @ xs / total, row_mass @ ys / total),
               (mean_along(top, xs), y0 + 0.5), (mean_along(bottom, xs), y1 + 0.5),
               (x0 + 0.5, mean_along(left, ys)), (x1 + 0.5, mean_along(right, ys))]
        points[:, j] = np.stack([np.stack(p, -1) for p in pts], 1) * has[:, None, None]
    touching = np.zeros(b, bool)
    for a, c in ((masks[:, :, :-1], masks[:, :, 1:]), (masks[:, :-1, :], masks[:, 1:, :]),
                 (masks[:, :-1, :-1], masks[:, 1:, 1:]), (masks[:, :-1, 1:], masks[:, 1:, :-1])):
        touching |= ((a > 0) & (c > 0) & (a != c)).any((1, 2))
    return {"boxes": boxes, "keypoints": points, "areas": areas, "touching": touching}
