"""Specs to and from JSON, so a network can be defined in a file.

A node is {"type": "Conv2d", "out_channels": 64, ...}; a Sequential is
{"type": "Sequential", "layers": [["conv", {...}], ...]}.
"""
from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

from ..errors import SpecError
from ..untrusted import MAX_CLASSES, MAX_INPUT_CHANNELS, MAX_INPUT_SIDE, MAX_STAT, MIN_STD, load_json
from . import nodes as n

MAX_FILE_BYTES = 1 << 24

_NODE_FIELDS = {"body", "shortcut", "post", "branch"}
_NAMED_LISTS = {"layers", "branches"}


def to_dict(node: n.Node) -> dict:
    out = {"type": node.type}
    for f in fields(node):
        v = getattr(node, f.name)
        if f.name in _NAMED_LISTS:
            v = [[name, to_dict(c)] for name, c in v]
        elif f.name in _NODE_FIELDS:
            v = None if v is None else to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


# Sanity limits per field, checked while loading so that a typo or a crafted
# file is one SpecError naming the layer, before any shape is inferred or any
# weight allocated. (The network's total params/activations are checked by the
# analysis walk.) Generous: the zoo's largest values are far below them.
MAX_DEPTH = 48  # nested nodes; the zoo's deepest spec nests 6
MAX_CHANNELS = 1 << 16  # out_channels, out_features, groups
MAX_KERNEL = 1024  # kernel sides, strides, dilations, paddings, pool output sizes
MAX_NAME = 128
MAX_CHILDREN = 4096

_INT_LIMITS = {  # field: (least, most)
    "out_channels": (1, MAX_CHANNELS), "out_features": (1, MAX_CHANNELS), "groups": (1, MAX_CHANNELS),
    "kernel_size": (1, MAX_KERNEL), "stride": (1, MAX_KERNEL), "dilation": (1, MAX_KERNEL),
    "padding": (0, MAX_KERNEL), "output_size": (1, MAX_KERNEL), "size": (1, MAX_KERNEL),
    "seed": (0, 2**32 - 1), "scale_factor": (1, MAX_KERNEL), "upscale_factor": (1, MAX_KERNEL),
}
_PAIR_FIELDS = {"kernel_size", "stride", "dilation", "padding", "output_size", "scale_factor"}
_FLOAT_LIMITS = {  # field: (least, most), both inclusive
    "eps": (1e-12, 1.0), "momentum": (0.0, 1.0), "p": (0.0, 1.0), "drop_path": (0.0, 1.0),
    "alpha": (-1e6, 1e6), "beta": (-1e6, 1e6), "k": (-1e6, 1e6), "amplitude": (-1e6, 1e6),
    "slope": (-1e6, 1e6),
}
_BOOL_FIELDS = {"bias", "ceil_mode", "count_include_pad"}
_NAME_FIELDS = {"body_name", "shortcut_name", "post_name"}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_name(name, where: str) -> str:
    if not (isinstance(name, str) and 0 < len(name) <= MAX_NAME and "." not in name and name.isprintable()
            and not name.startswith("_")):
        raise SpecError(f"{where}: child name {str(name)[:40]!r} must be a non-empty string of at most "
                        f"{MAX_NAME} printable characters, without '.' and not starting with '_'")
    return name


def _check_field(kind: str, key: str, v, where: str) -> None:
    """One leaf field against its type and sanity limit."""
    def bad(want):
        raise SpecError(f"{kind} at {where}: {key}={str(v)[:40]} must be {want}")

    upsample = kind == "Upsample"  # its size is a pair; it or scale_factor is unset (null)
    if key in _INT_LIMITS:
        lo, hi = _INT_LIMITS[key]
        if key == "stride" and v is None and kind in ("MaxPool2d", "AvgPool2d"):
            return
        if upsample and v is None and key in ("size", "scale_factor"):
            return
        pairs = key in _PAIR_FIELDS or (upsample and key == "size")
        values = v if pairs and isinstance(v, list) and len(v) == 2 else [v]
        if not all(_is_int(x) and lo <= x <= hi for x in values):
            bad(f"an integer in {lo}..{hi:,}" + (" or a pair of them" if pairs else ""))
    elif key in _FLOAT_LIMITS:
        lo, hi = _FLOAT_LIMITS[key]
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and lo <= v <= hi):
            bad(f"a number in [{lo:g}, {hi:g}]")
    elif key in _BOOL_FIELDS:
        if not isinstance(v, bool):
            bad("true or false")
    elif key == "align_corners":
        if v is not None and not isinstance(v, bool):
            bad("true, false or null")
    elif key == "mode":
        if not isinstance(v, str):
            bad("a string")
    elif key in _NAME_FIELDS:
        if v is not None or key != "body_name":
            _check_name(v, f"{kind} at {where}")
    elif key == "indices":
        if not (isinstance(v, list) and 0 < len(v) <= MAX_CHANNELS
                and all(_is_int(x) and 0 <= x < MAX_CHANNELS for x in v)):
            bad(f"a non-empty list of channel indices in 0..{MAX_CHANNELS - 1}")


def from_dict(d, path: str = "<root>", depth: int = 0) -> n.Node:
    if depth > MAX_DEPTH:
        raise SpecError(f"spec nests deeper than {MAX_DEPTH} levels at {path[:80]}...; flatten it")
    if not isinstance(d, dict) or "type" not in d:
        raise SpecError(f"spec node at {path} must be an object with a \"type\" key, got {_short(d)}")
    kind = d["type"]
    cls = (n.LEAF_TYPES.get(kind) or n.CONTAINER_TYPES.get(kind)) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(sorted({**n.LEAF_TYPES, **n.CONTAINER_TYPES}))
        raise SpecError(f"unknown layer type {_short(kind)} at {path}; known types: {known}")
    allowed = {f.name for f in fields(cls)}
    kwargs = {}
    for key, v in d.items():
        if key == "type":
            continue
        if key not in allowed:
            raise SpecError(f"{kind} at {path} has no field {_short(key)}; "
                            f"fields: {', '.join(sorted(allowed))}")
        if key in _NAMED_LISTS:
            if not isinstance(v, list) or not all(isinstance(p, list) and len(p) == 2 for p in v):
                raise SpecError(f"{kind}.{key} at {path} must be a list of [name, node] pairs")
            if len(v) > MAX_CHILDREN:
                raise SpecError(f"{kind}.{key} at {path} has {len(v):,} children, more than {MAX_CHILDREN:,}")
            v = [(_check_name(name, f"{kind}.{key} at {path}"), from_dict(c, f"{path}.{name}", depth + 1))
                 for name, c in v]
        elif key in _NODE_FIELDS:
            v = None if v is None else from_dict(v, f"{path}.{key}", depth + 1)
        else:
            _check_field(kind, key, v, path)
        kwargs[key] = v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{kind} at {path}: {e}") from None


def _short(v, limit: int = 60) -> str:
    text = repr(v) if isinstance(v, (str, int, float, bool, type(None))) else f"a {type(v).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def network_to_dict(net: n.Network) -> dict:
    return {
        "name": net.name, "input_shape": list(net.input_shape), "num_classes": net.num_classes,
        "mean": list(net.mean), "std": list(net.std), "meta": net.meta, "root": to_dict(net.root),
    }


def network_from_dict(d: dict) -> n.Network:
    if not isinstance(d, dict) or "root" not in d or "input_shape" not in d:
        raise SpecError("a network file must be a JSON object with \"root\" and \"input_shape\" keys")
    shape = d["input_shape"]
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(_is_int(v) for v in shape)
            and 1 <= shape[0] <= MAX_INPUT_CHANNELS and all(1 <= v <= MAX_INPUT_SIDE for v in shape[1:])):
        raise SpecError(f"input_shape {str(shape)[:40]} must be [channels, height, width] with channels in "
                        f"1..{MAX_INPUT_CHANNELS:,} and sides in 1..{MAX_INPUT_SIDE:,}")
    num_classes = d.get("num_classes", 0)
    if not (_is_int(num_classes) and 0 <= num_classes <= MAX_CLASSES):
        raise SpecError(f"num_classes {str(num_classes)[:40]} must be an integer in 0..{MAX_CLASSES:,}")
    stats = {}
    for key in ("mean", "std"):
        if key not in d:  # the default (ImageNet's statistics) whatever the channel count, as before
            stats[key] = getattr(n.Network, key)
            continue
        v = d[key]
        # one value per channel, one for all, or the default a saved 1-channel net carries along
        if not (isinstance(v, (list, tuple))
                and (len(v) in (1, shape[0]) or tuple(v) == getattr(n.Network, key))
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) <= MAX_STAT
                        for x in v)):
            raise SpecError(f"{key} {str(v)[:40]} must be a list of {shape[0]} numbers in [-{MAX_STAT:g}, "
                            f"{MAX_STAT:g}] (one per input channel)")
        if key == "std" and min(v) < MIN_STD:
            raise SpecError(f"std {str(v)[:40]} must be >= {MIN_STD:g}")
        stats[key] = tuple(v)
    meta = d.get("meta", {})
    if not isinstance(meta, dict):
        raise SpecError("meta must be a JSON object")
    name = d.get("name", "custom")
    if not isinstance(name, str) or not name:
        raise SpecError(f"name {_short(name)} must be a non-empty string")
    return n.Network(name=name, root=from_dict(d["root"]), input_shape=tuple(shape), num_classes=num_classes,
                     mean=stats["mean"], std=stats["std"], meta=dict(meta))


def save_network(net: n.Network, path) -> None:
    Path(path).write_text(json.dumps(network_to_dict(net), indent=1))


def load_network(path) -> n.Network:
    p = Path(path)
    try:
        text = p.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"network file {p} does not exist") from None
    except OSError as e:
        raise SpecError(f"network file {p} cannot be read ({e.strerror})") from None
    if len(text) > MAX_FILE_BYTES:
        raise SpecError(f"network file {p} is {len(text):,} bytes; a spec is a few kB, is it the right file?")
    return network_from_dict(load_json(text, f"network file {p}", SpecError))
