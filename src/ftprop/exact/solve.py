"""``solve(X, T, hidden, method=...)``: does a sign network of this architecture reproduce T?

Three methods answer it:

* ``"ftprop"``: the exact target search of :mod:`.search` (sound, complete without a budget),
  guided by a short FTPROP-MB run (``heuristic="mb"``) or by nothing (``"none"``) or by
  given hidden targets.
* ``"milp"``: the big-M MILP of :mod:`.milp` (HiGHS); an independent cross-check.
* ``"mb"``: FTPROP-MB gradient training with restarts (:mod:`.mb`); never says "infeasible".

Every "feasible" answer carries weights that a float64 forward pass has checked on X.
"""

from __future__ import annotations

import itertools
import math
import numbers
import time
from fractions import Fraction

import numpy as np

from .certify import exact_scores, exact_signs
from .lp import NumericalTrouble, separable
from .mb import MBTrainer, mb_hint, train_mb
from .milp import solve_milp
from .network import SolveResult, check_problem, dedupe, fits, forward
from .search import Hint, SearchStats, search_targets

__all__ = ["solve", "METHODS"]

METHODS = ("ftprop", "milp", "mb")
DEFAULT_MB_TIME = 60.0  # "mb" needs a budget: it cannot stop by itself on an infeasible problem
MAX_SEARCH_WIDTH = 20  # the search's bitmasks over a layer's target codes take 2^width bits (no hidden layer: no codes)

# ftprop with heuristic="mb" (see _solve_ftprop): the search without hints gets 3% of the budget;
# then each round trains FTPROP-MB and searches with its hint for ROUND_SHARE of the budget each,
# doubling every round. Without a time limit the clock plays no part, so that a run is repeatable:
# the probe gets PROBE_NODES nodes, the one round MB_STEPS steps of training (about 2 s each on a small
# problem), then an unbounded search.
PROBE_SHARE, PROBE_NODES = 0.03, 2000
ROUND_SHARE, MB_STEPS = 0.03, 2500


def _weights_from_targets(x, t, hidden_targets) -> list[tuple[np.ndarray, np.ndarray]]:
    """One LP per unit on the full data: the network that realises a feasible target setting."""
    layers = [x, *hidden_targets, t]
    weights = []
    for d in range(1, len(layers)):
        ws, bs = [], []
        for u in range(layers[d].shape[1]):
            inputs, targets = layers[d - 1], layers[d][:, u]
            sep = separable(inputs, targets)
            if not sep.separable:
                raise NumericalTrouble(f"layer {d} unit {u}: the found target is not separable on the full data")
            ws.append(sep.weight)
            b = sep.bias
            if not _realises(inputs, targets, sep.weight, b):
                at_zero = _bias_at_zero(inputs, targets, sep.weight)
                b = b if at_zero is None else at_zero  # (if None, the float64 check on X says so)
            bs.append(b)
        weights.append((np.array(ws), np.array(bs)))
    return weights


def _realises(x: np.ndarray, t: np.ndarray, w: np.ndarray, b: float) -> bool:
    """The unit (w, b) outputs exactly ``t`` on ``x``, with sign(0) = -1 as the network's units."""
    return bool(np.array_equal(exact_signs(x, w[None], np.array([b]))[:, 0], t))


def _bias_at_zero(x: np.ndarray, t: np.ndarray, w: np.ndarray) -> float | None:
    """A bias along ``w`` that puts the highest -1 example's score at exactly 0 (a -1 output, as
    sign(0) = -1), where that is a float64 and every +1 example stays above 0; else None. Points a
    few ulps apart can leave a strict separator's bias interval (lo, hi) without a float64, while
    the unit only needs lo < b <= hi, and hi itself may be one."""
    negatives = [-s for s, ti in zip(exact_scores(x, w), t) if ti < 0]
    if not negatives:
        return None
    hi = min(negatives)
    b = float(hi)
    return b if Fraction(b) == hi and _realises(x, t, w, b) else None


def _as_hint(heuristic, m: int, hidden: list[int], first: np.ndarray) -> Hint:
    """Suggested targets for each of the ``m`` examples, one (m, width) array per hidden layer, as
    a hint over the distinct examples (the rows ``first`` of :func:`dedupe`) the search runs on."""
    try:
        arrays = [np.asarray(h, dtype=np.float64) for h in heuristic]
    except (TypeError, ValueError):
        arrays = None
    if arrays is None or len(arrays) != len(hidden) or any(a.shape != (m, w) for a, w in zip(arrays, hidden)):
        raise ValueError("heuristic must be 'mb', 'none', or one (examples x width) array of suggested "
                         f"±1 targets per hidden layer {hidden}")
    if any(not np.isin(a, (-1.0, 1.0)).all() for a in arrays):
        raise ValueError("suggested hidden targets must be -1 or +1 (the sign network's outputs)")
    return Hint([a[first] for a in arrays])


def _number(value) -> bool:
    """A real number (numpy's, Fraction's too), not a bool or a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite(value) -> bool:
    """A finite number; an int too large for a float is not (math.isfinite raises for it)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def solve(X, T, hidden, method: str = "ftprop", time_limit: float | None = None, node_limit: int | None = None, *,
          heuristic="mb", seed: int = 0,
          weight_bound: float | None = None, threads: int | None = None) -> SolveResult:
    """Find weights of a sign network with hidden widths ``hidden`` that maps every row of X to
    the same row of T, or prove that none exists.

    X: (m, n) real; T: (m, k) in {-1, +1}; hidden: [n_1, ..., n_{L-1}] (``[]`` = one layer).
    method: "ftprop" (exact search), "milp" (HiGHS MILP) or "mb" (FTPROP-MB training).
    time_limit (seconds) / node_limit (search nodes; MILP branch-and-bound nodes; mb steps):
    the budget; when it runs out the answer is "unknown", never a guess.
    heuristic (ftprop): "mb" (a short search without hints, 3% of the budget or 2000 nodes; then rounds of
    FTPROP-MB training, each followed by the search with candidates ordered by the trained
    network's outputs and gradient-sign targets), "none", or suggested hidden targets (one
    (m, n_d) ±1 array per hidden layer).
    weight_bound (milp): bound on |w|; default exact (Muroga) bounds where they exist.
    threads (milp): HiGHS threads (default: HiGHS' own choice).
    seed: seeds FTPROP-MB and the search's randomised restarts.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if time_limit is not None and not (_number(time_limit) and time_limit > 0):
        raise ValueError(f"time_limit must be a number of seconds > 0 (math.inf: none), got {time_limit!r}")
    if method == "mb" and time_limit == math.inf and node_limit is None:
        raise ValueError("method='mb' trains until its targets fit and never proves there are none: give it a "
                         "finite time_limit or a node_limit (steps)")
    if not (_number(seed) and _finite(seed) and int(seed) == seed and 0 <= seed < 2**63):
        raise ValueError(f"seed must be an integer in [0, 2^63), got {seed!r}")
    seed = int(seed)  # 3.0 or np.int64(3): numpy's generators take Python ints
    if time_limit == math.inf and method != "mb":
        time_limit = None  # no limit (the search's budget shares of an infinite limit would never end)
    if node_limit is not None and not (_number(node_limit) and _finite(node_limit)
                                       and int(node_limit) == node_limit and node_limit >= 1):
        raise ValueError(f"node_limit must be a whole number >= 1 (None: no limit), got {node_limit!r}")
    node_limit = int(node_limit) if node_limit is not None else None
    if weight_bound is not None and not (_number(weight_bound) and _finite(weight_bound) and weight_bound > 0):
        raise ValueError(f"weight_bound must be a positive finite bound on |w| (None: exact bounds), "
                         f"got {weight_bound!r}")
    if isinstance(heuristic, str) and heuristic not in ("mb", "none"):
        raise ValueError(f"heuristic must be 'mb', 'none' or suggested hidden targets, got {heuristic!r}")
    x, t, hidden = check_problem(X, T, hidden)
    if method == "ftprop" and hidden and max([*hidden, t.shape[1]]) > MAX_SEARCH_WIDTH:
        raise ValueError(f"the exact search takes layers of at most {MAX_SEARCH_WIDTH} units (it indexes each "
                         f"layer's target codes by bitmask); got widths {[*hidden, t.shape[1]]}. "
                         f"Use method='mb' or 'milp' for wider layers")
    t0 = time.perf_counter()
    result = SolveResult("unknown", method, hidden)
    base = {"nodes": 0, "lp_calls": 0, "cache_hits": 0, "examples": len(x)}

    xu, tu, first, _, clash = dedupe(x, t)
    base["distinct_examples"] = len(xu)
    if clash is not None:
        i, j = clash
        result.status = "infeasible"
        result.message = f"examples {i} and {j} have the same input and different targets: no function fits"
        result.stats = {**base, "seconds": time.perf_counter() - t0}
        return result

    try:
        if method == "mb":
            limit = DEFAULT_MB_TIME if time_limit is None and node_limit is None else time_limit
            out = train_mb(xu, tu, hidden, time_limit=np.inf if limit is None else limit, max_steps=node_limit,
                           seed=seed)
            result.stats = {**base, "nodes": out.steps, "steps": out.steps, "restarts": out.restarts,
                            "best_errors": out.errors}
            if out.fitted:
                result.weights = out.weights
                result.message = f"FTPROP-MB fitted T after {out.steps} steps, {out.restarts} restarts"
            else:
                result.message = (f"budget spent after {out.steps} steps, {out.restarts} restarts; best network "
                                  f"got {out.errors} output entries wrong (mb cannot prove infeasibility)")
        elif method == "milp":
            out = solve_milp(xu, tu, hidden, time_limit=time_limit, node_limit=node_limit, weight_bound=weight_bound,
                             threads=threads)
            result.stats = {**base, **out["stats"]}
            result.message = out["message"]
            result.status = out["status"] if out["status"] != "feasible" else "unknown"
            result.weights = out["weights"]
        else:
            if not isinstance(heuristic, str):
                heuristic = _as_hint(heuristic, len(x), hidden, first)
            _solve_ftprop(result, xu, tu, hidden, time_limit, node_limit, heuristic, seed, t0, base)
    except NumericalTrouble as exc:
        result.status, result.weights = "unknown", None
        result.message = f"numerical trouble, no answer: {exc}"
        result.stats = {**base, **result.stats}

    # Soundness: a network is only reported after a float64 forward pass on all of X.
    if result.weights is not None:
        if fits(result.weights, x, t):
            result.status = "feasible"
            result.hidden_targets = forward(result.weights, x, all_layers=True)[:-1]
        else:
            result.status, result.weights = "unknown", None
            result.message = "a candidate network failed the float64 check on X (numerical trouble): " + result.message
    result.stats["seconds"] = time.perf_counter() - t0
    return result


def _solve_ftprop(result, xu, tu, hidden, time_limit, node_limit, heuristic, seed, t0, base):
    """The exact search. With heuristic="mb": first a short search without hints (small
    instances, quick infeasibility proofs); then rounds of FTPROP-MB training (one resumed
    trainer) followed by the search with its candidates ordered by the trained network, each
    round twice as long as the last. All searches share their LP caches."""
    hint, fitted = None, None
    mb_stats: dict = {}
    shared: dict = {}
    stats = SearchStats()
    elapsed = lambda: time.perf_counter() - t0
    remaining = lambda: None if time_limit is None else max(0.0, time_limit - elapsed())
    finish = lambda status, targets, message: _finish_ftprop(result, xu, tu, status, targets, message, stats, base,
                                                             mb_stats, fitted)

    if isinstance(heuristic, str):
        if heuristic == "mb" and hidden:
            probe_time = None if time_limit is None else min(time_limit, max(0.2, PROBE_SHARE * time_limit))
            probe_nodes = None if node_limit is None else max(1, node_limit // 4)
            if time_limit is None:
                probe_nodes = min(PROBE_NODES, probe_nodes or PROBE_NODES)
            status, targets, message, _ = search_targets(xu, tu, hidden, time_limit=probe_time, node_limit=probe_nodes,
                                                         seed=seed, shared=shared, stats=stats)
            if (status in ("feasible", "infeasible") or (node_limit is not None and stats.nodes >= node_limit)
                    or remaining() == 0):
                return finish(status, targets, message)
            trainer = MBTrainer(xu, tu, hidden, seed=seed)
            span = None if time_limit is None else ROUND_SHARE * time_limit
            for rnd in itertools.count():
                out = trainer.run(max_steps=MB_STEPS) if span is None else trainer.run(min(span, remaining()))
                mb_stats = {"mb_steps": out.steps, "mb_restarts": out.restarts, "mb_seconds": out.seconds,
                            "mb_fitted": out.fitted, "mb_errors": out.errors, "mb_rounds": rnd + 1}
                hint, fitted = mb_hint(out, xu, tu), out if out.fitted else None
                if time_limit is None:
                    break  # then the complete search below, without a budget
                search_time = remaining() if out.fitted else min(span, remaining())
                status, targets, message, _ = search_targets(xu, tu, hidden, hint=hint, time_limit=search_time,
                                                             node_limit=node_limit, seed=seed + rnd + 1,
                                                             shared=shared, stats=stats)
                if (status != "unknown" or fitted is not None or remaining() <= 0
                        or (node_limit is not None and stats.nodes >= node_limit)):
                    if status == "unknown":
                        message = f"budget spent after {stats.nodes} nodes and {rnd + 1} FTPROP-MB rounds"
                    return finish(status, targets, message)  # (with a fitted network, that network answers)
                span *= 2
    elif heuristic is not None:  # the caller's suggested targets, as a Hint over the distinct examples
        hint = heuristic
    status, targets, message, _ = search_targets(xu, tu, hidden, hint=hint, time_limit=remaining(),
                                                 node_limit=node_limit, seed=seed + 1, shared=shared, stats=stats)
    return finish(status, targets, message)


def _finish_ftprop(result, xu, tu, status, targets, message, s, base, mb_stats, fitted=None) -> None:
    result.stats = {**base, "nodes": s.nodes, "lp_calls": s.lp_calls, "cache_hits": s.cache_hits,
                    "candidates": s.candidates, "reused_separators": s.reused_separators,
                    "contradictions": s.contradictions, "backtracks": s.backtracks, "deepest": s.deepest,
                    "hint_rows_taken": s.hint_rows_taken, **s.extra, **mb_stats}
    result.message = message
    if status == "infeasible" and s.extra.get("thin_conflicts"):
        status = "unknown"  # some conflicts it used are known to be separable: nothing is proved
        result.message = (f"infeasibility not proved: {message}, but {s.extra['thin_conflicts']} of the LP "
                          f"conflicts it used are separable in exact arithmetic (by no float64 separator found "
                          f"in the search's rescaled coordinates)")
    if status == "infeasible" and s.extra.get("doubtful_conflicts"):
        status = "unknown"  # some conflicts rest on float64 LPs whose certificates failed the exact check
        result.message = (f"infeasibility not proved: {message}, but {s.extra['doubtful_conflicts']} of the LP "
                          f"conflicts it used rest on float64 LPs whose certificates failed the exact check, "
                          f"on problems too large to decide in rationals")
    if status in ("infeasible", "unknown") and s.extra.get("float_conflicts"):
        result.message += (f"; {s.extra['float_conflicts']} of its LP conflicts hold to float64 tolerance only "
                           f"(not checked exactly: inputs nearly equal or nearly on a subspace, and too many to "
                           f"decide in rationals), and the proof may rest on them")
    if status in ("unknown", "infeasible") and fitted is not None:
        # FTPROP-MB's network fits T, so its hidden outputs are feasible targets, realised below like the
        # search's own (an "infeasible" left standing rested on float64-tolerance conflicts)
        status, targets = "feasible", forward(fitted.weights, xu, all_layers=True)[:-1]
        result.message = (f"FTPROP-MB's network fits T and its hidden outputs are the targets; the search did "
                          f"not settle it: {result.message}")
    if status == "feasible":
        try:
            weights = _weights_from_targets(xu, tu, targets)
        except NumericalTrouble:
            if fitted is None:
                raise
            weights = None
        if fitted is not None and (weights is None or not fits(weights, xu, tu)):
            weights = fitted.weights  # the targets' LP weights do not survive float64; the trained ones do
        result.weights = weights
    else:
        result.status = status
