"""Spec model -> ONNX file, through torch's exporter, checked by ``onnx.checker``.

Which exporter: torch 2.13 defaults to the dynamo exporter, which needs
``onnxscript`` (not a dependency here, and not installed), so svertka uses the
TorchScript-based one (``dynamo=False``). Two of its defaults are switched off:

- ``training=PRESERVE`` on a model in eval mode: the default (EVAL) folds each
  BatchNorm into the conv before it, which renames the conv's weights to
  ``onnx::Conv_N`` and loses the BatchNorm layer, so the file could not be read
  back into the same spec. PRESERVE keeps BatchNormalization (training_mode 0).
- Dropout is an identity at inference; the exporter leaves it out of the graph.

What a consumer needs to preprocess goes into ``metadata_props`` as JSON
strings under ``svertka.*`` keys: classes, mean, std, input_shape, model, and
for a run the dataset it was trained on (data), so `svertka eval` needs no flag.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from ..errors import ShapeError, SpecError, UsageError
from ..spec.geometry import fmt_shape

DEFAULT_OPSET = 18
META_PREFIX = "svertka."
INPUT_NAME, OUTPUT_NAME = "input", "logits"


def _require_onnx(torch: bool = False):
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UsageError("ONNX export and import need the onnx package: "
                         "pip install 'svertka[onnx]'") from None
    if torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise UsageError("ONNX export runs torch's exporter: pip install 'svertka[torch,onnx]'") from None


def export_module(module, input_shape, out, *, dynamic_batch: bool = False, opset: int = DEFAULT_OPSET,
                  metadata: dict | None = None) -> Path:
    """Export a compiled torch model (any ``nn.Module``) for input (C, H, W) to
    ``out``, check it with ``onnx.checker`` and add ``metadata`` (JSON values
    under ``svertka.`` keys). Returns the path."""
    _require_onnx(torch=True)
    import onnx
    import torch

    from ..fileio import atomic_write

    if not 7 <= int(opset) <= 20:
        raise UsageError(f"--opset {opset} is outside what torch's TorchScript exporter writes (7 to 20); "
                         f"the default is {DEFAULT_OPSET}")
    out = Path(out)
    module = module.eval()
    x = torch.zeros(1, *input_shape)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice; the choice is explained above
        try:
            with torch.no_grad():
                proto = _export_to_proto(module, x, axes, int(opset))
        except Exception as e:  # the exporter raises many types; all mean "this model cannot be exported"
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            if "adaptive_avg_pool2d" in str(e):
                size = fmt_shape(input_shape)
                raise ShapeError(f"torch's ONNX exporter cannot write this adaptive average pool: its input "
                                 f"is not a multiple of its output at input {size}; "
                                 f"export at a larger input") from None
            raise SpecError(f"torch's ONNX exporter failed: {first}") from None
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, json.dumps(value)
    proto.doc_string = "exported by svertka"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # a bug of ours or of the exporter: never write a file that fails the checker
        raise SpecError(f"the exported graph fails onnx.checker: {str(e).splitlines()[0][:200]}") from None
    return atomic_write(out, lambda tmp: onnx.save(proto, tmp))


def _export_to_proto(module, x, dynamic_axes, opset):
    import io

    import onnx
    import torch

    buf = io.BytesIO()
    torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=opset,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes)
    return onnx.load_from_string(buf.getvalue())


def exportable_input_size(net) -> int | None:
    """The smallest square input side torch's exporter can write ``net`` at: the
    model's smallest input, or larger where an adaptive average pool would
    otherwise upsample or pool unevenly (the exporter writes only AveragePool
    with a whole kernel for it). None if there is none up to 4096."""
    from ..spec import min_input_size, trace
    from ..spec.infer import fits

    c = net.input_shape[0]
    side = min_input_size(net.root, c)
    if side is None:  # no smallest size (a head fixed to one map size, as localize_net's): its own size
        side = net.input_shape[1]
    while side is not None and side <= 4096:
        if fits(net, (c, side, side)):
            _, rows = trace(net, (c, side, side))
            if all(r.in_shape[1] % r.out_shape[1] == 0 and r.in_shape[2] % r.out_shape[2] == 0
                   for r in rows if r.type == "AdaptiveAvgPool2d"):
                return side
        side += 1
    return None


def export_model(source: str, out, *, weights: str | None = None, dynamic_batch: bool = False,
                 opset: int = DEFAULT_OPSET, seed: int = 0) -> dict:
    """`svertka export`: ``source`` is a run folder of `svertka train` or a zoo
    name (random weights drawn from ``seed``, or ``weights``). Returns what was
    written: path, model, input shape, classes, mean, std, opset."""
    _require_onnx(torch=True)
    if not 7 <= int(opset) <= 20:  # before loading anything
        raise UsageError(f"--opset {opset} is outside what torch's TorchScript exporter writes (7 to 20); "
                         f"the default is {DEFAULT_OPSET}")
    import torch

    from ..backends.torch import compile as compile_torch
    from ..train.evaluate import load_trained
    from ..zoo import resolve_model

    if Path(source).is_dir() or weights:
        if Path(source).is_dir() and weights:
            raise UsageError(f"--weights applies to a zoo model; "
                             f"{source} is a run folder with its own weights")
        loaded = load_trained(weights or source, model=None if Path(source).is_dir() else source,
                              backend="torch", device="cpu")
        net, module = loaded.net, loaded.adapter.model
        classes, mean, std = loaded.classes, loaded.mean, loaded.std
        data = loaded.meta.get("data")
    else:
        net = resolve_model(source)
        torch.manual_seed(seed)
        module = compile_torch(net)
        classes, mean, std, data = [str(i) for i in range(net.num_classes)], net.mean, net.std, None
    meta = {"model": net.name, "classes": list(classes), "mean": list(mean), "std": list(std),
            "input_shape": list(net.input_shape), **({"data": data} if data else {})}
    path = export_module(module.to("cpu"), net.input_shape, out, dynamic_batch=dynamic_batch, opset=opset,
                         metadata=meta)
    return {"path": str(path), **meta, "opset": int(opset), "dynamic_batch": bool(dynamic_batch)}
