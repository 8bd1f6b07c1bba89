"""What a user types for a model (`svertka summary/rf/train/eval/plot`) turned
into a spec: a zoo name, a JSON network file, an .onnx file or a run folder."""
from __future__ import annotations

import os

from ..errors import UsageError
from ..spec import load_network
from ..spec.nodes import Network
from .registry import create_model


def resolve_model(name: str, num_classes: int | None = None, in_chans: int | None = None,
                  input_size: int | None = None) -> Network:
    """A spec from a zoo name (list them with `svertka models`) or a JSON network file.

    A zoo model is adapted to the data: ``num_classes`` and ``in_chans`` change its
    head and stem, ``input_size`` its input side (shapes are inferred from it). A
    JSON file is taken as written; it must have ``num_classes`` classes. An ``.onnx``
    file is imported (``svertka.export.load_onnx``, which also gives its weights)."""
    if name.lower().endswith(".onnx"):
        from ..export import load_onnx

        net = load_onnx(name, input_size=input_size).network
        if (num_classes and net.num_classes != num_classes) or (in_chans and net.input_shape[0] != in_chans):
            raise UsageError(f"{name} takes {net.input_shape[0]} channels and has {net.num_classes} classes; "
                             f"an imported model is taken as it is")
        return net
    if name.endswith(".json") or os.path.sep in name:
        net = load_network(name)
        if num_classes and net.num_classes != num_classes:
            raise UsageError(f"{name} has {net.num_classes} classes but the data has {num_classes}")
        return net
    return create_model(name, num_classes=num_classes, in_chans=in_chans, input_size=input_size)


def resolve_spec(name_or_path: str, num_classes=None, in_chans=None, input_size=None) -> Network:
    """``resolve_model``, plus a run folder of `svertka train` (its model.json);
    ``input_size`` is used only for an .onnx file whose image size is left open."""
    from pathlib import Path

    folder = Path(name_or_path)
    if folder.is_dir():
        if not (folder / "model.json").is_file():
            raise UsageError(f"{name_or_path} is a folder without model.json; pass a zoo name, a network "
                             f".json file or a run folder of `svertka train`")
        name_or_path = str(folder / "model.json")
    if input_size and name_or_path.lower().endswith(".onnx"):
        return resolve_model(name_or_path, num_classes=num_classes, input_size=input_size)
    return resolve_model(name_or_path, num_classes=num_classes, in_chans=in_chans)
