"""Streaming data (issue 15 §2): ImageFolder and tar-shard sources, the ImageNet-recipe decode,
the rank split of each batch, the shard writer, corrupt files, and training from disk.

The data is a small synthetic ImageFolder of real photos (random crops of scikit-image's
sample photos, scripts/make_photo_folder.py), made once per module in a tmp dir."""
from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import one_line_error
from svertka.cli import main
from svertka.data.streaming import (
    CenterCrop,
    ImageFolderSource,
    RandomResizedCrop,
    TarShardSource,
    decode_crop,
    epoch_order,
    rank_batches,
    stream_splits,
    write_shards,
)
from svertka.errors import DataError, UsageError

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("skimage")  # the photos (dev extra)


def _generator():
    path = ROOT / "scripts" / "make_photo_folder.py"
    spec = importlib.util.spec_from_file_location("make_photo_folder", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """train/ (5 per class) and test/ (2 per class) of variously sized photo crops."""
    return _generator().make_photo_folder(tmp_path_factory.mktemp("photos"), 5, test_per_class=2, seed=3)


@pytest.fixture(scope="module")
def shards(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "s"
    write_shards(photos, out, shard_size=7)
    return out


def test_photo_folder_has_ten_classes_of_jpegs(photos):
    classes = sorted(p.name for p in (photos / "train").iterdir())
    assert len(classes) == 10 and "astronaut" in classes
    files = list((photos / "train").glob("*/*.jpg"))
    assert len(files) == 50
    from PIL import Image

    sizes = {Image.open(f).size for f in files}
    assert len(sizes) > 10  # crops of many sizes, as in ImageNet


def test_shards_round_trip(photos, shards):
    for split in ("train", "test"):
        folder, tar = ImageFolderSource(photos / split), TarShardSource(shards / split)
        assert len(tar) == len(folder) and tar.classes == folder.classes
        assert np.array_equal(tar.labels, folder.labels)
        for i in range(len(folder)):
            assert tar.read(i) == folder.read(i)  # the file's bytes, not re-encoded
    assert len(list((shards / "train").glob("*.tar"))) == 8  # 50 images at 7 per shard
    with tarfile.open(shards / "train" / "shard-000000.tar") as t:
        names = t.getnames()
        assert names[:4] == ["000000.jpg", "000000.cls", "000001.jpg", "000001.cls"]
        assert t.extractfile("000000.cls").read() == b"0"
        assert {m.mtime for m in t.getmembers()} == {0}  # reproducible: no time stamps


def test_shard_command_writes_and_refuses_a_used_folder(photos, tmp_path, capsys):
    argv = ["data", "shard", str(photos / "test"), "--out", str(tmp_path / "o"), "--shard-size", "8"]
    assert main(argv) == 0
    assert "20 images in 3 shards" in capsys.readouterr().out
    names = sorted(p.name for p in (photos / "test").iterdir())
    assert (tmp_path / "o" / "classes.txt").read_text().split() == names
    assert "not an empty folder" in one_line_error(capsys, argv)
    assert "no such folder" in one_line_error(capsys, ["data", "shard", str(tmp_path / "nope"), "--out", "x"])


def test_folder_and_shards_give_the_same_batches(photos, shards):
    """Same seed, same order: identical random crops from the folder (decoded here) and from the
    shards (decoded by a DataLoader worker), so the worker count changes nothing."""
    pytest.importorskip("torch")
    a, _, at = stream_splits(photos, image_size=40, seed=5, workers=0)
    b, _, bt = stream_splits(shards, image_size=40, seed=5, workers=1)
    order = epoch_order(len(a), seed=5, epoch=2)
    batches = [order[i:i + 16] for i in range(0, 48, 16)]
    got_a, got_b = list(a.batches(batches, epoch=2)), list(b.batches(batches, epoch=2))
    for (xa, ya), (xb, yb) in zip(got_a, got_b):
        assert xa.shape == (16, 40, 40, 3) and xa.dtype == np.uint8
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert np.array_equal(got_a[0][1], a.labels[batches[0]])
    again = list(a.batches(batches[:1], epoch=3))[0][0]  # another epoch: other crops
    assert not np.array_equal(again, got_a[0][0])
    test = [np.arange(len(at))]
    assert np.array_equal(next(at.batches(test))[0], next(bt.batches(test))[0])
    b.close()


def test_rank_batches_are_disjoint_and_cover_each_step():
    order = epoch_order(96, seed=1, epoch=0)
    steps = [order[i:i + 12] for i in range(0, 96, 12)]
    parts = [rank_batches(steps, r, 3) for r in range(3)]
    for s, step in enumerate(steps):
        pieces = [parts[r][s] for r in range(3)]
        assert all(len(p) == 4 for p in pieces)
        assert np.array_equal(np.concatenate(pieces), step)  # together: the single-process batch
    seen = np.concatenate([p for r in range(3) for p in parts[r]])
    assert len(seen) == 96 and len(set(seen.tolist())) == 96  # each image once in the epoch
    with pytest.raises(UsageError, match="multiple of 5"):
        rank_batches(steps, 0, 5)
    with pytest.raises(UsageError, match="0 <= rank < world"):
        rank_batches(steps, 3, 3)


def _jpeg(w, h, seed=0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    # smooth content (a gradient plus low-frequency noise) so that a downscaled decode stays close
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    noise = np.kron(rng.uniform(-30, 30, (h // 50 + 1, w // 50 + 1, 3)), np.ones((50, 50, 1)))[:h, :w]
    buf = io.BytesIO()
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_draft_decodes_a_big_jpeg_small_and_right(monkeypatch):
    from PIL import JpegImagePlugin

    sizes = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        out = real(self, mode, size)
        sizes.append(self.size)
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    data = _jpeg(1600, 1200)
    for crop in (CenterCrop(224), RandomResizedCrop(224, scale=(0.5, 1.0))):
        rng = np.random.default_rng(0)
        fast = decode_crop(data, "big.jpg", crop, rng)
        assert fast.shape == (224, 224, 3) and fast.dtype == np.uint8
        slow = decode_crop(data, "big.jpg", crop, np.random.default_rng(0), draft=False)
        # the same box of the picture: DCT scaling differs from a full decode only in fine detail
        assert np.abs(fast.astype(int) - slow.astype(int)).mean() < 4
    assert sizes[0] == (400, 300)  # centre crop: shorter side 1200 -> 256 needs only 1/4 scale
    assert all(s[0] < 1600 for s in sizes)
    small = decode_crop(_jpeg(200, 150), "small.jpg", CenterCrop(224))  # upscaled, no draft possible
    assert small.shape == (224, 224, 3)


def test_center_crop_of_a_square_image_at_its_size_is_the_image():
    from PIL import Image

    data = _jpeg(48, 48)
    exact = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(decode_crop(data, "x.jpg", CenterCrop(48, crop_pct=1.0)), exact)


def _break(folder: Path) -> Path:
    victim = sorted((folder / "coffee").glob("*.jpg"))[1]
    victim.write_bytes(victim.read_bytes()[:300])  # truncated mid-scan
    return victim


@pytest.mark.parametrize("workers", [0, 1])
def test_a_truncated_jpeg_is_one_line_naming_it(photos, tmp_path, workers):
    if workers:
        pytest.importorskip("torch")
    import shutil

    root = tmp_path / "p"
    shutil.copytree(photos, root)
    victim = _break(root / "train")
    train, _, _ = stream_splits(root, image_size=32, workers=workers, train_crop="center")
    with pytest.raises(DataError) as e:
        list(train.batches([np.arange(len(train))]))
    msg = str(e.value)
    assert str(victim) in msg and "\n" not in msg and "remove or replace" in msg
    with pytest.raises(DataError, match="coffee/0001.jpg"):
        write_shards(root, tmp_path / "s")  # the writer decodes every image once


def test_bad_shards_are_one_line(shards, tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    data = (shards / "train" / "shard-000000.tar").read_bytes()
    (folder / "a.tar").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="a.tar"):
        TarShardSource(folder)
    (folder / "a.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError, match="not a readable uncompressed tar"):
        TarShardSource(folder)
    with tarfile.open(folder / "a.tar", "w") as t:  # an image without its label
        info = tarfile.TarInfo("000000.jpg")
        info.size = 4
        t.addfile(info, io.BytesIO(b"abcd"))
    with pytest.raises(DataError, match="no 000000.cls"):
        TarShardSource(folder)


def test_without_torch_streaming_decodes_in_process(square, monkeypatch):
    from svertka.data.streaming import loader

    monkeypatch.setattr(loader, "has_torch", lambda: False)
    train, _, _ = stream_splits(square, image_size=32)
    assert train.workers == 0 and next(train.batches([np.arange(4)]))[0].shape == (4, 32, 32, 3)
    with pytest.raises(UsageError, match="--workers 2 decodes in torch DataLoader processes"):
        stream_splits(square, image_size=32, workers=2)


def test_a_folder_too_big_for_memory_asks_for_stream(square, monkeypatch):
    from svertka.data import formats, load_dataset

    monkeypatch.setattr(formats, "available_memory", lambda: 2 * 120 * 32 * 32 * 3 - 2)  # just short
    with pytest.raises(DataError, match="120 images of 32x32 px .* train with --stream"):
        load_dataset("imagefolder", root=square, split="train")
    monkeypatch.setattr(formats, "available_memory", lambda: 2 * 120 * 32 * 32 * 3)
    assert len(load_dataset("imagefolder", root=square, split="train")) == 120


def test_splits_cut_val_and_limits_like_the_in_memory_loader(photos):
    from svertka.data import load_dataset

    train, val, test = stream_splits(photos, image_size=32, val_fraction=0.2, seed=4, workers=0,
                                     limit_test=7)
    common = dict(root=photos, val_fraction=0.2, seed=4, size=(32, 32))
    mem_val = load_dataset("imagefolder", split="val", **common)
    mem_train = load_dataset("imagefolder", split="train", **common)
    assert np.array_equal(val.labels, mem_val.labels) and np.array_equal(train.labels, mem_train.labels)
    assert len(test) == 7 and train.classes == mem_train.classes
    with pytest.raises(UsageError, match="--train-crop"):
        stream_splits(photos, train_crop="zoom")
    with pytest.raises(UsageError, match="--image-size"):
        stream_splits(photos, image_size=3)


# ------------------------------------------------------------- training from disk


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    """Photos already at the model's size (the in-memory ImageFolder needs one size)."""
    return _generator().make_photo_folder(tmp_path_factory.mktemp("square"), 12, test_per_class=4, size=32,
                                          seed=7)


def _train(root, out, stream=None, **kw):
    from svertka.train import make_config, train

    base = {"model": "cnn2", "data": "imagefolder", "root": str(root), "epochs": 2, "batch_size": 16,
            "eval_batch_size": 32, "threads": 1, "seed": 1, "output": str(out)}
    if stream is not None:  # the evaluation crop at the images' own size: the pixels in memory
        base.update(stream=True, image_size=32, crop_pct=1.0, train_crop="center", workers=stream)
    stop_after = kw.pop("stop_after", None)
    return train(make_config({**base, **kw}), stop_after=stop_after, progress=False)


def _results(result):
    from svertka.train.loop import TIMING_KEYS

    return [{k: v for k, v in rec.items() if k not in TIMING_KEYS} for rec in result.history]


def test_streaming_trains_exactly_as_in_memory(square, tmp_path, capsys):
    """Same seed, same batches, same augmentation draws: the streamed run (decoded here, or by a
    worker) is the in-memory run to the last bit - which is stronger than "within seed noise"."""
    pytest.importorskip("torch")
    kw = dict(aug="flip,crop:2", val_fraction=0.2)
    memory = _train(square, tmp_path / "m", **kw)
    for workers in (0, 1):
        streamed = _train(square, tmp_path / f"s{workers}", stream=workers, **kw)
        assert _results(streamed) == _results(memory)
        assert np.array_equal(_weights(streamed.run_dir), _weights(memory.run_dir))
    assert 0.3 < memory.history[-1]["val_acc"]  # it learnt something (10 classes: chance is 0.1)
    err = one_line_error(capsys, ["train", "--resume", str(memory.run_dir), "--workers", "1"])
    assert "holds its data in memory" in err


def _weights(run_dir):
    from svertka.train.checkpoint import read_checkpoint

    w = read_checkpoint(Path(run_dir) / "last.safetensors")[0]
    return np.concatenate([v.ravel() for _, v in sorted(w.items())])


def test_streamed_run_resumes_bit_identically_with_another_worker_count(square, tmp_path):
    pytest.importorskip("torch")
    kw = dict(train_crop="rrc", epochs=3, model="lenet5")
    whole = _train(square, tmp_path / "whole", stream=1, **kw)
    _train(square, tmp_path / "part", stream=0, stop_after=1, **kw)
    from svertka.train import resume_config, train

    cfg = resume_config(tmp_path / "part")
    cfg.workers = 1
    resumed = train(cfg, resume=tmp_path / "part", progress=False)
    assert _results(resumed) == _results(whole)
    assert np.array_equal(_weights(resumed.run_dir), _weights(whole.run_dir))
    # `svertka eval` streams the test split through the same centre crop: the run's own figure
    from svertka.train.evaluate import evaluate, load_trained

    r = evaluate(load_trained(whole.run_dir, threads=1), root=square)
    assert r["top1"] == pytest.approx(whole.history[-1]["test_acc"]) and r["n"] == 40


def test_stream_cli_errors_are_one_line(square, tmp_path, capsys):
    base = ["train", "cnn2", "--epochs", "1", "--output", str(tmp_path / "r"), "-q"]
    err = one_line_error(capsys, base + ["--data", "fashion-mnist-mini", "--stream"])
    assert "--data imagefolder" in err
    folder = ["--data", "imagefolder", "--root", str(square)]
    err = one_line_error(capsys, base + folder + ["--image-size", "32"])
    assert "--image-size applies to streamed data" in err
    err = one_line_error(capsys, base + ["--data", "imagefolder", "--root", str(square), "--stream",
                                         "--crop-pct", "2"])
    assert "--crop-pct" in err
    err = one_line_error(capsys, base + ["--data", "imagefolder", "--root", str(square), "--stream",
                                         "--workers", "-1"])
    assert "--workers" in err


def test_a_corrupt_photo_mid_run_stops_with_its_name(square, tmp_path, capsys):
    pytest.importorskip("torch")
    import shutil

    root = tmp_path / "p"
    shutil.copytree(square, root)
    victim = _break(root / "train")
    argv = ["train", "cnn2", "--data", "imagefolder", "--root", str(root), "--stream", "--image-size", "32",
            "--workers", "1", "--epochs", "1", "--threads", "1", "--output", str(tmp_path / "r"), "-q"]
    err = one_line_error(capsys, argv)
    assert str(victim) in err and "remove or replace" in err


@pytest.mark.slow
def test_random_resized_crops_reach_the_in_memory_accuracy(tmp_path):
    """The ImageNet recipe streamed from photos of many sizes (RandomResizedCrop + flip) against the
    in-memory run on the same photos resized to 32 px (with flip + crop:4), 3 seeds each: the
    mean test accuracies differ by no more than the seeds' noise (3 standard errors of the difference)."""
    pytest.importorskip("torch")
    gen = _generator()
    photos = gen.make_photo_folder(tmp_path / "photos", 30, test_per_class=10, seed=11)
    resized = gen.make_photo_folder(tmp_path / "resized", 30, test_per_class=10, size=32, seed=11)
    common = dict(model="lenet5", epochs=8, batch_size=25, aug=None)
    memory, streamed = [], []
    for seed in (0, 1, 2):
        memory.append(_train(resized, tmp_path / f"m{seed}", seed=seed, **{**common, "aug": "flip,crop:4"})
                      .test_acc)
        streamed.append(_train(photos, tmp_path / f"s{seed}", stream=1, seed=seed, train_crop="rrc",
                               crop_pct=0.875, **common).test_acc)
    m, s = np.mean(memory), np.mean(streamed)
    se = np.sqrt(np.var(memory, ddof=1) / 3 + np.var(streamed, ddof=1) / 3)
    print(f"in memory {memory}, streamed {streamed}")
    assert min(m, s) > 0.3  # both learnt (chance: 0.1)
    assert abs(m - s) <= 3 * se + 0.02, (memory, streamed)
