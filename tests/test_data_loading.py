"""Datasets: search order, download (against a loopback HTTP server), checksums,
validation split, the packaged fashion-mnist-mini and the Debian copy."""

import dataclasses
import gzip
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from svertka.data import datasets as ds_mod
from svertka.data import load_dataset, split_indices
from svertka.data.download import Checksum, fetch
from svertka.data.registry import REGISTRY, IdxSplit
from svertka.errors import DataError, UsageError

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Never touch the real ~/.cache/svertka."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SVERTKA_DATA", str(cache))
    return cache


# ------------------------------------------------------------ loopback server


class Server:
    """Serves ``files`` (path -> bytes) on 127.0.0.1; paths in ``truncate``
    announce the full length but send half and hang up."""

    def __init__(self):
        self.files, self.truncate, self.hits = {}, set(), []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.hits.append(self.path)
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in owner.truncate else body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def dead_url():
    """A URL on a port nothing listens on: connecting fails at once, like being offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# -------------------------------------------------------------- a tiny MNIST


def tiny_idx_dataset(n_train=30, n_test=10, seed=0):
    """gz bytes of a fake MNIST-layout dataset (IDX built by hand) plus matching IdxSplit entries."""
    rng = np.random.default_rng(seed)
    files, splits = {}, {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        entries = []
        for kind, arr in (("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                          ("labels-idx1", np.arange(n, dtype=np.uint8) % 10)):
            header = b"\x00\x00\x08" + bytes([arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
            raw = header + arr.tobytes()
            gz = gzip.compress(raw)
            name = f"{prefix}-{kind}-ubyte.gz"
            files[name] = (gz, arr)
            entries.append((name, Checksum(raw_sha256=hashlib.sha256(raw).hexdigest(),
                                           archive_md5=hashlib.md5(gz).hexdigest(), raw_size=len(raw))))
        splits[split] = IdxSplit(*entries)
    return files, splits


@pytest.fixture
def fake_fashion(monkeypatch, tmp_path):
    """Point the fashion-mnist entry at tiny files; returns (files, set_mirrors, system_dir)."""
    files, splits = tiny_idx_dataset()
    system = tmp_path / "system"
    info = dataclasses.replace(REGISTRY["fashion-mnist"], idx=splits, mirrors=(dead_url(),),
                               system_dirs=(str(system),))
    monkeypatch.setitem(REGISTRY, "fashion-mnist", info)

    def set_mirrors(*urls):
        monkeypatch.setitem(REGISTRY, "fashion-mnist",
                            dataclasses.replace(REGISTRY["fashion-mnist"], mirrors=urls))

    return files, set_mirrors, system


def put(folder, files, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names or files:
        (folder / name).write_bytes(files[name][0])


# ------------------------------------------------------------------ download


def test_fetch_success_and_progress(server, tmp_path, capsys):
    server.files["/f.bin"] = b"x" * 100_000
    dest = fetch(server.url + "f.bin", tmp_path / "d" / "f.bin",
                 Checksum(archive_md5=hashlib.md5(b"x" * 100_000).hexdigest()))
    assert dest.read_bytes() == b"x" * 100_000
    assert "f.bin" in capsys.readouterr().err
    assert [p.name for p in dest.parent.iterdir()] == ["f.bin"]


def test_fetch_checksum_mismatch_leaves_nothing(server, tmp_path):
    server.files["/f.bin"] = b"corrupted"
    with pytest.raises(DataError, match="md5"):
        fetch(server.url + "f.bin", tmp_path / "f.bin", Checksum(archive_md5="0" * 32), quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_fetch_truncated_leaves_nothing(server, tmp_path):
    server.files["/f.bin"] = b"y" * 50_000
    server.truncate.add("/f.bin")
    with pytest.raises(DataError, match="f.bin"):
        fetch(server.url + "f.bin", tmp_path / "f.bin", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_fetch_falls_back_to_next_mirror(server, tmp_path):
    server.files["/m2/f.bin"] = b"ok"
    fetch([dead_url() + "f.bin", server.url + "missing/f.bin", server.url + "m2/f.bin"], tmp_path / "f.bin",
          quiet=True)
    assert (tmp_path / "f.bin").read_bytes() == b"ok"


def test_load_downloads_verifies_and_reuses(server, fake_fashion, private_cache):
    files, set_mirrors, _ = fake_fashion
    for name, (gz, _) in files.items():
        server.files["/fm/" + name] = gz
    set_mirrors(dead_url(), server.url + "fm/")
    ds = load_dataset("fashion-mnist", split="test")
    assert ds.images.shape == (10, 28, 28, 1) and ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.images[..., 0], files["t10k-images-idx3-ubyte.gz"][1])
    assert sorted(p.name for p in (private_cache / "fashion-mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    n_hits = len(server.hits)
    load_dataset("fashion-mnist", split="test")  # second time: from the cache
    assert len(server.hits) == n_hits


def test_load_downloads_into_explicit_root(server, fake_fashion, tmp_path):
    files, set_mirrors, _ = fake_fashion
    for name, (gz, _) in files.items():
        server.files["/" + name] = gz
    set_mirrors(server.url)
    (tmp_path / "mine").mkdir()  # a --root must exist: a mistyped one is an error, not a new download
    load_dataset("fashion-mnist", root=tmp_path / "mine", split="train")
    assert (tmp_path / "mine" / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_download_with_bad_checksum_leaves_nothing(server, fake_fashion, private_cache):
    files, set_mirrors, _ = fake_fashion
    for name, (gz, _) in files.items():
        server.files["/" + name] = gz[::-1]
    set_mirrors(server.url)
    with pytest.raises(DataError, match="download failed"):
        load_dataset("fashion-mnist", split="test")
    folder = private_cache / "fashion-mnist"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_offline_error_says_where_to_put_files(fake_fashion, private_cache):
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", split="test")
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and str(private_cache / "fashion-mnist") in msg
    assert "--root" in msg
    assert "\n" not in msg


def test_no_download_flag(fake_fashion):
    with pytest.raises(DataError, match="download=False"):
        load_dataset("fashion-mnist", download=False)


# -------------------------------------------------------------- search order


def test_search_order_root_then_cache_then_system(fake_fashion, tmp_path, private_cache):
    files, _, system = fake_fashion
    put(system, files)
    ds = load_dataset("fashion-mnist", split="test")
    assert ds.location == str(system)
    put(private_cache / "fashion-mnist", files)
    assert load_dataset("fashion-mnist", split="test").location == str(private_cache / "fashion-mnist")
    root = tmp_path / "root"
    put(root, files)
    assert load_dataset("fashion-mnist", root=root, split="test").location == str(root)
    # root/<name>/ also counts
    put(tmp_path / "root2" / "fashion-mnist", files)
    in_root2 = load_dataset("fashion-mnist", root=tmp_path / "root2", split="test")
    assert in_root2.location.endswith("root2/fashion-mnist")


def test_decompressed_files_are_accepted(fake_fashion, tmp_path):
    files, _, _ = fake_fashion
    for name, (gz, _) in files.items():
        (tmp_path / name[:-3]).write_bytes(gzip.decompress(gz))  # a user gunzipped them
    assert len(load_dataset("fashion-mnist", root=tmp_path)) == 30


def test_recompressed_files_pass_checksum_over_decompressed_bytes(fake_fashion, tmp_path):
    files, _, _ = fake_fashion
    for name, (gz, _) in files.items():  # like Debian: same content, different gzip bytes
        (tmp_path / name).write_bytes(gzip.compress(gzip.decompress(gz), compresslevel=1, mtime=123))
    assert len(load_dataset("fashion-mnist", root=tmp_path, split="test")) == 10


def test_corrupt_local_copy_is_reported_not_skipped(fake_fashion, tmp_path, private_cache):
    files, _, system = fake_fashion
    put(system, files)
    bad = dict(files)
    raw = bytearray(gzip.decompress(files["t10k-images-idx3-ubyte.gz"][0]))
    raw[100] ^= 0xFF
    bad["t10k-images-idx3-ubyte.gz"] = (gzip.compress(bytes(raw)), None)
    put(private_cache / "fashion-mnist", bad)
    with pytest.raises(DataError, match="sha256"):
        load_dataset("fashion-mnist", split="test")


def test_unknown_names_and_splits():
    with pytest.raises(UsageError, match="fashion-mnist"):
        load_dataset("imagenet-1k")
    with pytest.raises(UsageError, match="split"):
        load_dataset("fashion-mnist-mini", split="dev")
    with pytest.raises(UsageError, match="val_fraction"):
        load_dataset("fashion-mnist-mini", split="val")
    with pytest.raises(UsageError, match="val_fraction"):
        load_dataset("fashion-mnist-mini", val_fraction=1.5)


# ----------------------------------------------------------------- CIFAR-10


def test_cifar10_download_extract_and_load(server, monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    buf, batches = io.BytesIO(), {}
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {"batch_label": name, "labels": [int(v) for v in rng.integers(0, 10, 3)],
                     "data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "filenames": ["a", "b", "c"]}
            blob = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
            batches[name] = (batch, hashlib.md5(blob).hexdigest())
        evil = tarfile.TarInfo("../../escape")  # must never be extracted
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"!"))
    archive = buf.getvalue()
    server.files["/cifar-10-python.tar.gz"] = archive
    real = REGISTRY["cifar10"]
    fake = dataclasses.replace(
        real,
        mirrors=(server.url,),
        archive=("cifar-10-python.tar.gz", Checksum(archive_md5=hashlib.md5(archive).hexdigest())),
        batches={s: tuple((n, Checksum(raw_md5=batches[n][1])) for n, _ in real.batches[s])
                 for s in real.batches},
    )
    monkeypatch.setitem(REGISTRY, "cifar10", fake)
    root = tmp_path / "data"
    root.mkdir()
    train = load_dataset("cifar10", root=root)
    test = load_dataset("cifar10", root=root, split="test")
    assert train.images.shape == (15, 32, 32, 3) and test.images.shape == (3, 32, 32, 3)
    first = batches["data_batch_1"][0]
    np.testing.assert_array_equal(train.images[:3], first["data"].reshape(3, 3, 32, 32).transpose(0, 2, 3, 1))
    assert train.labels[:3].tolist() == first["labels"]
    folder = root / "cifar10"
    # archive removed after extraction
    assert sorted(p.name for p in folder.iterdir()) == ["cifar-10-batches-py"]
    assert not (tmp_path / "escape").exists()
    # a tampered batch is caught by its md5
    (folder / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(first, protocol=2))
    with pytest.raises(DataError, match="md5"):
        load_dataset("cifar10", root=root, split="test")


def test_cifar10_binary_folder_is_read(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, 2, dtype=np.uint8)
        imgs = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        (folder / f"{name}.bin").write_bytes(np.concatenate([labels[:, None], imgs], axis=1).tobytes())
    ds = load_dataset("cifar10", root=tmp_path, split="test", download=False)
    assert ds.images.shape == (2, 32, 32, 3) and ds.classes[0] == "airplane"


def test_cifar10_offline(monkeypatch, tmp_path):
    monkeypatch.setitem(REGISTRY, "cifar10", dataclasses.replace(REGISTRY["cifar10"], mirrors=(dead_url(),)))
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path)


# -------------------------------------------------------------- imagefolder


def test_imagefolder_train_and_val_dirs(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for split, classes in (("train", ("ant", "bee", "cat")), ("val", ("bee",))):
        for c in classes:
            (tmp_path / split / c).mkdir(parents=True)
            Image.fromarray(np.full((6, 6, 3), 100, np.uint8)).save(tmp_path / split / c / "x.png")
    train = load_dataset("imagefolder", root=tmp_path)
    test = load_dataset("imagefolder", root=tmp_path, split="test")
    assert train.classes == ("ant", "bee", "cat") and train.labels.tolist() == [0, 1, 2]
    assert test.labels.tolist() == [1]  # indices follow the train split's classes
    with pytest.raises(UsageError, match="root"):
        load_dataset("imagefolder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_dataset("imagefolder", root=tmp_path / "empty")


# ----------------------------------------------------- validation split


def test_split_indices_stratified_seeded_disjoint():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    tr, va = split_indices(labels, 0.1, seed=3)
    assert np.bincount(labels[va]).tolist() == [1, 2, 3, 4]
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 100
    assert np.array_equal(va, split_indices(labels, 0.1, seed=3)[1])
    assert not np.array_equal(va, split_indices(labels, 0.1, seed=4)[1])
    assert len(split_indices(labels, 0.0)[1]) == 0


def test_val_split_of_mini():
    tr = load_dataset("fashion-mnist-mini", val_fraction=0.1, seed=7)
    va = load_dataset("fashion-mnist-mini", split="val", val_fraction=0.1, seed=7)
    assert len(tr) == 5400 and len(va) == 600
    assert np.bincount(va.labels).tolist() == [60] * 10
    both = np.concatenate([tr.images, va.images]).reshape(6000, -1)
    whole = load_dataset("fashion-mnist-mini").images.reshape(6000, -1)
    assert len(np.unique(both, axis=0)) == len(np.unique(whole, axis=0))


# --------------------------------------------------------- real data


def test_mini_is_real_fashion_mnist():
    train = load_dataset("fashion-mnist-mini")
    test = load_dataset("fashion-mnist-mini", split="test")
    assert train.images.shape == (6000, 28, 28, 1) and test.images.shape == (2000, 28, 28, 1)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert np.bincount(train.labels).tolist() == [600] * 10
    assert np.bincount(test.labels).tolist() == [200] * 10
    x = train.images / 255.0
    assert abs(x.mean() - 0.286) < 0.01 and abs(x.std() - 0.353) < 0.01  # Fashion-MNIST's statistics
    # Trousers are tall and narrow, bags are wide: class means must differ like that.
    cls_mean = np.stack([x[train.labels == c].mean(0)[..., 0] for c in range(10)])
    assert cls_mean[1][:, :7].mean() < cls_mean[8][:, :7].mean()
    assert train.classes[0] == "T-shirt/top" and len(train.classes) == 10
    assert len(np.unique(train.images.reshape(6000, -1), axis=0)) > 5990  # real images, not copies


def test_mini_licence_shipped():
    from importlib import resources

    text = (resources.files("svertka.data") / "mini" / "LICENSE").read_text()
    assert "Copyright (c) 2017 Zalando SE" in text and "MIT" in text


def test_batches_and_float_conversion():
    ds = load_dataset("fashion-mnist-mini", split="test")
    sizes = [len(y) for _, y in ds.batches(600)]
    assert sizes == [600, 600, 600, 200]
    assert [len(y) for _, y in ds.batches(600, drop_last=True)] == [600] * 3
    xa, ya = next(ds.batches(64, shuffle=True, seed=1))
    xb, yb = next(ds.batches(64, shuffle=True, seed=1))
    assert np.array_equal(ya, yb) and np.array_equal(xa, xb)
    f = ds_mod.to_float_nchw(xa[:4], ds.mean, ds.std)
    assert f.shape == (4, 1, 28, 28) and f.dtype == np.float32
    np.testing.assert_allclose(f * ds.std[0] + ds.mean[0], xa[:4].transpose(0, 3, 1, 2) / 255, atol=1e-6)
    with pytest.raises(UsageError):
        ds_mod.to_float_nchw(f)


@pytest.mark.skipif(not (DEBIAN / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Debian dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_checks_out_and_contains_mini(monkeypatch):
    monkeypatch.setitem(REGISTRY, "fashion-mnist",
                        dataclasses.replace(REGISTRY["fashion-mnist"], mirrors=(dead_url(),)))
    full = load_dataset("fashion-mnist", split="test", download=False)
    assert full.images.shape == (10000, 28, 28, 1) and full.location == str(DEBIAN)
    mini = load_dataset("fashion-mnist-mini", split="test")
    keys = {img.tobytes() for img in full.images}
    assert all(img.tobytes() in keys for img in mini.images)
