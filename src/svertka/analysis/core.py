"""Shapes, parameters, multiply-adds, activation memory and receptive field,
read off the spec. No weights are allocated, so VGG-16 takes milliseconds.

The rules are the spec's (each layer class, and the walk in
``svertka.spec.infer``); this module turns the traced tree into a table.

MACs count the multiply-accumulates of conv and linear layers at batch 1,
bias excluded (torchvision's "GFLOPS" column and the MobileNet paper's
"Mult-Adds" count them so). BatchNorm, activations, pooling and the residual
additions count zero. FLOPs = 2 x MACs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..spec.infer import Traced, min_input_size, trace
from ..spec.receptive_field import RF

BYTES_PER_VALUE = 4  # float32 activations

__all__ = ["Analysis", "LayerInfo", "analyze", "min_input_size", "output_shape"]


@dataclass
class LayerInfo:
    name: str
    type: str
    depth: int
    in_shape: tuple
    out_shape: tuple
    params: int
    buffers: int
    macs: int
    activation_bytes: int
    rf: RF
    leaf: bool
    done: int = 0  # completion order: a container completes after its children

    @classmethod
    def from_traced(cls, t: Traced, activation_bytes: int) -> "LayerInfo":
        return cls(t.name, t.type, t.depth, t.in_shape, t.out_shape, t.params, t.buffers, t.macs,
                   activation_bytes, t.rf, t.leaf, t.done)

    def as_dict(self) -> dict:
        return {
            "name": self.name, "type": self.type, "depth": self.depth,
            "input_shape": list(self.in_shape), "output_shape": list(self.out_shape),
            "params": self.params, "macs": self.macs,
            "activation_bytes": self.activation_bytes, "rf": self.rf.as_dict(),
        }


@dataclass
class Analysis:
    name: str
    input_shape: tuple
    output_shape: tuple
    layers: list[LayerInfo] = field(default_factory=list)

    @property
    def leaves(self) -> list[LayerInfo]:
        return [la for la in self.layers if la.leaf]

    @property
    def params(self) -> int:
        return sum(la.params for la in self.leaves)

    @property
    def buffers(self) -> int:
        return sum(la.buffers for la in self.leaves)

    @property
    def macs(self) -> int:
        return sum(la.macs for la in self.leaves)

    @property
    def activation_bytes(self) -> int:
        return sum(la.activation_bytes for la in self.leaves)

    @property
    def feature_rf(self) -> RF:
        """Field of the last feature map before the network turns global
        (global pooling, flatten of a map, or the classifier)."""
        local = [la for la in self.layers if not la.rf.global_]
        return max(local, key=lambda la: la.done).rf if local else RF()

    def layer(self, name: str) -> LayerInfo:
        for la in self.layers:
            if la.name == name:
                return la
        raise KeyError(name)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "input": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "layers": [la.as_dict() for la in self.leaves],
            "total": {"params": self.params, "macs": self.macs,
                      "activation_bytes": self.activation_bytes},
            "rf": self.feature_rf.as_dict(),
        }


def analyze(model, input_shape=None) -> Analysis:
    """Analyse a Network (or a bare node with ``input_shape``) at batch 1."""
    out, rows = trace(model, input_shape)
    leaf_bytes = {id(t): math.prod(t.out_shape) * BYTES_PER_VALUE for t in rows if t.leaf}
    layers = []
    for i, t in enumerate(rows):
        if t.leaf:
            act = leaf_bytes[id(t)]
        else:  # a container's memory is its leaves' (the rows after it, deeper)
            act = sum(leaf_bytes.get(id(k), 0) for k in rows[i + 1:i + 1 + _subtree_size(rows, i)])
        layers.append(LayerInfo.from_traced(t, act))
    root = layers[0]
    name = getattr(model, "name", None) or root.type
    root.name = root.name or name
    return Analysis(name, rows[0].in_shape, out, layers)


def _subtree_size(rows: list[Traced], i: int) -> int:
    """How many rows after row i belong to its subtree (they are deeper, contiguous)."""
    depth, k = rows[i].depth, i + 1
    while k < len(rows) and rows[k].depth > depth:
        k += 1
    return k - i - 1


def output_shape(model, input_shape=None) -> tuple:
    return trace(model, input_shape)[0]
