"""The training loop: config -> (data, model) -> epochs of FTPROP-MB steps -> metrics.

It knows nothing about concrete models or datasets: it builds them from the registries.
One step is ``zero_grad -> forward -> cross-entropy -> backward -> step``; the hard-threshold
units' backward is the FTPROP-MB layer-loss update (see :mod:`ftprop.activations`).

Reproducibility: every epoch's randomness (shuffling, augmentation, dropout) is seeded from
(seed, epoch) and the learning rate is a pure function of (epoch, step), so a run resumed
from a checkpoint continues bit for bit on the CPU.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import allocator
from .config import DEVICES, Config, ConfigError, config_to_dict, load_config, validate
from .data import check_dataset, load_dataset
from .models import build_model, check_model
from .runs import (
    ASIDE,
    CHECKPOINT,
    RunDirError,
    atomic_write_text,
    config_changes,
    config_from_checkpoint,
    config_to_toml,
    environment,
    environment_to_extend,
    give_back,
    load_checkpoint,
    lock_run_dir,
    prepare_run_dir,
    remove_run_files,
    save_checkpoint,
    train_test_gap,
)
from .sam import SharpnessAware

__all__ = ["train", "evaluate", "RunResult", "WeightAverage", "NonFiniteLossError", "TrainingStopped", "lr_at",
           "resolve_device", "load_data", "build_from_config"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingStopped(RuntimeError):
    """SIGINT/SIGTERM arrived; a consistent checkpoint was saved first."""


@dataclass
class RunResult:
    run_dir: Path | None
    history: list[dict]
    model: nn.Module
    status: str = "completed"
    summary: dict = field(default_factory=dict)
    ema_model: nn.Module | None = None  # the averaged weights (train.ema_decay > 0), which "test_*" measure

    @property
    def best_test_acc(self) -> float:
        return max(h["test_acc"] for h in self.history)

    @property
    def final_test_acc(self) -> float:
        return self.history[-1]["test_acc"]


# ---- pieces --------------------------------------------------------------------------

def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """The device ``name`` (auto, cpu, cuda) means here; ``key`` names the setting in errors."""
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r} for {key}: use one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key} = 'cuda' but no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(name)


CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the torch.compile modes that replay CUDA graphs


def param_groups(model: nn.Module, scaling: str = "none") -> list[dict]:
    """The optimiser's parameter groups, each with an ``lr_scale`` that multiplies the schedule's rate.

    ``"none"``: one group at scale 1. ``"layer_rms"``: one group per layer with a weight of two or
    more dimensions (convolutions, linear layers; its bias goes with it), scaled by that weight's
    RMS now, at initialisation, over the geometric mean of those RMS over the layers, so that
    every layer's weights turn by about the same fraction per step under Adam, whose steps are
    about ``lr`` per element whatever the weight's scale; the rest (BN) form one group at scale 1.
    """
    if scaling == "none":
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]
    layers, taken = [], set()
    for module in model.modules():
        w = getattr(module, "weight", None)
        if isinstance(w, nn.Parameter) and w.dim() >= 2 and id(w) not in taken:
            params = [p for p in (w, getattr(module, "bias", None)) if isinstance(p, nn.Parameter)]
            taken.update(id(p) for p in params)
            layers.append((params, w.detach().float().pow(2).mean().sqrt().item()))
    if not layers or any(rms == 0 for _, rms in layers):
        raise ConfigError("optim.lr_scaling = 'layer_rms' needs layers whose weights are not all zero; "
                          "use optim.lr_scaling = 'none'")
    mean = math.exp(sum(math.log(rms) for _, rms in layers) / len(layers))
    groups = [{"params": params, "lr_scale": rms / mean} for params, rms in layers]
    rest = [p for p in model.parameters() if id(p) not in taken]
    return groups + ([{"params": rest, "lr_scale": 1.0}] if rest else [])


def build_optimizer(params, cfg: Config, capturable: bool = False) -> torch.optim.Optimizer:
    """The paper's optimisers: weight decay on every parameter (BN and biases included).
    ``params``: parameters or groups (``param_groups``); ``capturable``: Adam/AdamW keep their step
    counts on the device, as CUDA graphs need."""
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)
    if o.name == "adam":  # coupled L2, as the reference code
        return torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay,
                                capturable=capturable)
    return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay,
                             capturable=capturable)


def _load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """A checkpoint's optimiser state (moments, step counts), loaded for this run however the
    saving run stepped. The settings of each group come from this run's config, not from the
    checkpoint: a resume with another weight decay or betas uses them, and Adam's ``capturable``
    is what this run needs (a compiled run on a GPU saves True). The learning rate comes back as
    the config's float (a compiled run saves a tensor); the schedule sets it at every step. Each
    group's ``lr_scale`` stays the saved one: it measures the first run's initial weights, which a
    resume with another seed would otherwise measure afresh."""
    # The groups are replaced before loading: load_state_dict reads capturable and fused from
    # them to decide where each state's step count lives.
    groups = [{**{k: v for k, v in mine.items() if k != "params"}, "params": old["params"],
               **({"lr_scale": old["lr_scale"]} if "lr_scale" in old else {})}
              for mine, old in zip(optimizer.param_groups, saved["param_groups"])]
    optimizer.load_state_dict({**saved, "param_groups": groups})


def _last_line(err: BaseException) -> str:
    """The last line of an error's message (load_state_dict lists every mismatch, the gist last),
    without its indent or final full stop, to be quoted inside a sentence."""
    lines = str(err).strip().splitlines()
    return lines[-1].strip().rstrip(".") if lines else type(err).__name__


@contextmanager
def _checkpoint_must_fit(run_dir: Path):
    """Loading a resumed run's state from its checkpoint: a missing entry or a tensor of another
    shape (a damaged or hand-edited file) becomes a RunDirError that names the checkpoint."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        what = f"no entry {err}" if isinstance(err, KeyError) else _last_line(err)
        raise RunDirError(f"{Path(run_dir) / CHECKPOINT} does not fit the run it belongs to ({what}): it is damaged "
                          f"or was written by other code. Nothing was changed; restore the file from a copy, "
                          f"or start the run again with --force") from None


def _make_momentum_buffers(optimizer: torch.optim.Optimizer) -> None:
    """SGD makes its momentum buffers in its first step; inside a CUDA graph they would live in
    the graph's memory pool and be freed at the next step. Zeros made beforehand give the same
    first step (buffer = momentum * 0 + gradient, dampening being 0)."""
    if not isinstance(optimizer, torch.optim.SGD):
        return
    for group in optimizer.param_groups:
        if group["momentum"] == 0:
            continue
        for p in group["params"]:
            state = optimizer.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def lr_at(cfg: Config, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Learning rate at ``step`` (0-based) of ``epoch`` (1-based): a pure function, for exact resume.

    Each step takes the schedule's value at the training progress where it starts, in [0, 1), so
    the end points are met as training ends, not at its last step (which, with S steps in all,
    takes the value at (S - 1) / S of the way), and a warm-up's first step has lr 0 (cosine) or
    lr / 25 (onecycle).

    multistep: the paper's rule, lr is multiplied by gamma at the START of each milestone epoch.
    cosine: optional linear warm-up from 0, then cosine decay to final_lr_fraction * lr.
    onecycle: linear rise from lr / 25 over warmup_epochs (default: 25% of training), then linear
    decay to final_lr_fraction * lr.
    """
    s, base, total = cfg.schedule, cfg.optim.lr, cfg.train.epochs
    if s.name == "constant":
        return base
    if s.name == "multistep":
        return base * s.gamma ** sum(1 for m in s.milestones if epoch >= m)
    progress = (epoch - 1 + step / steps_per_epoch) / total  # in [0, 1)
    low = s.final_lr_fraction
    if s.name == "cosine":
        warm = s.warmup_epochs / total
        if progress < warm:
            return base * (progress / warm)
        frac = (progress - warm) / max(1e-12, 1 - warm)
        return base * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * frac)))
    warm = (s.warmup_epochs or 0.25 * total) / total  # onecycle
    start = base / 25.0
    if progress < warm:
        return start + (base - start) * progress / warm
    return base * (low + (1 - low) * (1 - (progress - warm) / max(1e-12, 1 - warm)))


class WeightAverage:
    """An exponential moving average of ``model``'s weights, updated after every optimiser step.

    ``self.model`` is a frozen copy that evaluation uses. Floating-point parameters and buffers
    are averaged (BN running statistics too); integer buffers are copied. The decay starts low,
    min(decay, (1 + n) / (10 + n)) after n updates, so that the average is not dominated by the
    initial weights early in training. The tensors are paired once: ``model`` must keep its
    parameters and buffers in place (loading a state dict copies into them, which is fine).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).requires_grad_(False)
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        self._averaged = [mine for mine, _ in pairs if mine.is_floating_point()]
        self._live = [theirs for mine, theirs in pairs if mine.is_floating_point()]
        self._copied = [(mine, theirs) for mine, theirs in pairs if not mine.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        weight = 1.0 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._averaged, self._live, weight)
        for mine, theirs in self._copied:
            mine.copy_(theirs)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**62)


def load_data(cfg: Config, device: torch.device) -> dict[str, Any]:
    """The splits a run needs: train, test, and val when data.val_fraction > 0."""
    d = cfg.data
    kw = dict(root=d.root, download=d.download, **d.options)
    splits = {"train": load_dataset(d.name, split="train", val_fraction=d.val_fraction, val_seed=d.val_seed, **kw),
              "test": load_dataset(d.name, split="test", **kw)}
    if d.val_fraction > 0:
        splits["val"] = load_dataset(d.name, split="val", val_fraction=d.val_fraction, val_seed=d.val_seed, **kw)
    return {k: v.to(device) for k, v in splits.items()}


def build_from_config(cfg: Config, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    m = cfg.model
    return build_model(m.name, activation=m.activation, num_classes=num_classes, input_shape=input_shape,
                       loss=m.loss, weighted=m.weighted, steps=m.steps, surrogate=m.surrogate, **m.options)


def checkpoint_model(state: dict, cfg: Config, dataset, *, live: bool = False) -> tuple[nn.Module, str]:
    """A checkpoint's model for ``dataset``, on the dataset's device, and which weights it holds:
    ``"average"`` (train.ema_decay > 0 kept one) unless ``live``, else ``"live"``. A ConfigError if
    the weights do not fit ``dataset`` (another number of classes or input size)."""
    averaged = state.get("ema") is not None and not live
    try:
        model = build_from_config(cfg, dataset.num_classes, dataset.input_shape)
        model.load_state_dict(state["ema"]["model"] if averaged else state["model"])
    except RuntimeError as err:  # load_state_dict lists every mismatch, the gist last
        raise ConfigError(f"its weights do not load into the network its config builds ({cfg.model.name}, trained "
                          f"on {cfg.data.name}) for the data ({dataset.num_classes} classes, input "
                          f"{tuple(dataset.input_shape)}): {_last_line(err)}") from None
    return model.to(dataset.device), "average" if averaged else "live"


def _data_record(dataset) -> dict:
    """What a checkpoint keeps of its dataset, in plain values (numpy ints would make the file one
    that weights_only loading refuses): the sizes the network is built for, the class names, and
    ``dataset.inputs()``, how a stored image becomes an input (None for a dataset without it)."""
    inputs = dataset.inputs() if callable(getattr(dataset, "inputs", None)) else None
    return {"num_classes": int(dataset.num_classes), "input_shape": [int(s) for s in dataset.input_shape],
            "classes": [str(c) for c in dataset.classes] if hasattr(dataset, "classes") else None,
            "inputs": inputs}


def load_model(run: str | Path, *, live: bool = False, device: str = "cpu", preprocess: bool = False) -> nn.Module:
    """The trained network of a run directory (or its checkpoint.pt), in eval mode on ``device``:
    the weight average if the run kept one (train.ema_decay > 0) unless ``live``. It takes inputs
    as the run's dataset gives them (``load_dataset(...).batches``: normalised); with
    ``preprocess``, a :class:`ftprop.predict.Classifier` that takes images as the dataset stores
    them (uint8 pixels), names its classes (``.classes``) and runs as the run evaluated itself
    (under bf16 autocast if it trained so)."""
    state = load_checkpoint(Path(run))
    record = state.get("data")
    if record is None:
        raise RunDirError(f"{run}: this checkpoint does not record its dataset's classes and input shape (ftprop "
                          f"before 2026-12-07); evaluate it with `ftprop evaluate {run}` (a run resumed for more "
                          f"epochs records them in its next checkpoint)")
    if preprocess and (record.get("inputs") is None or record.get("classes") is None):
        raise RunDirError(f"{run}: this checkpoint does not record how its dataset's images become inputs (an older "
                          f"ftprop, or a dataset without inputs()); load it without preprocess=True and "
                          f"normalise the images as its dataset does (a run resumed for more epochs records it "
                          f"in its next checkpoint)")
    dataset = SimpleNamespace(num_classes=record["num_classes"], input_shape=tuple(record["input_shape"]),
                              device=resolve_device(device, "device"))
    cfg = config_from_checkpoint(state)
    network = checkpoint_model(state, cfg, dataset, live=live)[0].eval()
    if not preprocess:
        return network
    from .predict import Classifier, Preprocess

    pre = Preprocess(record["inputs"], dataset.input_shape).to(dataset.device)
    return Classifier(pre, network, record["classes"], record["inputs"], bf16=cfg.train.bf16).eval()


def build_twin(cfg: Config, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """The network of ``cfg`` with the units ``train.twin`` instead of its own (their unit settings
    dropped): the teacher that a run with ``train.twin`` trains alongside the network."""
    m = replace(cfg.model, activation=cfg.train.twin, loss=None, weighted=None, steps=None, surrogate=None)
    return build_from_config(replace(cfg, model=m), num_classes, input_shape)


def load_teacher(path: str, dataset, log) -> nn.Module:
    """The network of the trained run at ``path`` (its weight average if it kept one), in eval
    mode, frozen, on ``dataset``'s device; a ConfigError if it does not fit ``dataset``."""
    state = load_checkpoint(Path(path))
    tcfg = config_from_checkpoint(state)
    try:
        teacher, weights = checkpoint_model(state, tcfg, dataset)
    except ConfigError as err:
        raise ConfigError(f"train.teacher = {path}: {err}. Distil from a run trained on the same dataset") from None
    last = state["history"][-1] if state.get("history") else {}
    log(f"distilling from {path}: {tcfg.model.name} {tcfg.model.activation}, {weights} weights of epoch "
        f"{state['epoch']}" + (f", test accuracy {last['test_acc']:.4f}" if "test_acc" in last else ""))
    return teacher.eval().requires_grad_(False)


def distillation_loss(out: torch.Tensor, y: torch.Tensor, teacher_out: torch.Tensor | None, t) -> torch.Tensor:
    """The training loss: cross-entropy with the labels (smoothed by ``t.label_smoothing``), and,
    with a teacher's outputs, mixed with the KL divergence from the teacher's softened
    distribution to the network's (Hinton et al., 2015): (1 - w) CE + w T^2 KL(p_T || q_T), where
    w = ``t.distill_weight`` and T = ``t.distill_temperature``; T^2 keeps its gradient's scale
    independent of T."""
    ce = F.cross_entropy(out.float(), y, label_smoothing=t.label_smoothing)
    if teacher_out is None:
        return ce
    temp, w = t.distill_temperature, t.distill_weight
    kl = F.kl_div(F.log_softmax(out.float() / temp, dim=1), F.log_softmax(teacher_out.float() / temp, dim=1),
                  reduction="batchmean", log_target=True)
    return (1 - w) * ce + w * temp * temp * kl


def twin_backward(twin: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                  t) -> tuple[torch.Tensor, torch.Tensor]:
    """The twin's part of a step with ``train.twin``, before its optimiser steps: its forward pass
    (bf16 autocast if ``t.bf16``) and backward on the labels. Returns its detached outputs, which
    teach the network in the same step, and its loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=t.bf16):
        out = twin(x)
    loss = distillation_loss(out, y, None, t)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return out.detach(), loss


TTA_MODES = (None, "flip")


@torch.no_grad()
def evaluate(model: nn.Module, dataset, batch_size: int = 512, *, bf16: bool = False,
             channels_last: bool = False, tta: str | None = None) -> dict[str, float]:
    """Loss, top-1 (and top-5 with more than 10 classes) of ``model`` in eval mode.

    ``tta="flip"``: test-time augmentation, the logits averaged over each image and its mirror
    image (images only; meaningful where a mirror image keeps its label, as in CIFAR-10 or ImageNet,
    not for digits). This evaluates a two-view ensemble, not the single view the paper (and every
    other number of this library) reports, so results made with it must say so.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES} (None: one view; 'flip': the image and its mirror "
                         f"image), got {tta!r}")
    if tta == "flip" and len(dataset.input_shape) != 3:
        raise ValueError(f"tta='flip' mirrors images and needs (C, H, W) inputs; this dataset's are "
                         f"{tuple(dataset.input_shape)!r}")
    was_training = model.training
    model.eval()
    try:
        loss_sum, correct1, correct5, n = _evaluate_batches(model, dataset, batch_size, bf16, channels_last, tta)
    finally:  # a model that fails part way (a bad batch, an interrupt) is left as it was found
        model.train(was_training)
    if n == 0:
        raise ValueError("the dataset to evaluate on holds no examples")
    result = {"loss": loss_sum.item() / n, "acc": correct1.item() / n}
    if dataset.num_classes > 10:
        result["top5"] = correct5.item() / n
    return result


def _evaluate_batches(model, dataset, batch_size, bf16, channels_last, tta):
    device = dataset.device
    top5 = dataset.num_classes > 10
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct1 = torch.zeros((), device=device, dtype=torch.int64)
    correct5 = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    for x, y in dataset.batches(batch_size):
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x).float()
            if tta == "flip":
                out = (out + model(x.flip(3)).float()) / 2
        if n == 0 and (out.dim() != 2 or out.shape[1] != dataset.num_classes):
            raise ValueError(f"the model gives outputs of shape {tuple(out.shape)} for a batch of "
                             f"{x.shape[0]}, but the dataset has {dataset.num_classes} classes: evaluate a model "
                             f"built for this dataset")
        loss_sum += F.cross_entropy(out, y, reduction="sum").double()
        correct1 += (out.argmax(1) == y).sum()
        if top5:
            correct5 += (out.topk(5, dim=1).indices == y[:, None]).any(1).sum()
        n += y.shape[0]
    return loss_sum, correct1, correct5, n


class _Stopper:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @contextmanager
    def installed(self):
        if not _in_main_thread():
            yield self
            return
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            if self.signal is not None:  # a second signal: stop now
                signal.default_int_handler(signum, frame)
            self.signal = signum

        for s in old:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _log_default(message: str) -> None:
    print(message, flush=True)


# ---- the loop -------------------------------------------------------------------------

def train(cfg: Config, out: str | Path | None = None, *, resume: bool = False, force: bool = False,
          save: bool = True, progress: bool | None = None, log: Callable[[str], None] | None = _log_default,
          data: dict[str, Any] | None = None) -> RunResult:
    """Train a model as ``cfg`` says; write the run directory ``out`` (unless ``save=False``).

    ``resume=True`` continues the run in ``out`` from its last checkpoint (the config may
    change the number of epochs, not the model or dataset). ``progress``: a progress bar per
    epoch (None: only when stderr is a terminal). ``data`` may pass pre-loaded splits.
    A new run that fails before its first epoch ends (bad input that only training reveals)
    leaves no run directory behind, so the same command can be run again once it is fixed.
    """
    made: dict[str, Any] = {}
    try:
        if save and out is not None and Path(out).is_dir():  # held before anything in it is read or changed
            made["lock"] = lock_run_dir(Path(out))
        return _train(cfg, out, resume, force, save, progress, log, data, made)
    except TrainingStopped:
        raise
    except BaseException as err:
        run_dir = made.get("dir")
        if run_dir is not None and not resume and not (run_dir / CHECKPOINT).is_file():
            metrics = run_dir / "metrics.jsonl"
            # no checkpoint: nothing to resume, so the run that --force was replacing comes back
            if not metrics.is_file() or not metrics.read_text().strip() or (run_dir / ASIDE).is_dir():
                remove_run_files(run_dir)
                give_back(run_dir)  # the run that --force was replacing
                if made.get("new") and not any(run_dir.iterdir()):
                    run_dir.rmdir()
                raise
        if run_dir is not None and "write_summary" in made and (run_dir / "summary.json").exists():
            # say the last attempt failed
            made["write_summary"](f"failed: {type(err).__name__}")
        raise
    finally:
        if made.get("lock") is not None:
            os.close(made["lock"])


def check_config(cfg: Config, *, dataset: bool = True) -> None:
    """What can be checked of ``cfg`` before any data loads (an image folder can take minutes): its
    ranges and choices, the model with its activation, layer loss and options (and the twin's), and,
    with ``dataset``, the dataset's name and options (not what depends on the device: CUDA graphs
    with a twin or SAM are refused by ``train`` itself). Raises ConfigError, or ValueError for a
    name or option the model or dataset registry does not know."""
    validate(cfg)
    m = cfg.model
    check_model(m.name, m.activation, loss=m.loss, weighted=m.weighted, steps=m.steps, surrogate=m.surrogate,
                **m.options)
    if cfg.train.twin is not None:
        try:
            check_model(m.name, cfg.train.twin, **m.options)
        except ValueError as err:
            raise ConfigError(f"train.twin = {cfg.train.twin!r}: {err}") from None
    if dataset:
        check_dataset(cfg.data.name, **cfg.data.options)


def _train(cfg, out, resume, force, save, progress, log, data, made) -> RunResult:
    check_config(cfg, dataset=data is None)
    # The run directory records where the data and the teacher are, whatever the working directory later.
    absolute = lambda path: str(Path(path).expanduser().resolve()) if path else path  # noqa: E731
    cfg = replace(cfg, data=replace(cfg.data, root=absolute(cfg.data.root)),
                  train=replace(cfg.train, teacher=absolute(cfg.train.teacher)))
    log = log or (lambda message: None)
    device = resolve_device(cfg.train.device)
    # CUDA graphs keep the optimiser's step counts on the device (capturable=True)
    graphs = cfg.train.compile and cfg.train.compile_mode in CUDA_GRAPH_MODES and device.type == "cuda"
    if graphs and (cfg.optim.sam_rho > 0 or cfg.train.twin is not None):
        what = "optim.sam_rho > 0" if cfg.optim.sam_rho > 0 else "train.twin"
        raise ConfigError(f"{what} runs two passes per step, which train.compile_mode = "
                          f"{cfg.train.compile_mode!r} (CUDA graphs) cannot replay; use compile_mode = 'default'")
    if cfg.train.bf16 and device.type == "cpu":
        log("note: bf16 autocast on the CPU is slow; it is meant for CUDA")
    late = [e for e in cfg.schedule.milestones if e > cfg.train.epochs] if cfg.schedule.name == "multistep" else []
    if late:  # allowed: a short run of the paper's schedule (Table 1 cells at --epochs 30) keeps its milestones
        log(f"note: schedule.milestones {late} lie beyond train.epochs = {cfg.train.epochs}: the learning rate "
            f"is not decayed there")
    if resume and not save:
        raise RunDirError("resume needs save=True and a run directory")
    # A resume only reads the run here: its refusals (another model or dataset) come before the data loads.
    resumed = prepare_run_dir(cfg, Path(out) if out is not None else None, True, force) if resume else None
    # Everything that can fail on bad input fails here, before a file is written.
    splits = data if data is not None else load_data(cfg, device)
    train_set, test_set = splits["train"], splits["test"]
    torch.manual_seed(cfg.train.seed)
    model = build_from_config(cfg, train_set.num_classes, train_set.input_shape).to(device)
    _check_batches(model, train_set.input_shape, len(train_set), cfg.train.batch_size, device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(param_groups(model, cfg.optim.lr_scaling), cfg, capturable=graphs)
    teacher = load_teacher(cfg.train.teacher, train_set, log) if cfg.train.teacher else None
    twin = twin_optimizer = None
    if cfg.train.twin is not None:  # built after the network, so the network's first weights are the same either way
        twin = build_twin(cfg, train_set.num_classes, train_set.input_shape).to(device)
        if cfg.train.channels_last:
            twin = twin.to(memory_format=torch.channels_last)
        twin_optimizer = build_optimizer(param_groups(twin, cfg.optim.lr_scaling), cfg, capturable=graphs)
    optimizers = [o for o in (optimizer, twin_optimizer) if o is not None]

    run_dir, state = (None, None)
    if save:
        target = Path(out) if out is not None else None
        made["new"] = target is None or not target.exists()
        run_dir, state = resumed or prepare_run_dir(cfg, target, resume, force)
        if "lock" not in made:  # a folder made just now; if another process holds it, it is that one's to clean
            made["lock"] = lock_run_dir(run_dir)
        made["dir"] = run_dir

    history: list[dict] = []
    start_epoch, start_step, carry, elapsed = 1, 0, None, 0.0
    if state is not None:
        with _checkpoint_must_fit(run_dir):
            model.load_state_dict(state["model"])
            _load_optimizer_state(optimizer, state["optimizer"])
            if twin is not None:
                twin.load_state_dict(state["twin"])
                _load_optimizer_state(twin_optimizer, state["twin_optimizer"])
            history = state["history"]
            start_epoch, start_step, carry = state["epoch"] + 1, state["step"], state.get("partial")
        elapsed = state.get("elapsed", 0.0)
        if state["step"] == 0 and start_epoch > cfg.train.epochs:
            log(f"{run_dir} already finished {state['epoch']} epochs (train.epochs = {cfg.train.epochs})")
    ema = WeightAverage(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    if cfg.train.average_teaches:
        ema.model.eval()  # it teaches as it is evaluated (evaluation puts its mode back)
    sam = SharpnessAware(model, cfg.optim.sam_rho) if cfg.optim.sam_rho > 0 else None
    if ema is not None and state is not None:
        with _checkpoint_must_fit(run_dir):
            ema.load_state_dict(state["ema"])  # a resume cannot switch the average on (resume_differences)
    def describe_run() -> None:
        """config.toml and environment.json; a resume writes them just before its first checkpoint,
        so one that fails in training before it leaves the run as its checkpoint describes it (and
        a later plain ``--resume``, which reads config.toml, does not take up the failed settings)."""
        changed = config_changes(load_config(run_dir / "config.toml"), cfg) if resume else {}  # before it is rewritten
        atomic_write_text(run_dir / "config.toml", config_to_toml(cfg))
        env, env_path = environment(device), run_dir / "environment.json"
        if resume and env_path.is_file():  # keep where the run started; list each resume and what it changed
            first = environment_to_extend(run_dir)
            first.setdefault("resumed", []).append({**env, "after_epoch": start_epoch - 1, "after_step": start_step,
                                                    "changed": changed})
            env = first
        atomic_write_text(env_path, json.dumps(env, indent=2) + "\n")

    if device.type == "cpu":  # once the data and networks are in memory, before environment.json says so
        if cfg.train.keep_freed_memory:
            allocator.keep_freed_memory()  # each step reuses the last one's memory instead of page-faulting it in again
        elif allocator.kept():
            log("note: train.keep_freed_memory = false, but an earlier run in this process already made glibc "
                "keep freed memory, which cannot be undone (ftprop.allocator)")
    described = False
    # A resume rewrites metrics.jsonl from its checkpoint's history at its first epoch's end, so
    # one that fails before keeps the epochs logged past the checkpoint.
    metrics_synced = state is None

    def sync_metrics() -> None:
        nonlocal metrics_synced
        atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        metrics_synced = True

    if run_dir is not None:
        if not resume:
            describe_run()
            described = True
        if metrics_synced:
            sync_metrics()
    tb = _tensorboard(run_dir, start_epoch) if run_dir is not None and cfg.train.tensorboard else None

    step_model, optimizer_step = model, optimizer.step
    step_twin, twin_step = (twin, twin_optimizer.step) if twin is not None else (None, None)
    if cfg.train.compile:
        # The whole step: forward and backward graphs, and the optimiser's update (fused
        # elementwise work; a tensor learning rate changes without recompiling). On a GPU the
        # modes in CUDA_GRAPH_MODES also replay CUDA graphs: no host work per step, which is
        # what a small network on a fast GPU is bound by (benchmarks/results/compile_cuda_*.md).
        for group in (g for o in optimizers for g in o.param_groups):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
        if graphs:
            _make_momentum_buffers(optimizer)
        mode = cfg.train.compile_mode
        step_model, optimizer_step = torch.compile(model, mode=mode), torch.compile(optimizer.step, mode=mode)
        if twin is not None:
            step_twin, twin_step = torch.compile(twin, mode=mode), torch.compile(twin_optimizer.step, mode=mode)
    eval_model = model if graphs else step_model  # CUDA graphs are kept for the training step
    t = cfg.train
    eval_bs = t.eval_batch_size or 4 * t.batch_size
    steps_per_epoch = math.ceil(len(train_set) / t.batch_size)
    show = sys.stderr.isatty() if progress is None else progress
    stopper = _Stopper()
    status = "completed"

    saved = (state["epoch"], state["step"]) if state is not None else None  # the last checkpoint written
    data_record = _data_record(train_set)

    def checkpoint(epoch: int, step: int, partial: dict | None = None) -> None:
        nonlocal saved, described
        if run_dir is not None:
            saved = (epoch, step)
            if not described:  # config.toml before the checkpoint: a kill between the two leaves a plain
                # --resume the new settings beside the old checkpoint, not the old ones beside the new
                describe_run()
                described = True
            save_checkpoint(run_dir, {"config": config_to_dict(cfg), "epoch": epoch, "step": step, "partial": partial,
                                      "data": data_record,
                                      "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                      "ema": ema.state_dict() if ema is not None else None,
                                      "twin": twin.state_dict() if twin is not None else None,
                                      "twin_optimizer": twin_optimizer.state_dict() if twin is not None else None,
                                      "history": history, "elapsed": elapsed})
            shutil.rmtree(run_dir / ASIDE, ignore_errors=True)  # --force: the new run has replaced the old

    def write_summary(status: str) -> dict:
        summary = _summary(history, status, elapsed)
        if run_dir is not None:
            atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary

    def mark_failed(status: str) -> None:
        """Say in summary.json that the attempt failed: rewritten from the history when metrics.jsonl
        holds it too; else (a resume that failed before its first epoch's end, metrics.jsonl still
        the earlier attempt's) only the status changes, so the two files keep agreeing."""
        if metrics_synced:
            write_summary(status)
            return
        try:
            old = json.loads((run_dir / "summary.json").read_text())
        except (OSError, ValueError):
            return
        atomic_write_text(run_dir / "summary.json", json.dumps({**old, "status": status}, indent=2) + "\n")

    made["write_summary"] = mark_failed

    with stopper.installed():
        for epoch in range(start_epoch, t.epochs + 1):
            model.train()
            if twin is not None:
                twin.train()
            t0 = time.perf_counter()
            first = start_step if epoch == start_epoch else 0
            if first and carry is not None:
                torch.set_rng_state(carry["rng"])
                if device.type == "cuda" and carry.get("cuda_rng") is not None:
                    torch.cuda.set_rng_state(carry["cuda_rng"], device)
                loss_sum, correct, seen = (carry["loss_sum"].to(device), carry["correct"].to(device), carry["seen"])
                seen_before = seen  # examples of this epoch trained before the resume
            else:
                torch.manual_seed(_epoch_seed(t.seed, epoch))
                loss_sum = torch.zeros((), device=device, dtype=torch.float64)
                correct = torch.zeros((), device=device, dtype=torch.int64)
                seen = seen_before = 0
            gen = torch.Generator().manual_seed(_epoch_seed(t.seed, epoch) + 1)
            augment = cfg.data.augment and epoch <= t.epochs - cfg.data.plain_last_epochs
            batches = train_set.batches(t.batch_size, shuffle=True, augment=augment, generator=gen,
                                        start=first)  # a resumed epoch skips what it already trained
            bar = _progress_bar(show, steps_per_epoch, f"epoch {epoch}/{t.epochs}", initial=first)
            bad_step = torch.full((), -1, device=device, dtype=torch.int64)
            twin_bad_step = bad_step.clone() if twin is not None else None
            step = 0
            for step, (x, y) in enumerate(batches, start=first):
                lr = lr_at(cfg, epoch, step, steps_per_epoch)
                for group in (g for o in optimizers for g in o.param_groups):
                    rate = lr * group["lr_scale"]
                    if isinstance(group["lr"], torch.Tensor):
                        group["lr"].fill_(rate)
                    else:
                        group["lr"] = rate
                if t.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                if graphs:  # a new step: the graphs may now overwrite the last step's outputs
                    torch.compiler.cudagraph_mark_step_begin()
                teacher_out = None
                if twin is not None:
                    teacher_out, twin_loss = twin_backward(step_twin, twin_optimizer, x, y, t)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.bf16):
                    out = step_model(x)
                    if teacher is not None or t.average_teaches:
                        with torch.no_grad():
                            teacher_out = (teacher if teacher is not None else ema.model)(x)
                loss = distillation_loss(out, y, teacher_out, t)
                correct += (out.detach().argmax(1) == y).sum()  # read the outputs before the update runs
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                finite = torch.isfinite(loss.detach())
                if twin is not None:
                    twin_bad_step = torch.where((twin_bad_step < 0) & ~torch.isfinite(twin_loss.detach()), step,
                                                twin_bad_step)
                if sam is not None:
                    # The step's gradient is taken at w + rho * g / ||g||; the logged loss and accuracy
                    # are those at w. Dropout draws a new mask for this pass, as public SAM code does.
                    sam.ascend()
                    optimizer.zero_grad(set_to_none=True)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.bf16):
                        ascent_out = step_model(x)
                    ascent_loss = distillation_loss(ascent_out, y, teacher_out, t)
                    ascent_loss.backward()
                    sam.restore()
                    finite &= torch.isfinite(ascent_loss.detach())  # its gradient is the one the step takes
                try:
                    optimizer_step()
                    if twin is not None:
                        twin_step()
                except RuntimeError as err:  # e.g. Adam's step size lr / (1 - beta1^t) past float range
                    if "overflow" not in str(err):
                        raise
                    raise NonFiniteLossError(f"the optimiser step overflowed at epoch {epoch}, step {step} ({err}); "
                                             f"{_kept(run_dir, saved)}. Lower optim.lr "
                                             f"(now {cfg.optim.lr:g}).") from err
                if ema is not None:
                    ema.update()
                loss = loss.detach()
                bad_step = torch.where((bad_step < 0) & ~finite, step, bad_step)
                loss_sum += loss.double() * y.shape[0]
                seen += y.shape[0]
                if bar is not None and (step % 10 == 0 or step == steps_per_epoch - 1):
                    dt = max(1e-9, time.perf_counter() - t0)
                    bar.update(step + 1 - bar.n)
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}",
                                    img_s=f"{(seen - seen_before) / dt:.0f}")
                if step % 50 == 0 or step == steps_per_epoch - 1:
                    _check_finite(bad_step, epoch, run_dir, saved, sam is not None, twin_bad_step)
                if stopper.signal is not None:
                    break
            if bar is not None:
                bar.close()
            _check_finite(bad_step, epoch, run_dir, saved, sam is not None, twin_bad_step)
            _check_parameters(model, epoch, run_dir, saved, twin)
            train_time = time.perf_counter() - t0
            elapsed += train_time
            if stopper.signal is not None and step < steps_per_epoch - 1:
                partial = {"rng": torch.get_rng_state(), "loss_sum": loss_sum.cpu(), "correct": correct.cpu(),
                           "seen": seen,  # dropout on a GPU draws from the device's generator
                           "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
                checkpoint(epoch - 1, step + 1, partial)
                status = "stopped"
                log(f"stopped by signal {stopper.signal} at epoch {epoch}, step {step + 1}; "
                    + (f"resume with: ftprop train --resume {run_dir}" if run_dir else "nothing saved"))
                break
            row = {"epoch": epoch, "lr": lr_at(cfg, epoch, steps_per_epoch - 1, steps_per_epoch),
                   "train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen}
            # With a weight average, "test_*" (and val, train_eval) measure the average and
            # "live_test_*" the weights the optimiser holds.
            judged = ema.model if ema is not None else eval_model
            _eval_into(row, "test", judged, test_set, eval_bs, t)
            if ema is not None:
                _eval_into(row, "live_test", eval_model, test_set, eval_bs, t)
            if twin is not None:
                _eval_into(row, "twin_test", step_twin, test_set, eval_bs, t)
            if "val" in splits:
                _eval_into(row, "val", judged, splits["val"], eval_bs, t)
            if t.eval_train:
                _eval_into(row, "train_eval", judged, train_set, eval_bs, t)
            row["best_test_acc"] = max([h["test_acc"] for h in history] + [row["test_acc"]])
            row["epoch_time_s"] = round(time.perf_counter() - t0, 3)
            row["train_images_per_s"] = round((seen - seen_before) / max(train_time, 1e-9), 1)
            history.append(row)
            if run_dir is not None:
                if epoch % t.checkpoint_every == 0 or epoch == t.epochs or stopper.signal is not None:
                    checkpoint(epoch, 0)
                if metrics_synced:
                    with open(run_dir / "metrics.jsonl", "a") as f:
                        f.write(json.dumps(row) + "\n")
                else:
                    sync_metrics()
                write_summary("running")  # the state a kill leaves agrees with metrics.jsonl
            if tb is not None:
                for k, v in row.items():
                    if k != "epoch":
                        tb.add_scalar(k, v, epoch)
            log(_format_row(row))
            if stopper.signal is not None:
                if run_dir is not None and saved != (epoch, 0):  # the signal came after the checkpoint's turn
                    checkpoint(epoch, 0)
                status = "stopped"
                log(f"stopped by signal {stopper.signal} after epoch {epoch}; "
                    + (f"resume with: ftprop train --resume {run_dir}" if run_dir else "nothing saved"))
                break
    if tb is not None:
        tb.close()
    if run_dir is not None and not metrics_synced:  # stopped in a resume's first epoch: its checkpoint's history
        sync_metrics()                               # is now the run's, the epochs logged past it gone
    summary = write_summary(status)
    if run_dir is not None and history:
        from .report import plot_runs

        try:  # the run is saved and its summary written: a figure that cannot be drawn does not fail it
            plot_runs([(cfg.name, history)], run_dir / "curves.png")
        except Exception as err:
            log(f"warning: the curves could not be drawn ({type(err).__name__}: {_last_line(err)}); the run is "
                f"{status} and its files are complete. Try `ftprop report {run_dir}`")
    result = RunResult(run_dir, history, model, status, summary, ema.model if ema is not None else None)
    if status == "stopped":
        raise TrainingStopped(f"training stopped by signal {stopper.signal}; "
                              + (f"state saved in {run_dir}" if run_dir is not None else "nothing saved (save=False)"))
    return result


def _check_finite(bad_step: torch.Tensor, epoch: int, run_dir: Path | None, saved: tuple[int, int] | None,
                  sam: bool = False, twin_bad_step: torch.Tensor | None = None) -> None:
    """Raise for the first step of the epoch whose loss was not finite: the network's, or that of
    the twin trained alongside it (``twin_bad_step``), whose outputs enter the network's loss."""
    step = int(bad_step.item())
    twin_step = int(twin_bad_step.item()) if twin_bad_step is not None else -1
    if twin_step >= 0 and (step < 0 or twin_step <= step):
        also = " (and so the network's)" if twin_step == step else ""
        raise NonFiniteLossError(f"non-finite training loss of the twin (train.twin){also} at epoch {epoch}, step "
                                 f"{twin_step}; {_kept(run_dir, saved)}. Lower optim.lr or check the data.")
    if step >= 0:
        where = " (at the weights or at SAM's ascent point)" if sam else ""
        lower = "optim.lr or optim.sam_rho" if sam else "optim.lr"
        raise NonFiniteLossError(f"non-finite training loss{where} at epoch {epoch}, step {step}; "
                                 f"{_kept(run_dir, saved)}. Lower {lower} or check the data.")


def _check_parameters(model: nn.Module, epoch: int, run_dir: Path | None, saved: tuple[int, int] | None,
                      twin: nn.Module | None = None) -> None:
    """Hard thresholds map NaN to a constant, so a sign network's loss can stay finite while
    its weights are NaN: check the parameters once per epoch too (the twin's, named ``twin.``)."""
    bad = [[prefix + name for name, p in net.named_parameters() if not torch.isfinite(p).all()]
           for prefix, net in [("", model), ("twin.", twin)] if net is not None]
    if any(bad):  # up to three names of each
        names = ", ".join(name for names in bad for name in names[:3])
        raise NonFiniteLossError(f"non-finite parameters ({names}) after epoch {epoch}; "
                                 f"{_kept(run_dir, saved)}. "
                                 f"Lower optim.lr or check the data.")


def _check_batches(model: nn.Module, input_shape: tuple[int, ...], examples: int, batch_size: int,
                   device: torch.device) -> None:
    """Batch norm cannot normalise one value per channel: a batch of one example where it sees a
    1x1 map or a fully connected layer. The last training batch holds ``examples % batch_size``.
    One example through the model (eval mode, no gradients) tells which layers would see that."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or (batch_size > 1 and examples % batch_size != 1):
        return
    single: list[bool] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: single.append(args[0][0].numel() == args[0].shape[1]))
             for m in norms]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    if any(single) and examples == 1:
        raise ConfigError("the training set holds one example, and batch norm cannot normalise one value per "
                          "channel; use more training data (a smaller data.val_fraction)")
    if any(single):
        fits = next(b for b in range(max(2, batch_size + 1), examples + 2) if examples % b != 1)
        raise ConfigError(f"with train.batch_size = {batch_size} a training batch of the {examples} examples holds "
                          f"one example, and batch norm cannot normalise one value per channel; choose another "
                          f"batch size (e.g. {fits})")


def _kept(run_dir: Path | None, saved: tuple[int, int] | None) -> str:
    """Where the last checkpoint written (``saved``: its epoch and step) can be resumed from."""
    if run_dir is None or saved is None:
        return "no checkpoint was written"
    epoch, step = saved
    at = f"after epoch {epoch}" if step == 0 else f"at step {step} of epoch {epoch + 1}"
    return f"the last checkpoint ({at}) is kept in {run_dir}"


def _eval_into(row: dict, prefix: str, model: nn.Module, dataset, batch_size: int, t) -> None:
    for k, v in evaluate(model, dataset, batch_size, bf16=t.bf16, channels_last=t.channels_last).items():
        row[f"{prefix}_{k}"] = v


def _summary(history: list[dict], status: str, elapsed: float) -> dict:
    if not history:
        return {"status": status, "epochs": 0}
    best = max(history, key=lambda h: h["test_acc"])
    last = history[-1]
    gap, gap_from = train_test_gap(last)
    out = {"status": status, "epochs": last["epoch"], "best_test_acc": best["test_acc"], "best_epoch": best["epoch"],
           "final_test_acc": last["test_acc"], "final_train_acc": last["train_acc"],
           "final_gap": gap, "gap_from": gap_from,
           "train_time_s": round(elapsed, 1)}
    if "test_top5" in last:
        out["best_test_top5"] = max(h["test_top5"] for h in history)
    if "live_test_acc" in last:
        out["best_live_test_acc"] = max(h.get("live_test_acc", 0.0) for h in history)
        out["final_live_test_acc"] = last["live_test_acc"]
    if "twin_test_acc" in last:
        out["best_twin_test_acc"] = max(h.get("twin_test_acc", 0.0) for h in history)
        out["final_twin_test_acc"] = last["twin_test_acc"]
    return out


def _format_row(row: dict) -> str:
    parts = [f"epoch {row['epoch']:3d}", f"lr {row['lr']:.2e}", f"train loss {row['train_loss']:.4f}",
             f"acc {row['train_acc']:.4f}", f"test loss {row['test_loss']:.4f}", f"acc {row['test_acc']:.4f}"]
    if "test_top5" in row:
        parts.append(f"top5 {row['test_top5']:.4f}")
    if "live_test_acc" in row:
        parts.append(f"live weights' acc {row['live_test_acc']:.4f}")
    if "twin_test_acc" in row:
        parts.append(f"twin's acc {row['twin_test_acc']:.4f}")
    if "val_acc" in row:
        parts.append(f"val acc {row['val_acc']:.4f}")
    if "train_eval_acc" in row:
        parts.append(f"train(eval) acc {row['train_eval_acc']:.4f}")
    parts.append(f"{row['train_images_per_s']:.0f} img/s")
    return " | ".join(parts)


def _progress_bar(show: bool, total: int, desc: str, initial: int = 0):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def _tensorboard(run_dir: Path, first_epoch: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # the tensorboard package is optional
        return None
    # purge_step: a resume from an older checkpoint hides the epochs it trains again, so no curve
    # holds an epoch twice
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=first_epoch if first_epoch > 1 else None)

