"""The zero-download demo: a sign-unit MLP on scikit-learn's digits, FTP-SH vs SSTE vs ReLU.

Every method trains the same MLP (64 -> 256 -> 256 -> 10, BN before each activation) with
the same seed, optimiser and epochs; only the hidden activation and its layer loss change.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import Config, ConfigError, config_from_dict, load_config
from .engine import train
from .report import plot_runs
from .runs import RunDirError, refuse_run_directory

METHODS = (
    ("sign FTP-SH", {"activation": "sign", "loss": "soft_hinge"}),
    ("sign SSTE", {"activation": "sign", "loss": "saturated_hinge"}),
    ("ReLU (full precision)", {"activation": "relu"}),
)


def demo_config(model: dict, epochs: int, seed: int) -> Config:
    return config_from_dict({
        "name": "demo",
        "model": {"name": "mlp", "options": {"hidden": [256, 256], "batch_norm": True}, **model},
        "data": {"name": "digits"},
        "optim": {"name": "adam", "lr": 1e-3},
        "schedule": {"name": "cosine"},
        "train": {"epochs": epochs, "batch_size": 64, "seed": seed, "eval_train": True, "device": "cpu",
                  "tensorboard": False},
    })


def run_demo(out: str | Path = "demo_runs", epochs: int = 20, seed: int = 0, quiet: bool = False) -> list[dict]:
    """Train each method, print a results table, write ``out/curves.png``; return the rows."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    out = Path(out)
    refuse_run_directory(out, "the demo")
    for label, _ in METHODS:  # the demo replaces its own runs of an earlier call, never someone else's
        run_dir = _run_dir(out, label)
        if (run_dir / "config.toml").is_file():
            try:
                name = load_config(run_dir / "config.toml").name
            except ConfigError:
                name = "unreadable config.toml"
            if name != "demo":
                raise RunDirError(f"{run_dir} holds a run that is not the demo's ({name}): the demo would replace "
                                  f"it; pick another --out")
    rows, curves = [], []
    for label, model in METHODS:
        cfg = demo_config(model, epochs, seed)
        t0 = time.perf_counter()

        def log(message: str, label=label) -> None:
            if message.startswith("epoch"):
                say(f"  [{label}] {message}")

        say(f"training {label} ({epochs} epochs) ...")
        result = train(cfg, _run_dir(out, label), force=True, progress=False, log=log)
        last = result.history[-1]
        rows.append({"method": label, "train_acc": last["train_eval_acc"], "test_acc": last["test_acc"],
                     "best_test_acc": result.best_test_acc, "seconds": time.perf_counter() - t0})
        curves.append((label, result.history))
    png = plot_runs(curves, out / "curves.png", title=f"digits, MLP 256-256, {epochs} epochs, seed {seed}")
    say("")
    say(format_table(rows))
    say(f"\nlearning curves: {png}")
    return rows


def _run_dir(out: Path, label: str) -> Path:
    """Where the demo trains one method: ``out/sign_ftp-sh``, ``out/sign_sste``, ``out/relu``."""
    return out / label.split(" (")[0].replace(" ", "_").lower()


def format_table(rows: list[dict]) -> str:
    lines = ["| method | train acc (%) | test acc (%) | best test acc (%) | wall time (s) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {100 * r['train_acc']:.2f} | {100 * r['test_acc']:.2f} | "
                     f"{100 * r['best_test_acc']:.2f} | {r['seconds']:.1f} |")
    return "\n".join(lines)
