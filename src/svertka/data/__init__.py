"""Datasets, file formats, downloads and batched augmentation.

Images are uint8 N x H x W x C (NHWC) arrays, labels int64; augmentation and
the backends take float32 N x C x H x W (see ``to_float_nchw``).
"""

from svertka.data.augment import Compose, parse_pipeline
from svertka.data.datasets import Dataset, cache_dir, load_dataset, split_indices, to_float_nchw
from svertka.data.registry import REGISTRY, DatasetInfo, get_info, list_datasets

__all__ = [
    "Compose",
    "parse_pipeline",
    "Dataset",
    "load_dataset",
    "cache_dir",
    "split_indices",
    "to_float_nchw",
    "REGISTRY",
    "DatasetInfo",
    "get_info",
    "list_datasets",
]
