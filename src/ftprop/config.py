"""Run configuration: plain dataclasses, read from TOML, overridden with ``key=value``.

A config has five sections (``model``, ``data``, ``optim``, ``schedule``, ``train``) and a
``name``. Unknown keys and ill-typed values are refused with the closest valid name and the
list of choices, before anything runs.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import difflib
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Config", "ModelConfig", "DataConfig", "OptimConfig", "ScheduleConfig", "TrainConfig", "ConfigError",
           "load_config", "apply_overrides", "config_from_dict", "config_to_dict", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCALINGS = ("none", "layer_rms")
SCHEDULES = ("constant", "multistep", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda")
# torch.compile modes; reduce-overhead and max-autotune also replay CUDA graphs on a GPU
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class ConfigError(ValueError):
    """A configuration value or key that cannot work; the message says what would."""


@dataclass
class ModelConfig:
    name: str = "mlp"
    activation: str = "sign"
    loss: str | None = None  # layer loss of hard-threshold units (None: soft_hinge = FTP-SH)
    weighted: bool | None = None  # weight each unit's loss by |dL_next/dh| (None: True, as the paper)
    steps: int | None = None  # staircase only (None: 3, the 2-bit qReLU)
    surrogate: str | None = None  # staircase only: "single" (the reference's) or "per_step"
    options: dict = field(default_factory=dict)  # architecture options, e.g. hidden = [1024, 1024]


@dataclass
class DataConfig:
    name: str = "digits"
    root: str | None = None
    download: bool = False
    val_fraction: float = 0.0  # held out of the training set; 0 = the paper's set-up
    val_seed: int = 0
    augment: bool = True  # the dataset's own training augmentation (CIFAR: crop + flip)
    plain_last_epochs: int = 0  # the last N epochs train on the images as they are (no augmentation)
    options: dict = field(default_factory=dict)  # dataset options, e.g. workers = 8


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0  # coupled L2 for sgd/adam (the paper's), decoupled for adamw
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    betas: list = field(default_factory=lambda: [0.9, 0.999])  # adam/adamw only
    sam_rho: float = 0.0  # > 0: sharpness-aware minimisation of this radius (two passes per step); 0: off
    lr_scaling: str = "none"  # "layer_rms": each layer's lr in proportion to its initial weight RMS


@dataclass
class ScheduleConfig:
    name: str = "constant"
    milestones: list = field(default_factory=list)  # multistep: at the START of these epochs lr *= gamma
    gamma: float = 0.1
    warmup_epochs: float = 0.0  # cosine: linear warm-up length; onecycle: length of the rise (0: a quarter of training)
    final_lr_fraction: float = 0.0  # cosine/onecycle: lr at the end, as a fraction of the peak


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 0  # 0: 4x batch_size
    seed: int = 0
    device: str = "auto"
    bf16: bool = False  # bf16 autocast (CUDA; allowed on CPU)
    channels_last: bool = False
    keep_freed_memory: bool = True  # on CPU: glibc keeps freed memory for the next step (ftprop.allocator)
    compile: bool = False
    compile_mode: str = "default"  # torch.compile mode (with compile = true); see COMPILE_MODES
    eval_train: bool = False  # also evaluate the training set in eval mode every epoch (exact gap)
    label_smoothing: float = 0.0  # of the training cross-entropy (evaluation losses are unsmoothed)
    ema_decay: float = 0.0  # > 0: evaluate an exponential moving average of the weights (per step)
    teacher: str | None = None  # a trained run (directory or checkpoint.pt) whose outputs the loss also matches
    twin: str | None = None  # units of a twin network trained alongside on the labels, teaching as a teacher would
    average_teaches: bool = False  # the weight average (train.ema_decay) teaches the network, as a teacher would
    distill_weight: float = 0.5  # with a teacher or a twin: the share of the loss that is the distillation term
    distill_temperature: float = 4.0  # with a teacher or a twin: both networks' logits are divided by it, then softmax
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch is always saved)
    tensorboard: bool = True  # when the tensorboard package is installed


@dataclass
class Config:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_SECTION_TYPES = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "schedule": ScheduleConfig,
                  "train": TrainConfig}


def _closest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def _coerce(where: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a field's type hint; ints are accepted for floats."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is list:
        if isinstance(value, (list, tuple)):
            return list(value)
    elif hint is dict:
        if isinstance(value, dict):
            return dict(value)
    else:  # pragma: no cover
        return value
    name = getattr(hint, "__name__", str(hint))
    if value is None:
        raise ConfigError(f"{where} must be {name}, got nothing (an empty --set value unsets only the keys "
                          f"that may be unset, such as train.teacher or model.loss)")
    shown = str(value).lower() if isinstance(value, bool) else value
    quote = (f" (quote text that reads as another type: {where}='{shown}')"
             if hint is str and isinstance(value, (int, float, bool, datetime.date, datetime.time)) else "")
    raise ConfigError(f"{where} must be {name}, got {value!r}{quote}")


def config_from_dict(data: dict, base: Config | None = None, replace: frozenset[str] = frozenset()) -> Config:
    """A Config from nested dicts (as read from TOML), on top of ``base`` (or the defaults). An
    options table merges into the base's, key by key, unless its ``section.options`` is in ``replace``."""
    cfg = config_to_dict(base or Config())
    if not isinstance(data, dict):
        raise ConfigError("a config is a table of sections: model, data, optim, schedule, train")
    for key, value in data.items():
        if key == "name":
            cfg["name"] = _coerce("name", value, str)
            continue
        if key not in _SECTION_TYPES:
            raise ConfigError(f"unknown config section {key!r}.{_closest(key, list(_SECTION_TYPES))} "
                              f"Valid: name, {', '.join(_SECTION_TYPES)}.")
        if not isinstance(value, dict):
            raise ConfigError(f"[{key}] must be a table of settings, got {value!r}")
        cls = _SECTION_TYPES[key]
        hints = typing.get_type_hints(cls)
        for sub, v in value.items():
            if sub not in hints:
                raise ConfigError(f"unknown key {key}.{sub}.{_closest(sub, list(hints))} "
                                  f"Valid keys of [{key}]: {', '.join(hints)}.")
            if (hints[sub] is dict and isinstance(cfg[key].get(sub), dict) and isinstance(v, dict)
                    and f"{key}.{sub}" not in replace):
                cfg[key][sub] = {**cfg[key][sub], **v}
            else:
                cfg[key][sub] = _coerce(f"{key}.{sub}", v, hints[sub])
    out = Config(name=cfg["name"], **{k: _SECTION_TYPES[k](**cfg[k]) for k in _SECTION_TYPES})
    validate(out)
    return out


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def load_config(path: str | Path) -> Config:
    """Read a TOML config file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a TOML file" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {path} {what}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text, as TOML must be ({err})") from None
    try:
        return config_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax (1e-3, true, [200, 250], "x"), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(cfg: Config, overrides: list[str], patch: dict | None = None) -> Config:
    """Apply ``section.key=value`` overrides (``model.options.hidden=[512]`` reaches into options),
    on top of ``patch`` (nested dicts, e.g. from command-line flags) when given: the two are
    merged and the result is checked once, so only the final combination has to be valid."""
    patch = copy.deepcopy(patch) if patch else {}
    whole = set()  # `model.options={}` replaces the table (to switch model), `model.options.k=v` merges
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set takes key=value (e.g. optim.lr=1e-3), got {item!r}")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if parts == ["name"]:
            value = _parse_value(text.strip())
            patch["name"] = value if isinstance(value, str) else text.strip()  # name=2024 is a name
            continue
        if len(parts) < 2:
            raise ConfigError(f"--set key {key!r} needs a section: one of {', '.join(_SECTION_TYPES)} "
                              f"(e.g. optim.lr=1e-3)")
        if len(parts) > 2 and parts[1] != "options":
            raise ConfigError(f"--set key {key!r}: only the options tables take deeper keys")
        node, where = patch, []
        for p in parts[:-1]:
            where.append(p)
            node = node.setdefault(p, {})
            if not isinstance(node, dict):  # (--set name.x=1, or options.hidden=5 then options.hidden.x=1)
                raise ConfigError(f"--set key {key!r}: {'.'.join(where)} is a value, not a table of keys")
        # an empty value unsets a key that may be unset (train.teacher=, model.loss=): back to None
        node[parts[-1]] = None if len(parts) == 2 and not text.strip() else _parse_value(text.strip())
        if len(parts) == 2 and parts[1] == "options":
            whole.add(key.strip())
    return config_from_dict(patch, base=cfg, replace=frozenset(whole))


def _one_of(where: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{where} = {value!r} is not valid.{_closest(value, list(choices))} "
                          f"Choices: {', '.join(choices)}.")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate(cfg: Config) -> None:
    """Range and choice checks that need no model or data; raise ConfigError."""
    _one_of("optim.name", cfg.optim.name, OPTIMIZERS)
    _one_of("optim.lr_scaling", cfg.optim.lr_scaling, LR_SCALINGS)
    _one_of("schedule.name", cfg.schedule.name, SCHEDULES)
    _one_of("train.device", cfg.train.device, DEVICES)
    _one_of("train.compile_mode", cfg.train.compile_mode, COMPILE_MODES)
    if cfg.train.compile_mode != "default" and not cfg.train.compile:
        raise ConfigError(f"train.compile_mode = {cfg.train.compile_mode!r} needs train.compile = true")
    # First, so that NaN, which fails every comparison, is not reported as out of range.
    for section, values in config_to_dict(cfg).items():
        for key, value in (values.items() if isinstance(values, dict) else []):
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"{section}.{key} = {v}: give a finite number")
                if isinstance(v, str) and not _utf8(v):  # config.toml could not hold it
                    raise ConfigError(f"{section}.{key} = {v!r} is not UTF-8 text (a file name in another "
                                      f"encoding?); rename it, or use a path without those bytes")
    t, o, s = cfg.train, cfg.optim, cfg.schedule
    checks = [
        (t.epochs >= 1, "train.epochs must be >= 1"),
        (t.batch_size >= 1, "train.batch_size must be >= 1"),
        (t.eval_batch_size >= 0, "train.eval_batch_size must be >= 0 (0: 4 x batch_size)"),
        (t.checkpoint_every >= 1, "train.checkpoint_every must be >= 1"),
        (0 <= t.seed < 2**63, "train.seed must be in [0, 2^63)"),
        (0 <= t.label_smoothing < 1, "train.label_smoothing must be in [0, 1)"),
        (0 <= t.ema_decay < 1, "train.ema_decay must be in [0, 1) (0: no averaging; e.g. 0.999)"),
        (0 < t.distill_weight <= 1, "train.distill_weight must be in (0, 1] (1: the teacher's outputs alone)"),
        (t.distill_temperature > 0, "train.distill_temperature must be > 0 (e.g. 4)"),
        (t.teacher is None or bool(t.teacher.strip()), "train.teacher must name a run directory or checkpoint"),
        (t.twin is None or bool(t.twin.strip()), "train.twin must name the twin's units (e.g. 'relu')"),
        (sum([t.teacher is not None, t.twin is not None, t.average_teaches]) <= 1,
         "train.teacher, train.twin and train.average_teaches are sources of the same distillation term; set "
         "one of them (--set train.teacher= or --set train.twin= unsets what a config file set)"),
        (not t.average_teaches or t.ema_decay > 0,
         "train.average_teaches needs a weight average to teach: set train.ema_decay (e.g. 0.999)"),
        (o.lr > 0, "optim.lr must be > 0"),
        (o.weight_decay >= 0, "optim.weight_decay must be >= 0"),
        (o.sam_rho >= 0, "optim.sam_rho must be >= 0 (0: no SAM; e.g. 0.05)"),
        (0 <= o.momentum < 1, "optim.momentum must be in [0, 1)"),
        (len(o.betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in o.betas),
         "optim.betas must be two numbers in [0, 1)"),
        (0 < s.gamma <= 1, "schedule.gamma must be in (0, 1]"),
        (all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in s.milestones),
         "schedule.milestones must be epoch numbers >= 1"),
        (s.warmup_epochs >= 0, "schedule.warmup_epochs must be >= 0"),
        (0 <= s.final_lr_fraction <= 1, "schedule.final_lr_fraction must be in [0, 1]"),
        (0 <= cfg.data.val_fraction < 1, "data.val_fraction must be in [0, 1)"),
        (0 <= cfg.data.val_seed < 2**63, "data.val_seed must be in [0, 2^63)"),
        (cfg.data.val_seed == 0 or cfg.data.val_fraction > 0,
         "data.val_seed draws the validation split: it needs data.val_fraction > 0"),
        (0 <= cfg.data.plain_last_epochs <= t.epochs,
         f"data.plain_last_epochs must be in [0, train.epochs = {t.epochs}]"),
        (cfg.data.augment or cfg.data.plain_last_epochs == 0,
         "data.plain_last_epochs turns augmentation off for the last epochs, but data.augment = false "
         "already trains without it; drop one of the two"),
        (bool(cfg.name.strip()) and not cfg.name.startswith(".") and not {"/", "\\"} & set(cfg.name)
         and _utf8(cfg.name),
         f"name = {cfg.name!r}: a run name names a folder under runs/, so it must not be empty, start "
         f"with '.', hold '/' or '\\' or be other than UTF-8 text (choose the folder itself with --out)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if s.name == "multistep" and not s.milestones:
        raise ConfigError("schedule.name = 'multistep' needs schedule.milestones (e.g. [200, 250])")
    if s.name != "multistep" and s.milestones:
        raise ConfigError(f"schedule.milestones only apply to the multistep schedule, not {s.name!r} "
                          f"(add --set schedule.milestones=[] to drop them)")
    if s.name in ("cosine", "onecycle") and s.warmup_epochs >= t.epochs:
        raise ConfigError(f"schedule.warmup_epochs = {s.warmup_epochs} leaves no decay in {t.epochs} epochs; "
                          f"make it shorter than train.epochs")
    # A setting that the chosen schedule or optimiser would ignore is refused, not silently dropped.
    defaults = ScheduleConfig()
    if s.name not in ("cosine", "onecycle"):
        for key in ("warmup_epochs", "final_lr_fraction"):
            if getattr(s, key) != getattr(defaults, key):
                raise ConfigError(f"schedule.{key} applies to the cosine and onecycle schedules only, not {s.name!r} "
                                  f"(drop it, or pick one of those)")
    if s.name != "multistep" and s.gamma != defaults.gamma:
        raise ConfigError(f"schedule.gamma applies to the multistep schedule only, not {s.name!r}")
    if t.teacher is None and t.twin is None and not t.average_teaches:
        for key in ("distill_weight", "distill_temperature"):
            if getattr(t, key) != getattr(TrainConfig(), key):
                raise ConfigError(f"train.{key} applies to distillation only: set train.teacher to a trained "
                                  f"run's directory, train.twin to a twin's units (e.g. 'relu') or "
                                  f"train.average_teaches = true, or drop it")
    if o.name == "sgd" and list(o.betas) != OptimConfig().betas:
        raise ConfigError("optim.betas apply to adam and adamw only, not 'sgd' (use optim.momentum)")
    if o.name == "sgd" and o.nesterov and o.momentum == 0:
        raise ConfigError("optim.nesterov = true needs optim.momentum > 0")
    if o.name != "sgd" and (o.nesterov or o.momentum != 0.9):
        raise ConfigError(f"optim.momentum/nesterov apply to sgd only, not {o.name!r} (use optim.betas)")
