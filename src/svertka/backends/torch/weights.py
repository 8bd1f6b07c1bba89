"""Weights I/O for compiled models.

- Saved as safetensors; the metadata (model name, num_classes, input shape)
  goes in the safetensors header, JSON-encoded.
- ``.pth`` / ``.pt`` files (torchvision's checkpoints) are read with
  ``torch.load(weights_only=True)`` only: nothing a user hands in is unpickled
  as arbitrary objects.
- Loading is strict: missing keys, unexpected keys and shape mismatches are
  reported together, as one ``WeightsError`` that says what to do.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ...errors import WeightsError
from ...fileio import atomic_write
from ...spec.geometry import fmt_shape
from ...untrusted import check_model_meta, check_pickle, load_json

__all__ = ["save_weights", "read_weights", "check_state_dict", "load_weights", "model_meta"]

_META_KEY = "svertka"
_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile
_AUX_HEADS = ("aux1", "aux2", "AuxLogits")  # training-only heads in torchvision's files
_MAX_PICKLE_BYTES = 1 << 26  # data.pkl names tensors only; the tensors' bytes are stored beside it


def model_meta(model: nn.Module) -> dict:
    """What ``compile`` recorded about the model: model, num_classes, input_shape."""
    return dict(getattr(model, "svertka_meta", None) or {})


def save_weights(model_or_state: nn.Module | dict, path, meta: dict | None = None) -> Path:
    """Write the state_dict as safetensors, atomically (temp file + rename).
    ``meta`` adds to / overrides the model's own (``svertka_meta``)."""
    from safetensors.torch import save_file

    path = Path(path)
    if isinstance(model_or_state, nn.Module):
        state, info = model_or_state.state_dict(), model_meta(model_or_state)
    else:
        state, info = model_or_state, {}
    info.update(meta or {})
    tensors = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise WeightsError(f"state_dict entry {k!r} is a {type(v).__name__}, not a tensor; "
                               f"only tensors can be saved as safetensors")
        tensors[k] = v.detach().to("cpu").contiguous().clone()
    header = {_META_KEY: json.dumps(info, sort_keys=True), "format": "pt"}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def read_weights(path, map_location="cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, metadata) from a .safetensors file, or from a .pth/.pt
    file read with ``torch.load(weights_only=True)`` (metadata then empty,
    unless the file is a dict holding "state_dict"/"model" plus "meta")."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return _read_pth(path, map_location)
    return _read_safetensors(path, map_location)


def _read_safetensors(path: Path, map_location):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError, ValueError: all mean "not readable"
        raise WeightsError(f"cannot read weights {path}: not a valid safetensors file "
                           f"({_short(e)}); re-save or re-download it") from None
    meta = {}
    if _META_KEY in header:
        meta = load_json(header[_META_KEY], f"weights {path}: the svertka metadata in its header",
                         WeightsError)
    return state, check_model_meta(meta, f"weights {path}", WeightsError)


def _check_pth_pickles(path: Path) -> None:
    """Walk the pickles of a .pth before torch unpickles them: torch's
    weights_only unpickler still builds whatever nesting the file holds, and a
    tuple nested 10**6 deep kills the process. The zip format (torch >= 1.6)
    keeps its pickle in ``*/data.pkl``; the legacy format is five pickles in a
    row followed by raw storage bytes."""
    import tarfile
    import zipfile

    what = f"cannot read weights {path}"
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith("data.pkl")]
                if not names:
                    raise WeightsError(f"{what}: a zip file without data.pkl is not a PyTorch "
                                       f"checkpoint; re-save or re-download it")
                for n in names:
                    if z.getinfo(n).file_size > _MAX_PICKLE_BYTES:
                        raise WeightsError(f"{what}: its {n} is {z.getinfo(n).file_size:,} bytes, "
                                           f"not a state_dict's; re-save the file")
                    check_pickle(z.read(n), what, WeightsError)
            return
        if tarfile.is_tarfile(path):
            raise WeightsError(f"{what}: it is a tar-format checkpoint of torch < 0.4; load and re-save it "
                               f"with a current torch, or export safetensors")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise WeightsError(f"{what}: not a valid PyTorch checkpoint ({_short(e)}); "
                           f"re-save or re-download it") from None
    with open(path, "rb") as f:
        for _ in range(5):  # magic number, protocol, sys info, the object, the storage keys
            check_pickle(f, what, WeightsError)


def _read_pth(path: Path, map_location):
    import pickle

    _check_pth_pickles(path)
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; we say it in one line below
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _unpickler_reason(e)
        if "GLOBAL" in reason:
            raise WeightsError(f"refusing to load {path}: it holds objects other than tensors "
                               f"({reason}); export a plain state_dict or safetensors "
                               f"instead") from None
        raise WeightsError(f"cannot read weights {path}: not a valid PyTorch checkpoint "
                           f"({reason}); re-save or re-download it") from None
    except Exception as e:
        raise WeightsError(f"cannot read weights {path}: not a valid PyTorch checkpoint "
                           f"({_short(e)}); re-save or re-download it") from None
    meta = {}
    if isinstance(obj, dict) and not _all_tensors(obj):
        if isinstance(obj.get("meta"), dict):
            meta = check_model_meta(dict(obj["meta"]), f"weights {path}", WeightsError)
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict) and _all_tensors(obj[key]):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not _all_tensors(obj):
        raise WeightsError(f"{path} is not a state_dict (a dict of tensor names to tensors); "
                           f"save model.state_dict() instead")
    return dict(obj), meta


def _unpickler_reason(e: Exception) -> str:
    """The one informative line of torch's long weights_only error."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line:
            return _short(Exception(line))
    for i, line in enumerate(lines):
        if line.endswith("WeightsUnpickler error:") and i + 1 < len(lines):
            return _short(Exception(lines[i + 1]))
    return _short(Exception(lines[-1] if lines else type(e).__name__))


def _all_tensors(d: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def _short(e: Exception, limit: int = 120) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _strip_prefixes(state: dict) -> dict:
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _model_num_classes(model: nn.Module) -> int | None:
    nc = model_meta(model).get("num_classes")
    if nc is not None:
        return int(nc) or None  # 0: a task model without classes, nothing to compare
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m.out_features
    return last


def _listing(keys, limit: int = 3) -> str:
    keys = sorted(keys)
    more = f", ... {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(model: nn.Module, state: dict, meta: dict | None = None,
                     source: str = "checkpoint") -> dict:
    """Raise one WeightsError if ``state`` does not fit ``model`` exactly.
    Returns the state_dict to load (with a DDP/compile prefix stripped)."""
    meta = meta or {}
    mine = model_meta(model)
    want, got = mine.get("model"), meta.get("model")
    if want and got and want != got:
        raise WeightsError(f"{source} is for {got}, not {want}; pass --model {got}, "
                           f"or weights saved from {want}")
    state = _strip_prefixes(state)
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    top = {k.split(".", 1)[0] for k in expected}
    aux = {k for k in unexpected if k.split(".", 1)[0] in _AUX_HEADS and k.split(".", 1)[0] not in top}
    if aux and aux == unexpected:
        # torchvision's googlenet/inception files carry the auxiliary classifiers,
        # which its own builder drops after loading; so do we
        state = {k: v for k, v in state.items() if k not in aux}
        unexpected = set()
    mismatched = {k: (tuple(state[k].shape), tuple(expected[k].shape))
                  for k in set(expected) & set(state) if state[k].shape != expected[k].shape}

    model_nc = _model_num_classes(model)
    ckpt_nc = meta.get("num_classes")
    if not missing and not unexpected and mismatched and model_nc:
        # every mismatch is the class dimension of the classifier: say so
        heads = {theirs[0] for theirs, ours in mismatched.values()
                 if len(theirs) == len(ours) and ours[0] == model_nc and theirs[1:] == ours[1:]}
        if len(heads) == 1 and all(ours[0] == model_nc and theirs[1:] == ours[1:]
                                   for theirs, ours in mismatched.values()):
            ckpt_nc = heads.pop()
    if ckpt_nc is not None and model_nc is not None and int(ckpt_nc) != model_nc:
        raise WeightsError(f"num_classes mismatch: {source} has {int(ckpt_nc)} classes, model "
                           f"{model_nc}; pass --num-classes {int(ckpt_nc)}")

    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_listing(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_listing(unexpected)})")
    if mismatched:
        shown = sorted(mismatched)[:3]
        more = f", ... {len(mismatched) - 3} more" if len(mismatched) > 3 else ""
        problems.append(f"{len(mismatched)} shape mismatches ("
                        + ", ".join(f"{k} {fmt_shape(mismatched[k][0])} vs {fmt_shape(mismatched[k][1])}"
                                    for k in shown) + more + ")")
    if problems:
        name = want or "this model"
        raise WeightsError(f"{source} does not fit {name}: " + "; ".join(problems)
                           + "; is it for another model or configuration?")
    return state


def load_weights(model: nn.Module, path, map_location="cpu") -> dict:
    """Load a .safetensors or .pth file into ``model`` strictly; returns the
    file's metadata. Any misfit raises one WeightsError naming what is wrong."""
    state, meta = read_weights(path, map_location)
    try:
        state = check_state_dict(model, state, meta)
    except WeightsError as e:
        raise WeightsError(f"{Path(path).name}: {e}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # should not happen after the check; keep it one line
        raise WeightsError(f"{Path(path).name}: checkpoint does not load: {_short(e, 200)}") from None
    return meta
