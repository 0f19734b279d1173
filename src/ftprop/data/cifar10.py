"""CIFAR-10 from its official python release (``cifar-10-batches-py/``), held as one uint8 tensor.

The five training batches and the test batch are pickled dicts with keys ``data`` (uint8,
N x 3072, each row the R, G and B planes of a 32x32 image) and ``labels``; ``batches.meta``
names the classes. Keys are byte strings in the official files (Python 2 pickles) and str
in some re-written copies: both are accepted. The pickles are read with a restricted
unpickler that builds only numpy arrays and plain containers, so a tampered file cannot run
code, and every array is checked (shape, dtype, label range) before it is used.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import register_dataset
from .base import ArrayDataset, DatasetError, patch_whitening
from .download import fetch, missing_data_error, safe_extract_tar

__all__ = ["load_cifar10", "MEAN", "STD", "CLASSES", "URL", "MD5"]

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
ROW = 3 * 32 * 32

# PAPER.md section 8: per-channel mean and std of the training pixels in [0, 1].
MEAN = (0.49139968, 0.48215841, 0.44653091)
STD = (0.24703223, 0.24348513, 0.26158784)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# What the batch pickles may build: numpy arrays (as pickled by numpy 1.x and 2.x, and by
# Python 2) and nothing else. Any other global in a file is a sign of a corrupt or hostile file.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 protocol-2 pickles spell bytes
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("__builtin__", "object"), ("builtins", "object"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]  # numpy 2 renamed it; skip the shim's warning
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    except Exception as e:  # noqa: BLE001  (any unpickling failure means a corrupt file)
        raise DatasetError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); delete "
                           f"{path.parent} and fetch it again (--download), or re-run the script "
                           f"that prepared it") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path} holds a {type(obj).__name__}, not the dict of a CIFAR-10 batch; "
                           f"is --data-root pointing at the right folder?")
    return obj


def _get(d: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    keys = ", ".join(repr(k) for k in d)
    raise DatasetError(f"{path} has no {key!r} entry (it has {keys}); not the CIFAR-10 python layout. "
                       f"Delete {path.parent} and fetch it again (--download)")


def _as_text(x: Any) -> str:
    return x.decode("latin1") if isinstance(x, bytes) else str(x)


def _read_meta(path: Path) -> tuple[list[str], int | None]:
    meta = _load_pickle(path)
    try:
        names = [_as_text(n) for n in _get(meta, "label_names", path)]
        counts = {key: int(meta[k]) for key in ("num_cases_per_batch", "num_vis")
                  for k in (key.encode(), key) if k in meta}
    except (TypeError, ValueError, OverflowError) as e:  # a list of names and whole numbers, in a sound copy
        raise DatasetError(f"{path} is not CIFAR-10's batches.meta ({e}). Delete {path.parent} and fetch it "
                           f"again (--download)") from None
    if len(names) < 2:
        raise DatasetError(f"{path} lists {len(names)} class names; expected CIFAR-10's 10")
    if counts.get("num_vis", ROW) != ROW:
        raise DatasetError(f"{path} says images have {counts['num_vis']} values; CIFAR-10's have {ROW}")
    return names, counts.get("num_cases_per_batch")


def _read_batch(path: Path, num_classes: int, rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    batch = _load_pickle(path)
    data, labels = _get(batch, "data", path), _get(batch, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW:
        what = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: 'data' is a {what}; the CIFAR-10 layout is uint8 N x {ROW}. "
                           f"Delete {path.parent} and fetch it again (--download)")
    try:
        as_given = np.asarray(labels)
        labels = as_given.astype(np.int64)
        if not np.array_equal(labels, as_given):  # 1.5 would silently read as class 1
            raise ValueError("some are not whole numbers")
    except (TypeError, ValueError, OverflowError) as e:
        raise DatasetError(f"{path}: 'labels' are not integers ({e})") from None
    if labels.shape != (data.shape[0],):
        raise DatasetError(f"{path}: {data.shape[0]} images but labels of shape {labels.shape}")
    if rows is not None and data.shape[0] != rows:
        raise DatasetError(f"{path}: {data.shape[0]} images, but batches.meta says {rows} per batch "
                           f"(a truncated or mixed-up copy). Delete {path.parent} and fetch it again")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{path}: labels range over {labels.min()}..{labels.max()}, outside "
                           f"0..{num_classes - 1}")
    return data, labels


def _folder(root: Path) -> Path:
    """``root/cifar-10-batches-py``, or ``root`` itself when it already is that folder."""
    if not (root / FOLDER).is_dir() and (root / TEST_FILES[0]).is_file() and (root / META_FILE).is_file():
        return root
    return root / FOLDER


@register_dataset("cifar10")
def load_cifar10(root: Path, split: str = "train", download: bool = False, crop_pad: int = 4,
                 whiten: int = 0, whiten_eps: float = 0.1, cutout: int = 0) -> ArrayDataset:
    """CIFAR-10 as uint8 (N, 3, 32, 32) with the paper's normalisation and crop+flip augmentation
    (``crop_pad``: the zero padding before the random 32x32 crop; the paper's 4, 0 for flips only;
    ``cutout`` > 0 also blanks a random square of that side in each training image, off in the paper).

    ``whiten`` > 0 (odd; off in the paper) adds ZCA whitening of ``whiten`` x ``whiten`` patches after
    the normalisation (:func:`ftprop.data.base.patch_whitening`, damped by ``whiten_eps``), estimated
    on the 50,000 training images whatever the split, so train, validation and test share it."""
    if whiten and (isinstance(whiten, bool) or not isinstance(whiten, int) or whiten < 0 or whiten % 2 == 0):
        raise ValueError(f"whiten must be 0 (off) or an odd patch size such as 5, got {whiten!r}")
    if isinstance(whiten_eps, bool) or not isinstance(whiten_eps, (int, float)) or not 0 < whiten_eps < math.inf:
        raise ValueError(f"whiten_eps must be a positive finite number (the damping of the whitening, e.g. 0.1), "
                         f"got {whiten_eps!r}")
    root = Path(root)
    folder = _folder(root)
    files = TRAIN_FILES if split == "train" else TEST_FILES
    wanted = (META_FILE, *files, *(TRAIN_FILES if whiten and split != "train" else ()))  # whitening's statistics
    needed = [folder / name for name in wanted]
    if not all(p.is_file() for p in needed):
        if download:
            archive = fetch(URL, root / ARCHIVE, MD5)
            safe_extract_tar(archive, root)
            folder = root / FOLDER
            needed = [folder / name for name in wanted]
        missing = [p.name for p in needed if not p.is_file()]
        if missing:
            raise missing_data_error(
                f"CIFAR-10 ({', '.join(missing)})", [folder],
                f"Pass --download (download=True) to fetch {URL} into {root}, or --data-root a folder that "
                f"holds {FOLDER}/ (the official python version)")
    classes, per_batch = _read_meta(folder / META_FILE)

    def read(names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_read_batch(folder / name, len(classes), per_batch) for name in names]
        data, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels)

    images, labels = read(files)
    ds = ArrayDataset("cifar10", split, images, labels, classes, MEAN, STD, augment="crop_flip", crop_pad=crop_pad,
                      cutout=cutout)
    if whiten:
        train_images = images if split == "train" else read(TRAIN_FILES)[0]
        ds.whitening = patch_whitening(train_images, ds.normalize, whiten, whiten_eps)
    return ds
