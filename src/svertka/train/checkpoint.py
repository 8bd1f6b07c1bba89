"""Checkpoints and run files, written atomically (temp file in the same folder,
fsync, os.replace): a crash or Ctrl-C mid-write leaves the previous file whole.

- ``last.safetensors``: the weights under their own names, the optimizer's
  tensors under ``__optim__.``; the header holds the model metadata (key
  ``svertka``, as the torch backend writes it) and the training state as JSON
  (key ``svertka_train``: epoch, step, history, optimizer skeleton). Nothing is
  pickled.
- ``best.safetensors``: weights only, loadable by any svertka tool.

Each file carries a sha256 over its tensors and its svertka header entries
(key ``svertka_sha256``), so a corrupted file is refused, never loaded
silently. Files written before the checksum existed load as before.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import WeightsError
from ..fileio import atomic_write, atomic_write_text
from ..untrusted import check_model_meta, load_json
from .backends import OPTIM_PREFIX

META_KEY, STATE_KEY, CHECKSUM_KEY = "svertka", "svertka_train", "svertka_sha256"


def checksum(tensors: dict, header: dict) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) and every header
    entry but the checksum itself, in sorted order."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])  # a 0-d array becomes (1,), its bytes stay the same
        h.update(json.dumps([k, a.dtype.str, list(np.shape(tensors[k]))]).encode())
        h.update(a)
    for k in sorted(header):
        if k != CHECKSUM_KEY:
            h.update(json.dumps([k, header[k]]).encode())
    return h.hexdigest()


def save_checkpoint(path, weights: dict, meta: dict, optim_tensors: dict | None = None,
                    state: dict | None = None) -> Path:
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    # np.require, not np.ascontiguousarray: the latter turns 0-d arrays (BatchNorm's
    # num_batches_tracked, Adam's step) into shape (1,)
    tensors = {k: np.require(v, requirements="C") for k, v in weights.items()}
    for k, v in (optim_tensors or {}).items():
        tensors[OPTIM_PREFIX + k] = np.require(v, requirements="C")
    header = {META_KEY: json.dumps(meta, sort_keys=True), "format": "pt"}
    if state is not None:
        header[STATE_KEY] = json.dumps(state)
    header[CHECKSUM_KEY] = checksum(tensors, header)

    def write(tmp):
        try:
            save_file(tensors, tmp, metadata=header)
        except SafetensorError as e:  # valid arrays fail only on I/O: report it as an OSError would be
            raise OSError(_errno_of(str(e)), str(e).rsplit(": ", 1)[-1]) from None

    return atomic_write(path, write)


def _errno_of(message: str) -> int | None:
    """The errno in a safetensors I/O message ("... (os error 28)"), if any."""
    tail = message.rsplit("(os error ", 1)
    return int(tail[1].rstrip(")")) if len(tail) == 2 and tail[1].rstrip(")").isdigit() else None


def read_checkpoint(path):
    """(weights, meta, optim_tensors, state) from a safetensors file; state is
    None for a weights-only file. ``.pth`` files go through the torch backend
    (``torch.load(weights_only=True)``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; check the path")
    if path.suffix.lower() in (".pth", ".pt", ".bin", ".ckpt"):
        from ..backends.torch import read_weights
        state, meta = read_weights(path)
        return {k: v.numpy() for k, v in state.items()}, meta, {}, None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise WeightsError(f"cannot read {path}: not a valid safetensors file "
                           f"({str(e).splitlines()[0][:100] if str(e) else type(e).__name__}); "
                           f"use a file written by svertka train or save_weights") from None
    if CHECKSUM_KEY in header and checksum(tensors, header) != header[CHECKSUM_KEY]:
        raise WeightsError(f"{path} is corrupted: its contents do not match the checksum saved with them; "
                           f"use another copy, or train again")
    meta = load_json(header.get(META_KEY, "{}"), f"{path}: the svertka metadata in its header", WeightsError)
    state = load_json(header[STATE_KEY], f"{path}: the training state in its header", WeightsError) \
        if STATE_KEY in header else None
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIM_PREFIX)}
    for k, v in weights.items():  # files written before the fix above hold these as shape (1,)
        if k.endswith("num_batches_tracked") and v.shape == (1,):
            weights[k] = v.reshape(())
    optim = {k[len(OPTIM_PREFIX):]: v for k, v in tensors.items() if k.startswith(OPTIM_PREFIX)}
    return weights, check_model_meta(meta, str(path), WeightsError), optim, state


def write_metrics(run_dir, history: list[dict]) -> None:
    """metrics.jsonl (one JSON object per epoch) and metrics.csv, rewritten whole."""
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    keys = []
    for h in history:
        keys += [k for k in h if k not in keys]
    rows = [",".join("" if h.get(k) is None else str(h[k]) for k in keys) for h in history]
    lines = [",".join(keys)] + rows
    atomic_write_text(run_dir / "metrics.csv", "\n".join(lines) + "\n")
