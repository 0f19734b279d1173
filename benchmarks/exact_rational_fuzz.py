"""How often does float64 leave the separability LP unsettled, and does the rational LP settle it?

Random small problems of four kinds (general position; points on a subspace only up to rounding;
data rounded to one decimal, so with ties; and near-duplicate pairs of examples, 1e-8 to 1e-14
apart, with random targets), each answered by ``ftprop.exact.separable`` twice in one process:
with the rational LP (:mod:`ftprop.exact.rational`) and without it (``MAX_SIMPLEX_WORK = 0``, the
code before it). Every answer marked exact is verified here in Fractions
(``certify.rational_separator_holds``, ``certify.witness_holds``). A second table times the
rational LP alone (``rational.exact_separation``) on problems of growing size, with and without
the boxed margin, to show where its work limit refuses.

    python benchmarks/exact_rational_fuzz.py [--problems 400] [--seed 7]

Writes results/exact_rational_fuzz.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from exact_scaling import run_meta  # noqa: E402
from results_file import claim, write_result  # noqa: E402

from ftprop.exact import NumericalTrouble, rational, separable  # noqa: E402
from ftprop.exact.certify import rational_separator_holds, witness_holds  # noqa: E402

KINDS = ("general position", "on a subspace up to rounding", "rounded to 0.1 (ties)", "near-duplicate pairs")
SIMPLEX_WORK = rational.MAX_SIMPLEX_WORK

RESULTS = Path(os.environ.get("FTPROP_RESULTS", Path(__file__).resolve().parent / "results"))


def problem(kind: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    m, n = int(rng.integers(5, 60)), int(rng.integers(1, 7))
    if kind == 0:
        x = rng.standard_normal((m, n))
    elif kind == 1:
        k = max(1, n - 2)
        x = rng.standard_normal((m, k)) @ rng.standard_normal((k, n))
    elif kind == 2:
        x = np.round(rng.standard_normal((m, n)), 1)
    else:
        x = rng.standard_normal((m, n))
        half = m - m // 2
        x[m // 2:] = x[:half] + rng.standard_normal((half, n)) * 10.0 ** -rng.integers(8, 15)
    return x, np.where(rng.random(m) < 0.5, 1.0, -1.0)


def sized_problems(rng: np.random.Generator):
    """(name, x, t) of growing size: Gaussian examples with random targets (mostly not
    separable) and with targets from a random hyperplane (separable), the digits, and extreme
    magnitudes."""
    for m, n in ((40, 6), (200, 10), (100, 20), (500, 20)):
        x = rng.standard_normal((m, n))
        yield f"Gaussian {m}x{n}, random targets", x, np.where(rng.random(m) < 0.5, 1.0, -1.0)
        yield f"Gaussian {m}x{n}, hyperplane targets", x, np.where(x @ rng.standard_normal(n) > 0, 1.0, -1.0)
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data.astype(np.float64)
    yield "digits 1797x64, class 0 against the rest", x, np.where(digits.target == 0, 1.0, -1.0)
    x = rng.standard_normal((60, 8)) * 10.0 ** rng.integers(-300, 301, size=(60, 8))
    yield "60x8, magnitudes 1e-300 to 1e300", x, np.where(rng.random(60) < 0.5, 1.0, -1.0)


def time_sizes(rng: np.random.Generator) -> list[dict]:
    rows = []
    for name, x, t in sized_problems(rng):
        for box in (False, True):
            t0 = time.perf_counter()
            got = rational.exact_separation(x, t, box=box)
            seconds = time.perf_counter() - t0
            if isinstance(got, str):
                answer_, pivots = got, None
            else:
                answer_, pivots = "separable" if got.separable else "not separable", got.pivots
                ok = (rational_separator_holds(x, t, got.weight, got.bias) if got.separable
                      else witness_holds(x, t, got.mu))
                assert ok, f"{name}: the exact answer fails its check"
            rows.append({"problem": name, "box": box, "answer": answer_, "pivots": pivots,
                         "seconds": round(seconds, 4)})
            print(rows[-1], flush=True)
    return rows


def answer(x: np.ndarray, t: np.ndarray) -> str:
    """One of: separator, thin separator, common point, inexact common point, NumericalTrouble
    (an exact answer that fails its check here raises)."""
    try:
        s = separable(x, t)
    except NumericalTrouble:
        return "NumericalTrouble"
    if s.separable:
        if s.exact_separator is not None:
            assert rational_separator_holds(x, t, *s.exact_separator), s.reason
            return "thin separator (Fractions)"
        assert rational_separator_holds(x, t, s.weight, s.bias), s.reason
        return "separator"
    if not s.exact:
        return "common point, float64 tolerance only"
    assert witness_holds(x, t, s.exact_witness), s.reason
    return "common point"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=str(RESULTS / "exact_rational_fuzz"))
    ap.add_argument("--force", action="store_true", help="replace the result files at --out if they exist")
    args = ap.parse_args(argv)
    if args.problems < 1:
        ap.error("--problems must be >= 1")
    if args.seed < 0:
        ap.error("--seed must be >= 0")
    out = claim(args.out, args.force)
    torch.set_num_threads(1)
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    counts = {mode: collections.Counter() for mode in ("rational", "float")}
    seconds = dict.fromkeys(counts, 0.0)
    changed = collections.Counter()
    for i in range(args.problems):
        kind = i % len(KINDS)
        x, t = problem(kind, rng)
        got = {}
        for mode in counts:
            rational.MAX_SIMPLEX_WORK = SIMPLEX_WORK if mode == "rational" else 0
            t0 = time.perf_counter()
            got[mode] = answer(x, t)
            seconds[mode] += time.perf_counter() - t0
            counts[mode][KINDS[kind], got[mode]] += 1
        if got["rational"] != got["float"]:
            changed[KINDS[kind], got["float"], got["rational"]] += 1
    rational.MAX_SIMPLEX_WORK = SIMPLEX_WORK
    sizes = time_sizes(np.random.default_rng(args.seed))
    meta = run_meta(argv, started, problems=args.problems, seed=args.seed)
    answers = sorted({a for c in counts.values() for _, a in c})
    table = [{"kind": k, **{f"{mode}: {a}": counts[mode][k, a] for mode in counts for a in answers}} for k in KINDS]
    payload = {"meta": meta, "seconds": {k: round(v, 2) for k, v in seconds.items()}, "counts": table,
               "changed": [{"kind": k, "without": a, "with": b, "problems": n}
                           for (k, a, b), n in sorted(changed.items())],
               "sizes": sizes}
    lines = ["# The separability LP with and without the rational LP", "",
             f"`{meta['command']}`: {meta['date']}; {meta['machine']}; Python {meta['python']}, numpy "
             f"{meta['numpy']}, SciPy {meta['scipy']}; {args.problems} problems, seed {args.seed}, "
             f"{args.problems // len(KINDS)} of each kind; git {meta['git_commit']}; one process, both modes on each "
             "problem. Every exact "
             "answer was verified in Fractions.", "",
             "| kind | " + " | ".join(answers) + " |", "|---|" + "---|" * len(answers)]
    for mode, label in (("float", "without"), ("rational", "with")):
        lines += [f"| *{label} the rational LP* |" + " |" * len(answers)]
        lines += [f"| {k} | " + " | ".join(str(counts[mode][k, a]) for a in answers) + " |" for k in KINDS]
    lines += ["", "Answers that changed:", "", "| kind | without | with | problems |", "|---|---|---|---|",
              *[f"| {k} | {a} | {b} | {n} |" for (k, a, b), n in sorted(changed.items())], "",
              f"Time for all problems: {seconds['float']:.1f} s without, {seconds['rational']:.1f} s with.", "",
              "The rational LP alone (`rational.exact_separation`, work limit "
              f"{SIMPLEX_WORK:.2g}; \"too large\" = refused by it; boxed = the margin LP with bounded weights; "
              "every exact answer verified in Fractions):", "",
              "| problem | boxed | answer | pivots | seconds |", "|---|---|---|---|---|",
              *[f"| {r['problem']} | {'yes' if r['box'] else 'no'} | {r['answer']} | "
                f"{'' if r['pivots'] is None else r['pivots']} | {r['seconds']:.3f} |" for r in sizes], ""]
    write_result(out, payload, "\n".join(lines), indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
