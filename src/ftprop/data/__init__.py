"""Datasets: ``load_dataset(name, root=..., split="train" | "val" | "test", download=False)``.

Each source module registers a loader with :func:`register_dataset`. A loader takes
``root``, ``split`` ("train" or "test") and ``download``, plus its own keyword options, and
returns a dataset that follows the contract in :mod:`ftprop.data.base`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import numbers
from collections.abc import Callable
from pathlib import Path

import torch

from .base import ArrayDataset, DatasetError

__all__ = ["DATASETS", "register_dataset", "check_dataset", "needs_root", "option_defaults", "load_dataset",
           "ArrayDataset", "DatasetError"]

DATASETS: dict[str, Callable] = {}
_NEEDS_ROOT: dict[str, bool] = {}
SPLITS = ("train", "val", "test")


def register_dataset(name: str, needs_root: bool = True):
    """Decorator: register ``fn(root, split, download, **options)`` under ``name``; ``split`` is
    "train" or "test" (load_dataset makes "val" out of "train"), which the registered function,
    called directly too, checks first."""

    def deco(fn):
        @functools.wraps(fn)  # (its signature too: the options a config may give)
        def load(root=None, split="train", download=False, *args, **options):
            if split not in ("train", "test"):
                raise ValueError(f"split must be 'train' or 'test', got {split!r} (load_dataset(..., "
                                 f"val_fraction=...) holds a validation split out of 'train')")
            return fn(root, split, download, *args, **options)

        DATASETS[name] = load
        _NEEDS_ROOT[name] = needs_root
        return load

    return deco


def _registry() -> dict[str, Callable]:
    from . import cifar10, digits, idx, imagefolder  # noqa: F401  (registration side effects)

    return DATASETS


def check_dataset(name: str, **options) -> str:
    """The registered name of dataset ``name``, or the ValueError that ``load_dataset`` would raise for
    an unknown name or option: a check that reads no data."""
    registry = _registry()
    key = str(name).strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "image-folder": "imagefolder", "imagenet": "imagefolder"}.get(key, key)
    if key not in registry:
        close = difflib.get_close_matches(key, list(registry), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}.{hint} Valid: {', '.join(sorted(registry))}.")
    accepted = set(inspect.signature(registry[key]).parameters) - {"root", "split", "download"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"dataset {key!r} takes no option {', '.join(map(repr, unknown))}; "
                         f"its options are: {', '.join(sorted(accepted)) or 'none'} (switching datasets? drop "
                         f"the other dataset's options: data.options = {{}}, e.g. --set data.options={{}})")
    return key


def needs_root(name: str) -> bool:
    """Whether dataset ``name`` is read from a data root (digits, bundled with scikit-learn, is not)."""
    key = check_dataset(name)
    return _NEEDS_ROOT[key]


def option_defaults(name: str) -> dict:
    """The options dataset ``name`` takes (``data.options``), each with its default."""
    return {k: p.default for k, p in inspect.signature(_registry()[check_dataset(name)]).parameters.items()
            if k not in ("root", "split", "download") and p.default is not inspect.Parameter.empty}


def load_dataset(name: str, root: str | Path | None = None, split: str = "train", download: bool = False,
                 val_fraction: float = 0.0, val_seed: int = 0, **options):
    """Load one split of a dataset.

    ``val_fraction`` > 0 holds that share of the training set out, with a permutation seeded
    by ``val_seed``: ``split="val"`` returns it and ``split="train"`` the rest. It is 0 by
    default, as in the paper (train on the whole training set, evaluate on the test set).
    """
    registry = _registry()
    key = check_dataset(name, **options)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    if split == "val" and val_fraction == 0.0:
        raise ValueError("split='val' needs val_fraction > 0 (the share of the training set to hold out)")
    if _NEEDS_ROOT[key] and root is None:
        raise DatasetError(f"dataset {key!r} needs a data root (--data-root PATH); "
                           f"pass download=True (--download) to fetch it there where the internet is reachable")
    fn = registry[key]
    root = Path(root).expanduser() if root is not None else None
    if split == "test" or val_fraction == 0.0:
        return fn(root, split, download, **options)
    full = fn(root, "train", download, **options)
    n_val = max(1, round(val_fraction * len(full)))
    if n_val >= len(full):
        raise ValueError(f"val_fraction = {val_fraction} holds out all {len(full)} training examples of {key!r}; "
                         f"choose a smaller share (e.g. 0.1)")
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(val_seed))
    idx = perm[:n_val] if split == "val" else perm[n_val:]
    return full.subset(idx.sort().values, split)
