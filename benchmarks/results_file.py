"""The one rule every benchmark follows before it measures: never replace a result file by accident.

benchmarks/results/ holds committed measurements; a smoke test, a typo in --name or a run that
fails must not overwrite one. ``claim`` refuses a name whose .json or .md exists unless the user
passes --force, and refuses names that are not plain file names.
"""

from __future__ import annotations

from pathlib import Path


def claim(stem: str | Path, force: bool) -> Path:
    """``stem`` (a path without suffix) if its result files may be written; else SystemExit with
    what to do. Call it before measuring anything."""
    stem = Path(stem)
    check_name(stem.name)
    stem.parent.mkdir(parents=True, exist_ok=True)  # a name such as 'sweep/variant' writes into a folder
    existing = [p.name for p in (stem.with_suffix(".json"), stem.with_suffix(".md")) if p.exists()]
    if existing and not force:
        raise SystemExit(f"error: {stem.parent}/{' and '.join(existing)} already exist (a committed result?); "
                         f"pass --force to replace them, or choose another --name / --out")
    return stem


def check_name(name: str) -> str:
    """A result name: plain file names (a sweep's runs use 'sweep/variant'), none empty or hidden."""
    if not name or "\\" in name or any(not part or part.startswith(".") for part in name.split("/")):
        raise SystemExit(f"error: the result name {name!r} must be a plain file name (not empty, no part "
                         f"empty or starting with '.')")
    return name
