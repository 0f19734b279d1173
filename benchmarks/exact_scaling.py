"""Scaling of the exact solvers: ftprop (exact target search) vs milp (HiGHS) vs mb (FTPROP-MB).

Three instance families of growing size, each method with the same budget (default 60 s):

* parity:N   -- all 2^N points of {-1,+1}^N, hidden [N] (feasible: N threshold units suffice);
* planted    -- random sign networks (inputs, examples, hidden) labelling Gaussian inputs
                (feasible by construction);
* deep       -- the same with two hidden layers;
* random     -- random labels on the whole N-cube with few hidden units (mostly infeasible:
                only the exact methods can say so).

A method that times out at two consecutive sizes of a family is not run on larger ones; a
family stops growing when every method timed out at a size. Single-threaded: torch uses one
thread and HiGHS' MILP is given threads=1.

Optionally (--report) also measures ``feasibility_report`` on an MLP of sign units trained a
few epochs with FTPROP-MB on binarised digits.

    python benchmarks/exact_scaling.py                   # the full run (~30 min on 2 cores)
    python benchmarks/exact_scaling.py --budget 5 --quick --out /tmp/es  # a smoke test
Writes benchmarks/results/exact_scaling.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import torch
from results_file import claim, write_result

from ftprop.exact import parity, planted, solve
from ftprop.runs import cpu_model, git_commit

METHODS = ("ftprop", "milp", "mb")
FAMILIES = ("parity", "planted", "deep", "random")  # the keys of families()

RESULTS = Path(os.environ.get("FTPROP_RESULTS", Path(__file__).resolve().parent / "results"))


def families(quick: bool):
    """family name -> list of (instance label, X, T, hidden)."""
    par = []
    for n in range(2, 6 if quick else 13):
        x, t = parity(n)
        par.append((f"parity:{n}", x, t, [n]))
    pla = []
    sizes = [(4, 16, 2), (6, 32, 3), (8, 64, 4), (10, 128, 5), (12, 256, 6), (16, 512, 8), (20, 1024, 10),
             (24, 2048, 12)]
    for n_in, m, h in sizes[: 3 if quick else None]:
        x, t = planted(n_in, m, [h], seed=0)
        pla.append((f"planted:{n_in},{m},{h}", x, t, [h]))
    deep = []
    for n_in, m, hid in [(6, 32, [3, 2]), (8, 64, [4, 3]), (10, 128, [5, 3]), (12, 256, [6, 4]), (16, 512, [8, 4]),
                         (20, 1024, [10, 5])][: 2 if quick else None]:
        x, t = planted(n_in, m, hid, seed=0)
        deep.append((f"planted:{n_in},{m},{'-'.join(map(str, hid))}", x, t, hid))
    rnd = []
    for n, h in [(3, 2), (4, 2), (5, 2), (5, 3), (6, 2), (6, 3), (7, 3), (7, 4)][: 3 if quick else None]:
        x, _ = parity(n)
        t = np.random.default_rng(n).choice([-1.0, 1.0], size=(len(x), 1))
        rnd.append((f"random:{n}-cube,h={h}", x, t, [h]))
    return dict(zip(FAMILIES, (par, pla, deep, rnd)))


def run_one(x, t, hidden, method, budget, seed):
    t0 = time.perf_counter()
    res = solve(x, t, hidden, method=method, time_limit=budget, seed=seed, threads=1 if method == "milp" else None)
    wall = time.perf_counter() - t0
    keep = ("nodes", "lp_calls", "cache_hits", "restarts", "mb_fitted", "mb_seconds", "steps", "binaries",
            "infeasible_is_proof")
    return {"status": res.status, "seconds": round(wall, 4), "message": res.message,
            **{k: res.stats[k] for k in keep if k in res.stats}}


def fmt(r):
    if r is None:
        return "not run (timed out twice at smaller sizes)"
    mark = {"feasible": "✔ feasible", "infeasible": "✘ infeasible", "unknown": "? unknown"}[r["status"]]
    return f"{mark} {r['seconds']:.2f} s"


def digits_report(epochs: int, seed: int):
    """feasibility_report on a sign MLP trained with FTPROP-MB on binarised digits (8x8, ±1 pixels)."""
    from sklearn.datasets import load_digits
    from torch import nn

    from ftprop import Sign
    from ftprop.exact import feasibility_report

    torch.manual_seed(seed)
    bunch = load_digits()
    x = torch.as_tensor(np.where(bunch.data > 8, 1.0, -1.0), dtype=torch.float32)
    y = torch.as_tensor(bunch.target)
    perm = torch.randperm(len(y))
    x, y = x[perm], y[perm]
    probe = (x[:256], y[:256])
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 100), nn.BatchNorm1d(100), Sign(), nn.Linear(100, 100),
                          nn.BatchNorm1d(100), Sign(), nn.Linear(100, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rows = []
    for epoch in range(epochs + 1):
        if epoch:
            model.train()
            for i in range(0, len(y), 64):
                loss = nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(x).argmax(1) == y).float().mean())
        t0 = time.perf_counter()
        rep = {mode: feasibility_report(model.train(mode == "train"), *probe) for mode in ("train", "eval")}
        model.eval()
        rows.append({"epoch": epoch, "train_accuracy": round(acc, 4), "seconds": round(time.perf_counter() - t0, 2),
                     **{f"{mode}_mode": [{"layer": lay.layer, "units": lay.units, "separable": lay.separable,
                                          "fraction": round(lay.fraction, 3), "targets_met": round(lay.satisfied, 3)}
                                         for lay in r.layers] for mode, r in rep.items()}})
        print(f"  epoch {epoch}: train acc {acc:.3f}, separable fractions (train-mode BN) "
              f"{[round(f, 3) for f in rep['train'].fractions]}, (eval-mode BN) "
              f"{[round(f, 3) for f in rep['eval'].fractions]}", flush=True)
    return rows


def check_budget(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--budget and --report-epochs, as this script and exact_certify_cost.py take them."""
    if not 0 < args.budget < float("inf"):
        ap.error("--budget must be a positive number of seconds")
    if args.report_epochs < 0:
        ap.error("--report-epochs must be >= 0")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per method and instance")
    ap.add_argument("--quick", action="store_true", help="tiny sizes only (smoke test)")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", action="store_true", help="also measure feasibility_report on digits")
    ap.add_argument("--report-epochs", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS / "exact_scaling"))
    ap.add_argument("--force", action="store_true", help="replace the result files at --out if they exist")
    args = ap.parse_args(argv)
    unknown = [f for f in args.families.split(",") if f not in FAMILIES]
    if unknown:
        ap.error(f"--families: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(FAMILIES)}")
    check_budget(ap, args)
    out = claim(args.out, args.force)
    torch.set_num_threads(1)
    x, t = parity(2)
    for method in METHODS:  # warm-up: imports and first-call costs are not charged to the first instance
        solve(x, t, [2], method=method, time_limit=5)
    started = time.perf_counter()
    fams = families(args.quick)
    results = []
    for fam in args.families.split(","):
        timeouts = dict.fromkeys(METHODS, 0)
        for label, x, t, hidden in fams[fam]:
            row = {"family": fam, "instance": label, "examples": len(x), "inputs": x.shape[1], "hidden": hidden}
            for method in METHODS:
                if timeouts[method] >= 2:
                    row[method] = None
                    continue
                r = run_one(x, t, hidden, method, args.budget, args.seed)
                row[method] = r
                timeouts[method] = timeouts[method] + 1 if r["status"] == "unknown" else 0
            results.append(row)
            print(f"{label:24s} " + "  ".join(f"{m}: {fmt(row[m]):28s}" for m in METHODS), flush=True)
            if all(row[m] is None or row[m]["status"] == "unknown" for m in METHODS):
                break
    report = digits_report(args.report_epochs, args.seed) if args.report else None
    meta = run_meta(argv, started, budget_s=args.budget, seed=args.seed,
                    threads="torch.set_num_threads(1); HiGHS MILP threads=1 (LPs are single-threaded)")
    payload = {"meta": meta, "results": results, "feasibility_report": report}
    write_result(out, payload, markdown(meta, results, report), indent=1)
    print(f"wrote {out}.json and {out}.md")
    return 0


def run_meta(argv, started: float, **settings) -> dict:
    """The command, date, machine and versions of a run that began at ``started``
    (time.perf_counter()), with its ``settings``."""
    return {
        "command": "python " + shlex.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores ({cpu_model()}), {platform.system()}",
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "torch": torch.__version__, "git_commit": git_commit(), **settings,
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def markdown(meta, results, report) -> str:
    lines = ["# Exact solvers: scaling", "",
             f"`{meta['command']}` — {meta['date']}; {meta['machine']}; Python {meta['python']}, numpy "
             f"{meta['numpy']}, SciPy {meta['scipy']} (HiGHS), torch {meta['torch']}; {meta['threads']}; "
             f"budget {meta['budget_s']:g} s per method and instance; seed {meta['seed']}; "
             f"total {meta['total_seconds'] / 60:.1f} min; git {meta.get('git_commit')}.", "",
             "✔ feasible = a network was found and checked by a float64 forward pass; ✘ infeasible = proved "
             "that no network of that architecture exists; ? unknown = budget spent. `mb` can never prove "
             "infeasibility. Times are wall-clock seconds including model building and (for ftprop) the short "
             "FTPROP-MB run that orders its candidates. Speed-up = milp time / ftprop time where both answered.",
             "", "| family | instance | examples | inputs | hidden | ftprop | milp | mb | speed-up (milp/ftprop) |",
             "|---|---|---|---|---|---|---|---|---|"]
    speedups = []
    for row in results:
        f, m = row["ftprop"], row["milp"]
        sp = ""
        if f and m and f["status"] != "unknown" and m["status"] != "unknown":
            ratio = m["seconds"] / max(f["seconds"], 1e-9)
            speedups.append(ratio)
            sp = f"{ratio:.1f}x"
        lines.append(f"| {row['family']} | {row['instance']} | {row['examples']} | {row['inputs']} | {row['hidden']} "
                     f"| {fmt(f)} | {fmt(m)} | {fmt(row['mb'])} | {sp} |")
    lines += ["", "## Summary", ""]
    for fam in dict.fromkeys(r["family"] for r in results):
        rows = [r for r in results if r["family"] == fam]
        parts = []
        for meth in METHODS:
            solved = [r["instance"] for r in rows if r[meth] and r[meth]["status"] != "unknown"]
            parts.append(f"{meth}: {len(solved)} answered, largest {solved[-1] if solved else '—'}")
        lines.append(f"- **{fam}**: " + "; ".join(parts))
    if speedups:
        geo = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
        lines.append(f"- ftprop vs milp on the {len(speedups)} instances both answered: speed-up min "
                     f"{min(speedups):.1f}x, geometric mean {geo:.1f}x, max {max(speedups):.1f}x.")
    if report:
        lines += ["", "## feasibility_report during FTPROP-MB training (binarised digits)", "",
                  "MLP 64-100-100-10 of sign units with BN, soft-hinge FTPROP-MB, Adam 1e-3, batch 64; the report "
                  "is taken on a fixed batch of 256 training images, with BN in train mode (batch statistics) and in "
                  "eval mode (running statistics). Fraction = share of a layer's units whose heuristic targets on the "
                  "batch are linearly separable from the layer's actual input; 'met' = share of (example, unit) "
                  "targets the current output already satisfies.", "",
                  "| epoch | train acc | layer 1 separable (train BN / eval BN) | layer 2 separable (train / eval) "
                  "| layer 1 met | layer 2 met |", "|---|---|---|---|---|---|"]
        for r in report:
            tr, ev = r["train_mode"], r["eval_mode"]
            lines.append(f"| {r['epoch']} | {r['train_accuracy']:.3f} | {tr[0]['fraction']:.3f} / "
                         f"{ev[0]['fraction']:.3f} | {tr[1]['fraction']:.3f} / {ev[1]['fraction']:.3f} | "
                         f"{tr[0]['targets_met']:.3f} "
                         f"| {tr[1]['targets_met']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
