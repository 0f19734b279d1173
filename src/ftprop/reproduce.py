"""The paper's Table 1 as runnable recipes: ``ftprop reproduce table1``.

Each cell is one TOML file in ``configs/table1/<row>-<col>.toml`` with the paper's
hyper-parameters (PAPER.md §9.2). Two defects of the reference README are resolved so:
the convnet8 "Step" commands pass ``staircase3`` by mistake (identical to the qReLU ones),
so the Sign column uses sign units; the ResNet-18 "3-bit qReLU" commands pass ``staircase``
(steps = 5, six levels), which is what the code ran, so that column uses ``steps = 5``.

The paper's numbers are recalled, not checked against the PDF (PAPER.md §10.1): they are
printed beside ours marked as such.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .config import Config, load_config, validate
from .data import DatasetError
from .report import mean_std
from .runs import HOW_IT_RAN, RunDirError, atomic_write_text, config_changes, read_run

ROWS = ("convnet4", "convnet8", "alexnet", "resnet18")
COLS = ("sign_sste", "sign_ftpsh", "qrelu_sste", "qrelu_ftpsh", "relu", "satrelu")
COL_TITLES = {"sign_sste": "Sign SSTE", "sign_ftpsh": "Sign FTP-SH", "qrelu_sste": "qReLU SSTE",
              "qrelu_ftpsh": "qReLU FTP-SH", "relu": "ReLU", "satrelu": "Sat. ReLU"}
ROW_TITLES = {"convnet4": "CIFAR-10 4-layer convnet", "convnet8": "CIFAR-10 8-layer convnet",
              "alexnet": "ImageNet AlexNet (DoReFa)", "resnet18": "ImageNet ResNet-18"}
ROW_DATA = {"convnet4": "cifar10", "convnet8": "cifar10", "alexnet": "imagefolder", "resnet18": "imagefolder"}

# PAPER.md §10.1 -- [RECALL], UNCONFIRMED: best top-1 test accuracy over epochs, in percent.
PAPER_TABLE1 = {
    "convnet4": (80.6, 81.3, 85.6, 85.5, 86.5, 87.3),
    "convnet8": (84.6, 84.9, 88.4, 89.8, 91.2, 91.2),
    "alexnet": (46.7, 47.3, 59.4, 60.7, 61.3, 61.9),
    "resnet18": (49.1, 47.8, 60.6, 64.3, 69.1, 66.9),
}


def default_config_dir() -> Path:
    """``configs/table1`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "configs" / "table1"


def cell_config(row: str, col: str, config_dir: str | Path | None = None) -> Config:
    folder = Path(config_dir) if config_dir is not None else default_config_dir()  # a str works as well
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder of Table 1 configs at {folder}: they ship with the source checkout "
                                f"(configs/table1); pass --configs DIR (config_dir=...) to point at them")
    return load_config(folder / f"{row}-{col}.toml")


def _parse_list(text: str | None, valid: tuple[str, ...], what: str) -> list[str]:
    if not text:
        return list(valid)
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in valid]
    if bad:
        raise ValueError(f"unknown {what} {', '.join(bad)}; valid: {', '.join(valid)}")
    return items


def plan(rows: str | None = None, cols: str | None = None, epochs: int | None = None, seeds: int = 1,
         data_root: str | None = None, imagenet_root: str | None = None, download: bool = False,
         config_dir: str | Path | None = None, device: str | None = None,
         need_data: bool = True) -> tuple[list, list[str]]:
    """The runs to make as (row, col, seed, config), and notes on the cells skipped.
    ``need_data=False`` (a dry run) plans the rows whose data is not given, with a note."""
    if seeds < 1:
        raise ValueError("--seeds must be >= 1")
    runs, notes = [], []
    for row in _parse_list(rows, ROWS, "row"):
        root = data_root if ROW_DATA[row] == "cifar10" else imagenet_root
        if root is None and download and ROW_DATA[row] == "cifar10":
            raise ValueError("--download needs --data-root DIR: the folder to download CIFAR-10 into")
        if root is None:
            flag = "--data-root (with --download to fetch it)" if ROW_DATA[row] == "cifar10" else "--imagenet-root"
            if need_data:
                notes.append(f"skipped {row}: no {ROW_DATA[row]} data given ({flag})")
                continue
            notes.append(f"{row}: no {ROW_DATA[row]} data given; a run needs {flag}")
        elif not Path(root).expanduser().exists() and not (download and ROW_DATA[row] == "cifar10"):
            if need_data:
                notes.append(f"skipped {row}: data root {root} does not exist")
                continue
            notes.append(f"{row}: data root {root} does not exist; a run needs it")
        for col in _parse_list(cols, COLS, "column"):
            base = cell_config(row, col, config_dir)
            data = replace(base.data, root=root, download=download and ROW_DATA[row] == "cifar10")
            train = base.train if epochs is None else replace(base.train, epochs=epochs)
            if device is not None:
                train = replace(train, device=device)
            for k in range(seeds):
                cfg = replace(base, data=data, train=replace(train, seed=base.train.seed + k))
                validate(cfg)  # --epochs 0 or --device tpu is refused here, --dry-run included
                runs.append((row, col, k, cfg))
    return runs, notes


def _other_settings(previous: Config, cfg: Config) -> list[str]:
    """``key: previous != planned`` for each setting of what is trained that differs (not the name,
    where or how fast it ran, nor how many epochs: a run continues to more)."""
    leave_out = HOW_IT_RAN | {"name", "train.epochs"}
    return [f"{k}: {a!r} != {b!r}" for k, (a, b) in config_changes(previous, cfg).items() if k not in leave_out]


def run_table1(out: str | Path, runs: list, notes: list[str], log: Callable[[str], None] = print) -> Path:
    """Train (or resume, or reuse) every planned cell, then write ``out/table1.md`` of every run
    in ``out``, those of earlier calls included."""
    from .engine import NonFiniteLossError, train

    out = Path(out)
    for note in notes:
        log(note)
    done: dict[tuple[str, str], list[Path]] = {}
    other_settings: set[Path] = set()  # runs of an earlier call that the cell's config no longer gives
    for row, col, k, cfg in runs:
        run_dir = out / f"{row}-{col}" / f"seed{k}"
        log(f"== {row} {col} seed {cfg.train.seed} ({cfg.train.epochs} epochs) -> {run_dir}")
        try:
            resume = (run_dir / "config.toml").is_file()
            if resume:
                differences = _other_settings(read_run(run_dir).config, cfg)
                if differences:
                    other_settings.add(run_dir)
                    raise RunDirError(f"trained with other settings than the cell's config gives now ("
                                      f"{'; '.join(differences)}), so left out of the table; move it away, or "
                                      f"give another --out, to train the cell anew")
            train(cfg, run_dir, resume=resume, log=log)
        except DatasetError as err:
            notes.append(f"skipped {row}-{col}: {err}")
            log(notes[-1])
            continue
        except (NonFiniteLossError, RunDirError) as err:  # one cell's trouble does not stop the others
            notes.append(f"{row}-{col} seed {cfg.train.seed} ({run_dir}): {err}")
            log(notes[-1])
            continue
        done.setdefault((row, col), []).append(run_dir)
    # The table covers every run in ``out``: cells (and seeds) of earlier calls stay in it.
    for row in ROWS:
        for col in COLS:
            found = sorted(p.parent for p in (out / f"{row}-{col}").glob("seed*/config.toml")
                           if p.parent not in other_settings)
            if found:  # (every run trained above is among them: train writes config.toml first)
                done[(row, col)] = found
    return write_table1(out, done, notes)


def write_table1(out: Path, done: dict[tuple[str, str], list[Path]], notes: list[str]) -> Path:
    lines = ["# Table 1, reproduced", "",
             "Each cell: ours (best top-1 test accuracy over epochs, %, mean ± std over seeds) / the paper's "
             "(**recalled, unconfirmed**, PAPER.md §10.1) / ours - paper. The paper reports the best over epochs; "
             "so do we. Cells not run are blank.", "",
             "| network | " + " | ".join(COL_TITLES[c] for c in COLS) + " |", "|---" * (len(COLS) + 1) + "|"]
    cells = {}
    for row in ROWS:
        parts = []
        for i, col in enumerate(COLS):
            runs = []
            for p in done.get((row, col), []):
                try:
                    run = read_run(p)
                except RunDirError as err:  # one damaged run folder must not cost the whole table
                    if not any(str(err) in n for n in notes):  # (its training attempt may have said so)
                        notes.append(f"left out of the table: {err}")
                    continue
                if run.metrics:  # a run with no finished epoch has no number yet
                    runs.append(run)
            if not runs:
                parts.append("")
                continue
            best = [max(m["test_acc"] for m in r.metrics) for r in runs]
            ours = sum(best) / len(best) * 100
            paper = PAPER_TABLE1[row][i]
            epochs = "/".join(str(e) for e in sorted({r.metrics[-1]["epoch"] for r in runs}))  # 9/10, not 10/9
            parts.append(f"{mean_std(best)} / {paper} / {ours - paper:+.1f} ({epochs} ep)")
            cells[f"{row}-{col}"] = {"ours_best": best, "paper_recalled": paper, "epochs": epochs,
                                     "runs": [str(r.path) for r in runs]}  # the runs ours_best holds, in order
        if any(parts):
            lines.append(f"| {ROW_TITLES[row]} | " + " | ".join(parts) + " |")
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "table1.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    atomic_write_text(out / "table1.json", json.dumps({"cells": cells, "notes": notes}, indent=2) + "\n")
    return path
