"""One function per parser: the public loading path a user's command takes.

Each returns normally (accepted) or raises; the worker classifies what it raises.
"""
from __future__ import annotations

from pathlib import Path

PARSERS = ("idx_raw", "idx_gz", "cifar_binary", "cifar_python", "spec_analysis", "spec_torch", "checkpoint",
           "weights", "recipe", "image", "image_folder", "resume")

# Not parsers: inputs that misbehave on purpose, so a test can check that the
# worker pool sees each kind of failure (and the fuzz test cannot pass vacuously).
SELF_TESTS = ("selftest_traceback", "selftest_hang", "selftest_memory", "selftest_segv")

_cache: dict = {}


def _lenet_torch():
    if "lenet" not in _cache:
        from svertka.backends.torch import compile as torch_compile
        from svertka.zoo import create_model

        _cache["lenet"] = torch_compile(create_model("lenet5"))
    return _cache["lenet"]


def _misbehave(parser: str) -> None:
    if parser == "selftest_traceback":
        raise ValueError("an exception that is not svertka's")
    if parser == "selftest_hang":
        while True:
            pass
    if parser == "selftest_memory":
        blob = bytearray(3 << 30)  # beyond the worker's cap: MemoryError
        blob[::4096] = b"x" * len(blob[::4096])
    if parser == "selftest_segv":
        import ctypes
        ctypes.string_at(0)  # reads address 0: SIGSEGV


def run(parser: str, path: Path, index: int, seeds_dir: Path) -> None:
    if parser in SELF_TESTS:
        _misbehave(parser)
    elif parser in ("idx_raw", "idx_gz"):
        from svertka.data.formats import read_idx
        read_idx(path)
    elif parser == "cifar_binary":
        from svertka.data.formats import read_cifar_binary
        read_cifar_binary(path)
    elif parser == "cifar_python":
        from svertka.data.formats import read_cifar_python
        read_cifar_python(path)
    elif parser == "spec_analysis":
        from svertka.analysis import analyze
        from svertka.spec import load_network
        analyze(load_network(path))
    elif parser == "spec_torch":
        import torch

        from svertka.analysis import analyze
        from svertka.backends.torch import compile as torch_compile
        from svertka.spec import load_network
        net = load_network(path)
        analyze(net)  # as `svertka train net.json` does before it builds anything
        model = torch_compile(net).eval()
        with torch.no_grad():
            model(torch.zeros(2, *net.input_shape))
    elif parser == "checkpoint":
        from svertka.train.evaluate import load_trained, predict
        loaded = load_trained(path, backend="numpy" if index % 4 == 3 else "torch", device="cpu")
        predict(loaded, [seeds_dir / "image" / "grey.png"], k=3)
    elif parser == "weights":
        from svertka.backends.torch import load_weights
        load_weights(_lenet_torch(), path)
    elif parser == "recipe":
        from svertka.train import make_config
        make_config({}, recipe=str(path))
    elif parser == "image":
        from svertka.train.evaluate import load_image
        load_image(path, (1, 28, 28) if index % 2 else (3, 32, 32))
    elif parser == "image_folder":
        from svertka.data.formats import read_image_folder
        read_image_folder(path, mode="RGB" if index % 2 else "L", size=(28, 28) if index % 3 == 0 else None)
    elif parser == "resume":
        from svertka.train.loop import resume_config, train
        cfg = resume_config(path)
        # the seed run finished epoch 1; a mutated "epochs": 4096 is a request to train on, not a bug,
        # so stop after one more epoch (as a kill would)
        train(cfg, resume=path, progress=False, stop_after=2)
    else:
        raise KeyError(parser)
