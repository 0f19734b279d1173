"""Inference on raw images: a trained run's network with its dataset's preprocessing in front.

A checkpoint keeps, beside the weights, its dataset's class names and the record of how a stored
image becomes a network input (``dataset.inputs()``: pixel scale, mean, std, whitening, and for
image folders the resize and centre crop of the test transform). :func:`ftprop.load_model` with
``preprocess=True`` builds a :class:`Classifier` from it, and :func:`read_inputs` turns image
files (or ``.npy`` arrays of stored pixel values) into the batch it takes; ``ftprop predict``
does both and prints each input's most likely classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .data.base import normalize_images

__all__ = ["Classifier", "Preprocess", "predict", "read_inputs"]


class Preprocess(nn.Module):
    """A dataset's normalisation as a module: stored images (uint8, or floats in 0..``scale``) of
    shape (N, *input_shape) in, the network's float32 inputs out."""

    def __init__(self, inputs: dict, input_shape: Sequence[int]) -> None:
        super().__init__()
        self.scale = float(inputs["scale"])
        self.input_shape = tuple(int(s) for s in input_shape)
        self.register_buffer("mean", torch.as_tensor(inputs["mean"], dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(inputs["std"], dtype=torch.float32))
        w = inputs.get("whitening")
        self.register_buffer("whitening", None if w is None else w.to(torch.float32))

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != len(self.input_shape) + 1 or tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(f"expected a batch of images of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(images.shape)}; a single image needs a batch dimension: images[None]")
        if images.is_floating_point() or images.dtype == torch.uint8:
            return normalize_images(images, self.scale, self.mean, self.std, self.whitening)
        raise TypeError(f"images must be uint8 or floating point (pixel values 0..{self.scale:g}), got {images.dtype}")

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}, input_shape={self.input_shape}, whitening={self.whitening is not None}"


class Classifier(nn.Module):
    """``network(preprocess(images))``: a trained network that takes images as its dataset stores
    them and returns float32 logits; ``classes`` names its outputs, ``inputs`` is the dataset's
    record. With ``bf16`` (a run trained under bf16 autocast, which it was evaluated under too) the
    network runs under bf16 autocast: sign units turn its rounding into other outputs."""

    def __init__(self, preprocess: Preprocess, network: nn.Module, classes: Sequence[str], inputs: dict,
                 bf16: bool = False) -> None:
        super().__init__()
        self.preprocess, self.network = preprocess, network
        self.classes, self.inputs, self.bf16 = list(classes), inputs, bool(bf16)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.preprocess.input_shape

    def forward(self, images: Tensor) -> Tensor:
        x = self.preprocess(images)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.network(x).float()


@torch.no_grad()
def predict(model: Classifier, images: Tensor, top: int = 3, batch_size: int = 256) -> list[list[tuple[str, float]]]:
    """For each image of the batch, its ``top`` most likely classes with their softmax probabilities,
    most likely first; ``model`` runs in eval mode (its mode is put back after)."""
    for name, value in (("top", top), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    device = next(model.parameters()).device
    k = min(top, len(model.classes))
    out, training = [], model.training
    model.eval()  # (batch statistics in training mode would make each answer depend on its batch)
    try:
        for first in range(0, images.shape[0], batch_size):
            p = model(images[first : first + batch_size].to(device)).float().softmax(dim=1)
            values, indices = p.topk(k, dim=1)
            out += [[(model.classes[i], float(v)) for v, i in zip(vs, ix)] for vs, ix in zip(values.tolist(),
                                                                                           indices.tolist())]
    finally:
        model.train(training)
    return out


# ---- reading inputs ---------------------------------------------------------------------------------

def read_inputs(path: str | Path, model: Classifier) -> tuple[Tensor, list[str]]:
    """The images in ``path`` as a batch ``model`` takes, and a name for each.

    An ``.npy`` file holds pixel values as the dataset stores them (0..scale), one input of the
    network's shape or a batch of them. Any other file is an image Pillow can read, made into
    what the dataset stores: for an image-folder run, the test transform (short side resized,
    centre crop); otherwise converted to RGB or grey as the network's channels say and resized to
    its height and width if it differs (bilinear), its 0..255 pixels mapped to 0..scale (rounded
    to whole levels: the digits store 0..16). A network of flat inputs of a square size D (a
    custom dataset of (N, D) images) takes a grey sqrt(D) x sqrt(D) image."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no input file {path}")
    shape = model.input_shape
    if path.suffix.lower() == ".npy":
        return _read_npy(path, shape, float(model.inputs["scale"]))
    return _read_image(path, model.inputs, shape)[None], [str(path)]


def _read_npy(path: Path, shape: tuple[int, ...], scale: float) -> tuple[Tensor, list[str]]:
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from None
    if not isinstance(a, np.ndarray):  # an .npz archive under an .npy name
        raise ValueError(f"{path}: an archive of arrays, not one .npy array; save one array with np.save")
    if a.dtype.kind not in "uif" or (a.dtype.kind == "f" and not np.isfinite(a).all()):
        raise ValueError(f"{path}: expected finite pixel values (uint8 0..{scale:g}, as the dataset stores them), "
                         f"got an array of {a.dtype}")
    batched = tuple(a.shape) != shape
    a = a[None] if not batched else a
    if tuple(a.shape[1:]) != shape:
        raise ValueError(f"{path}: an array of shape {a.shape}, but this network takes inputs of shape {shape} "
                         f"(or a batch of them, (N, {', '.join(map(str, shape))}))")
    if a.shape[0] == 0:
        raise ValueError(f"{path}: a batch of no inputs")
    if a.min() < 0 or a.max() > scale:
        raise ValueError(f"{path}: pixel values {a.min():g}..{a.max():g}, outside the 0..{scale:g} the dataset "
                         f"stores; give them as it stores them (0..{scale:g}, not normalised)")
    a = a.astype(a.dtype.newbyteorder("="), copy=False)  # torch takes native byte order only
    x = torch.from_numpy(np.ascontiguousarray(a))
    x = x if x.dtype == torch.uint8 else x.to(torch.float32)
    return x, [f"{path}[{i}]" for i in range(x.shape[0])] if batched and x.shape[0] > 1 else [str(path)]


def _read_image(path: Path, inputs: dict, shape: tuple[int, ...]) -> Tensor:
    from PIL import Image, UnidentifiedImageError

    from .data.imagefolder import resized_crop, to_rgb8

    if len(shape) == 1:
        side = math.isqrt(shape[0])
        if side * side != shape[0]:
            raise ValueError(f"{path}: this network takes flat inputs of {shape[0]} values, not a square image; "
                             f"give a .npy array of shape ({shape[0]},)")
        channels, size = 1, (side, side)
    elif len(shape) == 3 and shape[0] in (1, 3):
        channels, size = shape[0], (shape[1], shape[2])
    else:
        raise ValueError(f"{path}: this network takes inputs of shape {shape}, not images; give a .npy array")
    try:
        with Image.open(path) as im:
            img = to_rgb8(im)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: not an image Pillow can read ({err}); give an image file or a .npy array") from None
    except ValueError as err:  # to_rgb8: an image of floats, or of integers beyond 16 bits
        raise ValueError(f"{path}: {err}") from None
    if inputs.get("crop"):  # an image-folder run: its test transform (resize >= crop, so the crop fits)
        a = resized_crop(img, inputs["resize"], inputs["crop"], None).transpose(2, 0, 1)
    else:
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        a = np.asarray(img.convert("L") if channels == 1 else img, dtype=np.uint8)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    x = torch.from_numpy(np.array(a)).reshape(shape)  # a contiguous copy: torch shares no read-only buffer
    scale = float(inputs["scale"])
    if scale == 255.0:
        return x
    x = x.to(torch.float32).mul_(scale / 255.0)
    return x.round_().to(torch.uint8) if scale.is_integer() and scale < 255 else x  # whole levels, as stored
