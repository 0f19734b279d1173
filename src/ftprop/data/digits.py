"""The handwritten digits shipped inside scikit-learn (1,797 8x8 images): zero downloads."""

from __future__ import annotations

import torch

from . import register_dataset
from .base import ArrayDataset

TEST_FRACTION = 0.2
SPLIT_SEED = 0  # a fixed, seeded split: the same 1,438 / 359 examples everywhere


@register_dataset("digits", needs_root=False)
def load_digits(root=None, split: str = "train", download: bool = False) -> ArrayDataset:
    """sklearn's digits as uint8 (N, 1, 8, 8) with values 0..16; a fixed 80/20 train/test split."""
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    images = torch.as_tensor(bunch.images, dtype=torch.uint8).unsqueeze(1)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = round(TEST_FRACTION * len(labels))
    idx = perm[n_test:] if split == "train" else perm[:n_test]
    train = images[perm[n_test:]].float() / 16.0
    mean, std = [train.mean().item()], [train.std().item()]
    return ArrayDataset("digits", split, images[idx], labels[idx], [str(d) for d in range(10)],
                        mean, std, scale=16.0)
