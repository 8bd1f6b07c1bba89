"""The fuzz findings of issue 16, one test each: every crafted file ends as one
svertka error line, quickly, before anything big is allocated."""
import gzip
import io
import json
import pickle
import struct
import time
import warnings
import zipfile
import zlib

import numpy as np
import pytest

from svertka.errors import DataError, SpecError, UsageError, WeightsError
from svertka.train.checkpoint import CHECKSUM_KEY
from svertka.untrusted import check_pickle, nesting_depth


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert text and "\n" not in text
    return text


def deep_key_pickle(depth: int) -> bytes:
    """{((...(),),): 1} with the tuple nested ``depth`` deep, written opcode by opcode."""
    return b"\x80\x02}" + b")" + b"\x85" * depth + b"K\x01s."


# ------------------------------------------------------------------ pickles


@pytest.mark.parametrize("depth", [1000, 10**6])
def test_cifar_pickle_nested_deep_is_refused_before_unpickling(tmp_path, depth):
    from svertka.data.formats import read_cifar_python

    (tmp_path / "b").write_bytes(deep_key_pickle(depth))  # 10**6 killed the process with SIGSEGV
    with pytest.raises(DataError, match="nest more than") as e:
        read_cifar_python(tmp_path / "b")
    one_line(e)


def test_pickle_depth_scan_counts_containers_filled_through_the_memo():
    # l = []; l2 = [l]; ... built by APPEND to lists fetched back from the memo
    inner = []
    obj = inner
    for _ in range(100):
        obj = [obj]
    with pytest.raises(DataError):
        check_pickle(pickle.dumps(obj, protocol=2), "x", DataError)
    assert check_pickle(pickle.dumps({"a": [1, (2, 3)], "b": np.zeros(3)}, protocol=2), "x", DataError) > 0


class _Call:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("payload, message", [
    # an 87-byte pickle that asked numpy for 2**40 elements through the allowed _reconstruct
    (lambda: _Call(np.zeros(1, np.uint8).__reduce__()[0], (np.ndarray, (2**40,), b"b")), "elements"),
    (lambda: _Call(np.dtype, ("O", False, True)), "dtype"),
    (lambda: _Call(__import__("codecs").encode, ("eJwLAQ==", "zlib")), "codec"),
    (lambda: np.zeros((2, 3072), object), "dtype"),
])
def test_cifar_pickle_abusing_the_allowed_globals(tmp_path, payload, message):
    from svertka.data.formats import read_cifar_python

    (tmp_path / "b").write_bytes(pickle.dumps({"data": payload(), "labels": [0, 1]}, protocol=2))
    with pytest.raises(DataError, match=message) as e:
        read_cifar_python(tmp_path / "b")
    one_line(e)


def test_cifar_pickle_with_huge_labels(tmp_path):
    from svertka.data.formats import read_cifar_python

    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": [2**70, 1]}  # was an OverflowError
    (tmp_path / "b").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match="out of range"):
        read_cifar_python(tmp_path / "b")


# --------------------------------------------------------------------- gzip


def test_idx_gzip_header_larger_than_the_file_could_hold(tmp_path):
    from svertka.data.formats import read_idx

    header = b"\x00\x00\x08\x03" + struct.pack(">III", 60000, 1000, 1000)  # 60 GB declared
    (tmp_path / "x.gz").write_bytes(gzip.compress(header + bytes(1000)))
    with pytest.raises(DataError, match="declares") as e:
        read_idx(tmp_path / "x.gz")
    one_line(e)


def test_idx_gzip_data_beyond_its_header_is_not_inflated(tmp_path):
    from svertka.data.formats import read_idx

    # the header says 100 bytes; 8 MiB of zeros follow, of which only 101 bytes are inflated
    blob = gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 100) + bytes(8 << 20), compresslevel=1)
    (tmp_path / "x.gz").write_bytes(blob)
    with pytest.raises(DataError, match="past the 108 bytes"):
        read_idx(tmp_path / "x.gz")


def test_idx_dims_whose_product_overflows_int64(tmp_path):
    from svertka.data.formats import parse_idx

    data = b"\x00\x00\x0e\x04" + struct.pack(">IIII", *[2**32 - 1] * 4)  # was a ValueError from reshape
    with pytest.raises(DataError, match="truncated"):
        parse_idx(data, "f")


def test_cifar_binary_gzip_bomb(tmp_path, monkeypatch):
    from svertka.data import formats

    # the cap at 4 MiB, not 256, keeps the test quick
    monkeypatch.setattr(formats, "MAX_CIFAR_BYTES", 4 << 20)
    member = gzip.compress(bytes(1 << 20), compresslevel=9)  # 1 MiB of zeros in 1 kB
    (tmp_path / "b.bin").write_bytes(member * 5)
    with pytest.raises(DataError, match="inflates to more than 4,194,304 bytes") as e:
        formats.read_cifar_binary(tmp_path / "b.bin")
    one_line(e)
    (tmp_path / "ok.bin").write_bytes(gzip.compress(bytes(3073 * 3)))
    assert formats.read_cifar_binary(tmp_path / "ok.bin")[0].shape == (3, 32, 32, 3)


# ------------------------------------------------------------------- images


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header for a width x height grey image, with a tiny IDAT."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(width + 1)))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [12_000, 20_000])  # Pillow warned at 12,000^2, raised at 20,000^2
def test_huge_image_is_one_error_and_no_raw_warning(tmp_path, side):
    pytest.importorskip("PIL")
    from svertka.train.evaluate import load_image

    (tmp_path / "big.png").write_bytes(png_declaring(side, side))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match="pixels") as e:
            load_image(tmp_path / "big.png", (1, 28, 28))
    one_line(e)
    assert not caught


def test_image_folder_with_a_bomb(tmp_path):
    pytest.importorskip("PIL")
    from svertka.data.formats import read_image_folder

    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(png_declaring(20_000, 20_000))
    with pytest.raises(DataError, match="pixels"):
        read_image_folder(tmp_path)


# ------------------------------------------------------------------- specs


def spec_file(tmp_path, root, **top):
    d = {"name": "t", "input_shape": [1, 28, 28], "num_classes": 10, "root": root, **top}
    (tmp_path / "net.json").write_text(json.dumps(d))
    return tmp_path / "net.json"


def test_spec_nested_5000_deep(tmp_path):
    from svertka.spec import load_network

    (tmp_path / "net.json").write_text('{"root": ' + '{"type": "Sequential", "layers": [["a", ' * 5000)
    with pytest.raises(SpecError, match="nests") as e:  # was a RecursionError
        load_network(tmp_path / "net.json")
    one_line(e)


def test_spec_nodes_nested_too_deep_within_the_json_limit(tmp_path):
    from svertka.spec import load_network
    from svertka.spec.serialize import MAX_DEPTH

    node = {"type": "ReLU"}
    for _ in range(MAX_DEPTH + 2):
        node = {"type": "Residual", "body": {"type": "Sequential", "layers": [["b", node]]}, "body_name": "x"}
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"input_shape": [1, 8, 8], "root": node}))
    with pytest.raises(SpecError, match="nests"):
        load_network(path)


@pytest.mark.parametrize("layer, message", [
    ({"type": "Conv2d", "out_channels": 8, "kernel_size": 10**9},
     r"conv at <root>\.c1: kernel_size=1000000000"),
    ({"type": "Conv2d", "out_channels": 10**7, "kernel_size": 3}, "out_channels"),
    ({"type": "Conv2d", "out_channels": 8, "kernel_size": [3, "x"]}, "kernel_size"),
    ({"type": "Linear", "out_features": 2.5}, "out_features"),
    ({"type": "Dropout", "p": "half"}, "p="),
    ({"type": "BatchNorm2d", "eps": 0}, "eps"),
    ({"type": "Conv2d", "out_channels": 8, "kernel_size": 3, "bias": "yes"}, "bias"),
])
def test_spec_field_limits_name_the_layer(tmp_path, layer, message):
    from svertka.spec import load_network

    root = {"type": "Sequential", "layers": [["c1", layer]]}
    with pytest.raises(SpecError, match=message.replace("conv at", "Conv2d at")) as e:
        load_network(spec_file(tmp_path, root))
    one_line(e)


@pytest.mark.parametrize("top, message", [
    ({"num_classes": "ten"}, "num_classes"),
    ({"num_classes": 1e400}, "not valid JSON|num_classes"),
    ({"input_shape": [1, 10**6, 10**6]}, "input_shape"),
    ({"input_shape": [1, 28]}, "input_shape"),
    ({"std": [0]}, "std"),
    ({"mean": ["a"]}, "mean"),
    ({"meta": [1]}, "meta"),
])
def test_spec_network_fields_are_typed(tmp_path, top, message):
    from svertka.spec import load_network

    with pytest.raises(SpecError, match=message) as e:
        load_network(spec_file(tmp_path, {"type": "ReLU"}, **top))
    one_line(e)


def test_spec_nan_and_huge_integers_are_refused(tmp_path):
    from svertka.spec import load_network

    (tmp_path / "a.json").write_text('{"input_shape": [1, 8, 8], "root": {"type": "Dropout", "p": NaN}}')
    (tmp_path / "b.json").write_text('{"input_shape": [1, 8, ' + "9" * 5000 + '], "root": {"type": "ReLU"}}')
    for name in ("a.json", "b.json"):
        with pytest.raises(SpecError, match="not valid JSON"):
            load_network(tmp_path / name)


def test_nesting_depth_skips_strings_and_comments():
    assert nesting_depth('{"a": "[[[[", "b": [[1]]}') == 3
    assert nesting_depth('a = "[[[" # [[[[\nb = [[1], {c = 2}]', toml=True) == 2


# ------------------------------------------------------- checkpoints, weights


@pytest.fixture
def lenet_checkpoint(tmp_path):
    """Writes best.safetensors of a real LeNet-5 with the given metadata."""
    torch = pytest.importorskip("torch")
    from svertka.backends.torch import compile as torch_compile
    from svertka.train.checkpoint import save_checkpoint
    from svertka.zoo import create_model

    torch.manual_seed(0)
    weights = {k: v.numpy() for k, v in torch_compile(create_model("lenet5")).state_dict().items()}
    good = {"model": "lenet5", "num_classes": 10, "input_shape": [1, 28, 28], "mean": [0.5], "std": [0.25],
            "classes": [str(i) for i in range(10)], "data": "fashion-mnist"}

    def write(**meta):
        path = tmp_path / "best.safetensors"
        save_checkpoint(path, weights, {**good, **meta})
        return path
    return write


@pytest.mark.parametrize("meta, message", [
    ({"model": 5}, "model=5"),
    ({"num_classes": "ten"}, "num_classes"),
    ({"num_classes": 10**7}, "num_classes=10000000"),  # was 3.55 GB and 11 s in predict
    ({"std": [0]}, "std"),
    ({"mean": [0.1, 0.2]}, "mean"),
    ({"input_shape": [1, 28]}, "input_shape"),
    ({"classes": ["a", "b"]}, "class names"),
])
def test_checkpoint_metadata_is_typed_before_anything_is_built(lenet_checkpoint, meta, message):
    from svertka.train.evaluate import load_trained

    path = lenet_checkpoint(**meta)
    t0 = time.process_time()
    with pytest.raises(WeightsError, match=message) as e:
        load_trained(path, backend="numpy")
    one_line(e)
    assert time.process_time() - t0 < 5  # a generous bound on CPU: the old failure took 11 s and 3.55 GB


def test_checkpoint_with_nan_weights_is_refused(lenet_checkpoint):
    from safetensors.numpy import load_file, save_file

    from svertka.train.evaluate import load_trained

    path = lenet_checkpoint()
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    tensors = load_file(str(path))
    conv = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[conv][0, 0, 0, 0] = np.nan  # what a bit flip in an exponent gives
    save_file(tensors, str(path), metadata=header["__metadata__"])
    with pytest.raises(WeightsError, match="checksum") as e:  # the flip, caught by the checksum
        load_trained(path, backend="numpy")
    one_line(e)
    # a file without a checksum (older svertka, or a diverged run saved as it was): the NaN itself
    meta = {k: v for k, v in header["__metadata__"].items() if k != CHECKSUM_KEY}
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(WeightsError, match="NaN") as e:  # was: predict printed NaN probabilities
        load_trained(path, backend="numpy")
    one_line(e)


def test_good_checkpoint_still_loads_and_predicts(lenet_checkpoint, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from svertka.train.evaluate import load_trained, predict

    loaded = load_trained(lenet_checkpoint(), backend="torch", device="cpu")
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(tmp_path / "x.png")
    out = predict(loaded, [tmp_path / "x.png"], k=3)
    assert len(out[0]["top"]) == 3 and abs(sum(t["prob"] for t in out[0]["top"])) <= 1 + 1e-6


def test_checkpoint_metadata_nested_deep(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    from svertka.train.checkpoint import read_checkpoint

    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "c.safetensors"),
              metadata={"svertka": "[" * 100_000 + "]" * 100_000})
    with pytest.raises(WeightsError, match="nests"):
        read_checkpoint(tmp_path / "c.safetensors")


@pytest.mark.parametrize("depth", [1000, 10**6])
def test_pth_with_deep_pickle_is_refused_before_torch_unpickles_it(tmp_path, depth):
    torch = pytest.importorskip("torch")
    from svertka.backends.torch import compile as torch_compile
    from svertka.backends.torch import load_weights
    from svertka.zoo import create_model

    model = torch_compile(create_model("lenet5"))
    torch.save(model.state_dict(), tmp_path / "good.pth")
    src = zipfile.ZipFile(tmp_path / "good.pth")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = deep_key_pickle(depth) if info.filename.endswith("data.pkl") else src.read(info.filename)
            dst.writestr(info.filename, data)
    (tmp_path / "bad.pth").write_bytes(out.getvalue())
    (tmp_path / "legacy.pth").write_bytes(deep_key_pickle(depth))  # not a zip: torch's legacy reader
    for name in ("bad.pth", "legacy.pth"):
        with pytest.raises(WeightsError, match="nest more than|not a valid") as e:
            load_weights(model, tmp_path / name)
        one_line(e)
    load_weights(model, tmp_path / "good.pth")  # and a real one still loads


# -------------------------------------------------------- recipes, --resume


@pytest.mark.parametrize("text, message", [
    ("model = " + "[" * 100_000, "nests"),  # was a RecursionError
    ('epochs = "ten"', "epochs"),
    ("aug = 5", "aug"),
    ("threads = 2.5", "threads"),
    ("lr = nan", "lr"),
    ("channels_last = 1", "channels_last"),
])
def test_recipe_values_are_typed(tmp_path, text, message):
    from svertka.train import make_config

    (tmp_path / "r.toml").write_text(text + "\n")
    with pytest.raises(UsageError, match=message) as e:
        make_config({}, recipe=str(tmp_path / "r.toml"))
    one_line(e)


@pytest.mark.parametrize("text, message", [
    ('{"epochs": ' + "[" * 10_000, "nests"),
    ('{"model": 5}', "model"),
    ("[1, 2]", "object"),
])
def test_resume_config_is_typed(tmp_path, text, message):
    from svertka.train.loop import resume_config

    (tmp_path / "config.json").write_text(text)
    with pytest.raises(UsageError, match=message) as e:
        resume_config(tmp_path)
    one_line(e)

