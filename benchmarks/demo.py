"""`ftprop demo` as a committed result: the demo's table, with the machine and software it ran on.

  python benchmarks/demo.py --name demo_cpu [--threads 2] [--epochs 20] [--seed 0] [--force]

Runs the demo (sign FTP-SH, sign SSTE and ReLU on scikit-learn's digits) in a temporary folder and
writes benchmarks/results/<name>.{json,md} and <name>.png (the learning curves); $FTPROP_RESULTS
overrides the folder. The README's demo table cites this file.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

import torch
from results_file import check_name, claim, write_result

from ftprop.demo import format_table, run_demo
from ftprop.runs import atomic_write, environment

RESULTS = Path(os.environ.get("FTPROP_RESULTS", Path(__file__).resolve().parent / "results"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="result file name, without extension")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace results/<name>.* if they exist")
    args = p.parse_args()
    stem = claim(RESULTS / check_name(args.name), args.force, also=(".png",))
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"error: --threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.epochs < 1:
        raise SystemExit(f"error: --epochs must be at least 1, got {args.epochs}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_demo(Path(tmp) / "demo", epochs=args.epochs, seed=args.seed)
        picture = (Path(tmp) / "demo" / "curves.png").read_bytes()
    env = environment(torch.device("cpu"))
    env["command"] = "python " + shlex.join(sys.argv)
    payload = {"environment": env, "epochs": args.epochs, "seed": args.seed, "rows": rows}
    lines = [f"# `ftprop demo`: {args.name}", "",
             f"- command: `{env['command']}` ({args.epochs} epochs, seed {args.seed})",
             f"- date: {env['started']}; {env['cpu_count']} CPU cores ({env['cpu_model']}), {env['torch_threads']} "
             f"torch threads; torch {env['torch']}, Python {env['python']}; git {env['git_commit']}", "",
             format_table(rows), "",
             "Final and best test accuracy of the MLP 64-256-256-10 (BN) on the 359 held-out digits; the wall time "
             "is each method's whole training. The numbers move by a few tenths with the CPU and the thread count.",
             "", f"![curves]({stem.name}.png)"]
    write_result(stem, payload, "\n".join(lines))
    atomic_write(stem.parent / f"{stem.name}.png", lambda f: f.write(picture))
    print(f"\nwrote {stem}.json, .md, .png")


if __name__ == "__main__":
    main()
