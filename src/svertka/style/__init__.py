"""Neural style transfer (Gatys et al. 2016) through VGG taps, on both backends.

    from svertka.style import stylize, StyleSettings
    result = stylize(content, style, StyleSettings(steps=100), backend="numpy")  # uint8 H x W x 3 in
    result.image, result.history                                                  # uint8 out, losses

Files: ``network.py`` (VGG's features cut after the deepest tap, layer names,
weights), ``losses.py`` (Gram matrix, content, style and total-variation terms,
written once for both backends), ``optimize.py`` (Adam and L-BFGS over the
pixels), ``transfer.py`` (the objective and the loop), ``commands.py`` (`svertka
stylize`), ``figures.py`` (the loss curves and the content/style/result panel).
"""
from .losses import gram_matrix, total_variation
from .network import CONTENT_LAYER, MODELS, STYLE_LAYERS, layer_paths
from .transfer import StyleObjective, StyleResult, StyleSettings, stylize

__all__ = ["CONTENT_LAYER", "MODELS", "STYLE_LAYERS", "StyleObjective", "StyleResult", "StyleSettings",
           "gram_matrix", "layer_paths", "stylize", "total_variation"]
