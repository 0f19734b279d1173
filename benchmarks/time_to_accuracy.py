"""Time to accuracy on CIFAR-10: epochs and wall time until a recipe's test accuracy reaches a target.

The target defaults to the paper's convnet4 sign FTP-SH number (81.3%, recalled: PAPER.md
§10.1) minus the 2.5-point penalty that ../shared/data/README.md expects of its JPEG copy of
CIFAR-10 (quality 75: "about 2-3 points below published numbers"), i.e. 78.8%.

  python benchmarks/time_to_accuracy.py --config configs/recipes/cifar10_convnet4_sign_fast.toml \
      --data-root ~/.cache/ftprop-data [--epochs N] [--device cuda] [--name NAME]

Writes benchmarks/results/<name>.json and .md; the run directory goes to runs/<name>. A run
continued with --resume (its own config.toml, unless --config is given) lists each session's
device, threads, commit and changed settings, and says so when they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from results_file import check_name, claim, write_result

from ftprop.config import ConfigError, apply_overrides, load_config
from ftprop.data import DatasetError
from ftprop.engine import NonFiniteLossError, TrainingStopped, train
from ftprop.runs import RESUME_FREE, RunDirError, read_metrics

RESULTS = Path(os.environ.get("FTPROP_RESULTS", Path(__file__).resolve().parent / "results"))
PAPER_CONVNET4_SIGN_FTPSH = 81.3  # recalled, PAPER.md §10.1
JPEG_PENALTY = 2.5
DEFAULT_TARGET = PAPER_CONVNET4_SIGN_FTPSH - JPEG_PENALTY
DEFAULT_CONFIG = "configs/recipes/cifar10_convnet4_sign_fast.toml"


def _machine(env: dict) -> str:
    """One session's device, software, CPU, threads and commit, as the table's header gives them."""
    return (f"device: {env.get('device')} {env.get('gpu', '')}".rstrip() + f"; torch {env.get('torch')}; "
            f"Python {env.get('python')}; {env.get('cpu_count')} CPU cores "
            f"({env.get('cpu_model', 'CPU model not recorded')}), {env.get('torch_threads', '?')} torch threads; "
            f"git {env.get('git_commit')}")


def _changes(r: dict) -> dict:
    """What a resume changed in the run's settings (environment.json's ``changed``: key -> [old, new])."""
    changed = r.get("changed")
    return changed if isinstance(changed, dict) else {}


def _changed(r: dict) -> str:
    """:func:`_changes` as the table's text ("" for none)."""
    changed = _changes(r)
    if not changed:
        return ""
    return "; **changed**: " + ", ".join(
        f"{k} {json.dumps(v[0])} -> {json.dumps(v[1])}" if isinstance(v, list) and len(v) == 2 else f"{k} {v}"
        for k, v in sorted(changed.items()))


def session_lines(env: dict) -> tuple[list[str], bool]:
    """The markdown lines that list a resumed run's sessions (none for a run trained in one), and
    whether they differ in device, software, threads, commit or settings (their epochs' times or
    accuracies are then not comparable)."""
    resumed = [r for r in env.get("resumed", []) if isinstance(r, dict)]
    if not resumed:
        return [], False
    sessions = [("started", env), *((f"resumed after epoch {r.get('after_epoch')}"
                                     + (f", step {r['after_step']}" if r.get("after_step") else ""), r)
                                    for r in resumed)]
    lines = [f"- sessions ({len(sessions)}; the run was resumed {len(resumed)} time(s)):"]
    lines += [f"  {i}. {when}: {_machine(e)}{_changed(e)}" for i, (when, e) in enumerate(sessions, 1)]
    mixed = len({_machine(e) for _, e in sessions}) > 1 or any(  # (where the data is read from does not count)
        set(_changes(r)) - RESUME_FREE for r in resumed)
    if mixed:
        lines.append("- **mixed sessions**: the epochs were trained on different devices, software, threads, "
                     "commits or settings (above), so the epoch times and the elapsed column mix them, and "
                     "settings changed by a resume apply to its epochs only")
    return lines, mixed


def first_reaching(hist: list[dict], target: float) -> dict | None:
    """The first epoch whose test accuracy reaches ``target`` percent, or None. The accuracy is
    rounded to 6 decimals in percent first: 100 * 0.7704 is 77.03999..., and an exact hit counts."""
    return next((h for h in hist if round(100 * h["test_acc"], 6) >= target), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None,
                   help=f"the recipe (default {DEFAULT_CONFIG}; with --resume, the run's own config.toml)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--device", default=None)
    p.add_argument("--target", type=float, default=DEFAULT_TARGET, help="test accuracy to reach, in percent")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--name", default=None)
    p.add_argument("--resume", action="store_true", help="continue runs/<name> (and replace its results)")
    p.add_argument("--force", action="store_true", help="replace runs/<name> and results/<name>.{json,md}")
    args = p.parse_args()
    if args.resume and args.force:
        p.error("--resume continues runs/<name> and --force replaces it: give one")
    if args.epochs is not None and args.epochs < 1:
        p.error("--epochs must be >= 1")
    if not 1 < args.target <= 100:
        p.error(f"--target is a test accuracy in percent (e.g. 78.8, not 0.788), in (1, 100], got {args.target:g}")

    extra = [f"data.root={json.dumps(args.data_root)}"] + args.overrides
    if args.epochs is not None:
        extra.append(f"train.epochs={args.epochs}")
    if args.device:
        extra.append(f"train.device={json.dumps(args.device)}")
    config = args.config or DEFAULT_CONFIG
    try:
        name = check_name(args.name) if args.name else None
        if name is None or not args.resume or args.config:  # (the recipe names the run when --name does not)
            cfg = apply_overrides(load_config(config), extra)
            name = name or check_name(f"time_to_accuracy_{cfg.name}")
        run_dir = Path("runs") / name
        if args.resume and not (run_dir / "config.toml").is_file():
            p.error(f"--resume: there is no run in {run_dir} (check --name)")
        if args.resume and args.config is None:  # the run's own settings, not the default recipe's
            config = str(run_dir / "config.toml")
            cfg = apply_overrides(load_config(config), extra)
    except ConfigError as e:
        p.error(str(e))
    claim(RESULTS / name, args.force or args.resume)
    t0 = time.perf_counter()
    stopped = None
    try:
        hist = train(cfg, run_dir, resume=args.resume, force=args.force).history
    except TrainingStopped as e:  # SIGTERM/SIGINT (e.g. a time limit): report the epochs done
        hist, stopped = read_metrics(run_dir / "metrics.jsonl"), str(e)
        if not hist:
            raise SystemExit(f"{e}: no epoch finished, nothing to report") from None
    except (ConfigError, RunDirError, DatasetError, NonFiniteLossError, ValueError, OSError) as e:
        # as the ftprop CLI does: a bad setting (ValueError: e.g. an unknown model) exits 2, the rest 1
        if os.environ.get("FTPROP_DEBUG"):
            raise
        hint = (" (this script: --resume, --force or another --name)" if isinstance(e, RunDirError)
                else " (this script: --set data.download=true)" if "--download" in str(e) else "")
        print(f"error: {e}{hint}", file=sys.stderr)
        raise SystemExit(2 if isinstance(e, ValueError) else 1) from None
    wall = time.perf_counter() - t0
    elapsed = 0.0
    for h in hist:
        elapsed += h["epoch_time_s"]
        h["elapsed_s"] = round(elapsed, 1)
    reached = first_reaching(hist, args.target)
    env = json.loads((run_dir / "environment.json").read_text())
    sessions, mixed = session_lines(env)
    passes = 2 if cfg.optim.sam_rho > 0 else 1  # forward/backward passes per step (SAM takes two)
    cost = (f"; SAM: two forward/backward passes per step, so {hist[-1]['epoch']} epochs cost as much as "
            f"{2 * hist[-1]['epoch']} plain ones" if passes == 2 else "")
    payload = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": "python " + shlex.join(sys.argv),
               "config": config, "overrides": extra, "target_pct": args.target, "environment": env,
               "reached_epoch": reached["epoch"] if reached else None,
               "reached_after_s": reached["elapsed_s"] if reached else None,
               "best_test_acc": max(h["test_acc"] for h in hist), "final_test_acc": hist[-1]["test_acc"],
               "epochs": hist[-1]["epoch"], "passes_per_step": passes, "stopped": stopped, "wall_s": round(wall, 1),
               "sessions": 1 + len(env.get("resumed", [])), "mixed_sessions": mixed, "history": hist}
    when = f"epoch {reached['epoch']} after {reached['elapsed_s']} s" if reached else "no"
    lines = [f"# Time to accuracy: {cfg.name}", "",
             f"- command: `{payload['command']}`", f"- config: `{config}` + {extra}",
             f"- date: {payload['date']}; " + ("first session's " if sessions else "") + _machine(env),
             *sessions,
             f"- target: {args.target:g}% test top-1 " + (
                 f"(paper's convnet4 sign FTP-SH {PAPER_CONVNET4_SIGN_FTPSH}%, recalled, minus {JPEG_PENALTY} points "
                 f"for the JPEG copy of CIFAR-10)" if args.target == DEFAULT_TARGET else "(given with --target)"),
             f"- **reached: {when}**"
             f"; best {100 * payload['best_test_acc']:.2f}%, final {100 * payload['final_test_acc']:.2f}% "
             f"after {payload['epochs']} epochs (the paper: 300 epochs){cost}"
             + (f"; **stopped early**: {stopped}" if stopped else ""), ""]
    averaged = "live_test_acc" in hist[-1]  # train.ema_decay > 0: test acc is the weight average's
    test_columns = "test acc, weight average (%) | test acc, live weights (%)" if averaged else "test acc (%)"
    lines += [f"| epoch | lr | train acc (%) | {test_columns} | elapsed (s) |", "|---" * (5 + averaged) + "|"]
    for h in hist:
        live = f" {100 * h['live_test_acc']:.2f} |" if averaged else ""
        lines.append(f"| {h['epoch']} | {h['lr']:.2e} | {100 * h['train_acc']:.2f} | {100 * h['test_acc']:.2f} |"
                     f"{live} {h['elapsed_s']} |")
    write_result(RESULTS / name, payload, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
