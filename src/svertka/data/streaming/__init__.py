"""Datasets too big for memory: images read and decoded batch by batch.

    sources.py  an ImageFolder, or WebDataset-layout tar shards: index -> encoded bytes, label
    decode.py   bytes -> the ImageNet recipe's training or evaluation crop (Pillow, Image.draft)
    loader.py   a split's batches, in the training loop's order, decoded by DataLoader workers
    splits.py   train / val / test of a streamed root, as `--data imagefolder` cuts them in memory
    shards.py   `svertka data shard`: an ImageFolder written as tar shards
"""
from .decode import CenterCrop, RandomResizedCrop, decode_crop
from .loader import StreamSplit, default_workers, epoch_order, rank_batches
from .shards import write_shards
from .sources import ImageFolderSource, TarShardSource, open_source
from .splits import TRAIN_CROPS, stream_splits

__all__ = ["CenterCrop", "RandomResizedCrop", "decode_crop", "StreamSplit", "default_workers", "epoch_order",
           "rank_batches", "write_shards", "ImageFolderSource", "TarShardSource", "open_source",
           "TRAIN_CROPS", "stream_splits"]
