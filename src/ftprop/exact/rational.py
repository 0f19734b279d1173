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

The tableau is kept in integers by Edmonds' integer-preserving pivoting (the fraction-free
counterpart of Bareiss' elimination in :func:`.certify.fraction_free_echelon`): every entry is the
true value times one common denominator (the current basis' determinant), and every division
is exact. The most negative reduced cost enters (Dantzig's rule); a long run of degenerate
pivots hands over to Bland's rule, so the degenerate phase 1 cannot cycle. The cost grows like
(pivots) x (rows) x (examples) operations on integers that grow with the rows;
:func:`exact_separation` gives up (returns ``"too large"``) past :data:`MAX_SIMPLEX_WORK`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .certify import integer_row

__all__ = ["ExactAnswer", "exact_separation", "MAX_SIMPLEX_WORK"]

# Work of the whole simplex run, in 64-bit limb operations (each pivot updates rows x columns
# entries of about as many limbs as the basis determinant has): about 0.3 us each on this
# project's machine, so the limit is a few seconds.
MAX_SIMPLEX_WORK = 10_000_000
# Degenerate pivots in a row (the objective does not move) before Bland's rule takes over.
STALL_PIVOTS = 50


@dataclass
class ExactAnswer:
    """The exact answer for rows ``x`` (examples x features) and targets ``t`` in {-1, +1}.

    separable: whether a strict separator exists.
    weight, bias: when separable, an exact separator with t_i (weight.x_i + bias) >= 1 for every i.
    mu: when not separable, exact weights >= 0 (one per example, each class summing to 1) whose
        two class averages coincide.
    pivots: simplex pivots taken.
    """

    separable: bool
    weight: list[Fraction] | None = None
    bias: Fraction | None = None
    mu: list[Fraction] | None = None
    pivots: int = 0


def exact_separation(x: np.ndarray, t: np.ndarray, max_work: int | None = None) -> ExactAnswer | str:
    """Decide exactly whether the classes of ``t`` (+1 / -1, both present) are strictly separable
    by a hyperplane in the float64 data ``x``; return the certificate (:class:`ExactAnswer`), or
    ``"too large"`` when the simplex would take more than ``max_work`` (default
    :data:`MAX_SIMPLEX_WORK`) limb operations."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    m, n = x.shape
    if not (np.any(t > 0) and np.any(t < 0)):
        raise ValueError("exact_separation needs examples of both classes (targets +1 and -1)")
    budget = MAX_SIMPLEX_WORK if max_work is None else max_work

    # Rows: the coordinates that are not zero on every example, then the two class sums.
    signed = x.T * t
    coords = np.flatnonzero(np.any(signed != 0, axis=1))
    r = len(coords) + 2
    ops_per_pivot = (r + 1) * (m + r + 1)
    # A phase 1 here takes at least about 2r pivots, on entries of about r 64-bit limbs.
    if ops_per_pivot * 2 * r * (1 + r) > budget:
        return "too large"
    # A float row is an integer row times a power of two; that power maps multipliers back.
    rows, scales = [], []
    for j in coords:
        ints, scale = integer_row(list(signed[j]) + [0.0])
        rows.append(ints)
        scales.append(scale)
    rows.append([int(v > 0) for v in t] + [1])
    rows.append([int(v < 0) for v in t] + [1])

    # Tableau [A | I | b] over an objective row [-1.A | 0 | -1.b] (reduced costs of phase 1,
    # whose cost is 1 on each artificial, and minus its value); basis: the artificials.
    tab = np.zeros((r + 1, m + r + 1), dtype=object)
    for i, row in enumerate(rows):
        tab[i, :m] = row[:m]
        tab[i, m + i] = 1
        tab[i, -1] = row[m]
    tab[r] = -tab[:r].sum(axis=0)
    tab[r, m:m + r] = 0
    basis = list(range(m, m + r))
    denom, pivots, work, stalled = 1, 0, 0, 0
    while True:
        # The example column with the most negative reduced cost enters (denom > 0, so the
        # integer entries order as the values do); artificials never re-enter. After
        # STALL_PIVOTS degenerate pivots in a row, Bland's rule (the first negative column, ties
        # in the ratio test to the lowest basic index) takes over, and the simplex cannot cycle.
        costs = tab[r, :m]
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
        work += ops_per_pivot * (1 + int(denom).bit_length() // 64)
        if work > budget:
            return "too large"
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
        return ExactAnswer(False, mu=mu, pivots=pivots)

    # Positive optimum. The multiplier of row k is y_k = 1 - (reduced cost of its artificial);
    # on the integer rows, so coordinate j's is y_k times that row's power of two.
    y = [1 - Fraction(int(tab[r, m + k]), int(denom)) for k in range(r)]
    v = [Fraction(0)] * n
    for k, j in enumerate(coords):
        v[j] = y[k] * scales[k]
    c_pos, c_neg = y[-2], y[-1]
    half_gap = (c_pos + c_neg) / 2  # > 0: the optimum y.b
    weight = [-vj / half_gap for vj in v]
    bias = (c_neg - c_pos) / 2 / half_gap
    return ExactAnswer(True, weight=weight, bias=bias, pivots=pivots)
