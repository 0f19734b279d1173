"""Flip test-time augmentation on finished runs: the final checkpoint's test accuracy with one
view and with the logits of each image and its mirror image averaged (``evaluate(..., tta="flip")``).

  python benchmarks/tta.py runs/recipe_sweep_x/variant [RUN_DIR ...] --name tta_x [--data-root DIR]

Both the weight average (train.ema_decay > 0) and the live weights are measured. Two views make an
ensemble, so these numbers are reported beside the single-view ones (the paper's protocol), never
instead of them. A checkpoint saved inside an epoch (a run stopped mid-epoch) is measured as it is
and marked partial, with the steps it took into that epoch. Writes benchmarks/results/<name>.json
and .md ($FTPROP_RESULTS overrides the folder).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
from results_file import check_name, claim, write_result

from ftprop.config import ConfigError
from ftprop.data import DatasetError, load_dataset
from ftprop.engine import checkpoint_model, evaluate, resolve_device
from ftprop.runs import RunDirError, config_from_checkpoint, cpu_model, git_commit, load_checkpoint

RESULTS = Path(os.environ.get("FTPROP_RESULTS", Path(__file__).resolve().parent / "results"))


def measure(run: Path, data_root: str | None, device: torch.device) -> dict:
    state = load_checkpoint(run)
    cfg = config_from_checkpoint(state)
    d = cfg.data
    test = load_dataset(d.name, root=data_root or d.root, split="test", download=False, **d.options).to(device)
    step = int(state.get("step") or 0)  # steps into the epoch after ``epoch``: a checkpoint saved mid-epoch
    row = {"run": str(run), "epoch": state["epoch"], "step": step, "partial": step > 0, "config": cfg.name}
    for live in (True, False) if state.get("ema") is not None else (True,):
        model, which = checkpoint_model(state, cfg, test, live=live)
        with torch.no_grad():
            row[f"{which}_acc"] = evaluate(model, test)["acc"]
            row[f"{which}_flip_acc"] = evaluate(model, test, tta="flip")["acc"]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (or checkpoint files)")
    p.add_argument("--name", required=True, help="result file name, without extension")
    p.add_argument("--data-root", help="override the runs' data root")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--force", action="store_true", help="replace results/<name>.{json,md} if they exist")
    args = p.parse_args()
    claim(RESULTS / check_name(args.name), args.force)
    try:
        device = resolve_device(args.device, key="--device")
        rows = [measure(Path(r), args.data_root, device) for r in args.runs]
    except (ConfigError, DatasetError, RunDirError) as err:
        raise SystemExit(f"error: {err}") from None
    payload = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": "python " + shlex.join(sys.argv), "torch": torch.__version__,
               "python": platform.python_version(),
               "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores ({cpu_model()})",
               "device": str(device), "git_commit": git_commit(), "rows": rows}

    def pct(row: dict, key: str) -> str:
        return f"{100 * row[key]:.2f}" if key in row else "-"

    def epoch(row: dict) -> str:
        return (f"{row['epoch']} + {row['step']} steps of epoch {row['epoch'] + 1} (**partial**)" if row["partial"]
                else str(row["epoch"]))

    lines = [f"# Flip test-time augmentation: {args.name}", "", f"- command: `{payload['command']}`",
             f"- date: {payload['date']}; {payload['machine']}, device {payload['device']}; torch {payload['torch']}, "
             f"Python {payload['python']}; git {payload['git_commit']}", "",
             "| run | epoch | average: one view (%) | average: + mirror (%) | live: one view (%) "
             "| live: + mirror (%) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {epoch(r)} | {pct(r, 'average_acc')} | {pct(r, 'average_flip_acc')} | "
                     f"{pct(r, 'live_acc')} | {pct(r, 'live_flip_acc')} |")
    lines += ["", "Final checkpoints' test accuracy. '+ mirror' averages the logits of each image and its mirror "
              "image: a two-view ensemble, not the single-view accuracy that the paper and the other tables report."]
    if any(r["partial"] for r in rows):
        lines += ["", "A **partial** checkpoint was saved inside an epoch (its run was stopped mid-epoch): its weights "
                  "are those of the steps given, not of a completed epoch, so its numbers match no epoch's in the "
                  "run's metrics; resume the run to the epoch's end and measure again for a final checkpoint."]
    write_result(RESULTS / args.name, payload, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
