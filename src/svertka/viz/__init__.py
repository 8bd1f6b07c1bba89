"""Pictures: images written through Pillow, sample grids, augmentation previews."""

from svertka.viz.image import image_format, save_grid, write_image
from svertka.viz.samples import augment_grid

__all__ = ["image_format", "write_image", "save_grid", "augment_grid"]
