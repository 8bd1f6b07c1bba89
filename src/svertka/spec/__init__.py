"""The network spec: layers and combinators as data, each layer with its own
shape, count and receptive-field rules, and one walk that applies them."""
from .geometry import conv_out, conv_transpose_out, fmt_shape, join_path, pair
from .infer import MAX_VALUES, Traced, layer_shapes, min_input_size, trace
from .nodes import (
    GELU,
    LEAF_TYPES,
    RULES,
    Activation,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Concat,
    Conv2d,
    ConvTranspose2d,
    Counts,
    Dropout,
    Flatten,
    Gate,
    HardSigmoid,
    Identity,
    Leaf,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    Network,
    Node,
    PixelShuffle,
    RBFOutput,
    ReLU,
    ReLU6,
    Residual,
    ScaledTanh,
    SelectChannels,
    Sequential,
    ShortcutA,
    Sigmoid,
    SiLU,
    Subsample,
    Tanh,
    Upsample,
    missing_rules,
    rbf_centers,
    seq,
    walk,
)
from .receptive_field import RF, union
from .serialize import from_dict, load_network, network_from_dict, network_to_dict, save_network, to_dict

__all__ = [k for k in dir() if not k.startswith("_")]
