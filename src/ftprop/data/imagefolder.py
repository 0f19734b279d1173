"""Image folders in the ImageNet layout: ``root/train/<class>/*.JPEG``, ``root/val/<class>/...``.

Too big to hold in memory, so unlike :class:`~ftprop.data.base.ArrayDataset` the images are
decoded with Pillow in DataLoader worker processes. The transforms are the paper's (PAPER.md
section 8), written by hand: resize the short side to ``resize`` (256), then a random
``crop`` x ``crop`` (224) window and a random horizontal flip for training, or the centre
window for testing. Workers send uint8 crops; conversion to float and the ImageNet
normalisation are one batched op on the training device.

Randomness comes only from the ``generator`` given to :meth:`ImageFolderDataset.batches`:
it draws the order and one base seed per epoch, and each example's crop and flip are drawn
from a numpy generator seeded with (base seed, example index), so the result does not depend
on the number of workers or on which worker decodes which image.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from . import register_dataset
from .base import DatasetError, normalize_images
from .download import missing_data_error

__all__ = ["ImageFolderDataset", "load_imagefolder", "IMAGENET_MEAN", "IMAGENET_STD", "EXTENSIONS"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpeg", ".jpg", ".png")
SPLIT_FOLDERS = {"train": "train", "test": "val"}


# -- the per-image transform (runs in the workers) ------------------------------------------
def resize_short_side(img, size: int):
    """Resize a PIL image so its short side is ``size`` (bilinear, antialiased; the long side
    is ``int(size * long / short)``, as torchvision's ``Resize(size)``)."""
    from PIL import Image

    w, h = img.size
    if min(w, h) == size:
        return img
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    return img.resize(new, Image.Resampling.BILINEAR)


def to_rgb8(im):
    """``im`` (a PIL image) as 8-bit RGB, decoded fully (a truncated file fails here).

    Pillow's own ``convert("RGB")`` clips a 16-bit greyscale image (a PNG of bit depth 16, mode
    I;16 or I) at 255, which turns it nearly white; here its top 8 bits are kept instead, as Pillow
    does for 16-bit colour PNGs. Floating-point images have no agreed range and are refused."""
    from PIL import Image

    if im.mode == "F":
        raise ValueError("a floating-point image (mode F) has no agreed pixel range: save it as 8- or 16-bit")
    if im.mode.startswith("I"):  # I;16, I;16B, I;16L (16-bit grey) and I (32-bit integer)
        a = np.asarray(im).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError(f"a {im.mode} image with values outside 0..65535 (here {a.min()}..{a.max()}): "
                             "save it as 8- or 16-bit")
        return Image.fromarray((a >> 8).astype(np.uint8)).convert("RGB")  # a 2-D uint8 array is mode L
    return im.convert("RGB")


def resized_crop(img, resize: int, crop: int, rng: np.random.Generator | None) -> np.ndarray | None:
    """A PIL RGB image as the model sees it, before any flip: short side resized to ``resize``,
    then a ``crop`` x ``crop`` window (uniform with ``rng``, else centred), as a uint8 HWC array;
    None when the resized image is smaller than the crop."""
    img = resize_short_side(img, resize)
    w, h = img.size
    if min(h, w) < crop:
        return None
    top, left = crop_box(h, w, crop, rng)
    return np.asarray(img, dtype=np.uint8)[top : top + crop, left : left + crop]


def crop_box(h: int, w: int, crop: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """(top, left) of a ``crop`` x ``crop`` window: uniform when ``rng`` is given, else centred."""
    if rng is None:
        return int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))


class _Failed:
    """What a worker returns for an image it could not decode (raised cleanly in the main process)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason


class _Decode(Dataset):
    """Items are ``(index, base_seed)``; returns (uint8 CHW crop, label) or a :class:`_Failed`."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], resize: int, crop: int) -> None:
        self.paths, self.labels, self.resize, self.crop = paths, labels, resize, crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int | None]):
        from PIL import Image

        index, seed = item
        path = self.paths[index]
        try:
            with Image.open(path) as im:
                img = to_rgb8(im)
        except Exception as e:  # noqa: BLE001  (Pillow raises many types for bad files)
            return _Failed(path, f"{type(e).__name__}: {e}")
        rng = None if seed is None else np.random.default_rng([seed, index])
        arr = resized_crop(img, self.resize, self.crop, rng)
        if arr is None:
            w, h = resize_short_side(img, self.resize).size
            return _Failed(path, f"image is {w}x{h} after resizing, smaller than the {self.crop} crop")
        if rng is not None and rng.random() < 0.5:
            arr = arr[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), self.labels[index]


class _BatchItems:
    """The batch sampler: lists of ``(index, base_seed)`` items, built lazily batch by batch."""

    def __init__(self, order: list[int], seed: int | None, batch_size: int, stop: int, start: int = 0) -> None:
        self.order, self.seed, self.batch_size, self.stop, self.start = order, seed, batch_size, stop, start

    def __len__(self) -> int:
        return max(0, -(-self.stop // self.batch_size) - self.start)

    def __iter__(self):
        for s in range(self.start * self.batch_size, self.stop, self.batch_size):
            yield [(i, self.seed) for i in self.order[s : min(s + self.batch_size, self.stop)]]


def _collate(items):
    for it in items:
        if isinstance(it, _Failed):
            return it
    return torch.stack([it[0] for it in items]), torch.tensor([it[1] for it in items], dtype=torch.int64)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- the dataset ----------------------------------------------------------------------------
class ImageFolderDataset:
    """One split of an image-folder dataset; follows the contract of :mod:`ftprop.data.base`."""

    def __init__(self, name: str, split: str, paths: Sequence[str], labels: Sequence[int], classes: Sequence[str],
                 resize: int = 256, crop: int = 224, workers: int = 4,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 device: torch.device | str = "cpu") -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.name, self.split = name, split
        self.paths, self.labels = list(paths), torch.as_tensor(list(labels), dtype=torch.int64)
        self.classes = list(classes)
        self.resize, self.crop, self.workers = int(resize), int(crop), int(workers)
        self._device = torch.device(device)
        self._decode = _Decode(self.paths, self.labels.tolist(), self.resize, self.crop)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self._device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self._device)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.crop, self.crop)

    @property
    def device(self) -> torch.device:
        return self._device

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (f"ImageFolderDataset({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"input_shape={self.input_shape}, classes={self.num_classes}, workers={self.workers}, "
                f"device={self.device})")

    def _replace(self, split: str, paths, labels, device) -> ImageFolderDataset:
        return ImageFolderDataset(self.name, split, paths, labels, self.classes, self.resize, self.crop,
                                  self.workers, self.mean.tolist(), self.std.tolist(), device)

    def to(self, device: torch.device | str) -> ImageFolderDataset:
        """The same dataset, yielding its batches on ``device`` (self is unchanged)."""
        return self._replace(self.split, self.paths, self.labels, device)

    def subset(self, indices: Tensor, split: str) -> ImageFolderDataset:
        """The examples at ``indices``, as a dataset of its own (e.g. a validation split)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).cpu().tolist()
        return self._replace(split, [self.paths[i] for i in idx], self.labels[idx], self.device)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 NCHW -> float32 normalised with the ImageNet mean/std, on the images' device."""
        return normalize_images(images, 255.0, self.mean, self.std)

    def inputs(self) -> dict:
        """How an image file becomes a network input (see :meth:`ArrayDataset.inputs`): the test
        transform, short side resized to ``resize`` and a centred ``crop``, then the normalisation."""
        return {"scale": 255.0, "mean": self.mean.tolist(), "std": self.std.tolist(), "whitening": None,
                "resize": self.resize, "crop": self.crop}

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        """Example ``i`` with the test transform (centre crop), normalised."""
        out = self._decode[(i, None)]
        if isinstance(out, _Failed):
            raise _decode_error(out)
        return self.normalize(out[0].unsqueeze(0).to(self.device))[0], out[1]

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                generator: torch.Generator | None = None, drop_last: bool = False,
                start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (x, y) batches on the dataset's device; randomness comes only from ``generator``.
        ``start`` skips that many batches without decoding them."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = (torch.randperm(n, generator=generator) if shuffle else torch.arange(n)).tolist()
        seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if augment else None
        stop = n - n % batch_size if drop_last else n
        batch_items = _BatchItems(order, seed, batch_size, stop, start)
        cuda = self.device.type == "cuda"
        # A generator of its own: a DataLoader draws its workers' base seed when iterated, from the global
        # RNG unless given one, which would move dropout's masks (and break an exact mid-epoch resume).
        # The decoding's randomness comes from ``seed`` alone.
        # No more workers than the CPUs this process may use (more only crowd them, and torch warns);
        # the images are the same for any number.
        workers = min(self.workers, _usable_cpus())
        loader = DataLoader(self._decode, batch_sampler=batch_items, num_workers=workers, collate_fn=_collate,
                            pin_memory=cuda, generator=torch.Generator())
        for out in loader:
            if isinstance(out, _Failed):
                raise _decode_error(out)
            images, labels = out
            yield (self.normalize(images.to(self.device, non_blocking=cuda)),
                   labels.to(self.device, non_blocking=cuda))


def _decode_error(f: _Failed) -> DatasetError:
    return DatasetError(f"cannot read image {f.path} ({f.reason}); delete or replace the file")


# -- scanning the folders -------------------------------------------------------------------
def _class_dirs(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except OSError as e:
        raise DatasetError(f"cannot list {folder}: {e}") from None


def _images(folder: Path) -> list[str]:
    """The image files under ``folder``, through linked folders, each folder once: a link back up
    the tree (a loop) or to a folder already listed would count its images again."""
    files, seen = [], {os.path.realpath(folder)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            real = os.path.realpath(os.path.join(dirpath, d))
            if real not in seen:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
        files.extend(os.path.join(dirpath, f) for f in filenames
                     if f.lower().endswith(EXTENSIONS) and not f.startswith("."))
    return sorted(files)


@register_dataset("imagefolder")
def load_imagefolder(root: Path, split: str = "train", download: bool = False, workers: int = 4,
                     resize: int = 256, crop: int = 224) -> ImageFolderDataset:
    """A class-folder image dataset (ImageNet layout); ``split="test"`` reads ``val/``."""
    for key, value in (("workers", workers), ("resize", resize), ("crop", crop)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"data.options.{key} must be a whole number, got {value!r}")
    if crop < 1 or resize < crop:
        raise ValueError(f"need 1 <= crop <= resize, got crop={crop}, resize={resize}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    root = Path(root)
    how = ("Image folders cannot be downloaded: put the images under ROOT/train/<class>/ and ROOT/val/<class>/ "
           "(.JPEG, .jpg or .png) and pass --data-root ROOT")
    folder = root / SPLIT_FOLDERS[split]
    if not folder.is_dir():
        raise missing_data_error(f"the {split} images folder {folder}", [root], how)
    classes = _class_dirs(folder)
    if not classes:
        raise DatasetError(f"{folder} has no class folders; expected {folder}/<class>/<image>.JPEG. {how}")
    other = root / SPLIT_FOLDERS["test" if split == "train" else "train"]
    if other.is_dir():
        other_classes = _class_dirs(other)
        if other_classes != classes:
            only_here = sorted(set(classes) - set(other_classes))
            only_there = sorted(set(other_classes) - set(classes))
            raise DatasetError(
                f"the class folders of {folder} and {other} differ (only in {folder.name}/: "
                f"{', '.join(only_here[:5]) or 'none'}{' ...' if len(only_here) > 5 else ''}; only in {other.name}/: "
                f"{', '.join(only_there[:5]) or 'none'}{' ...' if len(only_there) > 5 else ''}); labels would not "
                f"match between splits. Make both hold the same classes")
    paths: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = _images(folder / cls)
        if not files:
            raise DatasetError(f"class folder {folder / cls} holds no images ({', '.join(EXTENSIONS)}); "
                               f"add its images or remove the folder")
        paths.extend(files)
        labels.extend([label] * len(files))
    return ImageFolderDataset("imagefolder", split, paths, labels, classes, resize=resize, crop=crop,
                              workers=workers)
