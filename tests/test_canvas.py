"""Canvas datasets and their COCO layout: layout rules, exact ground truth
(recomputed here pixel by pixel), seeding, splits, bad input, and the export
read back by pycocotools."""
import json
from dataclasses import replace

import numpy as np
import pytest

from svertka.cli import main
from svertka.data import load_dataset
from svertka.data.canvas import (
    CHUNK,
    ITEM,
    KEYPOINT_NAMES,
    TASK_PRESETS,
    CanvasConfig,
    CanvasGenerator,
    bilinear_matrices,
    resize_items,
)
from svertka.data.coco import (
    canvases_to_coco,
    coco_from_dict,
    export_canvases,
    read_coco,
    read_coco_results,
)
from svertka.errors import DataError, UsageError
from svertka.tasks.boxes import iou

DATA = "fashion-mnist-mini"


@pytest.fixture(scope="module")
def test_items():
    return load_dataset(DATA, split="test")


@pytest.fixture(scope="module")
def detect(test_items):
    gen = CanvasGenerator(test_items.images, test_items.labels, test_items.classes, TASK_PRESETS["detect"],
                          name="mini/test")
    return gen, gen.generate(CHUNK, seed=7)


# ------------------------------------------------------------------ layout rules


def test_counts_labels_and_overlap_cap(detect, test_items):
    gen, c = detect
    cfg = gen.config
    assert c.images.shape == (CHUNK, 96, 96, 1) and c.images.dtype == np.uint8
    assert set(np.unique(c.counts)) == set(range(1, 6))  # every count from 1 to 5 occurs
    active = np.arange(cfg.max_items)[None] < c.counts[:, None]
    assert ((c.labels >= 0) == active).all() and ((c.sources >= 0) == active).all()
    assert (c.labels[active] == test_items.labels[c.sources[active]]).all()  # labels are the items' own
    pair = active[:, :, None] & active[:, None, :] & ~np.eye(cfg.max_items, dtype=bool)
    overlap = iou(c.full_boxes[:, :, None].astype(np.float64), c.full_boxes[:, None].astype(np.float64))
    assert overlap[pair].max() <= cfg.max_iou + 1e-12
    assert overlap[pair].max() > 0.1  # the cap allows overlap, and overlaps happen
    sides = np.rint(c.scales[active] * ITEM)
    assert sides.min() >= round(0.75 * ITEM) and sides.max() <= 2 * ITEM
    assert c.touching.any() and not c.touching.all()


def test_masks_are_top_wins_and_threshold_exact(detect):
    gen, c = detect
    thr = gen.config.threshold
    img = c.images[..., 0]
    assert ((img > thr) == (c.masks > 0)).all()  # the union of masks is exactly the bright pixels
    assert (c.masks.max((1, 2)) <= c.counts).all()
    # every item keeps at least min_visible of its silhouette: its visible area is positive and the
    # later (upper) item of an overlapping pair is never hidden by the earlier one
    active = c.labels >= 0
    assert (c.areas[active] > 0).all()
    assert (c.areas[~active] == 0).all()


def _truth_by_hand(image, mask, k):
    """Box, keypoints and area of item k from its mask, pixel by pixel (independent of the generator)."""
    ys, xs = np.nonzero(mask == k + 1)
    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    wts = image[ys, xs].astype(np.float64)
    centre = ((xs + 0.5) * wts).sum() / wts.sum(), ((ys + 0.5) * wts).sum() / wts.sum()
    top = (xs[ys == ys.min()].mean() + 0.5, ys.min() + 0.5)
    bottom = (xs[ys == ys.max()].mean() + 0.5, ys.max() + 0.5)
    left = (xs.min() + 0.5, ys[xs == xs.min()].mean() + 0.5)
    right = (xs.max() + 0.5, ys[xs == xs.max()].mean() + 0.5)
    return box, [centre, top, bottom, left, right], len(xs)


def test_ground_truth_matches_a_pixel_by_pixel_recount(detect):
    _, c = detect
    for i in range(40):
        touching = False
        for k in range(c.counts[i]):
            box, pts, area = _truth_by_hand(c.images[i, ..., 0], c.masks[i], k)
            assert c.boxes[i, k].tolist() == box
            np.testing.assert_allclose(c.keypoints[i, k], pts, atol=1e-4)
            assert c.areas[i, k] == area
            # the keypoints lie inside the box
            assert (c.keypoints[i, k, :, 0] > box[0]).all() and (c.keypoints[i, k, :, 0] < box[2]).all()
            grown = np.zeros((98, 98), bool)
            for dy in range(3):
                for dx in range(3):
                    grown[dy:dy + 96, dx:dx + 96] |= c.masks[i] == k + 1
            others = (c.masks[i] > 0) & (c.masks[i] != k + 1)
            touching |= (grown[1:97, 1:97] & others).any()
        assert c.touching[i] == touching
    assert len(KEYPOINT_NAMES) == c.keypoints.shape[2] == 5


def test_scale_one_pastes_the_item_unchanged(test_items):
    cfg = CanvasConfig(size=40, min_items=1, max_items=1, scale=(1.0, 1.0))
    gen = CanvasGenerator(test_items.images, test_items.labels, test_items.classes, cfg)
    c = gen.generate(30, seed=1)
    for i in range(30):
        src = test_items.images[c.sources[i, 0], ..., 0]
        ys, xs = np.nonzero(src > cfg.threshold)
        x0, y0 = int(c.boxes[i, 0, 0]), int(c.boxes[i, 0, 1])
        dy, dx = y0 - ys.min(), x0 - xs.min()  # where the item's 28x28 frame landed
        frame = c.images[i, dy:dy + 28, dx:dx + 28, 0]
        assert (frame[src > cfg.threshold] == src[src > cfg.threshold]).all()


def test_resize_is_bilinear_with_aligned_centres():
    # a 2x upscale of a ramp: output pixel u reads (u + 0.5) / 2 - 0.5
    ramp = np.tile(np.arange(28, dtype=np.uint8) * 9, (28, 1))[None]
    out = resize_items(ramp, np.array([56]), 56)[0].astype(np.float64)
    src = (np.arange(56) + 0.5) / 2 - 0.5  # -0.25 .. 27.25: the ends blend with the zero outside
    expect = np.interp(src, np.arange(-1, 29), np.concatenate([[0], np.arange(28) * 9.0, [0]]))
    np.testing.assert_allclose(out[5], expect, atol=0.5 + 1e-4)
    assert out[5, -1] == np.rint(0.75 * 243)
    a = bilinear_matrices([0.0], [1.0], 28, 30, [28])
    assert np.allclose(a[0, :28], np.eye(28)) and not a[0, 28:].any()  # scale 1 is the identity


# ----------------------------------------------------------------------- seeding


def test_same_seed_same_canvases_and_windows_agree(test_items):
    cfg = CanvasConfig(size=64, max_items=2)
    gen = CanvasGenerator(test_items.images, test_items.labels, test_items.classes, cfg)
    a = gen.generate(CHUNK + 20, seed=3)
    b = CanvasGenerator(test_items.images, test_items.labels, test_items.classes, cfg).generate(
        30, seed=3, start=CHUNK - 10)
    for name in ("images", "masks", "labels", "boxes", "keypoints"):
        assert np.array_equal(getattr(a, name)[CHUNK - 10:CHUNK + 20], getattr(b, name))
    other = gen.generate(20, seed=4)
    assert not np.array_equal(other.images, a.images[:20])


def test_train_canvases_use_train_items_only():
    train = load_dataset(DATA, split="train")
    gen = CanvasGenerator.from_dataset(DATA, split="train", config=TASK_PRESETS["localize"])
    c = gen.generate(50, seed=0)
    assert c.dataset == f"{DATA}/train" and c.sources[:, 0].max() < len(train)
    assert (train.labels[c.sources[:, 0]] == c.labels[:, 0]).all()
    test = CanvasGenerator.from_dataset(DATA, split="test", config=TASK_PRESETS["localize"]).generate(
        50, seed=0)
    assert test.dataset == f"{DATA}/test" and not np.array_equal(test.images, c.images)


# -------------------------------------------------------------------- bad input


@pytest.mark.parametrize("cfg, words", [
    (CanvasConfig(size=40), "smaller than an item"),
    (CanvasConfig(scale=(2.0, 1.0)), "bad scale range"),
    (CanvasConfig(scale=(0.1, 1.0)), "bad scale range"),
    (CanvasConfig(scale=(float("nan"), 1.0)), "bad scale range"),
    (CanvasConfig(min_items=3, max_items=2), "min_items <= max_items"),
    (CanvasConfig(max_iou=1.5), "max_iou"),
])
def test_bad_configs_get_one_line_errors(test_items, cfg, words):
    with pytest.raises(UsageError, match=words) as e:
        CanvasGenerator(test_items.images, test_items.labels, test_items.classes, cfg)
    assert "\n" not in str(e.value)


def test_more_items_than_fit_is_detected(test_items):
    cfg = CanvasConfig(size=56, min_items=6, max_items=6, scale=(1.5, 2.0), max_iou=0.0)
    gen = CanvasGenerator(test_items.images, test_items.labels, test_items.classes, cfg)
    with pytest.raises(UsageError, match="cannot fit up to 6 items") as e:
        gen.generate(8, seed=0)
    assert "\n" not in str(e.value)


def test_bad_items_and_requests(test_items):
    with pytest.raises(UsageError, match="28x28"):
        CanvasGenerator(np.zeros((4, 32, 32), np.uint8), np.zeros(4), ("a",))
    gen = CanvasGenerator(test_items.images, test_items.labels, test_items.classes)
    for kwargs in ({"n": 0}, {"n": 2, "seed": -1}, {"n": 2, "start": -1}):
        with pytest.raises(UsageError):
            gen.generate(**kwargs)
    with pytest.raises(UsageError, match="train or test split"):
        CanvasGenerator.from_dataset(DATA, split="val")


# --------------------------------------------------------------------- COCO


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' mask decoder under NumPy 2
def test_export_is_read_by_pycocotools_with_the_generators_boxes(tmp_path, detect):
    coco_api = pytest.importorskip("pycocotools.coco")
    _, c = detect
    part = c.subset(slice(0, 25))
    path = export_canvases(part, tmp_path / "out", keypoints=True)
    gt = coco_api.COCO(str(path))
    assert sorted(gt.getImgIds()) == list(range(1, 26))
    assert [cat["name"] for cat in gt.loadCats(gt.getCatIds())] == list(part.classes)
    for i in range(25):
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[i + 1]))
        assert len(anns) == part.counts[i]
        for k, a in enumerate(anns):
            x0, y0, x1, y1 = part.boxes[i, k].tolist()
            assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0]
            assert a["category_id"] == part.labels[i, k] + 1 and a["iscrowd"] == 0
            assert np.array_equal(gt.annToMask(a), part.masks[i] == k + 1)  # RLE decodes to our mask
            assert a["area"] == part.areas[i, k]
            np.testing.assert_allclose(np.reshape(a["keypoints"], (5, 3))[:, :2], part.keypoints[i, k],
                                       atol=1e-5)
    from PIL import Image
    png = np.asarray(Image.open(tmp_path / "out" / "images" / "000003.png"))
    assert np.array_equal(png, part.images[2, ..., 0])
    ours = read_coco(path)
    assert len(ours.ann_boxes) == part.counts.sum() and ours.keypoints.shape == (part.counts.sum(), 5, 3)
    # written in parts (as the CLI streams chunks), the same files
    again = export_canvases([part.subset(slice(0, 10)), part.subset(slice(10, 25))], tmp_path / "parts",
                            keypoints=True)
    assert again.read_text() == path.read_text()
    last = "images/000025.png"
    assert (tmp_path / "parts" / last).read_bytes() == (tmp_path / "out" / last).read_bytes()


def test_cli_export_and_its_errors(tmp_path, capsys):
    out = tmp_path / "det"
    assert main(["data", "export", "canvas", "--task", "points", "--out", str(out), "--n", "6", "--seed", "2",
                 "--data", DATA]) == 0
    d = json.loads((out / "annotations.json").read_text())
    assert len(d["images"]) == 6 and d["images"][0]["width"] == 64 and "keypoints" in d["annotations"][0]
    assert len(list((out / "images").glob("*.png"))) == 6
    gen = CanvasGenerator.from_dataset(DATA, split="test", config=TASK_PRESETS["points"])
    again = gen.generate(6, seed=2)
    assert [a["bbox"] for a in d["annotations"]] == [
        [b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in again.boxes[:, 0].tolist()]
    capsys.readouterr()
    for argv, words in (
        (["--out", str(out)], "not an empty folder"),
        (["--out", str(tmp_path / "x"), "--size", "40"], "smaller than an item"),
        (["--out", str(tmp_path / "y"), "--scale", "2,1"], "bad scale range"),
        (["--out", str(tmp_path / "z"), "--scale", "two"], "LOW,HIGH"),
        (["--out", str(tmp_path / "w"), "--size", "56", "--min-items", "6", "--max-items", "6",
          "--max-iou", "0"], "cannot fit"),
    ):
        assert main(["data", "export", "canvas", "--data", DATA, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err and "Traceback" not in err


_ONE = '{"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [%s]}'


@pytest.mark.parametrize("content, words", [
    ("not json", "not a readable JSON"),
    ("[]", "JSON object"),
    ('{"images": [], "annotations": []}', "'categories'"),
    (_ONE % '{"image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}', "image 2"),
    (_ONE % '{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}', "four finite numbers"),
    (_ONE % '{"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1]}', "category 7"),
    ('{"images": [{"id": "a"}], "categories": [], "annotations": []}', "integer 'id'"),
    (_ONE % '{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 1}', "iscrowd"),
])
def test_malformed_coco_gets_one_line_error(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=words) as e:
        read_coco(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_malformed_results_get_one_line_error(tmp_path, detect):
    gt = coco_from_dict(canvases_to_coco(detect[1].subset(slice(0, 3))))
    path = tmp_path / "res.json"
    for content, words in (('{"a": 1}', "JSON list"),
                           ('[{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
                            "image 99"),
                           ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]', "'score'"),
                           ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 1}]',
                            "negative")):
        path.write_text(content)
        with pytest.raises(DataError, match=words) as e:
            read_coco_results(path, gt)
        assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="no such"):
        read_coco(tmp_path / "missing.json")


def test_task_presets_follow_the_issue():
    assert (TASK_PRESETS["detect"].size, TASK_PRESETS["detect"].max_items) == (96, 5)
    assert (TASK_PRESETS["points"].size, TASK_PRESETS["points"].max_items) == (64, 1)
    assert replace(TASK_PRESETS["localize"], size=80).check().size == 80
