"""The network spec: layers and combinators as data, with shape inference."""
from .nodes import (
    Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Concat, Conv2d, Dropout, Flatten, Gate,
    GELU, Identity, Linear, LocalResponseNorm, MaxPool2d, Network, Node, RBFOutput, ReLU, ReLU6,
    Residual, ScaledTanh, SelectChannels, Sequential, ShortcutA, Sigmoid, SiLU, Subsample, Tanh,
    pair, seq, walk,
)
from .serialize import from_dict, load_network, network_from_dict, network_to_dict, save_network, to_dict
from .shapes import conv_out, leaf_output_shape

__all__ = [k for k in dir() if not k.startswith("_")]
