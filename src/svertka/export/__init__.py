"""ONNX export (torch's exporter, checked by onnx.checker and onnxruntime in the
tests) and import (an ONNX graph of common CNN operators -> spec + weights).

    export_model("resnet18", "resnet18.onnx", dynamic_batch=True)
    imported = load_onnx("resnet18.onnx")   # .network (a spec), .state_dict, .meta
"""
from .onnx_export import DEFAULT_OPSET, export_model, export_module
from .onnx_import import Imported, load_onnx

__all__ = ["DEFAULT_OPSET", "export_model", "export_module", "Imported", "load_onnx"]
