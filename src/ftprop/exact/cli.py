"""``ftprop solve``: is there a sign network of this architecture that fits this data exactly?

    ftprop solve --data parity:3 --hidden 3 --method ftprop --time-limit 60
    ftprop solve --data xor --hidden 1            # proved infeasible
    ftprop solve --data planted:8,64,4 --method milp
    ftprop solve --data mydata.csv --targets 1 --hidden 4 2 --save net.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "find a sign network that reproduces the targets exactly, or prove none exists (Algorithm 1)"


def _seconds(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of seconds, or 'none' for no budget") from None


def _nodes(text: str) -> int | None:
    from ..cli import _positive

    return None if text.lower() == "none" else _positive(text)


def add_solve_parser(sub) -> None:
    """Register the ``solve`` subcommand on the ``ftprop`` argument parser."""
    from .solve import METHODS

    p = sub.add_parser("solve", help=HELP, description=HELP + ".", epilog=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", "-d", required=True, metavar="SPEC",
                   help="xor | parity:N | planted:INPUTS,EXAMPLES,H1[-H2..][,OUTPUTS] | digits:EXAMPLES[,CLASS,CLASS..]"
                        " | a .csv (last --targets columns are ±1 targets) or .npz (arrays X, T) file")
    p.add_argument("--hidden", type=int, nargs="*", default=None, metavar="WIDTH",
                   help="hidden layer widths (default: 2 for xor, N for parity:N, the planted widths for planted; "
                        "--hidden with no width: no hidden layer, one layer of sign units)")
    p.add_argument("--method", "-m", choices=METHODS, default="ftprop",
                   help="ftprop = exact target search (default), milp = HiGHS MILP, mb = FTPROP-MB training")
    p.add_argument("--time-limit", type=_seconds, default=60.0, metavar="SECONDS",
                   help="budget (default 60 s; 'none': ftprop and milp run until they answer, mb gets 60 s)")
    p.add_argument("--node-limit", type=_nodes, default=None, metavar="N",
                   help="budget in search nodes (ftprop), branch-and-bound nodes (milp) or steps (mb); "
                        "'none' (default): no limit")
    p.add_argument("--heuristic", choices=("mb", "none"), default=None,
                   help="ftprop: order candidate targets by a short FTPROP-MB run (default) or not")
    p.add_argument("--seed", type=int, default=0, help="seed of the generators, of mb and of the search restarts")
    p.add_argument("--targets", type=int, default=1, metavar="K", help="number of target columns in a CSV file")
    p.add_argument("--save", default="ftprop_solution.npz", metavar="PATH",
                   help="where to save the weights when feasible (default ftprop_solution.npz)")
    p.add_argument("--no-save", action="store_true", help="do not save the weights")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run_solve)


def run_solve(args: argparse.Namespace) -> int:
    from .problems import make_problem
    from .solve import solve

    try:
        if args.targets < 1:
            raise ValueError(f"--targets is the number of target columns of a CSV file, >= 1; got {args.targets}")
        if not 0 <= args.seed < 2**63:
            raise ValueError(f"--seed must be in [0, 2^63); got {args.seed}")
        target = Path(args.save).expanduser()
        if target.suffix != ".npz":  # what SolveResult.save writes
            target = target.with_name(target.name + ".npz")
        for place in {Path(args.save).expanduser(), target}:
            if not args.no_save and place.is_dir():
                raise ValueError(f"--save {args.save}: {place} is a folder; give a file name, e.g. "
                                 f"{place / 'net.npz'}")
        folder = target.parent
        if not args.no_save and not folder.is_dir():
            raise ValueError(f"--save {args.save}: there is no folder {folder}; create it, or pass --no-save")
        if args.heuristic is not None and args.method != "ftprop":
            raise ValueError(f"--heuristic orders the exact search's candidates; --method {args.method} has none")
        x, t, default_hidden = make_problem(args.data, seed=args.seed, n_targets=args.targets)
        hidden = args.hidden if args.hidden is not None else default_hidden
        if hidden is None:
            raise ValueError(f"--hidden is required for {args.data!r} (e.g. --hidden 4, or --hidden 4 2)")
        result = solve(x, t, hidden, method=args.method, time_limit=args.time_limit, node_limit=args.node_limit,
                       heuristic=args.heuristic or "mb", seed=args.seed)
    except ValueError as exc:
        print(f"ftprop solve: error: {exc}", file=sys.stderr)
        return 2
    saved, save_error = None, None
    if result.feasible and not args.no_save:
        try:  # the outcome is printed whatever happens to the file
            saved = str(result.save(target))
        except OSError as exc:
            save_error = f"the weights could not be saved to {target}: {exc}"
    s = result.stats
    if args.json:
        out = {"data": args.data, "hidden": result.hidden, "method": result.method, "status": result.status,
               "message": result.message, "saved": saved, "save_error": save_error,
               "stats": {k: v for k, v in s.items() if isinstance(v, (int, float, str, bool))}}
        print(json.dumps(out))
        return 1 if save_error else 0
    print(f"problem   {args.data}: {s.get('examples')} examples ({s.get('distinct_examples')} distinct), "
          f"{1 if x.ndim == 1 else x.shape[1]} inputs, {1 if t.ndim == 1 else t.shape[1]} output(s); "
          f"hidden {result.hidden}")
    print(f"method    {result.method}")
    print(f"outcome   {result.status.upper()}: {result.message}")
    if saved:
        print(f"weights   saved to {saved} (W1, b1, W2, b2, ...; load with ftprop.exact.load_weights)")
    print(f"nodes     {s.get('nodes', 0)}")
    print(f"LP calls  {s.get('lp_calls', 0)}")
    print(f"cache hits {s.get('cache_hits', 0)}")
    print(f"time      {s.get('seconds', 0.0):.3f} s")
    if save_error:
        print(f"ftprop solve: error: {save_error}", file=sys.stderr)
        return 1
    return 0
