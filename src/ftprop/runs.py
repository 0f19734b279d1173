"""Run directories: resolved config, environment, per-epoch metrics and atomic checkpoints.

A run directory holds ``config.toml`` (the resolved config; ``ftprop train --config`` reads
it back), ``environment.json`` (versions, device, git commit), ``metrics.jsonl`` (one JSON
line per epoch), ``checkpoint.pt`` (written to a temporary file, then renamed: a kill at any
moment leaves the previous checkpoint intact), ``summary.json`` and ``curves.png``.
:func:`prepare_run_dir` makes one, reopens it for a resume (refusing one that does not match),
or, with ``force``, sets the old run aside until the new one has written a checkpoint.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import torch

from . import allocator
from .config import Config, ConfigError, _utf8, config_from_dict, config_to_dict, load_config

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
_UMASK = os.umask(0o022)  # read it (umask only reads by setting), then put it back
os.umask(_UMASK)


class RunDirError(RuntimeError):
    """A run directory cannot be used as asked; the message says why and what to do."""


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over
    ``path``: a kill at any moment leaves either the old file or the new one, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it 0600; give it the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """torch.save ``state`` to run_dir/checkpoint.pt atomically."""
    atomic_write(Path(run_dir) / CHECKPOINT, lambda f: torch.save({"format": CHECKPOINT_FORMAT, **state}, f))


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        if not (path / "config.toml").is_file() and not (path / CHECKPOINT).is_file():
            raise RunDirError(f"{path} is not an ftprop run directory (no config.toml, no {CHECKPOINT})")
        path = path / CHECKPOINT
    elif not path.exists() and path.suffix != ".pt":
        raise RunDirError(f"no run at {path}: no such directory")
    elif not path.exists():
        raise RunDirError(f"no checkpoint file {path}")
    if not path.is_file():
        why = half_replaced(path.parent) or ("the run has not saved one yet (it saves every "
                                             "train.checkpoint_every epochs, at its end and when stopped)")
        raise RunDirError(f"no checkpoint at {path}: {why}")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol: whether it loads is said below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=map_location, weights_only=True)  # a foreign pickle runs no code
    except pickle.UnpicklingError as err:
        what = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), None)
        if what is None:  # not a pickle of foreign objects: a damaged file, or no pickle at all
            raise _unreadable(path, err) from None
        raise RunDirError(f"{path} holds Python objects that are not tensors or plain values ({what}): ftprop "
                          f"does not load it, since unpickling them could run any code. ftprop writes no such "
                          f"objects; if you trust the file, read it with torch.load(..., weights_only=False) "
                          f"yourself, or train the run again (ftprop train --force replaces it)") from None
    except Exception as err:  # a truncated or foreign file
        raise _unreadable(path, err) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunDirError(f"{path} is not an ftprop checkpoint of format {CHECKPOINT_FORMAT}: it was written by "
                          f"other code or another version of ftprop; train the run again with this one")
    return state


def _unreadable(path: Path, err: Exception) -> RunDirError:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    # torch's weights-only refusal: its gist follows "WeightsUnpickler error:", beside advice to load
    # the file with weights_only=False, which would run whatever code a foreign pickle holds
    marker = next((i for i, line in enumerate(lines) if "WeightsUnpickler error" in line), None)
    gist = lines[marker + 1] if marker is not None and marker + 1 < len(lines) else "; ".join(lines[:1])
    return RunDirError(f"{path} is not a readable ftprop checkpoint ({gist or type(err).__name__}): the file is "
                       f"damaged (ftprop replaces its checkpoints whole, so something else cut or changed it) or "
                       f"is not a checkpoint. Restore it from a copy, or train the run again (ftprop train --force "
                       f"replaces it)")


# ---- config as TOML -------------------------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"cannot write {v} to TOML")
        return repr(v)
    if isinstance(v, str):  # (not ASCII-only: json would write an emoji as a surrogate pair, which TOML refuses)
        if not _utf8(v):  # a file name in another encoding, as Python decodes it
            raise ValueError(f"{v!r} is not UTF-8 text, which a TOML file (config.toml) must be: rename it "
                             f"or use a path without those bytes")
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML escapes DEL, json does not
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def config_to_toml(cfg: Config) -> str:
    data = config_to_dict(cfg)
    lines = [f"name = {_toml_value(data.pop('name'))}"]
    for section, values in data.items():
        lines.append(f"\n[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None)
    return "\n".join(lines) + "\n"


# ---- environment ----------------------------------------------------------------------

def git_commit() -> str | None:
    """The project's git commit (with ``-dirty`` if it has uncommitted changes outside
    benchmarks/results), if any."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        # benchmarks/results is what benchmarks write: their own output must not mark the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(exclude,top)benchmarks/results"], cwd=here, capture_output=True, text=True,
                               timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The CPU's model name (e.g. 'AMD EPYC 9B14'): speeds differ between machines of one core count."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def read_environment(run_dir: str | Path) -> dict | None:
    """The run's environment.json (where and with what software it trained, each resume listed
    under ``resumed``); None when it has none, RunDirError when it does not parse as one."""
    path = Path(run_dir) / "environment.json"
    if not path.is_file():
        return None
    try:
        env = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(f"{path} is unreadable ({err})") from None
    if not isinstance(env, dict) or not isinstance(env.get("resumed", []), list):
        raise RunDirError(f"{path} is unreadable (not a JSON object with a list of resumes)")
    return env


def environment(device: torch.device) -> dict:
    import numpy

    from . import __version__

    env = {
        "ftprop": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "keeps_freed_memory": allocator.kept(),  # glibc told to reuse freed memory (ftprop.allocator)
        "argv": sys.argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


# ---- reading runs back ----------------------------------------------------------------

@dataclass
class Run:
    """A run directory read back: its config, per-epoch metrics and summary."""

    path: Path
    config: Config
    metrics: list[dict]
    summary: dict

    @property
    def label(self) -> str:
        m = _resolved(config_to_dict(self.config))["model"]  # sste reads as saturated_hinge, qrelu as staircase
        if m["activation"] in ("relu", "saturated_relu"):
            return f"{m['name']} {m['activation']}"
        extra = "" if m["weighted"] else " unweighted"
        return f"{m['name']} {m['activation']} {m['loss']}{extra}"


def refuse_a_file(out: Path, what: str) -> None:
    """``--out`` names a folder (``what``), not a file."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is a file: --out names {what}")


def refuse_run_directory(out: str | Path, what: str) -> None:
    """``what`` (a report, the demo) writes curves.png into ``out``: never into a run's own folder,
    nor over a file."""
    refuse_a_file(Path(out), "a folder")
    if (Path(out) / "config.toml").is_file():
        raise RunDirError(f"{out} is a run directory: {what} would overwrite its curves.png; pick another --out")


def train_test_gap(row: dict) -> tuple[float, str]:
    """An epoch's train - test accuracy, both of the same weights, and what it was measured on:
    the eval-mode train accuracy (``train.eval_train``) against the test accuracy; else the
    epoch's running train accuracy, which the weights that trained earned, against their own test
    accuracy (``live_test_acc`` when a weight average is what ``test_acc`` measures)."""
    if "train_eval_acc" in row:
        return row["train_eval_acc"] - row["test_acc"], "train_eval_acc - test_acc"
    if "live_test_acc" in row:
        return row["train_acc"] - row["live_test_acc"], "running train_acc - live_test_acc"
    return row["train_acc"] - row["test_acc"], "running train_acc - test_acc"


def read_metrics(path: Path) -> list[dict]:
    """Parse metrics.jsonl, ignoring a last line cut short by a kill; a damaged line before it
    is a RunDirError (the epochs after it would be lost without a word)."""
    rows = []
    if not path.is_file():
        return rows
    lines = path.read_text(errors="replace").splitlines()  # ftprop writes ASCII: other bytes are damage
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n < len(lines):
                raise RunDirError(f"{path}, line {n}, is not a JSON record: something other than ftprop changed "
                                  f"the file; restore it from a copy, or remove that line") from None
            continue
        if not isinstance(row, dict) or not {"epoch", "test_acc"} <= row.keys():
            raise RunDirError(f"{path}, line {n}, is not an epoch's record (a JSON object with 'epoch' and "
                              f"'test_acc'): something other than ftprop changed the file; restore it from a copy, "
                              f"or remove that line")
        rows.append(row)
    return rows


def read_run(path: str | Path) -> Run:
    path = Path(path)
    cfg_path = path / "config.toml"
    if not cfg_path.is_file():
        raise RunDirError(f"{path} is not an ftprop run directory (no config.toml)")
    try:
        config = load_config(cfg_path)
    except ConfigError as err:
        raise RunDirError(str(err)) from None
    summary_path = path / "summary.json"
    try:
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{summary_path} is not valid JSON ({err}); delete it (a resume writes it again)") from None
    return Run(path, config, read_metrics(path / "metrics.jsonl"), summary)


# Where the data is read from and how, not what it is: a resumed run may change these.
RESUME_FREE = {"data.root", "data.download", "data.options.workers"}


# A threshold unit's own settings: left unset (and not resolved) for other activations.
UNIT_SETTINGS = ("model.loss", "model.weighted", "model.steps", "model.surrogate")


def resume_differences(previous: Config, cfg: Config, mid_epoch: bool) -> list[str]:
    """``key: previous != new`` for each change that a resume of ``previous`` as ``cfg`` cannot
    take: the model, the data (not where it lives), the optimiser's kind and parameter groups, the
    twin (``train.twin``: the checkpoint holds that twin's weights or none), a weight average
    switched on or off (``test_acc`` would measure other weights from then on, and the best over
    epochs would mix the two), and, inside an epoch, the batch size and seed (the
    batches already trained would no longer be the ones skipped). The average's decay may change."""
    da, db = _resolved(config_to_dict(previous)), _resolved(config_to_dict(cfg))
    fa, fb = _flat(da), _flat(db)
    pairs = {k: (fa.get(k), fb.get(k)) for k in set(fa) | set(fb) if k.startswith(("model.", "data."))}
    for k in ("name", "lr_scaling"):  # another kind of optimiser state, or other parameter groups
        pairs[f"optim.{k}"] = (da["optim"][k], db["optim"][k])
    pairs["train.twin"] = (da["train"].get("twin"), db["train"].get("twin"))  # the checkpoint holds that twin or none
    ema = (da["train"]["ema_decay"], db["train"]["ema_decay"])
    if (ema[0] > 0) != (ema[1] > 0):
        pairs["train.ema_decay"] = ema
    if mid_epoch:
        for k in ("batch_size", "seed"):
            pairs[f"train.{k}"] = (da["train"][k], db["train"][k])
    if pairs["model.activation"][0] != pairs["model.activation"][1]:
        for k in UNIT_SETTINGS:  # they describe the unit, which the activation already says is another one
            pairs.pop(k, None)
    return [f"{k}: {a!r} != {b!r}" for k, (a, b) in sorted(pairs.items()) if k not in RESUME_FREE and a != b]


def config_changes(previous: Config, cfg: Config) -> dict[str, list]:
    """``{"section.key": [previous value, new value]}`` for every setting that differs (options as
    ``data.options.name``; a setting only one of them has reads ``None`` on the other side): what a
    resume changed, recorded beside it since config.toml then holds only the new values. Settings
    compare as a resume compares them (:func:`_resolved`): a default written out is no change."""
    a, b = _flat(_resolved(config_to_dict(previous))), _flat(_resolved(config_to_dict(cfg)))
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _flat(d: dict, prefix: str = "") -> dict:
    """A config dict as ``{"section.key": value}``, options included (``data.options.name``)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _as_lists(value: Any, default: Any = None) -> Any:
    """An option's value as a TOML config writes it, in its default's kind: (256, 256) and [256, 256]
    are one value, and so are 0 and 0.0 for an option whose default is a float."""
    if isinstance(value, (tuple, list)):
        return [_as_lists(v) for v in value]
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _resolved(d: dict) -> dict:
    """A config dict with the defaults and spellings that build the same model made explicit
    (loss None = soft_hinge, an alias = its loss, an activation alias = its activation and the steps
    it fixes, weighted None = True, staircase steps None = 3 and surrogate None = "single", dataset
    and model names in any spelling, the twin's units as their activation, model and data options at their
    defaults and in their defaults' kind), so that a resume compares models."""
    from .activations import canonical_activation, implied_steps
    from .data import check_dataset
    from .data import option_defaults as data_options
    from .losses import get_loss
    from .models import model_name
    from .models import option_defaults as model_options

    def canonical(written: str) -> str:
        try:
            return canonical_activation(written)
        except ValueError:
            return written  # an unknown activation stays as written (and differs)

    model, data, train = dict(d["model"]), dict(d["data"]), dict(d["train"])
    written = model["activation"]
    model["activation"] = canonical(written)
    if model["steps"] is None:
        model["steps"] = implied_steps(written)
    if model["activation"] in ("sign", "step", "staircase"):
        try:
            model["loss"] = get_loss(model["loss"] or "soft_hinge").name
        except ValueError:
            pass  # an unknown loss stays as written (and differs)
        model["weighted"] = True if model["weighted"] is None else model["weighted"]
    if model["activation"] == "staircase":
        model["steps"] = 3 if model["steps"] is None else model["steps"]
        model["surrogate"] = model["surrogate"] or "single"
    try:
        data["name"] = check_dataset(data["name"])  # its registered name: fashion_mnist is fashion-mnist
    except ValueError:
        data["name"] = str(data["name"]).lower()  # an unknown dataset stays as written (and differs)
    try:
        model["name"] = model_name(model["name"])  # its registered name: alexnet_drf is alexnet
    except ValueError:
        model["name"] = str(model["name"]).lower()
    for section, defaults in ((model, model_options), (data, data_options)):
        try:  # options left at their defaults, written out or not, build the same model and data
            known = defaults(section["name"])
        except ValueError:
            known = {}  # an unknown model or dataset stays as written (and differs)
        section["options"] = {k: _as_lists(v, known.get(k)) for k, v in {**known, **section["options"]}.items()}
    if train.get("twin") is not None:  # the twin's units, spelled any way that builds them
        train["twin"] = canonical(train["twin"])
    return {**d, "model": model, "data": data, "train": train}


# Settings that say where or how fast a run went, not what it trained. (bf16 is not among them: it
# changes the arithmetic; nor eval_train: it changes what the gap is measured on; nor train.epochs:
# it sets the schedule's every step.)
HOW_IT_RAN = RESUME_FREE | {f"train.{k}" for k in ("device", "eval_batch_size", "checkpoint_every", "tensorboard",
                                                   "compile", "compile_mode", "channels_last", "keep_freed_memory")}


def recipe(cfg: Config, leave_out: set[str] = HOW_IT_RAN) -> dict:
    """What ``cfg`` trains, as ``{"section.key": value}`` (options as ``section.options.key``)
    without its name and the keys in ``leave_out``, the spellings and defaults of one model made
    one (an unset loss and soft_hinge, sste and saturated_hinge, options left at their defaults or
    written out), as a resume compares them."""
    flat = _flat(_resolved(config_to_dict(cfg)))
    return {k: v for k, v in flat.items() if k != "name" and k not in leave_out}


def config_from_checkpoint(state: dict) -> Config:
    return config_from_dict(state["config"])


# ---- making, replacing and reopening a run directory ------------------------------------------------

def prepare_run_dir(cfg: Config, out: Path | None, resume: bool, force: bool) -> tuple[Path, dict | None]:
    """Create (or reopen for resume) the run directory; never overwrite a different run."""
    if out is None:
        if resume:
            raise RunDirError("resume needs the run directory to continue")
        out = new_default_dir(Path("runs") / f"{cfg.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    out = Path(out)
    cfg_file = out / "config.toml"
    if resume:
        if aside := half_replaced(out):  # a resume would train it afresh, dropping the old run
            raise RunDirError(f"cannot resume {out}: {aside}")
        if not cfg_file.is_file():
            raise RunDirError(f"cannot resume {out}: it holds no run (no config.toml)")
        run = read_run(out)
        previous = run.config
        state = load_checkpoint(out / CHECKPOINT) if (out / CHECKPOINT).is_file() else None
        if state is None and run.metrics:  # epochs were trained but none was kept: do not train them over
            raise RunDirError(f"cannot resume {out}: it has no {CHECKPOINT}, though metrics.jsonl records "
                              f"{len(run.metrics)} epoch(s) (with train.checkpoint_every = "
                              f"{previous.train.checkpoint_every} they were not all saved, or the file was removed); "
                              f"start it again with --force, or train into another --out")
        if state is not None:  # what the weights were trained with (config.toml says the same once written)
            previous = config_from_checkpoint(state)
        diffs = resume_differences(previous, cfg, mid_epoch=state is not None and state["step"] > 0)
        if diffs:
            raise RunDirError(f"cannot resume {out} with a different model, dataset, optimiser kind, twin, weight "
                              f"average on/off or, inside an epoch, batch size or seed (start a new run instead): "
                              + "; ".join(diffs))
        environment_to_extend(out)  # unreadable: refused now, not at the first checkpoint
        reached = 0 if state is None else state["epoch"] + (state["step"] > 0)
        if reached > cfg.train.epochs:
            part = " and part of the next" if state["step"] > 0 else ""
            raise RunDirError(f"cannot resume {out} with train.epochs = {cfg.train.epochs}: it has already trained "
                              f"{state['epoch']} epochs{part}; pass --epochs {reached} or more")
        return out, state
    refuse_a_file(out, "the run's folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            if aside := half_replaced(out):
                raise RunDirError(f"{out}: {aside}")
            if cfg_file.is_file():
                raise RunDirError(f"{out} already holds a run; use --resume {out} to continue it, another --out, "
                                  f"or --force to replace it")
            raise RunDirError(f"{out} already holds other files (not a run); pick another --out, or --force to "
                              f"train there anyway (files that are not a run's are kept)")
        set_aside(out)
    out.mkdir(parents=True, exist_ok=True)
    return out, None


def lock_run_dir(path: Path) -> int | None:
    """Hold ``path`` (a directory) for this process: a file descriptor with an exclusive lock on it,
    which closing it (or this process's end, however it ends) gives up; a RunDirError if another
    process holds it. None where nothing can be held: a system without ``flock`` (Windows), or a
    file system that cannot lock a directory (NFS, Lustre without its flock option)."""
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirError(f"{path} is in use: another ftprop process is training in it; wait for it to end (or "
                          f"stop it) and try again, or train into another --out") from None
    except OSError:  # EBADF, ENOSYS, ENOLCK: this file system does not lock directories
        os.close(fd)
        return None
    return fd


def new_default_dir(base: Path) -> Path:
    """``base``, or base-2, base-3, ...: the first that did not exist, made here (runs started within
    the same second each get their own folder, and none is taken for another's)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        out = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            out.mkdir()
        except FileExistsError:
            continue
        return out


def environment_to_extend(out: Path) -> dict:
    """The run's environment.json ({} if it has none), which a resume extends."""
    try:
        return read_environment(out) or {}
    except RunDirError as err:
        raise RunDirError(f"cannot resume {out}: {err}; restore it, or move it away and resume again (the "
                          f"resume then records only where it ran itself)") from None


RUN_FILES = (CHECKPOINT, "metrics.jsonl", "summary.json", "curves.png", "config.toml", "environment.json",
             "tensorboard")
ASIDE = ".replaced-run"  # where --force keeps the old run until the new one has written a checkpoint


def remove_run_files(out: Path) -> None:
    """Delete what a run writes in ``out`` (and nothing else the folder holds)."""
    for name in RUN_FILES:
        if (out / name).is_dir():
            shutil.rmtree(out / name, ignore_errors=True)  # else an old run's curves mix with a new one's
        else:
            (out / name).unlink(missing_ok=True)


def half_replaced(out: Path) -> str | None:
    """What to do with ``out`` when it holds a run set aside by --force (``ASIDE``) and no checkpoint
    (the run replacing it was stopped before its first checkpoint); else None."""
    if not (out / ASIDE).is_dir() or (out / CHECKPOINT).is_file():
        return None
    left = [name for name in RUN_FILES if (out / name).exists()]
    return (f"a --force run replacing the run there stopped before its first checkpoint, and the run it replaces "
            f"waits in {out / ASIDE}: start the new run again with --force (the old one waits until it has a "
            f"checkpoint), or, to keep the old one, delete what the stopped run left in {out}"
            + (f" ({', '.join(left)})" if left else "") + f" and move the files of {out / ASIDE} back into it")


def set_aside(out: Path) -> None:
    """Move the run files of ``out`` into ``out/ASIDE``: --force replaces a run only once the new one
    has written a checkpoint, so a new run that fails first gives it back. An ASIDE already there
    with no checkpoint in ``out`` is a run that a killed --force was replacing: it stays, and what
    the killed run left is dropped (with a checkpoint, the killed run had replaced it)."""
    aside = out / ASIDE
    if half_replaced(out):
        remove_run_files(out)
        return
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for name in RUN_FILES:
        if (out / name).exists():
            os.replace(out / name, aside / name)


def give_back(out: Path) -> None:
    aside = out / ASIDE
    if aside.is_dir():
        for entry in aside.iterdir():
            os.replace(entry, out / entry.name)
        aside.rmdir()
