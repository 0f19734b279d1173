"""What do the exact certificate checks (ftprop.exact.certify) cost the exact search and
``feasibility_report``? Each measurement runs twice in one process, interleaved: with the exact
checks, and with them turned off (``certify.MAX_EXACT_WORK = 0``, and no rational LP: every
common point is then "too large", checked in float64 as before the checks existed, or, in the
search, confirmed by an LP). The answers must agree; the times are compared as ratios.

    python benchmarks/exact_certify_cost.py [--rounds 2] [--budget 60] [--report-epochs 1]

Writes results/exact_certify_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from exact_scaling import check_budget, digits_report, families, run_meta  # noqa: E402
from results_file import claim, write_result  # noqa: E402

from ftprop.exact import certify, rational, solve  # noqa: E402

# Instances the search without hints settles within a minute here (the others hit the budget,
# which measures nothing), with the heuristic off so that both modes search the same tree.
INSTANCES = ("parity:8", "parity:10", "random:5-cube,h=2", "random:5-cube,h=3", "random:6-cube,h=2",
             "planted:8,64,4", "planted:6,32,3-2")


EXACT_WORK, SIMPLEX_WORK = certify.MAX_EXACT_WORK, rational.MAX_SIMPLEX_WORK

RESULTS = Path(os.environ.get("FTPROP_RESULTS", Path(__file__).resolve().parent / "results"))


def _mode(exact: bool) -> None:
    """Exact checks (and the rational LP behind a check that fails) on, or both off."""
    certify.MAX_EXACT_WORK = EXACT_WORK if exact else 0
    rational.MAX_SIMPLEX_WORK = SIMPLEX_WORK if exact else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--report-epochs", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "exact_certify_cost"))
    ap.add_argument("--force", action="store_true", help="replace the result files at --out if they exist")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    check_budget(ap, args)
    out = claim(args.out, args.force)
    torch.set_num_threads(1)
    started = time.perf_counter()
    problems = {label: (x, t, h) for items in families(False).values() for label, x, t, h in items}
    rows = []
    for label in INSTANCES:
        x, t, hidden = problems[label]
        times = {"exact": [], "float": []}
        answers = {}
        for _ in range(args.rounds):
            for mode in ("exact", "float"):
                _mode(mode == "exact")
                t0 = time.perf_counter()
                r = solve(x, t, hidden, method="ftprop", heuristic="none", time_limit=args.budget)
                times[mode].append(time.perf_counter() - t0)
                answers[mode] = (r.status, r.stats["nodes"], r.stats["lp_calls"])
        _mode(True)
        row = {"instance": label, "status": answers["exact"][0], "nodes": answers["exact"][1],
               "lp_calls": answers["exact"][2], "same_answer": answers["exact"] == answers["float"],
               "float_answer": answers["float"],
               "exact_s": round(statistics.median(times["exact"]), 3),
               "float_s": round(statistics.median(times["float"]), 3)}
        row["ratio"] = round(row["exact_s"] / row["float_s"], 3)
        rows.append(row)
        print(row, flush=True)
    report = {}
    for mode in ("exact", "float"):
        _mode(mode == "exact")
        t0 = time.perf_counter()
        epochs = digits_report(args.report_epochs, 0)
        report[mode] = {"seconds": round(time.perf_counter() - t0, 1),
                        "fractions": [[lay["fraction"] for lay in e["train_mode"] + e["eval_mode"]] for e in epochs]}
    _mode(True)
    report["same_fractions"] = report["exact"]["fractions"] == report["float"]["fractions"]
    meta = run_meta(argv, started, rounds=args.rounds, budget_s=args.budget)
    lines = [
        "# Cost of the exact certificate checks", "",
        f"`{meta['command']}`: {meta['date']}; {meta['machine']}; Python {meta['python']}, numpy {meta['numpy']}, "
        f"SciPy {meta['scipy']}, torch {meta['torch']}; one thread; median of {args.rounds} interleaved rounds; "
        f"git {meta['git_commit']}.", "",
        "Exact search, `heuristic=\"none\"` (both modes search the same tree when they agree):", "",
        "| instance | answer | nodes | LP calls | same answer without the exact checks | exact s | float s | ratio |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {r['instance']} | {r['status']} | {r['nodes']} | {r['lp_calls']} "
          f"| {'yes' if r['same_answer'] else 'no: ' + str(r['float_answer'])} "
          f"| {r['exact_s']} | {r['float_s']} | {r['ratio']} |" for r in rows],
        "",
        f"`feasibility_report` on the digits MLP (epochs 0-{args.report_epochs}, two reports each): "
        f"{report['exact']['seconds']} s with the exact checks, {report['float']['seconds']} s without "
        f"({report['exact']['seconds'] / report['float']['seconds']:.2f}x); same separable fractions: "
        f"{'yes' if report['same_fractions'] else 'no'}.", "",
    ]
    write_result(out, {"meta": meta, "search": rows, "report": report}, "\n".join(lines), indent=1)
    print(f"wrote {out}.json and {out}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
