"""Analysis read off the spec: shapes, params, MACs, memory, receptive field."""
from .core import Analysis, LayerInfo, analyze, layer_shapes, min_input_size, output_shape
from .receptive_field import RF, stacked_convs_to_see, union

__all__ = ["Analysis", "LayerInfo", "RF", "analyze", "layer_shapes", "min_input_size",
           "output_shape", "stacked_convs_to_see", "union"]
