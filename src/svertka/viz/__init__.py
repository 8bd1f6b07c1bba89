"""Pictures: a dependency-free PNG writer, sample grids, augmentation previews."""

from svertka.viz.png import encode_png, save_grid, write_png
from svertka.viz.samples import augment_grid

__all__ = ["encode_png", "write_png", "save_grid", "augment_grid"]
