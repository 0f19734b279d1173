"""MNIST and Fashion-MNIST from their official IDX files (gzipped or raw), as uint8 (N, 1, 28, 28).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order. The header is
parsed and the file's size checked against it, so a truncated file is reported, never read.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from . import register_dataset
from .base import ArrayDataset, DatasetError
from .download import fetch, missing_data_error

__all__ = ["read_idx", "load_mnist", "load_fashion_mnist", "SOURCES"]

# IDX type code -> numpy dtype (big-endian, as the format stores them).
_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

SOURCES = {
    "mnist": {
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        # The official md5s of the gzipped files (as published with LeCun's files and used by torchvision).
        "md5": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        "classes": [str(d) for d in range(10)],
        # PAPER.md section 8.
        "mean": (0.1307,), "std": (0.3081,),
        "fallbacks": (),
    },
    "fashion-mnist": {
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        # The official md5s of the gzipped files, as listed in zalandoresearch/fashion-mnist's README
        # and used by torchvision. Debian's copy (/usr/share/datasets/fashion-mnist, and
        # /work/shared/data/fashion-mnist) is re-gzipped, so its .gz md5s differ; its decompressed
        # contents have md5 f4a8712d7a061bf5bd6d2ca38dc4d50a (train images), 9018921c3c673c538a1fc5bad174d6f9
        # (train labels), 8181f5470baa50b63fa0f6fddb340f0a (t10k images), 15d484375f8d13e6eb1aabb0c3f46965
        # (t10k labels). Local files are never checksummed; only downloads are (but official-size
        # labels are checked to be this dataset's, not MNIST's: _other_dataset).
        "md5": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot"],
        # Not in the paper: computed here over the 60,000 training images, pixels in [0, 1]
        # (mean 0.2860406, population std 0.3530242).
        "mean": (0.2860406,), "std": (0.3530242,),
        # Debian/Ubuntu's `dataset-fashion-mnist` package installs the official files here.
        "fallbacks": (Path("/usr/share/datasets/fashion-mnist"),),
    },
}
# Folder names other tools use for the same files (torchvision: root/MNIST/raw, root/FashionMNIST/raw).
_ALIASES = {"mnist": ("mnist", "MNIST"), "fashion-mnist": ("fashion-mnist", "FashionMNIST", "fashion_mnist")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw): header checked, size checked, returns a numpy array."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DatasetError(f"{path} is a truncated or corrupt gzip file ({e}); delete it and fetch it again "
                           f"(--download)") from None
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'none'}); "
                           f"delete it and fetch it again (--download)")
    dtype, ndim = _TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated inside its header; delete it and fetch it again (--download)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(dims) * dtype.itemsize  # Python ints: a crafted header cannot wrap around
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DatasetError(f"{path} is {state}: the header promises {dims} {dtype.name} values ({expected} bytes) "
                           f"but it holds {len(raw)} bytes; delete it and fetch it again (--download)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(root: Path, name: str, split: str) -> list[tuple[Path, Path]]:
    """The (images, labels) files of ``split`` in each folder that holds both, gz or raw, in the
    order they are searched."""
    out = []
    for folder in _search_dirs(root, name):
        found = [next((folder / f for f in (base, base + ".gz") if (folder / f).is_file()), None)
                 for base in FILES[split]]
        if None not in found:
            out.append((found[0], found[1]))
    return out


def _search_dirs(root: Path, name: str) -> list[Path]:
    # The dataset's own sub-folders first: the file names are the same for MNIST and Fashion-MNIST,
    # so a root holding both in sub-folders must not mistake one for the other.
    dirs = [root / alias / sub for alias in _ALIASES[name] for sub in ("", "raw")]
    return [*dirs, root, *SOURCES[name]["fallbacks"]]


# The official files' sizes. Fashion-MNIST has exactly 6,000 training and 1,000 test images of each
# class; MNIST's classes are uneven (5,421 to 6,742 and 892 to 1,135). The two share their file names,
# so files found outside the dataset's own folder are told apart by this.
_OFFICIAL_N = {"train": 60000, "test": 10000}


def _other_dataset(name: str, split: str, labels: np.ndarray) -> str | None:
    """The other dataset's name when these official-size labels are its, not ``name``'s."""
    if len(labels) != _OFFICIAL_N[split] or labels.size == 0 or int(labels.max()) >= 10:
        return None
    balanced = len(set(np.bincount(labels, minlength=10).tolist())) == 1
    if name == "fashion-mnist" and not balanced:
        return "mnist"
    if name == "mnist" and balanced:
        return "fashion-mnist"
    return None


def _fetch(name: str, root: Path, split: str) -> tuple[Path, Path]:
    """Download ``split``'s (images, labels) files into ``root/name/raw``; their paths."""
    src = SOURCES[name]
    paths = [fetch(src["url"] + base + ".gz", root / name / "raw" / (base + ".gz"), src["md5"][base + ".gz"])
             for base in FILES[split]]
    return paths[0], paths[1]


def _load(name: str, root: Path, split: str, download: bool) -> ArrayDataset:
    src = SOURCES[name]
    root = Path(root)
    candidates: list = _find(root, name, split)
    if download:
        candidates.append(None)  # fetch this dataset's own files: tried when none found is its
    if not candidates:
        wanted = " and ".join(f"{b}[.gz]" for b in FILES[split])
        raise missing_data_error(f"{name} {split} files ({wanted})", _search_dirs(root, name),
                                 f"Pass --download (download=True) to fetch them from {src['url']} into "
                                 f"{root / name / 'raw'}, or --data-root a folder that holds them")
    # The first files found that are not the other dataset's (the two share their file names).
    first = None
    for found in candidates:
        img_path, lab_path = found or _fetch(name, root, split)
        labels = read_idx(lab_path)
        other = _other_dataset(name, split, labels) if labels.dtype == np.uint8 and labels.ndim == 1 else None
        if other is None:
            break
        first = first or (lab_path, other)
    if other is not None:
        lab_path, other = first
        why = ("its classes are all the same size, as only Fashion-MNIST's are" if other == "fashion-mnist"
               else "its classes differ in size, and Fashion-MNIST's are all the same")
        raise DatasetError(f"{lab_path} looks like {other}'s {split} labels, not {name}'s ({why}; the two datasets' "
                           f"files have the same names). Put each dataset in its own folder ({root / 'mnist'}, "
                           f"{root / 'fashion-mnist'}), or pass --download to fetch {name}")
    images = read_idx(img_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(f"{img_path} holds {images.dtype.name} values of shape {images.shape}; "
                           f"expected uint8 N x 28 x 28 images")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(f"{lab_path} holds {labels.dtype.name} values of shape {labels.shape}; "
                           f"expected uint8 labels, one dimension")
    if len(labels) != len(images):
        raise DatasetError(f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels; "
                           f"are they from the same dataset and split?")
    n_classes = len(src["classes"])
    if labels.size and int(labels.max()) >= n_classes:
        raise DatasetError(f"{lab_path} holds label {int(labels.max())}, outside 0..{n_classes - 1}")
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # copy: frombuffer views are read-only
    y = torch.from_numpy(labels.astype(np.int64))
    return ArrayDataset(name, split, x, y, src["classes"], src["mean"], src["std"], augment=None)


@register_dataset("mnist")
def load_mnist(root: Path, split: str = "train", download: bool = False) -> ArrayDataset:
    """MNIST: uint8 (N, 1, 28, 28), normalised with (0.1307, 0.3081); no augmentation (as the paper)."""
    return _load("mnist", root, split, download)


@register_dataset("fashion-mnist")
def load_fashion_mnist(root: Path, split: str = "train", download: bool = False) -> ArrayDataset:
    """Fashion-MNIST: uint8 (N, 1, 28, 28), normalised with its own training-set mean/std; no augmentation."""
    return _load("fashion-mnist", root, split, download)
