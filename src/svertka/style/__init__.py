"""Neural style transfer (Gatys et al. 2016) through VGG taps, on both backends.

    from svertka.style import stylize, StyleSettings
    result = stylize(content, style, StyleSettings(steps=100), backend="numpy")  # uint8 H x W x 3 in
    result.image, result.history                                                  # uint8 out, losses

Files: ``network.py`` (VGG's features cut after the deepest tap, layer names,
weights), ``losses.py`` (Gram matrix, content, style and total-variation terms,
written once for both backends), ``optimize.py`` (Adam and L-BFGS over the
pixels), ``settings.py`` (what a run does), ``transfer.py`` (the objective and
the loop), ``commands.py`` (`svertka stylize`), ``figures.py`` (the loss curves
and the content/style/result panel).

Names load on first use (PEP 562): the command line imports ``commands`` on
every start and must not pay for the engine.
"""
import importlib

_WHERE = {"gram_matrix": "losses", "total_variation": "losses", "CONTENT_LAYER": "network",
          "MODELS": "network", "STYLE_LAYERS": "network", "layer_paths": "network",
          "StyleSettings": "settings", "StyleObjective": "transfer", "StyleResult": "transfer",
          "stylize": "transfer"}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
