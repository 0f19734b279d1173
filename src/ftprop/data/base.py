"""The dataset contract the training engine relies on, and the in-memory implementation.

A dataset has ``name``, ``split``, ``classes``, ``num_classes``, ``input_shape`` (C, H, W) or
(D,), ``device``, ``len()``, ``to(device)``, ``subset(indices, split)`` and
``batches(batch_size, shuffle=, augment=, generator=, drop_last=, start=)`` which yields
``(x, y)``: x float32 normalised on the dataset's device, y int64 class indices; and
``inputs()``, the record of how a stored image becomes a network input (:func:`normalize_images`'s
arguments, plus ``resize`` / ``crop`` for image files), which a checkpoint keeps for inference.

Small datasets are :class:`ArrayDataset`: the whole split is one uint8 tensor on the
training device, batched by index; augmentation and normalisation are batched tensor ops on
that device (no DataLoader workers).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["ArrayDataset", "DatasetError", "normalize_images", "patch_whitening"]


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt or mislaid; the message says which file and what to do."""


class ArrayDataset:
    """A whole dataset split held as one uint8 tensor on one device.

    ``images``: uint8 (N, C, H, W) or (N, D); ``labels``: int64 (N,). Pixels are mapped to
    ``(images / scale - mean[c]) / std[c]``. ``augment`` names the training augmentation
    (``None``, or ``"crop_flip"``: random crop after zero padding by ``crop_pad`` pixels, 4 as in
    the paper, + random horizontal flip, the CIFAR one; ``crop_pad=0`` flips only).
    ``cutout``: with that augmentation, also set a ``cutout`` x ``cutout`` square of each training
    image to 0 after normalisation (the mean pixel) at a random centre, clipped at the border
    (DeVries & Taylor, 2017; 0, the default and the paper's, is off).
    ``whitening``: an optional (C, C, k, k) convolution applied after that normalisation (see
    :func:`patch_whitening`), the same for every split.
    """

    def __init__(self, name: str, split: str, images: Tensor, labels: Tensor, classes: Sequence[str],
                 mean: Sequence[float], std: Sequence[float], scale: float = 255.0,
                 augment: str | None = None, crop_pad: int = 4, whitening: Tensor | None = None,
                 cutout: int = 0) -> None:
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8, got {images.dtype}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        if augment not in (None, "crop_flip"):
            raise ValueError(f"unknown augmentation {augment!r}")
        if isinstance(crop_pad, bool) or not isinstance(crop_pad, numbers.Integral) or crop_pad < 0:
            raise ValueError(f"crop_pad must be a whole number of pixels >= 0 (0: flips only), got {crop_pad!r}")
        if augment == "crop_flip" and images.dim() == 4 and crop_pad >= min(images.shape[-2:]):
            raise ValueError(f"crop_pad = {crop_pad} lets a {images.shape[-2]}x{images.shape[-1]} crop miss the "
                             f"image entirely; use less than {min(images.shape[-2:])} (the paper: 4)")
        if isinstance(cutout, bool) or not isinstance(cutout, numbers.Integral) or cutout < 0:
            raise ValueError(f"cutout must be a whole number of pixels >= 0 (0: off), got {cutout!r}")
        if cutout and (images.dim() != 4 or cutout > min(images.shape[-2:])):
            raise ValueError(f"cutout = {cutout} needs images of at least {cutout}x{cutout} pixels, got shape "
                             f"{tuple(images.shape[1:])}; use 0 (off) or a smaller square (DeVries & Taylor: 16 "
                             "on CIFAR-10)")
        self.name, self.split = name, split
        self.images, self.labels = images, labels.to(torch.int64)
        self.classes = list(classes)
        self.scale = float(scale)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=images.device)
        self.augment, self.crop_pad, self.cutout = augment, int(crop_pad), int(cutout)
        c = images.shape[1] if images.dim() == 4 else 0
        if whitening is not None and (whitening.dim() != 4 or whitening.shape[:2] != (c, c)
                                      or whitening.shape[2] != whitening.shape[3] or whitening.shape[2] % 2 == 0):
            raise ValueError(f"whitening must be a ({c}, {c}, k, k) kernel with k odd for images of shape "
                             f"{tuple(images.shape[1:])}, got {tuple(whitening.shape)}")
        self.whitening = None if whitening is None else whitening.to(images.device, torch.float32)

    # -- the contract ------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return (f"ArrayDataset({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"input_shape={self.input_shape}, classes={self.num_classes}, device={self.device})")

    def to(self, device: torch.device | str) -> ArrayDataset:
        """The same dataset on another device (a copy of the tensors; self is unchanged)."""
        return ArrayDataset(self.name, self.split, self.images.to(device), self.labels.to(device), self.classes,
                            self.mean.tolist(), self.std.tolist(), self.scale, self.augment, self.crop_pad,
                            self.whitening, self.cutout)

    def subset(self, indices: Tensor, split: str) -> ArrayDataset:
        """The examples at ``indices``, as a dataset of its own (e.g. a validation split)."""
        idx = indices.to(self.images.device)
        return ArrayDataset(self.name, split, self.images[idx], self.labels[idx], self.classes,
                            self.mean.tolist(), self.std.tolist(), self.scale, self.augment, self.crop_pad,
                            self.whitening, self.cutout)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 images -> float32 normalised, as a batched tensor op on their device."""
        return normalize_images(images, self.scale, self.mean, self.std, self.whitening)

    def inputs(self) -> dict:
        """How a stored image becomes a network input, in plain values and CPU tensors (what a
        checkpoint keeps so that its network can be given raw images): the arguments of
        :func:`normalize_images`; ``resize`` and ``crop`` are None (the images are stored at the
        network's size)."""
        return {"scale": self.scale, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "whitening": None if self.whitening is None else self.whitening.cpu(), "resize": None, "crop": None}

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        i = range(len(self))[i]  # a negative index counts from the end; out of range is an IndexError
        return self.normalize(self.images[i : i + 1])[0], int(self.labels[i])

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                generator: torch.Generator | None = None, drop_last: bool = False,
                start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (x, y) batches; randomness (order, crops, flips) comes only from ``generator``.

        ``start`` skips that many batches at no cost, with the same randomness for the rest
        (a run resumed mid-epoch continues with the very batches it would have seen).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(self.device)
        stop = n - n % batch_size if drop_last else n
        # one seed per epoch from the generator, then one generator per batch: skippable
        aug_seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if augment and self.augment else None
        for b, first in enumerate(range(0, stop, batch_size)):
            if b < start:
                continue
            idx = order[first : first + batch_size]
            images = self.images.index_select(0, idx)  # far faster than images[idx] on CPU
            if aug_seed is None:
                yield self.normalize(images), self.labels.index_select(0, idx)
                continue
            g = torch.Generator().manual_seed(aug_seed + b)
            x = self.normalize(crop_flip(images, g, self.crop_pad))
            if self.cutout:
                x = cut_out(x, g, self.cutout)
            yield x, self.labels.index_select(0, idx)


def normalize_images(images: Tensor, scale: float, mean: Tensor, std: Tensor,
                     whitening: Tensor | None = None) -> Tensor:
    """A batch of stored images (uint8, or floats in the same range 0..``scale``) as the network's
    float32 inputs: ``(images / scale - mean[c]) / std[c]``, then the ``whitening`` convolution if
    any. ``mean`` and ``std`` hold one value per channel (or per feature of flat inputs)."""
    x = images.to(torch.float32, copy=True).div_(scale)  # in place on the copy: no extra buffers
    shape = (1, -1) + (1,) * (x.dim() - 2)
    x = x.sub_(mean.view(shape)).div_(std.view(shape))
    if whitening is not None:
        x = torch.nn.functional.conv2d(x, whitening, padding=whitening.shape[-1] // 2)
    return x


def crop_flip(images: Tensor, generator: torch.Generator | None, pad: int = 4) -> Tensor:
    """Pad-``pad`` random crop (zero padding) + random horizontal flip of a uint8 NCHW batch."""
    n, c, h, w = images.shape
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(images.device)
    flips = (torch.rand(n, generator=generator) < 0.5).to(images.device)
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    # Rows: one index_select of whole padded rows; columns (shift + mirror): one gather along the
    # width. Several times faster on CPU than a per-pixel 4-index gather, with identical results.
    hp, wp = h + 2 * pad, w + 2 * pad
    rows = (torch.arange(n * c, device=images.device).view(n, c, 1) * hp + shifts[0].view(n, 1, 1)
            + torch.arange(h, device=images.device))  # (n, c, h): row numbers in padded viewed as (n*c*hp, wp)
    out = padded.view(n * c * hp, wp).index_select(0, rows.view(-1)).view(n, c, h, wp)
    cols = torch.arange(w, device=images.device)
    cols = torch.where(flips.view(n, 1, 1, 1), w - 1 - cols, cols) + shifts[1].view(n, 1, 1, 1)  # (n, 1, 1, w)
    return out.gather(3, cols.expand(n, c, h, w))


def cut_out(x: Tensor, generator: torch.Generator | None, size: int) -> Tensor:
    """Set a ``size`` x ``size`` square of each image of the NCHW batch ``x`` to 0, in place.

    Each square's centre is uniform over the image, so squares near the border are clipped (and
    an even ``size`` reaches one pixel further up and left of its centre than down and right)."""
    n, _, h, w = x.shape
    centres = torch.stack([torch.randint(0, h, (n,), generator=generator),
                           torch.randint(0, w, (n,), generator=generator)]).to(x.device)
    first = centres - size // 2  # (2, n): the square's first row and column, may be < 0
    rows = torch.arange(h, device=x.device) - first[0].view(n, 1)
    cols = torch.arange(w, device=x.device) - first[1].view(n, 1)
    inside = ((rows >= 0) & (rows < size)).view(n, 1, h, 1) & ((cols >= 0) & (cols < size)).view(n, 1, 1, w)
    return x.masked_fill_(inside, 0.0)


def patch_whitening(images: Tensor, normalize, size: int, eps: float, max_images: int = 10_000,
                    chunk: int = 500) -> Tensor:
    """ZCA whitening of ``size`` x ``size`` patches, as a (C, C, size, size) convolution kernel.

    ``normalize`` maps a uint8 NCHW batch of ``images`` to the float pixels to whiten. With C the
    covariance of the patches (stride 2) of at most ``max_images`` images spread evenly over
    them, W = U diag(1 / sqrt(lambda + eps)) U^T whitens those patches; the kernel is W's rows
    for the centre pixel's channels, so convolving an image with it gives every pixel the
    whitened value of the patch around it (channels kept: the model is unchanged). ``eps`` damps
    the directions of small variance (the fine detail that JPEG blurs), and the kernel is scaled
    so that each output channel has unit variance over the patches, as the normalised pixels
    have. The patch mean is not subtracted: after the per-channel normalisation it is 0.
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1 or size % 2 == 0:
        raise ValueError(f"whitening patch size must be an odd whole number >= 1, got {size!r}")
    if not eps > 0:
        raise ValueError(f"whitening eps must be > 0, got {eps!r}")
    if images.shape[0] == 0:
        raise ValueError("patch_whitening needs at least one image")
    c = images.shape[1]
    d = c * size * size
    images = images[:: max(1, images.shape[0] // max_images)]  # evenly spread: plenty for a d x d covariance
    cov = torch.zeros(d, d, dtype=torch.float64)
    count = 0
    for first in range(0, images.shape[0], chunk):
        x = normalize(images[first : first + chunk])
        p = torch.nn.functional.unfold(x, size, stride=2).transpose(1, 2).reshape(-1, d)
        cov += (p.T @ p).double()
        count += p.shape[0]
    cov /= count
    evals, evecs = torch.linalg.eigh(cov)
    w = evecs @ torch.diag(evals.clamp(min=0).add(eps).rsqrt()) @ evecs.T
    centre = [ch * size * size + (size // 2) * size + size // 2 for ch in range(c)]
    kernel = w[centre]  # (C, d): output channel j from the whole patch
    std = torch.einsum("jd,de,je->j", kernel, cov, kernel).sqrt()  # each output's std over the patches
    return (kernel / std[:, None]).reshape(c, c, size, size).to(torch.float32)
