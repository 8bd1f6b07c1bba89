"""Analysis read off the spec: shapes, params, MACs, memory, receptive field."""
from ..spec.infer import layer_shapes, min_input_size
from ..spec.receptive_field import RF, union
from .core import Analysis, LayerInfo, analyze, output_shape
from .receptive_field import stacked_convs_to_see

__all__ = ["Analysis", "LayerInfo", "RF", "analyze", "layer_shapes", "min_input_size",
           "output_shape", "stacked_convs_to_see", "union"]
