"""Task geometry and scores: boxes, NMS against a brute-force reference, our
COCO box AP against pycocotools' COCOeval (to 1e-6), keypoint and localisation
metrics on hand-computed cases, and the connected-components baseline."""
import contextlib
import io
from collections import deque

import numpy as np
import pytest

from svertka.data import load_dataset
from svertka.data.canvas import TASK_PRESETS, CanvasConfig, CanvasGenerator
from svertka.data.coco import (
    canvases_to_coco,
    coco_from_dict,
    coco_results,
    export_canvases,
)
from svertka.errors import ShapeError
from svertka.tasks import (
    batched_nms,
    box_iou,
    cxcywh_to_xyxy,
    evaluate_coco_files,
    evaluate_detections,
    generalized_box_iou,
    giou,
    iou,
    keypoint_metrics,
    localization_metrics,
    nms,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)
from svertka.tasks.baseline import (
    crop_components,
    detect_components,
    find_components,
    label_components,
)

DATA = "fashion-mnist-mini"


# ------------------------------------------------------------------------- boxes


def test_box_formats_round_trip():
    b = np.random.default_rng(0).uniform(0, 50, (20, 4))
    b[:, 2:] += b[:, :2]
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(b)), b)
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b)
    assert xyxy_to_xywh(np.array([1.0, 2, 4, 7])).tolist() == [1, 2, 3, 5]
    assert xyxy_to_cxcywh(np.array([0.0, 0, 4, 2])).tolist() == [2, 1, 4, 2]


def test_iou_and_giou_by_hand():
    a, b = np.array([0.0, 0, 2, 2]), np.array([1.0, 1, 3, 3])
    assert iou(a, b) == pytest.approx(1 / 7)  # intersection 1, union 4 + 4 - 1
    assert iou(a, a) == pytest.approx(1.0)
    assert giou(a, b) == pytest.approx(1 / 7 - (9 - 7) / 9)  # hull 3x3
    c, d = np.array([0.0, 0, 1, 1]), np.array([2.0, 0, 3, 1])
    assert iou(c, d) == 0 and giou(c, d) == pytest.approx(-1 / 3)  # disjoint: hull 3, union 2
    boxes = np.array([a, b, c, d])
    assert box_iou(boxes, boxes[:2]).shape == (4, 2)
    np.testing.assert_allclose(np.diag(generalized_box_iou(boxes, boxes)), 1.0)
    np.testing.assert_allclose(box_iou(boxes, boxes)[0, 1], 1 / 7)


def test_giou_works_on_torch_tensors_with_gradients():
    torch = pytest.importorskip("torch")
    a = torch.tensor([[0.0, 0, 1, 1]], requires_grad=True)
    b = torch.tensor([[2.0, 0, 3, 1]])
    loss = (1 - giou(a, b)).sum()
    loss.backward()
    assert loss.item() == pytest.approx(4 / 3)
    assert a.grad is not None and a.grad[0, 2] < 0  # growing the box towards the target helps


# --------------------------------------------------------------------------- NMS


def _nms_reference(boxes, scores, thr, classes=None):
    """Textbook greedy NMS, one box at a time, plain Python floats."""
    def overlap(p, q):
        w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
        h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        inter = w * h
        union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(overlap(boxes[i], boxes[j]) <= thr
               for j in keep if classes is None or classes[i] == classes[j]):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(6))
def test_nms_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    xy = rng.uniform(0, 60, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(3, 30, (n, 2))], 1)
    scores = rng.random(n) if seed % 2 else np.round(rng.random(n), 1)  # odd seeds: many tied scores
    classes = rng.integers(0, 3, n)
    for thr in (0.3, 0.5, 0.7):
        assert nms(boxes, scores, thr).tolist() == _nms_reference(boxes.tolist(), scores.tolist(), thr)
        assert batched_nms(boxes, scores, classes, thr).tolist() == _nms_reference(
            boxes.tolist(), scores.tolist(), thr, classes.tolist())


def test_nms_edge_cases():
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    with pytest.raises(ShapeError):
        nms(np.zeros((3, 4)), np.zeros(2))


# ------------------------------------------------------------------ COCO box AP


def _cocoeval(gt_dict, results):
    """pycocotools' COCOeval on a ground-truth dict and a results list."""
    coco = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco.COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(results) if results else None
        if dt is None:
            return None
        e = cocoeval.COCOeval(gt, dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def _ours(gt_dict, results):
    gt = coco_from_dict(gt_dict)
    r = np.array([[x["image_id"], x["category_id"]] for x in results], np.int64).reshape(-1, 2)
    return evaluate_detections(gt.ann_image_ids, gt.ann_category_ids, gt.ann_boxes, r[:, 0], r[:, 1],
                               np.array([x["bbox"] for x in results]).reshape(-1, 4),
                               np.array([x["score"] for x in results]), image_ids=gt.image_ids,
                               category_ids=gt.category_ids)


def _assert_agree(gt_dict, results):
    e = _cocoeval(gt_dict, results)
    m = _ours(gt_dict, results)
    assert (abs(m.map - e.stats[0]) < 1e-6 and abs(m.map50 - e.stats[1]) < 1e-6
            and abs(m.map75 - e.stats[2]) < 1e-6)
    np.testing.assert_allclose(m.precision, e.eval["precision"][:, :, :, 0, 2], atol=1e-6)
    np.testing.assert_allclose(m.recall, e.eval["recall"][:, :, 0, 2], atol=1e-6)
    for k in range(len(m.category_ids)):
        p = e.eval["precision"][:, :, k, 0, 2]
        ref = p[p > -1].mean() if (p > -1).any() else np.nan
        np.testing.assert_allclose(m.per_class[k], ref, atol=1e-6)
    return m


def _random_ground_truth(rng, n_images=25, n_cats=4):
    images = [{"id": i, "width": 100, "height": 100} for i in range(1, n_images + 1)]
    anns = []
    for im in images[:-2]:  # the last two images have no objects
        for _ in range(rng.integers(0, 6)):
            x, y = rng.uniform(0, 80, 2)
            w, h = rng.uniform(2, 40, 2)
            anns.append({"id": len(anns) + 1, "image_id": im["id"],
                         "category_id": int(rng.integers(1, n_cats)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, n_cats + 1)]  # the last category has no objects
    return {"images": images, "annotations": anns, "categories": cats}


def _predictions(rng, gt, tie_scores=False, many=False):
    """Jittered copies of ground truth (some relabelled or duplicated) plus false positives."""
    res = []
    n_cats = len(gt["categories"])
    for a in gt["annotations"]:
        for _ in range(rng.integers(0, 3)):
            x, y, w, h = a["bbox"]
            j = rng.normal(0, 0.1 * max(w, h), 4)
            cat = a["category_id"] if rng.random() < 0.85 else int(rng.integers(1, n_cats + 1))
            res.append({"image_id": a["image_id"], "category_id": cat,
                        "bbox": [x + j[0], y + j[1], max(w + j[2], 0.5), max(h + j[3], 0.5)],
                        "score": float(np.clip(1 - abs(j).mean() / 10 + rng.normal(0, 0.1), 0, 1))})
    for _ in range(len(gt["annotations"])):
        x, y = rng.uniform(0, 80, 2)
        res.append({"image_id": int(rng.integers(1, len(gt["images"]) + 1)),
                    "category_id": int(rng.integers(1, n_cats + 1)),
                    "bbox": [x, y, *rng.uniform(2, 30, 2)], "score": float(rng.random() * 0.6)})
    if many:  # 130 detections of one class on one image: the 100-per-image cap matters
        a = gt["annotations"][0]
        for _ in range(130):
            x, y, w, h = a["bbox"]
            res.append({"image_id": a["image_id"], "category_id": a["category_id"],
                        "bbox": [x + rng.normal(0, 3), y + rng.normal(0, 3), w, h],
                        "score": float(rng.random())})
    if tie_scores:
        for r in res:
            r["score"] = round(r["score"], 1)
    rng.shuffle(res)
    return res


@pytest.mark.parametrize("seed", range(5))
def test_coco_ap_equals_pycocotools_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    gt = _random_ground_truth(rng)
    m = _assert_agree(gt, _predictions(rng, gt, tie_scores=seed % 2 == 1, many=seed == 4))
    assert np.isnan(m.per_class[-1])  # no ground truth: no AP
    assert 0 < m.map < m.map50 <= 1


def test_coco_ap_equals_pycocotools_on_canvases(tmp_path):
    gen = CanvasGenerator.from_dataset(DATA, split="test", config=TASK_PRESETS["detect"])
    c = gen.generate(60, seed=11)
    gt = canvases_to_coco(c)
    rng = np.random.default_rng(1)
    res = _predictions(rng, gt, many=True)
    m = _assert_agree(gt, res)
    exact = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
             for a in gt["annotations"]]
    perfect = _assert_agree(gt, exact)
    assert perfect.map == pytest.approx(1.0) and m.map < 1
    # the same through files, as `svertka eval --coco-results` will read them
    path = export_canvases(c, tmp_path / "canvases")
    (tmp_path / "res.json").write_text(__import__("json").dumps(res))
    from_files, names = evaluate_coco_files(path, tmp_path / "res.json")
    assert from_files.map == pytest.approx(m.map, abs=1e-12) and names[1] == c.classes[0]
    assert set(from_files.as_dict(names)["per_class_AP"]) == set(c.classes)


def test_baseline_detections_scored_through_coco_results():
    """The baseline's boxes, written as COCO results, scored by us and by COCOeval alike;
    with the true class per box (an oracle classifier) separated canvases score mAP 1."""
    gen = CanvasGenerator.from_dataset(DATA, split="test", config=TASK_PRESETS["detect"])
    c = gen.generate(120, seed=4)
    truth = {}  # (canvas, box) -> class, to name each found box
    for i in range(len(c)):
        for k in range(c.counts[i]):
            truth[(i, tuple(c.boxes[i, k].tolist()))] = c.labels[i, k]
    comps = find_components(c.images)
    oracle = np.array([truth.get((i, tuple(b)), 0) for i, b in zip(comps.image, comps.boxes.tolist())])
    res = coco_results(comps.image + 1, comps.boxes, np.full(len(oracle), 0.9), oracle)
    gt = canvases_to_coco(c)
    m = _assert_agree(gt, res)
    sep = np.flatnonzero(~c.touching)
    gt_sep = canvases_to_coco(c.subset(sep))
    keep = np.isin(comps.image, sep)
    renum = np.searchsorted(sep, comps.image[keep]) + 1
    m_sep = _assert_agree(gt_sep, coco_results(renum, comps.boxes[keep], np.full(keep.sum(), 0.9),
                                               oracle[keep]))
    assert m_sep.map50 > 0.9 > m.map50  # touching items merge into one box and cost the baseline


def test_coco_ap_without_detections_is_zero():
    gt = _random_ground_truth(np.random.default_rng(3))
    m = _ours(gt, [])
    assert m.map == 0 and m.map50 == 0 and np.isnan(m.per_class[-1])


# ------------------------------------------------------------ points and boxes


def test_keypoint_metrics_by_hand():
    pred = np.array([[[0.0, 0.0], [3.0, 4.0]], [[1.0, 0.0], [0.0, 2.0]]])  # 2 images x 2 keypoints
    true = np.zeros((2, 2, 2))
    m = keypoint_metrics(pred, true, thresholds=(2, 4, 5))
    # errors: 0, 5, 1, 2 -> mean 2; within 2 px: 0, 1, 2 (3 of 4); within 4: same; within 5: all
    assert m["mean_px_error"] == pytest.approx(2.0)
    assert m["pck@2px"] == 0.75 and m["pck@4px"] == 0.75 and m["pck@5px"] == 1.0
    assert m["per_keypoint_px_error"] == pytest.approx([0.5, 3.5])
    with pytest.raises(ShapeError):
        keypoint_metrics(pred, true[:1])


def test_localization_metrics_by_hand():
    true_boxes = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [5, 5, 9, 9]], float)
    pred_boxes = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 9, 9]], float)  # IoU 1/7, 1, 1
    m = localization_metrics([3, 1, 0], pred_boxes, [3, 1, 2], true_boxes)
    assert m["top1"] == pytest.approx(2 / 3)
    assert m["mean_iou"] == pytest.approx((1 / 7 + 2) / 3)
    # the first has a poor box, the last the wrong class
    assert m["correct_localization"] == pytest.approx(1 / 3)
    with pytest.raises(ShapeError):
        localization_metrics([1], pred_boxes, [1], true_boxes)


# ------------------------------------------------------- the classical baseline


def _flood_fill(mask, connectivity):
    """Reference labelling: breadth-first search from each unlabelled pixel in raster order."""
    h, w = mask.shape
    lab = np.zeros((h, w), np.int64)
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if connectivity == 8:
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    n = 0
    for y in range(h):
        for x in range(w):
            if mask[y, x] and not lab[y, x]:
                n += 1
                lab[y, x] = n
                todo = deque([(y, x)])
                while todo:
                    cy, cx = todo.popleft()
                    for dy, dx in steps:
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not lab[ny, nx]:
                            lab[ny, nx] = n
                            todo.append((ny, nx))
    return lab, n


@pytest.mark.parametrize("connectivity", [4, 8])
def test_label_components_equals_flood_fill(connectivity):
    rng = np.random.default_rng(connectivity)
    masks = rng.random((6, 23, 31)) < np.array([0.2, 0.4, 0.5, 0.6, 0.0, 1.0])[:, None, None]
    labels, counts = label_components(masks, connectivity)
    for i in range(len(masks)):
        ref, n = _flood_fill(masks[i], connectivity)
        assert counts[i] == n and np.array_equal(labels[i], ref)


def _one_piece(mask):
    return _flood_fill(mask, 8)[1] == 1


def test_baseline_boxes_equal_ground_truth_on_separated_items():
    gen = CanvasGenerator.from_dataset(DATA, split="test", config=TASK_PRESETS["detect"])
    c = gen.generate(300, seed=5)
    # separated: no two items touch, and each item's visible mask is one 8-connected piece
    keep = [i for i in range(len(c)) if not c.touching[i]
            and all(_one_piece(c.masks[i] == k + 1) for k in range(c.counts[i]))]
    assert len(keep) >= 60
    s = c.subset(np.array(keep))
    comps = find_components(s.images, threshold=gen.config.threshold)
    # memory-bounded batches agree
    chunked = find_components(s.images, threshold=gen.config.threshold, chunk=7)
    assert all(np.array_equal(getattr(comps, f), getattr(chunked, f))
               for f in ("image", "number", "boxes", "labels"))
    for i in range(len(s)):
        found = sorted(map(tuple, comps.boxes[comps.image == i].tolist()))
        assert found == sorted(map(tuple, s.boxes[i, :s.counts[i]].tolist()))
    # touching items merge: on touching canvases the baseline finds fewer boxes than items
    t = c.subset(c.touching)
    found = np.bincount(find_components(t.images).image, minlength=len(t))
    assert (found < t.counts).mean() > 0.5


def test_baseline_crops_and_classifier_plumbing():
    items = load_dataset(DATA, split="test")
    cfg = CanvasConfig(size=64, min_items=1, max_items=1, scale=(1.0, 1.0))
    c = CanvasGenerator(items.images, items.labels, items.classes, cfg).generate(40, seed=2)
    # at scale 1 an item is pasted unchanged, so its crop equals the crop of its own 28x28 image
    own = find_components(items.images[c.sources[:, 0]])
    comps = find_components(c.images)
    single = (np.bincount(own.image, minlength=40) == 1) & (np.bincount(comps.image, minlength=40) == 1)
    assert single.sum() >= 30
    own_last = np.cumsum(np.bincount(own.image, minlength=40)) - 1  # each image's last component
    ref = crop_components(items.images[c.sources[:, 0]], own)[own_last]
    got = crop_components(c.images, comps)[np.cumsum(np.bincount(comps.image, minlength=40)) - 1]
    assert got.shape[1:] == (28, 28, 1) and got.dtype == np.uint8
    # equal up to one grey level: sample positions are offset by the item's place, so a bilinear
    # weight can differ in its last bit and a value at .5 round the other way
    assert np.abs(got[single].astype(int) - ref[single]).max() <= 1
    # a classifier that looks each crop up among the reference crops names every item's class
    seen = []

    def lookup(crops):
        seen.append(crops.shape)
        probs = np.zeros((len(crops), 10))
        for i, crop in enumerate(crops):
            near = np.abs(ref.astype(int) - crop).max((1, 2, 3)) <= 1
            probs[i, c.labels[np.flatnonzero(near & single)[0], 0]] = 0.9
        probs[:, 0] += 0.05
        return probs

    dets = detect_components(c.images[single], lookup)
    assert seen == [(int(single.sum()), 28, 28, 1)]
    assert (dets.labels == c.labels[single, 0]).all()
    assert np.allclose(dets.scores, 0.9 + 0.05 * (dets.labels == 0))
    assert np.array_equal(dets.boxes, c.boxes[single, 0])
    blank = detect_components(np.zeros((2, 32, 32, 1), np.uint8), lambda crops: 1 / 0)  # never called
    assert len(blank.image) == 0 and blank.boxes.shape == (0, 4)
    with pytest.raises(ShapeError, match="one row of class probabilities"):
        detect_components(c.images[:3], lambda crops: np.zeros(len(crops)))
