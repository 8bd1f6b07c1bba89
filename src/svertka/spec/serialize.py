"""Specs to and from JSON, so a network can be defined in a file.

A node is {"type": "Conv2d", "out_channels": 64, ...}; a Sequential is
{"type": "Sequential", "layers": [["conv", {...}], ...]}.
"""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from ..errors import SpecError
from . import nodes as n

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


def from_dict(d, path: str = "<root>") -> n.Node:
    if not isinstance(d, dict) or "type" not in d:
        raise SpecError(f"spec node at {path} must be an object with a \"type\" key, got {d!r:.80}")
    kind = d["type"]
    cls = n.LEAF_TYPES.get(kind) or n.CONTAINER_TYPES.get(kind)
    if cls is None:
        known = ", ".join(sorted({**n.LEAF_TYPES, **n.CONTAINER_TYPES}))
        raise SpecError(f"unknown layer type {kind!r} at {path}; known types: {known}")
    allowed = {f.name for f in fields(cls)}
    kwargs = {}
    for key, v in d.items():
        if key == "type":
            continue
        if key not in allowed:
            raise SpecError(f"{kind} at {path} has no field {key!r}; fields: {', '.join(sorted(allowed))}")
        if key in _NAMED_LISTS:
            if not isinstance(v, list) or not all(isinstance(p, list) and len(p) == 2 for p in v):
                raise SpecError(f"{kind}.{key} at {path} must be a list of [name, node] pairs")
            v = [(str(name), from_dict(c, f"{path}.{name}")) for name, c in v]
        elif key in _NODE_FIELDS:
            v = None if v is None else from_dict(v, f"{path}.{key}")
        kwargs[key] = v
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise SpecError(f"{kind} at {path}: {e}") from None


def network_to_dict(net: n.Network) -> dict:
    return {
        "name": net.name, "input_shape": list(net.input_shape), "num_classes": net.num_classes,
        "mean": list(net.mean), "std": list(net.std), "meta": net.meta, "root": to_dict(net.root),
    }


def network_from_dict(d: dict) -> n.Network:
    if not isinstance(d, dict) or "root" not in d or "input_shape" not in d:
        raise SpecError("a network file must be a JSON object with \"root\" and \"input_shape\" keys")
    try:
        return n.Network(
            name=str(d.get("name", "custom")), root=from_dict(d["root"]),
            input_shape=tuple(d["input_shape"]), num_classes=int(d.get("num_classes", 0)),
            mean=tuple(d.get("mean", n.Network.mean)), std=tuple(d.get("std", n.Network.std)),
            meta=dict(d.get("meta", {})),
        )
    except (TypeError, ValueError) as e:
        raise SpecError(f"bad network file: {e}") from None


def save_network(net: n.Network, path) -> None:
    Path(path).write_text(json.dumps(network_to_dict(net), indent=1))


def load_network(path) -> n.Network:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise SpecError(f"network file {p} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SpecError(f"network file {p} is not valid JSON ({e}); write one with svertka.spec.save_network "
                        f"(README: 'Define your own network')") from None
    return network_from_dict(data)
