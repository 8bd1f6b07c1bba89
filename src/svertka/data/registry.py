"""The datasets svertka knows: where they come from, how to check them, what they hold.

What was verified on the build machine (no internet but PyPI/Debian):

* Fashion-MNIST: the ``raw_sha256``/``raw_md5`` values were computed here from
  Debian's ``dataset-fashion-mnist`` files (decompressed). The ``archive_md5``
  values are the upstream ``.gz`` md5s published by Zalando and torchvision;
  Debian recompressed the files, so only a fresh download can match those.
* MNIST: only the upstream ``.gz`` md5s (as torchvision lists them) are known;
  no copy was available here to hash the decompressed bytes. A local copy is
  therefore checked by its exact decompressed size plus the IDX structure.
* CIFAR-10: the archive md5 and the per-batch md5s of the extracted python
  batches are the published values torchvision uses; not re-hashed here.
* fashion-mnist-mini: hashes computed by ``scripts/make_mini.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from svertka.data.download import Checksum
from svertka.errors import UsageError

__all__ = ["DatasetInfo", "IdxSplit", "REGISTRY", "get_info", "list_datasets"]


@dataclass(frozen=True)
class IdxSplit:
    """The two IDX files of one split: (file name as served, checksum)."""

    images: tuple[str, Checksum]
    labels: tuple[str, Checksum]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str  # "idx", "packaged-idx", "cifar10" or "imagefolder": picks the loader
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, for pixels scaled to [0, 1]
    std: tuple[float, ...]
    image_shape: tuple[int, int, int] | None  # H, W, C; None when it depends on the files
    homepage: str
    licence: str
    mirrors: tuple[str, ...] = ()  # base URLs, tried in order
    idx: dict[str, IdxSplit] = field(default_factory=dict)  # split -> files, for IDX datasets
    system_dirs: tuple[str, ...] = ()  # read-only system copies (Debian packages)
    # CIFAR-10: archive (name, checksum) and per-split batches (name, checksum)
    archive: tuple[str, Checksum] | None = None
    batches: dict[str, tuple[tuple[str, Checksum], ...]] = field(default_factory=dict)
    # light objects on a black background (the MNIST family): `predict --invert auto` turns a
    # photo of a dark item on white into this look before classifying it
    light_on_dark: bool = False


def _idx_split(prefix: str, n: int, md5_images: str, md5_labels: str, raw_images=None,
               raw_labels=None) -> IdxSplit:
    """Checksums of an MNIST-layout split of ``n`` 28x28 images; ``raw_*`` are (sha256, md5)
    of decompressed bytes."""
    ri, rl = raw_images or (None, None), raw_labels or (None, None)
    return IdxSplit(
        images=(f"{prefix}-images-idx3-ubyte.gz", Checksum(ri[0], ri[1], md5_images, 16 + n * 784)),
        labels=(f"{prefix}-labels-idx1-ubyte.gz", Checksum(rl[0], rl[1], md5_labels, 8 + n)),
    )


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
FASHION_LICENCE = "MIT, Copyright (c) 2017 Zalando SE"

_MNIST = DatasetInfo(
    name="mnist",
    light_on_dark=True,
    kind="idx",
    classes=tuple(str(i) for i in range(10)),
    mean=(0.1307,),
    std=(0.3081,),
    image_shape=(28, 28, 1),
    homepage="http://yann.lecun.com/exdb/mnist/",
    licence="CC BY-SA 3.0 (LeCun, Cortes, Burges)",
    # yann.lecun.com often refuses scripted downloads; torchvision's mirror comes first.
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    idx={
        "train": _idx_split("train", 60000, "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                            "d53e105ee54ea40749a09fcbcd1e9432"),
        "test": _idx_split("t10k", 10000, "9fb629c4189551a2d022fa330f9573f3",
                           "ec29112dd5afa0611ce80d1b7f02629c"),
    },
)

_FASHION = DatasetInfo(
    name="fashion-mnist",
    light_on_dark=True,
    kind="idx",
    classes=FASHION_CLASSES,
    mean=(0.2860,),  # computed here over the 60000 training images
    std=(0.3530,),
    image_shape=(28, 28, 1),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    licence=FASHION_LICENCE,
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    idx={
        "train": _idx_split(
            "train", 60000, "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
            ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
             "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
             "9018921c3c673c538a1fc5bad174d6f9"),
        ),
        "test": _idx_split(
            "t10k", 10000, "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310",
            ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
             "8181f5470baa50b63fa0f6fddb340f0a"),
            ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
             "15d484375f8d13e6eb1aabb0c3f46965"),
        ),
    },
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)

# Generated by scripts/make_mini.py (sha256 of the decompressed IDX bytes).
MINI_TRAIN, MINI_TEST = 6000, 2000
_MINI = DatasetInfo(
    name="fashion-mnist-mini",
    light_on_dark=True,
    kind="packaged-idx",
    classes=FASHION_CLASSES,
    mean=_FASHION.mean,
    std=_FASHION.std,
    image_shape=(28, 28, 1),
    homepage=_FASHION.homepage,
    licence=FASHION_LICENCE,
    idx={
        "train": IdxSplit(
            images=("train-images-idx3-ubyte.gz",
                    Checksum("86562de1a1edba61438b783e2157c5ca66e0bc06c85f4e43f8e521fb4a3e2fd6",
                             raw_size=16 + MINI_TRAIN * 784)),
            labels=("train-labels-idx1-ubyte.gz",
                    Checksum("d7846d455267c272af1074c7d25c72506369936cd5f66694a0af582a9365b965",
                             raw_size=8 + MINI_TRAIN)),
        ),
        "test": IdxSplit(
            images=("t10k-images-idx3-ubyte.gz",
                    Checksum("f894337849cda3a9f38d8c3f99ad00f6b2b9496371cb38128f24e3d38acd18c7",
                             raw_size=16 + MINI_TEST * 784)),
            labels=("t10k-labels-idx1-ubyte.gz",
                    Checksum("7912d0be84443b123407c51c2f0117a433868a998c7e33559b1bbc8e5d3a528f",
                             raw_size=8 + MINI_TEST)),
        ),
    },
)

_CIFAR10 = DatasetInfo(
    name="cifar10",
    kind="cifar10",
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    mean=(0.4914, 0.4822, 0.4465),  # over the 50000 training images
    std=(0.2470, 0.2435, 0.2616),
    image_shape=(32, 32, 3),
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    licence="see https://www.cs.toronto.edu/~kriz/cifar.html (Krizhevsky, 2009)",
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    archive=("cifar-10-python.tar.gz", Checksum(archive_md5="c58f30108f718f92721af3b95e74349a")),
    batches={
        "train": tuple(
            (f"data_batch_{i}", Checksum(raw_md5=md5))
            for i, md5 in enumerate(
                [
                    "c99cafc152244af753f735de768cd75f",
                    "d4bba439e000b95fd0a9bffe97cbabec",
                    "54ebc095f3ab1f0389bbae665268c751",
                    "634d18415352ddfa80567beed471001a",
                    "482c414d41f54cd18b22e5b47cb7c3cb",
                ],
                start=1,
            )
        ),
        "test": (("test_batch", Checksum(raw_md5="40351d587109b95175f43aff81a1287e")),),
    },
)
# The binary version (cifar-10-binary.tar.gz, md5 c32a1d4ab5d03f1284b67883e8d87530)
# is read when found locally; its batches have no published per-file checksums,
# so they are checked by exact length and label range only.
CIFAR10_BINARY_DIR = "cifar-10-batches-bin"
CIFAR10_PYTHON_DIR = "cifar-10-batches-py"

_IMAGEFOLDER = DatasetInfo(
    name="imagefolder",
    kind="imagefolder",
    classes=(),  # from the sub-folder names
    mean=(0.485, 0.456, 0.406),  # ImageNet statistics, the usual default for photos
    std=(0.229, 0.224, 0.225),
    image_shape=None,
    homepage="https://pytorch.org/vision/stable/generated/torchvision.datasets.ImageFolder.html",
    licence="that of your images",
)

REGISTRY: dict[str, DatasetInfo] = {d.name: d for d in (_MNIST, _FASHION, _MINI, _CIFAR10, _IMAGEFOLDER)}


def list_datasets() -> list[str]:
    return sorted(REGISTRY)


def get_info(name: str) -> DatasetInfo:
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())}") from None
