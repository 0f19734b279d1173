"""Results tables (markdown) and learning-curve plots (PNG) from run directories.

"Best" is the best test accuracy over all epochs, which is what the paper's Table 1
reports; it is selected on the test set and therefore optimistic. "Final" is the last
epoch's. The gap is final train accuracy minus final test accuracy of the same weights
(:func:`ftprop.runs.train_test_gap`: train accuracy measured in eval mode when the run had
``train.eval_train``, else the running accuracy of the epoch, against the live weights' test
accuracy when a weight average is what the test accuracy measures).
"""

from __future__ import annotations

import json
import statistics
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

from .runs import (
    HOW_IT_RAN,
    Run,
    RunDirError,
    atomic_write,
    atomic_write_text,
    half_replaced,
    read_environment,
    read_run,
    recipe,
    refuse_run_directory,
    train_test_gap,
)

__all__ = ["group_runs", "runs_table", "environments_table", "plot_runs", "write_report", "mean_std"]


def mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``m`` for one value, ``m ± s`` (sample std) for several; scaled to percent by default."""
    vals = [v * scale for v in values]
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


# Runs differing only in the settings that say where or how fast they went, and in the seed, are
# one group. Runs still training, or stopped early, share the recipe of the runs they would become.
_NOT_THE_RECIPE = HOW_IT_RAN | {"train.seed"}


def group_runs(runs: Iterable[Run]) -> OrderedDict[str, list[Run]]:
    """Runs that differ only in seed, run name, epochs reached (not planned) and settings that do not
    change what is trained (device, data location, workers, compile, checkpointing, logging) form one
    group, in first-seen order."""
    groups: OrderedDict[str, list[Run]] = OrderedDict()
    for run in runs:
        groups.setdefault(json.dumps(recipe(run.config, _NOT_THE_RECIPE), sort_keys=True, default=str), []).append(run)
    return groups


def _labels(groups: Sequence[list[Run]]) -> list[str]:
    """Each group's method label; groups that share one get the settings that tell them apart."""
    labels = [g[0].label for g in groups]
    for label in set(labels):
        same = [i for i, lab in enumerate(labels) if lab == label]
        if len(same) < 2:
            continue
        recipes = [recipe(groups[i][0].config, _NOT_THE_RECIPE) for i in same]
        keys = sorted({k for r in recipes for k in r if any(r.get(k) != o.get(k) for o in recipes)})
        for i, r in zip(same, recipes):
            labels[i] = f"{label} ({', '.join(f'{k}={r.get(k)}' for k in keys)})"
    return labels


def _run_stats(run: Run) -> dict:
    h = run.metrics
    last = h[-1]
    train_acc = last.get("train_eval_acc", last["train_acc"])
    return {"best": max(r["test_acc"] for r in h), "final": last["test_acc"], "train": train_acc,
            "gap": train_test_gap(last)[0], "epochs": last["epoch"],
            "time": sum(r.get("epoch_time_s", 0.0) for r in h)}


def runs_table(runs: Sequence[Run]) -> tuple[str, list[dict]]:
    """A markdown table, one row per group of runs (mean ± std over seeds), and its rows as dicts."""
    header = ("| method | runs | best test acc (%) | final test acc (%) | final train acc (%) | gap (pts) "
              "| epochs | time (min) |\n|---|---|---|---|---|---|---|---|")
    lines, rows = [header], []
    groups = list(group_runs(r for r in runs if r.metrics).values())
    for group in groups:  # a mean over seeds must not count one run (or one seed) twice
        by_seed: dict[int, Path] = {}
        for r in group:
            other = by_seed.setdefault(r.config.train.seed, r.path)
            if other is not r.path:
                what = (f"{r.path} is given twice" if Path(other).resolve() == Path(r.path).resolve()
                        else f"{other} and {r.path} are runs of one recipe with the same seed ({r.config.train.seed})")
                raise RunDirError(f"{what}: it would count twice in the mean over seeds; leave one out")
    for group, label in zip(groups, _labels(groups)):
        stats = [_run_stats(r) for r in group]
        col = {k: [s[k] for s in stats] for k in stats[0]}
        epochs = sorted(set(col["epochs"]))
        row = {"method": label, "runs": len(group), "paths": [str(r.path) for r in group],
               "seeds": [r.config.train.seed for r in group],
               **{f"{k}_mean": statistics.mean(v) for k, v in col.items()},
               **{f"{k}_std": (statistics.stdev(v) if len(v) > 1 else 0.0) for k, v in col.items()}}
        rows.append(row)
        lines.append(f"| {label} | {len(group)} | {mean_std(col['best'])} | {mean_std(col['final'])} | "
                     f"{mean_std(col['train'])} | {mean_std(col['gap'])} | "
                     f"{'/'.join(map(str, epochs))} | {mean_std(col['time'], scale=1 / 60, digits=1)} |")
    return "\n".join(lines) + "\n", rows


def plot_runs(curves: Sequence[tuple[str, list[dict]]], path: str | Path, title: str | None = None) -> Path:
    """Train (dashed) and test (solid) top-1 accuracy per epoch, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, history) in enumerate(curves):
        if not history:
            continue
        c = colors[i % len(colors)]
        epochs = [h["epoch"] for h in history]
        # one measure per curve: eval-mode train accuracy only when every epoch has it (a resume
        # may switch train.eval_train on or off), else the running accuracy, which every epoch has
        train_key = "train_eval_acc" if all("train_eval_acc" in h for h in history) else "train_acc"
        ax.plot(epochs, [100 * h[train_key] for h in history], "--", color=c, alpha=0.8)
        ax.plot(epochs, [100 * h["test_acc"] for h in history], "-", color=c, label=_literal(label))
    ax.set_xlabel("epoch")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(_literal(title) if title else "test (solid) and train (dashed) accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # a kill mid-write leaves the old picture, not half of a new one
        atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)
    return path


def _literal(text: str) -> str:
    """``text`` as matplotlib draws it literally: a run name like ``lr$_$`` is not mathtext (which
    failed the finished run's end-of-run plot with a parse error)."""
    return str(text).replace("$", r"\$")


ENV_KEYS = ("git_commit", "ftprop", "torch", "python", "device", "gpu", "cpu_model", "cpu_count", "torch_threads")


def _read_environment(run: Run) -> dict | None:
    """The run's environment.json, or None when it has none or it does not parse (the report says so)."""
    try:
        return read_environment(run.path)
    except RunDirError:
        return None


def environments_table(runs: Sequence[Run]) -> tuple[str, dict[str, dict | None]]:
    """A markdown list of the distinct environments (commit, versions, machine) the runs trained
    in, each with its runs, so that a report names the software and machine of every number in it;
    and each run's whole environment.json (None: it has none) by path."""
    full = {str(run.path): _read_environment(run) for run in runs}
    groups: OrderedDict[str, tuple[dict | None, list[str]]] = OrderedDict()
    for path, env in full.items():
        key = None if env is None else {k: env[k] for k in ENV_KEYS if k in env}
        groups.setdefault(json.dumps(key, sort_keys=True), (key, []))[1].append(path)
    lines = []
    for key, paths in groups.values():
        if key is None:
            lines.append(f"- no readable environment.json: {', '.join(paths)}")
            continue
        where = key.get("gpu") or f"{key.get('cpu_model', '?')}, {key.get('cpu_count', '?')} CPU cores"
        commit = key.get("git_commit") or "not in git"
        commit = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")  # uncommitted changes
        lines.append(f"- commit {commit}, ftprop {key.get('ftprop', '?')}, "
                     f"torch {key.get('torch', '?')}, Python {key.get('python', '?')}, device "
                     f"`{key.get('device', '?')}` ({where}, {key.get('torch_threads', '?')} threads): "
                     f"{', '.join(paths)}")
    resumed = [p for p, env in full.items() if env and env.get("resumed")]
    if resumed:
        lines.append(f"- resumed (each resume's machine and changed settings: `resumed` in environments.json): "
                     f"{', '.join(resumed)}")
    return "\n".join(lines) + "\n", full


def _refuse_to_overwrite(out: Path) -> None:
    """A report goes into a new folder, an earlier report's (report.json, which it writes first, is
    there; it is replaced) or one without a report.md or curves.png: never over someone's own."""
    names = {p.name for p in out.iterdir()} if out.is_dir() else set()
    theirs = names & {"report.md", "curves.png"}
    if theirs and "report.json" not in names:
        raise RunDirError(f"{out} holds {' and '.join(sorted(theirs))}, not an earlier report's (no report.json): "
                          f"the report would overwrite it; pick another --out")


def write_report(run_dirs: Sequence[str | Path], out: str | Path, title: str = "ftprop runs") -> tuple[Path, Path]:
    """Read runs, write ``out/report.md`` (+ ``report.json``, ``environments.json``) and ``out/curves.png``."""
    refuse_run_directory(out, "the report")
    _refuse_to_overwrite(Path(out))
    runs = [read_run(p) for p in run_dirs]
    empty = [str(p) for p, r in zip(run_dirs, runs) if not r.metrics]
    if empty:
        aside = [f"{p}: {why}" for p in empty if (why := half_replaced(Path(p)))]
        raise RunDirError(f"no finished epoch to report in {', '.join(empty)}: train (or resume) them first, "
                          f"or leave them out" + "".join(f"; {a}" for a in aside))
    table, rows = runs_table(runs)
    env_table, env_rows = environments_table(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps(rows, indent=2) + "\n")  # first: marks the folder a report's
    png = plot_runs([(f"{r.label} (seed {r.config.train.seed})", r.metrics) for r in runs], out / "curves.png",
                    title=title)
    md = out / "report.md"
    atomic_write_text(md, f"# {title}\n\n{table}\nBest = best test accuracy over epochs (as the paper reports; "
                          f"selected on the test set). Gap = final train - final test accuracy. "
                          f"Mean ± sample std over runs that differ only in seed (or device, data location, "
                          f"compile).\n\nWhere the runs trained (each run's environment.json):\n\n"
                          f"{env_table}\n![curves](curves.png)\n")
    atomic_write_text(out / "environments.json", json.dumps(env_rows, indent=2) + "\n")
    return md, png
