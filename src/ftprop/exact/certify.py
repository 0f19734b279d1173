"""Exact checks of a separability LP's certificates, in rational arithmetic.

An LP solved in float64 with HiGHS' tolerances (1e-7) can call two classes "intersecting" when
they are only very close: points 1e-9 apart look like one point. Every float64 number is a
rational, so both certificates can be checked exactly on the data as given:

* a separator (w, b): t_i (w.x_i + b) > 0 for every example. The float64 dot product is within
  a known bound of the exact one, so only the rows whose float value is inside that bound are
  recomputed in rationals (usually none).
* a hull-intersection witness: the float lambda names a few examples (its support); on those,
  the equations "each class's weights sum to 1 and the two weighted averages coincide" are
  solved exactly (fraction-free Gaussian elimination over the integers), and the solution must
  be >= 0.

The elimination costs about rows x support^2 big-integer operations, so :func:`exact_hull_weights`
gives up (returns ``"too large"``) above :data:`MAX_EXACT_WORK`; the caller then falls back to a
float64 tolerance check and says so.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = ["separator_holds", "exact_signs", "exact_scores", "rational_separator_holds", "witness_holds",
           "exact_hull_weights", "fraction_free_echelon", "integer_row", "MAX_EXACT_WORK"]

# rows x support^2 of the elimination: 3e6 big-integer operations take a few seconds.
MAX_EXACT_WORK = 3_000_000
_EPS = np.finfo(np.float64).eps
_TINY = 2.0**-1074  # the smallest subnormal: products below it round to a multiple of it


def _scores_and_bounds(x: np.ndarray, w: np.ndarray, b) -> tuple[np.ndarray, np.ndarray]:
    """Float64 scores x @ w + b (w of shape (n,) or (n, k)) and a bound on their rounding error,
    whatever the order of summation: |fl(x.w + b) - (x.w + b)| <= gamma_(n+1) (sum_j |x_j w_j| +
    |b|) + (n + 2) * tiny, where gamma_k = k u / (1 - k u) and the last term covers products that
    underflow. A score that overflows (inf, or nan from inf - inf) gets an infinite bound."""
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        s = x @ w + b
        bound = (x.shape[1] + 2) * (_EPS * (np.abs(x) @ np.abs(w) + np.abs(b)) + _TINY)
        return s, np.where(np.isfinite(s) & np.isfinite(bound), bound, np.inf)


def separator_holds(x: np.ndarray, t: np.ndarray, w: np.ndarray, b: float) -> bool:
    """Exactly: t_i (w.x_i + b) > 0 for every row i of ``x`` (``t`` in {-1, +1})."""
    if not (np.all(np.isfinite(w)) and np.isfinite(b)):
        return False
    s, bound = _scores_and_bounds(x, w, b)
    doubtful = np.flatnonzero(~(t * s > bound))
    return all(int(t[i]) * value > 0 for i, value in zip(doubtful, exact_scores(x[doubtful], w, b)))


def exact_signs(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """+1 where the exact score w_j.x_i + b_j > 0, else -1 (sign(0) = -1), for x (m, n), w (k, n)
    and b (k,) in float64: the float64 scores decide, except those within their rounding bound of
    0 (or not finite), which are recomputed in Fractions. So the answer does not depend on the
    order in which the products are summed."""
    s, bound = _scores_and_bounds(x, w.T, b)
    out = np.where(s > 0, 1.0, -1.0)
    finite = np.all(np.isfinite(w), axis=1) & np.isfinite(b) & np.all(np.isfinite(x), axis=1)[:, None]
    for i, j in zip(*np.nonzero(~(np.abs(s) > bound) & finite)):  # (non-finite weights keep the float answer)
        out[i, j] = 1.0 if exact_scores(x[i:i + 1], w[j], b[j])[0] > 0 else -1.0
    return out


def exact_scores(x: np.ndarray, weight, bias=0) -> list[Fraction]:
    """weight.x_i + bias for every row of ``x``, in exact rational arithmetic (``weight`` and
    ``bias`` as floats or Fractions)."""
    w = [Fraction(v) for v in weight]
    b = Fraction(bias)
    return [sum((Fraction(float(v)) * wj for v, wj in zip(row, w) if v != 0 and wj != 0), b) for row in x]


def rational_separator_holds(x: np.ndarray, t: np.ndarray, weight, bias) -> bool:
    """Exactly: t_i (weight.x_i + bias) > 0 for every row i with t_i != 0, for a separator given
    in Fractions or floats (e.g. ``Separation.exact_separator``)."""
    keep = np.flatnonzero(np.asarray(t) != 0)
    return all(int(t[i]) * value > 0 for i, value in zip(keep, exact_scores(np.asarray(x)[keep], weight, bias)))


def witness_holds(x: np.ndarray, t: np.ndarray, mu) -> bool:
    """Exactly: ``mu`` (one weight per row, e.g. ``Separation.exact_witness``) is >= 0, sums to 1
    over each class (t = +1, t = -1; rows with t = 0 must weigh 0), and gives both classes the same
    weighted average: a point common to their convex hulls."""
    mu = [Fraction(v) for v in mu]
    if len(mu) != len(x) or any(v < 0 for v in mu) or any(v != 0 for v, ti in zip(mu, t) if ti == 0):
        return False
    if sum(v for v, ti in zip(mu, t) if ti > 0) != 1 or sum(v for v, ti in zip(mu, t) if ti < 0) != 1:
        return False
    used = [i for i, v in enumerate(mu) if v != 0]
    return all(sum(mu[i] * int(t[i]) * Fraction(float(x[i, j])) for i in used) == 0 for j in range(x.shape[1]))


def exact_hull_weights(x: np.ndarray, t: np.ndarray, lam: np.ndarray) -> list[Fraction] | str | None:
    """Exact weights, >= 0 and zero outside the support of ``lam``, that make a point common to
    the two classes' convex hulls: sum_pos mu_i x_i = sum_neg mu_i x_i, each class summing to 1.

    ``lam`` is the float witness (one entry per row of ``x``). Returns the exact weights (a list
    of Fractions, one per row), None when no such weights exist on that support (the witness was
    a float64 artefact), or ``"too large"`` when the elimination would be too costly.
    """
    support = np.flatnonzero(lam > 1e-12 * max(1.0, float(np.max(lam, initial=0.0))))
    pos = [i for i in support if t[i] > 0]
    neg = [i for i in support if t[i] < 0]
    if not pos or not neg:
        return None
    k, n = len(support), x.shape[1]
    if (n + 2) * k * k > MAX_EXACT_WORK:
        return "too large"
    # Columns: the support's examples, then the right-hand side; rows: the n coordinates (those
    # not zero on the whole support), then the two class sums. Each row is scaled by a power of
    # two to integers (a float is an integer times a power of two), so the elimination runs on
    # Python integers without the gcd of every fraction operation.
    cols = pos + neg
    sign = np.array([1.0] * len(pos) + [-1.0] * len(neg))
    coords = x[cols].T * sign
    coords = coords[np.any(coords != 0, axis=1)]
    rows = [integer_row(list(r) + [0.0])[0] for r in coords]
    rows.append([1] * len(pos) + [0] * len(neg) + [1])
    rows.append([0] * len(pos) + [1] * len(neg) + [1])
    a = np.array(rows, dtype=object)
    pivots = fraction_free_echelon(a, k)
    if any(not a[r, :k].any() and a[r, k] != 0 for r in range(len(pivots), len(a))):
        return None  # inconsistent: no common point on this support
    # Free columns keep the float witness' value (as an exact rational); pivots follow from them.
    values = [Fraction(0)] * k
    pivot_cols = {c for _, c in pivots}
    for c in range(k):
        if c not in pivot_cols:
            values[c] = Fraction(float(lam[cols[c]]))
    for r, c in reversed(pivots):
        rest = sum((int(a[r, j]) * values[j] for j in range(c + 1, k) if a[r, j] != 0), Fraction(0))
        values[c] = (int(a[r, k]) - rest) / int(a[r, c])
    if any(v < 0 for v in values):
        return None
    mu = [Fraction(0)] * len(x)
    for i, v in zip(cols, values):
        mu[i] = v
    return mu


def integer_row(values: list[float]) -> tuple[list[int], int]:
    """The row times the smallest power of two that makes every entry an integer, and that power."""
    ratios = [float(v).as_integer_ratio() for v in values]
    scale = max(q for _, q in ratios)  # every q is a power of two: the largest is their lcm
    return [p * (scale // q) for p, q in ratios], scale


def fraction_free_echelon(a: np.ndarray, k: int) -> list[tuple[int, int]]:
    """Reduce the integer matrix ``a`` (an object array; its first ``k`` columns are the
    unknowns) in place to row echelon form by Bareiss' fraction-free elimination, whose every
    division is exact; return the (row, column) of each pivot. Columns without a pivot are skipped."""
    pivots: list[tuple[int, int]] = []
    prev, r = 1, 0
    for c in range(k):
        if r == len(a):
            break
        nonzero = np.flatnonzero(a[r:, c] != 0)
        if len(nonzero) == 0:
            continue
        p = r + int(nonzero[0])
        if p != r:
            a[[r, p]] = a[[p, r]]
        head = a[r, c]
        below = a[r + 1:]
        a[r + 1:] = (below * head - np.outer(below[:, c], a[r])) // prev
        pivots.append((r, c))
        prev, r = head, r + 1
    return pivots
