"""What every benchmark does with its result files: never replace one by accident, and write
the .json and its .md as a pair.

benchmarks/results/ holds committed measurements; a smoke test, a typo in --name or a run that
fails must not overwrite one. ``claim`` refuses a name whose .json or .md exists unless the user
passes --force, and refuses names that are not plain file names; ``check_device`` refuses a
--device this machine cannot use. Both run before anything is measured. ``write_result`` builds
both texts before it writes either, so a table that fails to format leaves the old pair (or
none), never a new .json beside an old .md. Each file is replaced atomically; a kill between the
two replacements (a moment) can still leave a new .json beside the old .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ftprop.runs import atomic_write_text


def claim(stem: str | Path, force: bool, also: tuple[str, ...] = ()) -> Path:
    """``stem`` (a path without suffix; a trailing .json or .md is dropped) if its result files (the
    .json, the .md and those with the suffixes ``also``, e.g. ".png") may be written; else SystemExit
    with what to do. Call it before measuring anything."""
    stem = Path(stem)
    if stem.suffix in (".json", ".md"):  # --out results/x.json means the pair results/x.{json,md}
        stem = stem.with_suffix("")
    check_name(stem.name)
    stem.parent.mkdir(parents=True, exist_ok=True)  # a name such as 'sweep/variant' writes into a folder
    existing = [p.name for p in (_file(stem, suffix) for suffix in (".json", ".md", *also)) if p.exists()]
    if existing and not force:
        raise SystemExit(f"error: {stem.parent}/{' and '.join(existing)} already exist (a committed result?); "
                         f"pass --force to replace them, or choose another --name / --out")
    return stem


def check_name(name: str) -> str:
    """A result name: plain file names (a sweep's runs use 'sweep/variant'), none empty or hidden."""
    if not name or "\\" in name or any(not part or part.startswith(".") for part in name.split("/")):
        raise SystemExit(f"error: the result name {name!r} must be a plain file name (not empty, no part "
                         f"empty or starting with '.')")
    if name.endswith((".json", ".md")):
        raise SystemExit(f"error: the result name {name!r} ends in a suffix; give it without .json or .md "
                         f"(both files are written)")
    return name


def check_device(parser: argparse.ArgumentParser, device: str) -> torch.device:
    """``device`` as a torch.device, or a parser error that says what to pass instead."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index not in (None, 0)):
        parser.error(f"--device {device!r}: the benchmarks run on cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {device}: no CUDA device here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        parser.error(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                     f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return dev


def write_result(stem: str | Path, payload: dict, markdown: str, indent: int | None = 2) -> None:
    """Write ``stem``.json (``payload``) and ``stem``.md (``markdown``), each atomically, once both
    texts exist: an unserialisable payload raises before either file is touched."""
    stem = Path(stem)
    text = json.dumps(payload, indent=indent) + "\n"
    markdown = markdown if markdown.endswith("\n") else markdown + "\n"
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(_file(stem, ".json"), text)
    atomic_write_text(_file(stem, ".md"), markdown)


def _file(stem: Path, suffix: str) -> Path:
    return stem.parent / (stem.name + suffix)  # not with_suffix: a name such as 'lr1.5e-3' keeps its dot
