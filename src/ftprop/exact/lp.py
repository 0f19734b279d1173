"""Linear separability of one unit's problem, decided by an LP (SciPy's HiGHS).

A sign unit outputs +1 if w.h + b > 0 else -1. A dichotomy (inputs h_i, targets t_i) is
realisable by one unit iff the LP

    find w, b   with   t_i (w.h_i + b) >= 1   for every example i

is feasible: a margin-1 solution is a strict separator, and any strict separator of a finite
set can be scaled to margin 1. When the LP is infeasible, the proof is the alternative of
Farkas: weights lambda >= 0 on the examples, summing to 1 on each class, with
sum_pos lambda_i h_i = sum_neg lambda_i h_i, i.e. a point common to the convex hulls of the two
classes (for contradictory examples, the shared input itself).

:func:`separable` is the public, careful entry point (it deduplicates rows, drops constant
columns, rescales, and returns a checked certificate either way: exactly checked, or flagged). :func:`margin_lp` is the
bare LP the search calls many times on inputs it has already cleaned.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.optimize import linprog

from .certify import exact_hull_weights, exact_scores, separator_holds
from .rational import ExactAnswer, exact_separation

__all__ = ["Separation", "separable", "margin_lp", "conflict_lp", "NumericalTrouble"]

# A separator is accepted when every example is on its side by at least this much (the LP
# asks for 1; HiGHS' feasibility tolerance is 1e-7, so anything far below 1 is numerical trouble).
ACCEPT_MARGIN = 0.5
# A hull-intersection witness that cannot be checked exactly (too large for certify.MAX_EXACT_WORK,
# or exact only up to rounding) is accepted, flagged inexact, when its float64 residual is below
# this, relative to the inputs' largest magnitude.
WITNESS_TOL = 1e-6


class NumericalTrouble(RuntimeError):
    """The LP's answer could not be verified in float64 (neither a separator nor a witness checks out)."""


@dataclass
class Separation:
    """The answer to "is this dichotomy linearly separable?", with its certificate.

    separable: True, False.
    weight, bias: when separable, a separator with t_i (weight.x_i + bias) >= margin > 0.
    margin: min_i t_i (weight.x_i + bias) on the given examples, in float64 (about 1 for the LP's separators).
    witness: when not separable, lambda >= 0 over the given examples (0 for those not used),
        summing to 1 over each class, whose two class averages coincide (at ``point``).
    point: the common point of the two convex hulls.
    reason: one line of explanation.
    exact: whether the certificate was checked in exact rational arithmetic on the given data
        (always for a separator; for a witness unless it was too large for that or holds only
        to float64 tolerance, see :mod:`.certify`).
    exact_witness: when not separable and ``exact``, the witness in Fractions (``witness`` is its
        float64 rounding, which may not be an exact common point itself).
    exact_separator: (weight, bias) in Fractions, with t_i (weight.x_i + bias) >= 1 exactly, when
        the rational LP found the classes separable but the float64 rounding of its separator
        fails (some example is not strictly on its side, exactly or as float64 computes it):
        then ``weight`` and ``bias`` are that rounding. When None, a separable answer's
        ``weight`` and ``bias`` separate every example both exactly and in float64 arithmetic.
    """

    separable: bool
    weight: np.ndarray | None = None
    bias: float | None = None
    margin: float | None = None
    witness: np.ndarray | None = None
    point: np.ndarray | None = None
    reason: str = ""
    exact: bool = True
    exact_witness: list[Fraction] | None = None
    exact_separator: tuple[list[Fraction], Fraction] | None = None

    def __bool__(self) -> bool:
        return self.separable


try:  # SciPy's own HiGHS binding: ~10x less overhead per small LP than linprog. Private, so optional.
    from scipy.optimize._highspy import _core as _hc

    _hc.HighsLp, _hc._Highs, _hc.MatrixFormat.kRowwise, _hc.HighsModelStatus.kOptimal  # noqa: B018
except (ImportError, AttributeError):  # pragma: no cover - depends on the SciPy build
    _hc = None


def _solve_direct(rows: np.ndarray, want_ray: bool) -> tuple[str, np.ndarray | None]:
    """rows @ v >= 1 with v free, through HiGHS directly. Returns ("optimal", v),
    ("infeasible", dual ray or None) or (HiGHS' status text, None) when it did not decide."""
    m, n = rows.shape
    lp = _hc.HighsLp()
    lp.num_col_, lp.num_row_ = n, m
    lp.col_cost_ = np.zeros(n)
    lp.col_lower_ = np.full(n, -_hc.kHighsInf)
    lp.col_upper_ = np.full(n, _hc.kHighsInf)
    lp.row_lower_ = np.ones(m)
    lp.row_upper_ = np.full(m, _hc.kHighsInf)
    mat = lp.a_matrix_
    mat.format_ = _hc.MatrixFormat.kRowwise
    mat.num_col_, mat.num_row_ = n, m
    mat.start_ = np.arange(0, m * n + 1, n, dtype=np.int32)
    mat.index_ = np.tile(np.arange(n, dtype=np.int32), m)
    mat.value_ = np.ascontiguousarray(rows, dtype=np.float64).ravel()
    h = _hc._Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    if status == _hc.HighsModelStatus.kOptimal:
        return "optimal", np.array(h.getSolution().col_value, dtype=np.float64)
    if status == _hc.HighsModelStatus.kInfeasible:
        ray = None
        if want_ray:
            _, has, y = h.getDualRay()
            ray = np.asarray(y, dtype=np.float64) if has else None
        return "infeasible", ray
    return h.modelStatusToString(status), None


def _solve_rows(rows: np.ndarray, want_ray: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(separator or None, dual ray or None) for rows @ v >= 1; the separator is checked."""
    m, n = rows.shape
    kind, val = _solve_direct(rows, want_ray) if _hc is not None else ("not run", None)
    if kind == "infeasible":
        return None, val
    if kind == "optimal" and np.min(rows @ val) >= ACCEPT_MARGIN:
        return val, None
    # Fallbacks for the rare LP that HiGHS' default path does not settle: dual simplex, interior
    # point, then a box-bounded variant (bounded away from numerically huge separators).
    messages = [kind if kind != "optimal" else "separator failed the float64 check"]
    for method, box in (("highs-ds", None), ("highs-ipm", None), ("highs-ds", 1e6)):
        res = linprog(np.zeros(n), A_ub=-rows, b_ub=-np.ones(m), bounds=(None, None) if box is None else (-box, box),
                      method=method)
        if res.status == 2 and box is None:
            return None, None
        if res.status == 0:
            val = np.asarray(res.x, dtype=np.float64)
            if np.min(rows @ val) >= ACCEPT_MARGIN:
                return val, None
            messages.append(f"{method}: separator failed the float64 check")
        else:
            messages.append(f"{method}: {res.message}")
    raise NumericalTrouble("HiGHS could not decide a separability LP: " + "; ".join(messages))


def _lp_rows(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The rows t_i [x_i, 1] of the separability LP rows @ [w, b] >= 1."""
    return targets[:, None] * np.hstack([inputs, np.ones((len(inputs), 1))])


def margin_lp(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
    """Solve t_i (w.x_i + b) >= 1; return [w, b] (length n+1) or None if infeasible.

    No cleaning: the caller (the search) feeds it deduplicated, consistent rows of moderate
    scale (±1 codes or rescaled data). A returned separator is checked in float64.
    Raises NumericalTrouble if HiGHS neither finds a checked solution nor proves infeasibility.
    """
    rows = _lp_rows(inputs, targets)
    return _solve_rows(rows)[0]


def _ray_weights(rows: np.ndarray, targets: np.ndarray, y: np.ndarray | None) -> np.ndarray | None:
    """The Farkas ray y (y >= 0, y.rows = 0, rows = t_i [x_i, 1]) as hull weights: y scaled so
    that each class sums to 1 (the bias column makes the two sums equal). None if y is no such ray."""
    if y is None or len(y) != len(rows):
        return None
    if y.sum() < 0:
        y = -y
    scale = np.abs(y).max()
    if not scale > 0 or y.min() < -1e-9 * scale:
        return None
    y = np.where(y > 1e-9 * scale, y / scale, 0.0)
    if np.abs(y @ rows).max() > 1e-9 * max(1.0, np.abs(rows).max()) * len(rows):
        return None
    total = y[targets > 0].sum()
    return y / total if total > 0 and y[targets < 0].sum() > 0 else None


def conflict_lp(inputs: np.ndarray, targets: np.ndarray, exact_inputs: np.ndarray | None = None,
                to_inputs=None, deadline: float | None = None) -> tuple[np.ndarray | None, np.ndarray, str]:
    """Like :func:`margin_lp`; when infeasible, also the indices of the examples in an
    infeasibility certificate (a small subset whose two classes' convex hulls already intersect),
    and how far that answer is proved: ``"exact"``, ``"float"``, ``"thin"`` or ``"doubtful"``.

    The certificate is checked exactly (:mod:`.certify`) on ``exact_inputs`` (the same examples
    before any rescaling, ``inputs`` being an affine image of them; default ``inputs``). When it
    fails that check, the LP is decided in rational arithmetic (:mod:`.rational`) if it is small
    enough: a common point found there is exact, and a separator found there is mapped to
    ``inputs`` by ``to_inputs(w, b) -> (w, b)`` (default: unchanged) and returned, scaled to
    margin 1, if it still separates them in float64 (else the rational LP runs on ``inputs``
    themselves). An answer "separable" proved exactly, with no float64 separator of ``inputs``
    found, is returned as a conflict of every example, marked ``"thin"``. Otherwise (too large)
    a float witness too large to check exactly is confirmed by solving the LP of its examples
    alone instead (or, if that LP is feasible, every example is blamed), marked ``"float"``; if
    every witness failed its exact check, the float64 LP's "infeasible" is suspect: every example
    is blamed, marked ``"doubtful"``. A rational LP still running at ``deadline`` (a
    ``time.perf_counter()`` value) raises :class:`.rational.DeadlineReached`.
    """
    rows = _lp_rows(inputs, targets)
    sol, ray = _solve_rows(rows, want_ray=True)
    if sol is not None:
        return sol, np.empty(0, dtype=np.int64), "exact"
    exact_inputs = inputs if exact_inputs is None else exact_inputs

    def witnesses():  # the ray, then (if it fails the exact check) the hull LP over all the examples
        yield _ray_weights(rows, targets, ray)
        yield _hull_weights(inputs, targets)

    approximate = None  # a witness too large to check exactly (one that fails the check is dropped)
    for lam in witnesses():
        if lam is None:
            continue
        mu = exact_hull_weights(exact_inputs, targets, lam)
        if isinstance(mu, list):
            return None, np.array([i for i, v in enumerate(mu) if v != 0], dtype=np.int64), "exact"
        if mu == "too large":
            approximate = lam
            break
    answer = exact_separation(exact_inputs, targets, deadline=deadline)  # decided in rationals, if small enough
    if isinstance(answer, ExactAnswer) and not answer.separable:
        return None, np.array([i for i, v in enumerate(answer.mu) if v != 0], dtype=np.int64), "exact"
    if isinstance(answer, ExactAnswer):
        def exact_answers():  # the boxed LP runs only if the first separator is not taken
            yield answer
            yield exact_separation(exact_inputs, targets, box=True, deadline=deadline)

        def candidates():  # the exact separators of exact_inputs mapped to inputs, then one of inputs
            for other in exact_answers():
                if isinstance(other, ExactAnswer) and other.separable:
                    w, b = _float_separator(other.weight, other.bias)
                    with np.errstate(over="ignore", invalid="ignore"):
                        yield to_inputs(w, b) if to_inputs is not None else (w, b)
            if exact_inputs is not inputs:
                on_inputs = exact_separation(inputs, targets, box=True, deadline=deadline)
                if isinstance(on_inputs, ExactAnswer) and on_inputs.separable:
                    yield _float_separator(on_inputs.weight, on_inputs.bias)

        for w, b in candidates():
            sol = _margin_one(rows, np.append(w, b))
            if sol is None:
                refit = _refit(inputs, targets, w)
                sol = None if refit is None else _margin_one(rows, np.append(*refit))
            if sol is not None:
                return sol, np.empty(0, dtype=np.int64), "exact"
        return None, np.arange(len(rows)), "thin"
    if approximate is None:  # every witness failed its exact check, and the rational LP is too large
        return None, np.arange(len(rows)), "doubtful"
    support = np.flatnonzero(approximate > 0)
    if len(support) < len(rows) and _solve_rows(rows[support])[0] is not None:
        support = np.arange(len(rows))
    return None, support, "float"


def _margin_one(rows: np.ndarray, sol: np.ndarray) -> np.ndarray | None:
    """``sol`` scaled by a power of two (exact, unless it overflows) to a float64 margin near 1 on
    ``rows``, if it separates them (rows @ sol > 0) in float64 before and after; else None."""
    with np.errstate(all="ignore"):
        if not np.all(np.isfinite(sol)) or not np.min(rows @ sol) > 0:
            return None
        scaled = sol * 2.0 ** -np.round(np.log2(np.min(rows @ sol)))
        if np.all(np.isfinite(scaled)) and np.min(rows @ scaled) > 0:
            return scaled
        return sol


def _float_separator(weight: list[Fraction], bias: Fraction) -> tuple[np.ndarray, float]:
    """An exact separator rounded to float64, after scaling by a power of two (which changes no
    sign) so that its largest entry is about 1: the rounding cannot overflow."""
    big = max(abs(v) for v in [*weight, bias])
    if big == 0:
        return np.zeros(len(weight)), 0.0
    scale = Fraction(2) ** (big.denominator.bit_length() - big.numerator.bit_length())
    return np.array([float(v * scale) for v in weight]), float(bias * scale)


def _hull_weights(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
    """lambda >= 0, one per example, summing to 1 over each class (targets +1 / -1), whose two
    class averages coincide; None if the LP finds none."""
    n = inputs.shape[1]
    a_eq = np.vstack([inputs.T * targets, targets > 0, targets < 0]).astype(np.float64)
    b_eq = np.zeros(n + 2)
    b_eq[n:] = 1.0
    res = linprog(np.zeros(len(inputs)), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    return np.asarray(res.x, dtype=np.float64)


def _as_problem(inputs, targets) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(inputs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"inputs must be a 2-D array (examples x features), got shape {x.shape}")
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise ValueError(f"targets must be a vector with one entry per example, got shape {t.shape}")
    if len(t) != len(x):
        raise ValueError(f"inputs have {len(x)} examples but targets have {len(t)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("inputs contain NaN or infinity")
    if not np.all(np.isin(t, (-1.0, 0.0, 1.0))):
        raise ValueError("targets must be -1 or +1 (0 = ignore this example)")
    return x, t


def scaled_coordinates(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Coordinates z = (x - mean) / spread for the LPs of distinct rows ``x`` (constant columns
    dropped), and (mean, spread, cols) to map a separator between them. z is centred and scaled
    into [-1, 1] (the same dichotomies, better conditioned LPs) unless rounding there merges two
    values of a column or overflows, as when 0 and 1e-300 sit beside 1e300; then x is scaled by
    powers of two only (exact unless it underflows), and failing that used as it is."""
    m, n = x.shape
    cols = np.any(x != x[:1], axis=0)
    distinct = [len(np.unique(x[:, j])) for j in np.flatnonzero(cols)]
    with np.errstate(all="ignore"):
        centre = x.mean(0)
        power = np.where(cols, 2.0 ** np.minimum(np.frexp(np.abs(x).max(0))[1], 1023), 1.0)
        for shift, spread in ((centre, np.abs(x - centre).max(0)), (np.zeros(n), power), (np.zeros(n), np.ones(n))):
            mean = np.where(cols, shift, x[0])  # a dropped constant column goes into the bias
            z = (x[:, cols] - mean[cols]) / spread[cols]
            if (np.all(np.isfinite(z)) and np.all(np.isfinite(mean))
                    and [len(np.unique(c)) for c in z.T] == distinct):
                break
    return z, (mean, spread, cols)


def separable(inputs, targets) -> Separation:
    """Is there a sign unit (w, b) with sign(w.x_i + b) = t_i for every example? With a certificate.

    ``inputs`` is (m, n) real, ``targets`` (m,) in {-1, +1}; a target 0 means "no target" and
    the example is ignored. Duplicate rows, constant columns and badly scaled columns are
    handled; contradictory examples (same input, different targets) are infeasible at once.
    The returned separator or witness is checked in exact rational arithmetic on the given data
    (:mod:`.certify`). When the LP's answer fails that check, it is solved again in whitened
    coordinates, then, if the problem is small enough, decided in exact rational arithmetic
    (:mod:`.rational`): classes closer than float64's LP resolves still get an exact answer
    (a separator too thin for float64 weights comes in ``exact_separator``). Beyond that size, a
    witness that holds only to float64 tolerance, or is too large to check exactly, is returned
    with ``exact=False``. With no checked answer at all, :class:`NumericalTrouble` is raised
    rather than a guess returned.
    """
    x, t = _as_problem(inputs, targets)
    m, n = x.shape
    keep = np.flatnonzero(t != 0)
    if len(keep) == 0 or np.all(t[keep] == t[keep[0]]):
        sign = 1.0 if len(keep) == 0 else float(t[keep[0]])
        return Separation(True, np.zeros(n), sign, 1.0, reason="one class (or no examples): a constant unit")
    xk, tk = x[keep], t[keep]

    # Duplicate rows: one representative each; two targets for one input is a contradiction.
    uniq, first, inverse = np.unique(xk, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    lo = np.full(len(uniq), np.inf)
    hi = np.full(len(uniq), -np.inf)
    np.minimum.at(lo, inverse, tk)
    np.maximum.at(hi, inverse, tk)
    clash = np.flatnonzero(lo != hi)
    if len(clash):
        u = clash[0]
        members = np.flatnonzero(inverse == u)
        i_pos = keep[members[tk[members] > 0][0]]
        i_neg = keep[members[tk[members] < 0][0]]
        lam = np.zeros(m)
        lam[[i_pos, i_neg]] = 1.0
        return Separation(False, witness=lam, point=x[i_pos].copy(), exact_witness=[Fraction(v) for v in lam],
                          reason=f"contradictory examples {i_pos} and {i_neg}: same input, different targets")
    tu = lo  # the (consistent) target of each distinct row

    # Constant columns carry no information (the bias absorbs them); rescale the others to O(1).
    z, (mean, spread, cols) = scaled_coordinates(uniq)
    cols = np.flatnonzero(cols)  # not empty: the rows are distinct

    # First on z; if its certificate fails the exact check, once more in whitened coordinates,
    # where a direction in which the data barely varies is stretched to unit spread.
    approximate = None  # the first common point that holds in float64 only
    for make_view in (_plain, _whitened):
        view, to_z = make_view(z)
        sol = margin_lp(view, tu)
        if sol is not None:
            w_z, b_z = to_z(sol[:-1], sol[-1])
            w = np.zeros(n)
            with np.errstate(over="ignore", invalid="ignore"):
                w[cols] = w_z / spread[cols]
                b = float(b_z - np.dot(w_z, mean[cols] / spread[cols]))
            if _usable(xk, tk, w, b):
                return Separation(True, w, b, float(np.min(tk * (xk @ w + b))),
                                  reason="margin-1 separator found by the LP, checked exactly")
            continue
        lam_u = _hull_weights(view, tu)
        if lam_u is None:
            continue
        lam = np.zeros(m)
        lam[keep[first]] = lam_u
        mu = exact_hull_weights(x, t, lam)
        if isinstance(mu, list):
            lam = np.array([float(v) for v in mu])
            return Separation(False, witness=lam, point=(lam * (t > 0)) @ x, exact_witness=mu,
                              reason="the convex hulls of the two classes intersect (a common point, checked exactly)")
        if approximate is None:  # (not ``or``: a Separation of non-separable classes is falsy)
            approximate = _float_witness(x, t, lam, "too large to check exactly" if mu == "too large" else
                                         "not exact: classes this close may be separable by less than "
                                         "float64 resolves")
        if mu == "too large":
            break
    # Neither view gave a certificate that checks exactly: decide the LP in rationals, if small.
    answer = exact_separation(uniq, tu)
    if isinstance(answer, ExactAnswer):
        return _from_exact(answer, x, t, xk, tk, keep[first], lambda: exact_separation(uniq, tu, box=True))
    if approximate is not None:
        return approximate
    raise NumericalTrouble("the separability LP could not be settled in float64: the two classes come within "
                           "HiGHS' tolerance (about 1e-7 of the data's spread) of each other, yet no checked "
                           "separator or common point was found. Inputs this close cannot be told apart in "
                           "float64: merge or round the nearly equal ones and try again")


def _usable(x: np.ndarray, t: np.ndarray, w: np.ndarray, b: float) -> bool:
    """A float64 separator that separates exactly and also when its scores are computed in float64."""
    with np.errstate(all="ignore"):
        return separator_holds(x, t, w, b) and bool(np.min(t * (x @ w + b)) > 0)


def _refit(x: np.ndarray, t: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Float64 weights along ``w`` and a bias that separate (x, t) exactly and in float64
    (:func:`_usable`), or None. The rounding of an exact separator often fails on its bias alone:
    the exact scores w.x_i leave an interval for b that holds no float64 number. So the weights
    are tried at a few scales (scores brought to about 1, then times 3, 5, 7, which moves the
    interval's ends off the float64 grid), each with the float64 bias inside its exact interval."""
    if not np.all(np.isfinite(w)) or not np.any(w):
        return None
    with np.errstate(all="ignore"):
        top = float(np.max(np.abs(x) @ np.abs(w)))
    unit = 2.0 ** float(np.clip(-np.round(np.log2(top)), -1000, 1000)) if np.isfinite(top) and top > 0 else 1.0
    for k in (1, 3, 5, 7):
        with np.errstate(all="ignore"):
            wk = w * (unit * k)
        if not np.all(np.isfinite(wk)):
            continue
        scores = exact_scores(x, wk)
        lo = max(-sc for sc, ti in zip(scores, t) if ti > 0)  # b > lo
        hi = min(-sc for sc, ti in zip(scores, t) if ti < 0)  # b < hi
        if not lo < hi:
            continue
        b = float((lo + hi) / 2)
        for _ in range(3):  # the rounding of the midpoint, then its neighbours toward the inside
            if lo < Fraction(b) < hi and _usable(x, t, wk, b):
                return wk, b
            b = float(np.nextafter(b, np.inf if Fraction(b) <= lo else -np.inf))
    return None


def _rounded(answer: ExactAnswer, xk, tk) -> tuple[np.ndarray, float]:
    """The float64 rounding of an exact separator, at margin about 1, refitted (:func:`_refit`)
    if it does not separate (xk, tk) exactly and in float64 (then it may still fail)."""
    w, b = _float_separator(answer.weight, answer.bias)
    scaled = _margin_one(_lp_rows(xk, tk), np.append(w, b))
    if scaled is not None:  # a power of two brings the margin to about 1 where that stays finite
        w, b = scaled[:-1], float(scaled[-1])
    if not _usable(xk, tk, w, b):
        w, b = _refit(xk, tk, w) or (w, b)
    return w, b


def _from_exact(answer: ExactAnswer, x, t, xk, tk, rows_of_uniq, boxed) -> Separation:
    """The Separation of an exact answer found on the distinct rows (row u is x[rows_of_uniq[u]]);
    ``boxed()`` gives the boxed exact separator, tried when this one does not round to float64."""
    why = "float64's LP could not settle classes this close"
    if not answer.separable:
        mu = [Fraction(0)] * len(x)
        for i, v in zip(rows_of_uniq, answer.mu):
            mu[i] = v
        lam = np.array([float(v) for v in mu])
        return Separation(False, witness=lam, point=(lam * (t > 0)) @ x, exact_witness=mu,
                          reason=f"the convex hulls of the two classes intersect (a common point found by an exact "
                                 f"rational LP, {why})")
    w, b = _rounded(answer, xk, tk)
    if not _usable(xk, tk, w, b):
        other = boxed()
        if isinstance(other, ExactAnswer):
            w2, b2 = _rounded(other, xk, tk)
            if _usable(xk, tk, w2, b2):
                w, b = w2, b2
    with np.errstate(all="ignore"):
        margin = float(np.min(tk * (xk @ w + b)))
    if _usable(xk, tk, w, b):
        return Separation(True, w, b, margin, reason=f"separator found by an exact rational LP ({why}), "
                                                     f"checked exactly")
    return Separation(True, w, b, margin, exact_separator=(answer.weight, answer.bias),
                      reason=f"separable, by an exact rational LP ({why}), but the float64 rounding of the exact "
                             f"separator (weight, bias) does not separate every example, exactly or in float64 "
                             f"arithmetic: exact_separator holds the exact one")


def _float_witness(x: np.ndarray, t: np.ndarray, lam: np.ndarray, why: str) -> Separation | None:
    """An infeasibility answer from a common point that holds to float64 tolerance only, or None."""
    point = (lam * (t > 0)) @ x
    resid = np.abs(point - (lam * (t < 0)) @ x).max() / max(1.0, np.abs(x).max())
    if resid > WITNESS_TOL:
        return None
    return Separation(False, witness=lam, point=point, exact=False,
                      reason=f"the convex hulls of the two classes intersect to float64 tolerance (a common point "
                             f"with residual {resid:.1e}; {why})")


def _plain(z: np.ndarray):
    return z, lambda w, b: (w, b)


def common_exponent(x: np.ndarray) -> int:
    """k such that x * 2^-k has its largest entry in [0.5, 1) when x's entries are so large or so
    small that squares, means or an SVD of them would overflow or underflow; else 0. Scaling by
    a power of two is exact and changes no order, no sign and no direction."""
    top = float(np.abs(x).max(initial=0.0))
    return int(np.frexp(top)[1]) if top > 2.0**400 or 0 < top < 2.0**-400 else 0


def _whitened(z: np.ndarray):
    """z in its principal axes, each scaled to unit spread (axes with no spread in float64
    dropped), and the map of a separator (w, b) there back to z."""
    k = common_exponent(z)
    z = np.ldexp(z, -k)  # keeps the mean and the SVD from overflowing
    centre = z.mean(axis=0)
    _, s, vt = np.linalg.svd(z - centre, full_matrices=False)
    axes = s > s[0] * max(z.shape) * np.finfo(np.float64).eps
    proj = vt[axes].T / s[axes]
    view = (z - centre) @ proj
    scale = np.abs(view).max(axis=0)
    proj = proj / scale
    view = view / scale

    def to_z(w, b):
        w_z = proj @ w
        return np.ldexp(w_z, -k), b - float(centre @ w_z)

    return view, to_z
