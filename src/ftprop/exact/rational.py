"""The separability LP solved in exact rational arithmetic, for small problems float64 cannot settle.

HiGHS decides "do these two classes' convex hulls intersect?" to a tolerance of about 1e-7. For
classes that come closer than that, the float answer may be wrong either way, and the exact check
of its certificate (:mod:`.certify`) then fails. This module decides the question exactly on the
data as given (every float64 number is a rational), by the simplex method's phase 1 on

    find mu >= 0   with   sum_i mu_i t_i x_i = 0,   sum_{t_i = +1} mu_i = 1,   sum_{t_i = -1} mu_i = 1.

* Feasible: ``mu`` is a point common to the two hulls, an exact proof that no separator exists.
* Infeasible: phase 1 ends at a positive optimum, and its simplex multipliers y = (v, c+, c-)
  give a Farkas certificate y.A <= 0 < y.b, that is, t_i v.x_i + c_{t_i} <= 0 for every example
  with c+ + c- > 0. Then w = -v, b = (c- - c+) / 2 separates the classes, every example at
  least (c+ + c-) / 2 from the boundary: an exact separator, however thin its margin.

Phase 1's dual bounds each multiplier only from above (y <= 1), so the separator can be a
lopsided vertex whose huge weights cancel on some example, which no float64 rounding keeps.
With ``box=True`` phase 1 minimises the l1 norm of the residual instead (an artificial of either
sign on each coordinate row) with the coordinate rows scaled to a common magnitude: its dual
bounds every weight on both sides relative to its column's spread, and the separator is one of
largest margin in that box. It takes more work on ordinary data, so it is the fallback.

The tableau is kept in integers by Edmonds' integer-preserving pivoting (the fraction-free
counterpart of Bareiss' elimination in :func:`.certify.fraction_free_echelon`): every entry is the
true value times one common denominator (the current basis' determinant), and every division
is exact. The examples are first translated by one of them, which changes no dichotomy and keeps
offsets and constant columns out of the integers. The most negative reduced cost enters
(Dantzig's rule); a long run of degenerate pivots hands over to Bland's rule, so the degenerate
phase 1 cannot cycle. The cost grows like (pivots) x (rows) x (examples) operations on integers
that grow with every pivot; :func:`exact_separation` gives up (returns ``"too large"``) past
:data:`MAX_SIMPLEX_WORK`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .certify import exact_scores, integer_row

__all__ = ["ExactAnswer", "exact_separation", "MAX_SIMPLEX_WORK"]

# Work of the whole simplex run: each pivot updates (rows + 1) x (columns) entries, each costing
# _limb_cost(bits) for entries of that many bits (about 0.05-0.1 us a unit on this project's
# machine, so the limit is about 3 s). Too-large problems are refused before the first pivot when
# an estimate of at least 2 r pivots already exceeds it, otherwise stopped when it is reached.
MAX_SIMPLEX_WORK = 30_000_000
# Degenerate pivots in a row (the objective does not move) before Bland's rule takes over.
STALL_PIVOTS = 50


class DeadlineReached(Exception):
    """The caller's deadline (``time.perf_counter()`` value) passed during a rational LP."""


@dataclass
class ExactAnswer:
    """The exact answer for rows ``x`` (examples x features) and targets ``t`` in {-1, +1}.

    separable: whether a strict separator exists.
    weight, bias: when separable, an exact separator with t_i (weight.x_i + bias) >= 1 for every i.
    mu: when not separable, exact weights >= 0 (one per example, each class summing to 1) whose
        two class averages coincide.
    pivots: simplex pivots taken.
    work: their cost in the units of :data:`MAX_SIMPLEX_WORK`.
    """

    separable: bool
    weight: list[Fraction] | None = None
    bias: Fraction | None = None
    mu: list[Fraction] | None = None
    pivots: int = 0
    work: float = 0.0


def exact_separation(x: np.ndarray, t: np.ndarray, max_work: int | None = None, *,
                     box: bool = False, deadline: float | None = None) -> ExactAnswer | str:
    """Decide exactly whether the classes of ``t`` (+1 / -1, both present) are strictly separable
    by a hyperplane in the float64 data ``x``; return the certificate (:class:`ExactAnswer`), or
    ``"too large"`` when the simplex would take more than ``max_work`` (default
    :data:`MAX_SIMPLEX_WORK`) units of work. ``box=True`` gives a separator of largest margin with
    each weight bounded relative to its column's spread (module docstring): slower, for when the
    default one is too thin to round to float64. ``deadline``: a ``time.perf_counter()`` value,
    checked at every pivot; past it, :class:`DeadlineReached` is raised."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    m, n = x.shape
    if not (np.any(t > 0) and np.any(t < 0)) or not np.all(np.abs(t) == 1):
        raise ValueError("exact_separation needs targets +1 and -1 only, both present")
    budget = MAX_SIMPLEX_WORK if max_work is None else max_work

    # Rows: the coordinates that are not constant over the examples, then the two class sums.
    # The examples are translated by the first one (x_i - x_0: the same dichotomy, exactly, in
    # integers), so constant columns drop out and offsets do not inflate the integers.
    coords = np.flatnonzero(np.any(x != x[0], axis=0))
    r = len(coords) + 2
    q = len(coords) if box else 0  # negative artificials
    ops_per_pivot = (r + 1) * (m + q + r + 1)
    if ops_per_pivot * 2 * r > budget:  # at least ~2r pivots (a first bound, before any integers are made)
        return "too large"
    # Column j is an integer column over a power of two; the row t_i (x_ij - x_0j) is divided by
    # its gcd. scales[k]: integer row k = scales[k] * t_i (x_ij - x_0j), to map multipliers back.
    rows, scales = [], []
    signs = [int(v) for v in t]
    for j in coords:
        ints, scale = integer_row(list(x[:, j]))
        shifted = [(v - ints[0]) * s for v, s in zip(ints, signs)]
        g = math.gcd(*shifted)
        rows.append([v // g for v in shifted] + [0])
        scales.append(Fraction(scale, g))
    if box:  # every coordinate row to the same largest magnitude (within a factor 2, by a power of two)
        top = max((max(abs(v) for v in row).bit_length() for row in rows), default=0)
        for k, row in enumerate(rows):
            shift = top - max(abs(v) for v in row).bit_length()
            rows[k] = [v << shift for v in row]
            scales[k] *= 2**shift
    rows.append([int(v > 0) for v in t] + [1])
    rows.append([int(v < 0) for v in t] + [1])
    entry_bits = max(abs(v).bit_length() for row in rows for v in row)
    # Entries grow by about entry_bits a pivot (they are minors of the tableau): ~r entry_bits / 2 on average.
    if ops_per_pivot * 2 * r * _limb_cost(r * entry_bits // 2) > budget:
        return "too large"

    # Tableau [A | -I_q | I | b] over an objective row [-1.A | 2 | 0 | -1.b] (reduced costs of
    # phase 1, whose cost is 1 on each artificial, and minus its value); basis: the positive
    # artificials. Example columns and (with the box) the q negative artificials may enter.
    tab = np.zeros((r + 1, m + q + r + 1), dtype=object)
    for i, row in enumerate(rows):
        tab[i, :m] = row[:m]
        if i < q:
            tab[i, m + i] = -1  # (the box's negative artificial of coordinate row i)
        tab[i, m + q + i] = 1
        tab[i, -1] = row[m]
    tab[r] = -tab[:r].sum(axis=0)
    tab[r, m:m + q] += 1
    tab[r, m + q:m + q + r] = 0
    basis = list(range(m + q, m + q + r))
    enterable = m + q
    denom, pivots, work, stalled = 1, 0, 0, 0
    while True:
        # The column with the most negative reduced cost enters (denom > 0, so the
        # integer entries order as the values do); positive artificials never re-enter. After
        # STALL_PIVOTS degenerate pivots in a row, Bland's rule (the first negative column, ties
        # in the ratio test to the lowest basic index) takes over, and the simplex cannot cycle.
        costs = tab[r, :enterable]
        negative = np.flatnonzero(costs < 0)
        if len(negative) == 0:
            break
        enter = int(negative[0]) if stalled >= STALL_PIVOTS else int(np.argmin(costs))
        col = tab[:r, enter]
        leave = None
        for i in np.flatnonzero(col > 0):  # least ratio rhs / entry
            if leave is None:
                leave = i
                continue
            lhs, rhs = tab[i, -1] * col[leave], tab[leave, -1] * col[i]
            if lhs < rhs or (lhs == rhs and basis[i] < basis[leave]):
                leave = i
        # (phase 1 is bounded below by 0, so some entry is positive)
        bits = max(abs(int(v)).bit_length() for v in np.concatenate([tab[leave], col]))
        work += ops_per_pivot * _limb_cost(bits)
        if work > budget:
            return "too large"
        if deadline is not None and time.perf_counter() > deadline:
            raise DeadlineReached("time limit")
        stalled = stalled + 1 if tab[leave, -1] == 0 else 0
        head = tab[leave, enter]
        others = np.r_[0:leave, leave + 1:r + 1]
        tab[others] = (tab[others] * head - np.outer(tab[others, enter], tab[leave])) // denom
        denom = head
        basis[leave] = enter
        pivots += 1

    if tab[r, -1] == 0:  # optimum 0: every artificial is 0, and mu is a common point
        mu = [Fraction(0)] * m
        for i, var in enumerate(basis):
            if var < m:
                mu[var] = Fraction(int(tab[i, -1]), int(denom))
        return ExactAnswer(False, mu=mu, pivots=pivots, work=work)

    # Positive optimum. The multiplier of row k is y_k = 1 - (reduced cost of its artificial);
    # on the integer rows, so coordinate j's is y_k times that row's scale.
    y = [1 - Fraction(int(tab[r, m + q + k]), int(denom)) for k in range(r)]
    v = [Fraction(0)] * n
    for k, j in enumerate(coords):
        v[j] = y[k] * scales[k]
    c_pos, c_neg = y[-2], y[-1]
    half_gap = (c_pos + c_neg) / 2  # > 0: the optimum y.b
    weight = [-vj / half_gap for vj in v]
    # A separator of the translated examples, t_i (w.(x_i - x_0) + b0) >= 1; b = b0 - w.x_0.
    bias = (c_neg - c_pos) / 2 / half_gap - exact_scores(x[:1], weight)[0]
    return ExactAnswer(True, weight=weight, bias=bias, pivots=pivots, work=work)


def _limb_cost(bits: int) -> float:
    """Relative cost of one big-integer multiply-add on entries of ``bits`` bits: 1 for machine
    words, then growing like Karatsuba's n^1.6 in the number of 64-bit limbs."""
    return (1 + bits / 64) ** 1.6
