"""One process, three interleaved variants: a network's training step with ReLU, with a
tanh-update unit (by default the per-step staircase) as the library runs it, and with the same
unit while :func:`ftprop.activations._tanh_update_in_chunks` is switched off (the update made
term by term, each in a new tensor, as before 2026-12-07). The ratio of the last two is what
writing the update in chunks buys inside a network, free of the drift between two processes.

    python benchmarks/ab_tanh_chunks.py --rounds 15 --name ab_tanh_chunks_resnet18_cifar
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perf  # noqa: E402
from results_file import check_name, claim  # noqa: E402

from ftprop import activations  # noqa: E402

UNITS = {"per_step": {"activation": "staircase", "surrogate": "per_step"},
         "unweighted": {"activation": "sign", "weighted": False}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet18_cifar", choices=sorted(perf.INPUT))
    p.add_argument("--unit", default="per_step", choices=sorted(UNITS))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=2, help="training steps per variant and round")
    p.add_argument("--name", required=True, help="result name under benchmarks/results/")
    p.add_argument("--force", action="store_true", help="replace an existing result of that name")
    args = p.parse_args(argv)
    if args.rounds < 2 or args.steps < 1 or args.batch < 1:
        p.error("--rounds must be at least 2, --steps and --batch at least 1")
    claim(perf.RESULTS / check_name(args.name), args.force)
    cpu = torch.device("cpu")
    in_chunks = activations._in_chunks_applies

    def switch(chunks: bool) -> None:
        activations._in_chunks_applies = in_chunks if chunks else (lambda _: False)

    variants = [("relu", {"activation": "relu"}, True), (f"{args.unit} in chunks", UNITS[args.unit], True),
                (f"{args.unit} term by term", UNITS[args.unit], False)]
    x, y = perf.batch(args.model, args.batch, 10, cpu, False)
    built = []
    try:
        for label, kw, chunks in variants:
            switch(chunks)
            model = perf.make(args.model, kw, 10, cpu, False)
            opt = torch.optim.Adam(model.parameters(), 1e-4)
            perf.time_steps(model, opt, x, y, 1, False, cpu)  # warm-up
            built.append((label, model, opt, chunks))
        times: dict[str, list[float]] = {label: [] for label, *_ in built}
        for r in range(args.rounds):
            for label, model, opt, chunks in built[r % 3:] + built[:r % 3]:  # rotated: no variant always first
                switch(chunks)
                times[label].append(perf.time_steps(model, opt, x, y, args.steps, False, cpu))
            print(f"round {r + 1}/{args.rounds}", flush=True)
    finally:
        switch(True)
    rows, table = [], ["| variant | step (ms) | / ReLU step | middle half of rounds | fastest / fastest ReLU |",
                       "|---|---|---|---|---|"]
    for label, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times["relu"])]
        row = {"variant": label, "step_ms": 1e3 * statistics.median(ts), "ratio_to_relu": statistics.median(ratios),
               "quartiles": perf.quartiles(ratios), "fastest_ratio": min(ts) / min(times["relu"]), "times_s": ts}
        rows.append(row)
        table.append(f"| {label} | {row['step_ms']:.0f} | {row['ratio_to_relu']:.3f} | {row['quartiles']} | "
                     f"{row['fastest_ratio']:.3f} |")
    notes = [f"{args.model}, batch {args.batch}, Adam, {args.rounds} rounds of {args.steps} steps per variant, "
             "variants interleaved and rotated every round, in one process. 'term by term' switches off "
             "ftprop.activations._tanh_update_in_chunks, so the unit's backward makes each term and sign(g) in "
             "new tensors."]
    perf.write(args.name, {"machine": perf.machine(cpu), "rows": rows, "args": vars(args)}, table, notes)


if __name__ == "__main__":
    main()
