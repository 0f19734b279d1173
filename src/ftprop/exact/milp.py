"""The same question as a mixed-integer linear program (HiGHS via ``scipy.optimize.milp``).

Formulation (big-M, binary hidden outputs): every hidden unit u of layer d on distinct example
i has a binary y (its output is s = 2y - 1); weights and biases are continuous and bounded;
a hidden unit's pre-activation z must satisfy z >= 1 when y = 1 and z <= -1 when y = 0 (big-M),
an output unit's t z >= 1. For layers d >= 2 the bilinear terms W[u,k] * y[k] are exact
McCormick products (y is binary). The first example's hidden outputs are fixed to +1 (the
sign symmetry of hidden units); no other symmetry is broken: this is the plain baseline.

What "infeasible" means here: no network **whose weights obey the bounds** reproduces T with
margin 1. That is a proof for the unrestricted question only when the bounds are provably
large enough. They are, for every layer whose inputs are ±1 codes (all layers above the first,
and the first when each column of X takes at most two values): by Muroga's theorem every
threshold function of n ±1 inputs has integer weights |w_i| <= W(n) = (n+1)^((n+1)/2) / 2^n,
which after the odd-bias trick (z = 2(w.x01 - theta) + 1) gives margin >= 1 and, clipping a
constant unit's bias, |b| <= n W(n) + 1. Each unit can be replaced independently by such a
realisation without changing what it computes on the cube, so the network is unchanged. For
real-valued X no such bound is known a priori: then (or when W(n) exceeds ``max_bound`` and is
capped) a bounded "infeasible" is reported as status "unknown" with the bound in the stats.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from .network import fits

__all__ = ["muroga_bound", "solve_milp"]


def muroga_bound(n: int) -> int:
    """Integer weight bound W(n) = floor((n+1)^((n+1)/2) / 2^n) for threshold functions of n inputs."""
    return max(1, math.isqrt((n + 1) ** (n + 1)) >> n)  # in integers: floats overflow near n = 290


class _Vars:
    def __init__(self) -> None:
        self.n = 0
        self.lb: list[np.ndarray] = []
        self.ub: list[np.ndarray] = []
        self.integ: list[np.ndarray] = []

    def add(self, shape, lo, hi, integer=False) -> np.ndarray:
        size = int(np.prod(shape))
        idx = np.arange(self.n, self.n + size).reshape(shape)
        self.n += size
        self.lb.append(np.broadcast_to(np.asarray(lo, dtype=float), (size,)).copy())
        self.ub.append(np.broadcast_to(np.asarray(hi, dtype=float), (size,)).copy())
        self.integ.append(np.full(size, 1 if integer else 0, dtype=np.uint8))
        return idx


class _Rows:
    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.lo: list[float] = []
        self.hi: list[float] = []

    def add(self, cols, vals, lo, hi) -> None:
        k = len(self.lo)
        cols = np.asarray(cols, dtype=np.int64).ravel()
        self.r.append(np.full(len(cols), k))
        self.c.append(cols)
        self.v.append(np.broadcast_to(np.asarray(vals, dtype=float), cols.shape).ravel())
        self.lo.append(lo)
        self.hi.append(hi)


def solve_milp(x: np.ndarray, t: np.ndarray, hidden: list[int], *, time_limit: float | None = None,
               node_limit: int | None = None, weight_bound: float | None = None, max_bound: float = 1000.0,
               threads: int | None = None) -> dict:
    """Decide the network question with HiGHS' MILP solver.

    ``x`` must have distinct rows and ``t`` consistent ±1 targets. Returns a dict with status
    ("feasible" | "infeasible" | "unknown"), weights (float64, original input space) or None,
    message, and stats (nodes, seconds, bounds used, whether "infeasible" is a proof).
    """
    t0 = time.perf_counter()
    x = np.asarray(x, dtype=np.float64)
    m, n = x.shape
    k = t.shape[1]
    widths = [n, *hidden, k]
    L = len(widths) - 1

    # Inputs mapped onto [-1, 1] per column (two-valued columns become exactly ±1). Whether the
    # inputs are ±1 codes is decided on x itself: rounding in the map can merge distinct values
    # (0 and 1 beside 1e17), and a proof must not rest on examples the map made equal.
    lo, hi = x.min(0), x.max(0)
    cols = hi > lo  # the non-constant columns, decided on x itself
    # A column of tiny values (subnormal: its half-range could round to 0) is first scaled up by a power
    # of two, exactly; near the float64 limit lo + hi or hi - lo overflows, so those are halved first.
    top = np.maximum(np.abs(lo), np.abs(hi))
    scale = np.ones(n)
    tiny = cols & (top < 2.0**-960)
    scale[tiny] = np.ldexp(1.0, -np.frexp(top[tiny])[1] - 64)  # its largest |x| then ~2^-64 (and 2^1009 >= scale)
    lo_s, hi_s = lo * scale, hi * scale
    with np.errstate(over="ignore"):
        mid, half = (lo_s + hi_s) / 2, (hi_s - lo_s) / 2
    big = ~np.isfinite(mid) | ~np.isfinite(half)
    mid[big], half[big] = lo_s[big] / 2 + hi_s[big] / 2, hi_s[big] / 2 - lo_s[big] / 2
    xs = np.zeros_like(x)
    xs[:, cols] = (x[:, cols] * scale[cols] - mid[cols]) / half[cols]
    binary = all(np.unique(x[:, j]).size <= 2 for j in range(n))
    if binary:
        xs[:, cols] = np.where(x[:, cols] == hi[cols], 1.0, -1.0)
    n_eff = int(cols.sum())

    proof = True
    bounds_w, bounds_b = [], []
    for d in range(1, L + 1):
        fan_in = n_eff if d == 1 else widths[d - 1]
        if weight_bound is not None:
            bw = float(weight_bound)
            proof = proof and (d > 1 or binary) and bw >= muroga_bound(fan_in)
        elif d == 1 and not binary:
            bw = max_bound
            proof = False
        elif muroga_bound(fan_in) > max_bound:  # compared as integers: W(n) outgrows a float near n = 290
            bw, proof = max_bound, False
        else:
            bw = float(muroga_bound(fan_in))
        bounds_w.append(bw)
        bounds_b.append(fan_in * bw + 1)

    V, R = _Vars(), _Rows()
    W = [None] + [V.add((widths[d], widths[d - 1]), -bounds_w[d - 1], bounds_w[d - 1]) for d in range(1, L + 1)]
    B = [None] + [V.add((widths[d],), -bounds_b[d - 1], bounds_b[d - 1]) for d in range(1, L + 1)]
    Y = [None]
    for d in range(1, L):
        lo_y = np.zeros((m, widths[d]))
        lo_y[0] = 1.0  # sign symmetry: first example's hidden outputs are +1
        Y.append(V.add((m, widths[d]), lo_y.ravel(), 1.0, integer=True))
    P = [None, None]
    for d in range(2, L + 1):
        bw = bounds_w[d - 1]
        P.append(V.add((m, widths[d], widths[d - 1]), -bw, bw))

    def model_stats(nodes: int) -> dict:
        return {"nodes": nodes, "lp_calls": 0, "cache_hits": 0, "variables": V.n,
                "binaries": int(np.concatenate(V.integ).sum()), "constraints": len(R.lo),
                "weight_bounds": bounds_w, "bias_bounds": bounds_b, "infeasible_is_proof": proof}

    for d in range(1, L + 1):
        bw, bb = bounds_w[d - 1], bounds_b[d - 1]
        fan_in = widths[d - 1]
        big_m = (fan_in * bw if d > 1 else n_eff * bw) + bb + 1.0
        for i in range(m):
            if time_limit is not None and time.perf_counter() - t0 > time_limit:  # the model alone took it
                return {"status": "unknown", "weights": None, "stats": {**model_stats(0),
                                                                        "seconds": time.perf_counter() - t0},
                        "message": f"time limit ({time_limit:g} s) reached while building the MILP (layer {d} of "
                                   f"{L}, example {i} of {m}), before HiGHS ran"}
            for u in range(widths[d]):
                if d == 1:
                    zc = np.concatenate([W[1][u], [B[1][u]]])
                    zv = np.concatenate([xs[i], [1.0]])
                else:
                    p = P[d][i, u]
                    zc = np.concatenate([p, W[d][u], [B[d][u]]])
                    zv = np.concatenate([np.full(fan_in, 2.0), np.full(fan_in, -1.0), [1.0]])
                    for kk in range(fan_in):  # p = W[u,kk] * y[kk], y binary
                        w_, y_, p_ = W[d][u, kk], Y[d - 1][i, kk], p[kk]
                        R.add([p_, y_], [1.0, -bw], -np.inf, 0.0)  # p <= bw y
                        R.add([p_, y_], [1.0, bw], 0.0, np.inf)  # p >= -bw y
                        R.add([p_, w_, y_], [1.0, -1.0, bw], -np.inf, bw)  # p <= w + bw (1 - y)
                        R.add([p_, w_, y_], [1.0, -1.0, -bw], -bw, np.inf)  # p >= w - bw (1 - y)
                if d == L:
                    R.add(zc, t[i, u] * zv, 1.0, np.inf)
                else:
                    y = Y[d][i, u]
                    R.add(np.append(zc, y), np.append(zv, -big_m), 1.0 - big_m, np.inf)  # y=1 -> z >= 1
                    R.add(np.append(zc, y), np.append(zv, -big_m), -np.inf, -1.0)  # y=0 -> z <= -1
    a = coo_array((np.concatenate(R.v), (np.concatenate(R.r), np.concatenate(R.c))), shape=(len(R.lo), V.n)).tocsr()
    options: dict = {"disp": False}
    if time_limit is not None:
        options["time_limit"] = max(0.01, float(time_limit) - (time.perf_counter() - t0))
    if node_limit is not None:
        options["node_limit"] = min(int(node_limit), 2**31 - 1)  # HiGHS takes a C int; more is no limit
    if threads is not None:
        options["threads"] = int(threads)  # passed to HiGHS verbatim (SciPy warns that it does so)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unrecognized options", category=RuntimeWarning)
        res = milp(np.zeros(V.n), integrality=np.concatenate(V.integ),
                   bounds=Bounds(np.concatenate(V.lb), np.concatenate(V.ub)),
                   constraints=LinearConstraint(a, np.array(R.lo), np.array(R.hi)), options=options)
    stats = model_stats(int(getattr(res, "mip_node_count", 0) or 0))
    out = {"status": "unknown", "weights": None, "stats": stats, "message": ""}
    if res.x is not None:
        sol = np.asarray(res.x)
        weights = []
        for d in range(1, L + 1):
            w = sol[W[d]].astype(np.float64)
            b = sol[B[d]].astype(np.float64)
            if d == 1:  # z = w.xs + b with xs = (x * scale - mid)/half on the non-constant columns
                wx = np.zeros_like(w)
                with np.errstate(over="ignore"):
                    wx[:, cols] = w[:, cols] * (scale[cols] / half[cols])
                b = b - (w[:, cols] / half[cols]) @ mid[cols]
                w = wx
            weights.append((w, b))
        if not all(np.isfinite(w).all() and np.isfinite(b).all() for w, b in weights):
            out["message"] = ("the MILP found a network, but its weights on X exceed float64 (inputs too close "
                              "together for margin-1 weights there)")
        elif fits(weights, x, t):
            out.update(status="feasible", weights=weights, message="MILP solution, verified by a float64 forward pass")
        else:
            out["message"] = "the MILP returned a solution that fails the float64 check (numerical tolerance)"
    elif res.status == 2:
        if proof:
            out.update(status="infeasible", message="MILP infeasible; the weight bounds are exact (Muroga), so "
                                                    "no network exists")
        else:
            out["message"] = (f"no network with |w| <= {bounds_w} (bounded MILP); not a proof for "
                              "unbounded weights")
            stats["bounded_infeasible"] = True
    elif node_limit is not None and "HiGHS Status 16" in res.message:  # SciPy does not name this status
        out["message"] = f"MILP stopped at its node limit ({node_limit}) without an answer"
    else:
        out["message"] = f"MILP stopped without an answer: {res.message}"
    stats["seconds"] = time.perf_counter() - t0
    return out
