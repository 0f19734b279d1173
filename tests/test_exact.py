"""Algorithm 1 made exact (ftprop.exact): LP separability, target search, MILP cross-check, CLI."""

import functools
import importlib
import itertools
import json
import math
import subprocess
import sys
import time
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from ftprop import Sign
from ftprop.cli import main
from ftprop.exact import (
    SolveResult,
    certify,
    digits,
    feasibility_report,
    forward,
    load_weights,
    make_problem,
    parity,
    planted,
    rational,
    separable,
    solve,
    xor,
)
from ftprop.exact.certify import (
    exact_hull_weights,
    fraction_free_echelon,
    rational_separator_holds,
    separator_holds,
    witness_holds,
)
from ftprop.exact.lp import conflict_lp, scaled_coordinates
from ftprop.exact.network import dedupe
from ftprop.exact.rational import exact_separation
from ftprop.exact.search import luby, search_targets


def check_feasible(res: SolveResult, x, t):
    assert res.status == "feasible", res.message
    assert np.array_equal(res.predict(x), np.asarray(t, dtype=float).reshape(len(x), -1))
    widths = [w.shape[0] for w, _ in res.weights]
    assert widths[:-1] == res.hidden


# ---- separability LP ------------------------------------------------------------------------

def test_separable_returns_margin_certificate():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)) * [1.0, 1000.0, 1e-3]  # badly scaled columns
    w_true = np.array([1.0, -0.001, 500.0])
    t = np.where(x @ w_true + 0.2 > 0, 1.0, -1.0)
    sep = separable(x, t)
    assert sep and sep.margin > 0.5
    assert np.all(t * (x @ sep.weight + sep.bias) > 0)


def test_separable_xor_has_hull_witness():
    x, t = xor()
    sep = separable(x, t[:, 0])
    assert not sep
    lam = sep.witness
    assert np.all(lam >= 0)
    pos, neg = t[:, 0] > 0, t[:, 0] < 0
    assert lam[pos].sum() == pytest.approx(1) and lam[neg].sum() == pytest.approx(1)
    assert np.allclose(lam[pos] @ x[pos], lam[neg] @ x[neg])


def test_separable_duplicates_constants_contradictions_and_ignored():
    x = np.array([[0.0, 5.0], [0.0, 5.0], [1.0, 5.0], [2.0, 5.0]])  # duplicate row, constant column
    assert separable(x, [1, 1, -1, -1])
    bad = separable(x, [1, -1, -1, -1])  # rows 0 and 1: same input, different targets
    assert not bad and "contradictory" in bad.reason
    assert separable(x, [1, 0, -1, -1])  # target 0: example ignored
    assert separable(x, [1, 1, 1, 1]) and separable(np.zeros((0, 2)), [])
    with pytest.raises(ValueError, match="-1 or \\+1"):
        separable(x, [2, 1, 1, 1])



@pytest.mark.parametrize("gap", [1e-4, 1e-9, 1e-12])
def test_classes_a_tiny_gap_apart_are_separable(gap):
    # Two classes on a line, the closest pair ``gap`` apart off the line: the LP on rescaled
    # inputs sees the hulls touch within its tolerance; the whitened retry separates them.
    x = np.array([[0.0, 0.0], [1.0, 1.0], [1.0 + gap, 1.0], [2.0, 2.0]])
    t = np.array([-1.0, -1.0, 1.0, 1.0])
    sep = separable(x, t)
    assert sep and sep.exact
    assert separator_holds(x, t, sep.weight, sep.bias)


def check_exact_witness(x, t, mu):
    """mu >= 0, each class summing to 1, and the two weighted class averages equal, in Fractions."""
    assert all(v >= 0 for v in mu)
    assert sum(v for v, ti in zip(mu, t) if ti > 0) == 1 == sum(v for v, ti in zip(mu, t) if ti < 0)
    for j in range(x.shape[1]):
        col = [Fraction(float(v)) for v in x[:, j]]
        side = [sum(m * c for m, c, ti in zip(mu, col, t) if ti == s) for s in (1.0, -1.0)]
        assert side[0] == side[1]


def check_exact_separator(x, t, weight, bias):
    """t_i (weight.x_i + bias) >= 1 for every example, in Fractions."""
    for xi, ti in zip(x, t):
        assert int(ti) * sum((Fraction(float(v)) * Fraction(w) for v, w in zip(xi, weight)), Fraction(bias)) >= 1


def rank_deficient(seed=0, m=30):
    """Points on a 4-D subspace of 6-D up to rounding: exactly they are in general position."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, 4)) @ rng.standard_normal((4, 6)), np.where(rng.random(m) < 0.5, 1.0, -1.0)


def test_classes_closer_than_float64_resolves_are_decided_exactly():
    # Separable by a gap of 1e-12 that the float64 LPs cannot see (in either view): the rational
    # LP decides it and gives a separator that checks exactly.
    x = np.array([[0.0], [1.0], [1.0 + 1e-12], [2.0]])
    t = np.array([-1.0, -1.0, 1.0, 1.0])
    sep = separable(x, t)
    assert sep and sep.exact and "exact rational LP" in sep.reason and sep.exact_separator is None
    assert separator_holds(x, t, sep.weight, sep.bias)
    # A triangle and a point 1e-12 outside its long edge, among other points: no view helps the
    # float LP, which calls the hulls intersecting.
    pos = [[0, 0], [4, 0], [0, 4], [1, 1], [3, 0.5]]
    for eps, apart in ((1e-12, True), (1e-14, True), (0.0, False), (-1e-12, False)):
        xt = np.array(pos + [[2 + eps, 2 + eps], [5, 5], [6, 2], [2, 6]], dtype=float)
        tt = np.array([1.0] * 5 + [-1.0] * 4)
        sep = separable(xt, tt)
        assert bool(sep) == apart and sep.exact, (eps, sep.reason)
        if apart:
            assert separator_holds(xt, tt, sep.weight, sep.bias)
        else:
            check_exact_witness(xt, tt, sep.exact_witness)
    # Data on a subspace up to rounding: the float LP's common point is not exact, the rational
    # LP finds one that is.
    x6, t6 = rank_deficient()
    sep = separable(x6, t6)
    assert not sep and sep.exact
    check_exact_witness(x6, t6, sep.exact_witness)
    assert witness_holds(x6, t6, sep.exact_witness)
    moved = list(sep.exact_witness)
    i, j = [k for k, v in enumerate(moved) if v != 0 and t6[k] > 0][:2]
    moved[i], moved[j] = moved[i] + Fraction(1, 2**60), moved[j] - Fraction(1, 2**60)
    assert not witness_holds(x6, t6, moved)  # still sums to 1, but the averages differ


def test_problems_too_large_for_the_rational_lp_are_flagged_inexact(monkeypatch):
    monkeypatch.setattr(rational, "MAX_SIMPLEX_WORK", 0)
    sep = separable(np.array([[0.0], [1.0], [1.0 + 1e-12], [2.0]]), [-1, -1, 1, 1])
    assert not sep and not sep.exact and "float64 tolerance" in sep.reason
    assert separable(np.array([[0.0], [1.0], [1.0 + 1e-4], [2.0]]), [-1, -1, 1, 1]).exact
    sep = separable(*rank_deficient())
    assert not sep and not sep.exact


def test_a_separator_too_thin_for_float64_comes_exact():
    # Two points 2^53 apart and a third 1 beyond the midpoint of their segment: every separator
    # runs within about 2^-53 of parallel to the segment, and the float64 rounding of the exact one
    # puts the two points on its boundary.
    big = 2.0**53
    x = np.array([[big, 0.0], [0.0, big], [big / 2 + 1, big / 2]])
    t = np.array([1.0, 1.0, -1.0])
    sep = separable(x, t)
    assert sep and sep.exact and sep.exact_separator is not None and sep.margin <= 0
    assert not separator_holds(x, t, sep.weight, sep.bias)
    check_exact_separator(x, t, *sep.exact_separator)
    assert rational_separator_holds(x, t, *sep.exact_separator)
    assert not rational_separator_holds(x, t, sep.weight, sep.bias)


def test_extreme_magnitudes_and_offsets_get_checked_answers():
    # Tiny, huge and mixed magnitudes: the exact separator is rounded after scaling by a power
    # of two, so nothing overflows; every float separator returned separates exactly and in float64.
    cases = [(np.array([[-1e200], [0.0], [1e-200]]), np.array([1.0, 1.0, -1.0])),
             (np.array([[0.0, 0.0], [1e-300, 1e-300], [1e-300 + 1e-316, 1e-300], [2e-300, 2e-300]]),
              np.array([-1.0, -1.0, 1.0, 1.0])),
             (np.array([[1e8, 1e8 - 1e-8, 1e8 - 1e-8], [1e8 - 1e-8, 1e8 - 1e-8, 1e8], [1e8, 1e8, 1e8]]),
              np.array([1.0, -1.0, 1.0])),
             (np.array([[1e8 - 1e-8, 1e8, 1e8], [1e8, 1e8, 1e8], [1e8, 1e8 - 1e-8, 1e8]]), np.array([-1.0, 1.0, 1.0]))]
    for x, t in cases:
        sep = separable(x, t)
        assert sep and sep.exact and sep.exact_separator is None, sep.reason
        assert separator_holds(x, t, sep.weight, sep.bias) and sep.margin > 0
    # An offset of 1e3 and a constant column around a 1e-10 gap: the search finds the network.
    x = np.hstack([np.array([[0.0, 0.0], [1.0, 1.0], [1.0 + 1e-10, 1.0], [2.0, 2.0]]) + 1e3, np.full((4, 1), 0.1)])
    t = np.array([[-1.0], [-1.0], [1.0], [1.0]])
    check_feasible(solve(x, t, hidden=[1], heuristic="none", time_limit=20), x, t)


def test_search_says_when_a_conflict_is_separable_only_in_exact_arithmetic():
    # 12 points on a 4-D subspace of 6-D up to rounding: exactly separable, but the float64
    # rounding of the exact separator fails, in X and in the search's rescaled coordinates.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 4)) @ rng.standard_normal((4, 6))
    t = np.where(rng.random(12) < 0.5, 1.0, -1.0)
    sep = separable(x, t)
    assert sep and sep.exact_separator is not None and not separator_holds(x, t, sep.weight, sep.bias)
    assert rational_separator_holds(x, t, *sep.exact_separator)
    res = solve(x, t[:, None], hidden=[])
    assert res.status == "unknown" and res.stats["thin_conflicts"] == 1 and "float_conflicts" not in res.stats
    assert "infeasibility not proved" in res.message and "separable in exact arithmetic" in res.message


def test_search_keeps_examples_that_rescaling_would_merge():
    # Centring on the mean (about 3e299) rounds 0 and 1e-300 to the same z: the search must use
    # coordinates that keep them apart (here x itself), find the network, and order the examples
    # without overflowing their squared distances.
    x = np.array([[0.0], [1e-300], [1e300]])
    t = np.array([[1.0], [-1.0], [1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = solve(x, t, hidden=[2], heuristic="none")
        assert solve(x, t, hidden=[1], heuristic="none").status == "infeasible"
    check_feasible(res, x, t)
    assert "thin_conflicts" not in res.stats


def test_a_float64_conflict_whose_certificate_fails_proves_nothing():
    # The class is decided by column 0 alone, 0 against 1e-300, beside one 1e300 and 9 noise
    # columns: a plain threshold separates it. Centring rounds that column to one value (the rows
    # stay distinct through the noise), and the float64 LP's certificate then fails its exact
    # check on a problem too large for the rational LP. That used to give "infeasible".
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 10))
    x[:, 0] = np.where(np.arange(16) % 2, 1e-300, 0.0)
    x[0, 0] = 1e300
    t = np.where(x[:, 0] > 0, 1.0, -1.0)[:, None]
    z, _ = scaled_coordinates(x)
    assert len(np.unique(z[:, 0])) == 3  # the coordinates keep column 0's three values apart
    for hidden in ([], [1]):
        res = solve(x, t, hidden=hidden, heuristic="none", time_limit=30)
        assert res.status != "infeasible", res.message
        if res.status == "unknown":
            assert "infeasibility not proved" in res.message


def test_inputs_near_the_largest_float_do_not_overflow():
    # The mean of 1.6e308 and 1.7e308 overflows; the power-of-two scaling must not form 2^1024.
    x = np.array([[0.0], [1.6e308], [1.7e308]])
    xor = np.array([[1.7e308, 1.7e308], [-1.7e308, -1.7e308], [1.7e308, -1.7e308], [-1.7e308, 1.7e308]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        z, _ = scaled_coordinates(x)
        assert np.all(np.isfinite(z)) and len(np.unique(z)) == 3
        sep = separable(x, np.array([-1.0, 1.0, 1.0]))
        assert sep and sep.exact and separator_holds(x, np.array([-1.0, 1.0, 1.0]), sep.weight, sep.bias)
        check_feasible(solve(x, np.array([[-1.0], [1.0], [1.0]]), hidden=[]), x, np.array([[-1.0], [1.0], [1.0]]))
        txor = np.array([[-1.0], [-1.0], [1.0], [1.0]])
        check_feasible(solve(xor, txor, hidden=[2], heuristic="none"), xor, txor)


def test_forward_does_not_depend_on_the_order_of_summation():
    # A separator exact on every row, whose score on the last row (exactly 1e-300-ish) is far inside
    # float64's rounding error of products near 1e300: a matrix-vector and a matrix-matrix product
    # sum in different orders and disagree on its sign. forward decides such scores exactly.
    p = np.array(list(itertools.product([0.0, 1e-300], repeat=5)))
    x = np.vstack([p, [[1e300, -1e300, 1e300, -1e300, 1e300]]])
    t = np.where((x[:, 0] == 0) & (x[:, 1] == 0), 1.0, -1.0)
    t[-1] = 1
    sep = separable(x, t)
    assert sep and sep.exact and rational_separator_holds(x, t, sep.weight, sep.bias)
    one = forward([(sep.weight[None, :], np.array([sep.bias]))], x)
    two = forward([(np.vstack([sep.weight] * 2), np.array([sep.bias] * 2))], x)
    assert np.array_equal(one[:, 0], t) and np.array_equal(two, np.stack([t, t], axis=1))


def test_the_rational_lp_gives_a_separator_float64_can_round():
    # A point 1e-300 from the origin against the origin and (1e300, 1e300, 1e300). The phase-1
    # vertex without a box was about (-1e300, -1e300, 2e300): its weights cancel on the far point
    # to within 1e-300 of it, and no rounding of them separates. With the residual minimised in
    # l1 (every multiplier boxed), the separator has room to spare, and float64 keeps it.
    x = np.array([[0.0, 0.0, 1e-300], [0.0, 0.0, 0.0], [1e300, 1e300, 1e300]])
    t = np.array([1.0, -1.0, -1.0])
    sep = separable(x, t)
    assert sep and sep.exact and sep.exact_separator is None and separator_holds(x, t, sep.weight, sep.bias)
    # The same points in a network: XOR of the first two coordinates on {0, 1e-300}^3, plus the far point.
    p = np.vstack([np.array(list(itertools.product([0.0, 1e-300], repeat=3))), [[1e300] * 3]])
    tp = np.where((p[:, 0] > 0) != (p[:, 1] > 0), 1.0, -1.0)[:, None]
    check_feasible(solve(p, tp, hidden=[2], heuristic="none", time_limit=30), p, tp)


def test_conflict_lp_returns_only_separators_that_hold_on_its_rows():
    # Rank 1 up to rounding: the exact separator of x, mapped to the rescaled z, has a float64
    # margin of about 1e-17 there; scaling it to margin 1 must not flip any sign.
    x = np.array([[-1.4083328061408549, -0.07467254619905009], [-0.78334599906135, -0.0415345293738044],
                  [-0.7619779739761969, -0.04040155509855062], [-0.23806565541377844, -0.012622704359919981],
                  [0.30758296379650085, 0.016308647341016218], [1.7339297351086538, 0.09193632903120626]])
    t = np.array([1.0, -1.0, 1.0, -1.0, -1.0, -1.0])
    mean, spread = x.mean(0), np.abs(x - x.mean(0)).max(0)
    z = (x - mean) / spread
    sol, support, how = conflict_lp(z, t, x, lambda w, b: (w * spread, b + float(w @ mean)))
    assert how == "exact" and len(support) == 0
    assert np.all(t * (z @ sol[:-1] + sol[-1]) > 0)


def test_a_separator_whose_rounding_fails_is_refitted():
    # The exact separators found round to w = -1, b between two adjacent subnormals, and to
    # w = 1, b between -(1 + 2^-52) and -1: no float64 bias fits either. A rescaled w leaves room.
    for x, t in ((np.array([[5e-324], [1e-323]]), np.array([1.0, -1.0])),
                 (np.array([[1 + 2.0**-52], [1.0], [-1e3]]), np.array([1.0, -1.0, -1.0]))):
        sep = separable(x, t)
        assert sep and sep.exact_separator is None and sep.margin > 0, sep.reason
        assert separator_holds(x, t, sep.weight, sep.bias)


def test_separator_check_sees_products_that_underflow():
    # The score of row 0 is 3 (0.5 + 2^-10) 2^-1074 - 2 2^-1074 < 0 exactly, but each product rounds up to
    # 2^-1074 in float64, so the float score is +1 subnormal step.
    x = np.array([[5e-324] * 3, [0.0] * 3])
    w, b = np.full(3, 0.5 + 2.0**-10), -1e-323
    assert float(np.min(np.array([1.0, -1.0]) * (x @ w + b))) > 0  # float64 is fooled
    assert not separator_holds(x, np.array([1.0, -1.0]), w, b)
    x = np.array([[5e-324, 1.5e-323, 5e-324], [-5e-324, 5e-324, -1e-323], [-5e-324, 5e-324, 0.0],
                  [5e-324, 5e-324, -1.5e-323]])
    t = np.array([1.0, -1.0, -1.0, -1.0])
    sep = separable(x, t)
    assert sep
    if sep.exact_separator is None:
        assert rational_separator_holds(x, t, sep.weight, sep.bias)
    else:
        assert rational_separator_holds(x, t, *sep.exact_separator)


def test_rational_separator_check_is_exact_and_skips_ignored_rows():
    x = np.array([[1.0], [5.0]])
    assert rational_separator_holds(x, [1, 0], [1], Fraction(-1) + Fraction(1, 2**1100))  # score 2^-1100
    assert not rational_separator_holds(x, [1, 0], [1], -1)  # score 0
    assert not rational_separator_holds(x, [1, -1], [1], Fraction(-1) + Fraction(1, 2**1100))
    assert rational_separator_holds(np.array([[1e300]]), [1], [Fraction(10) ** 300], 0)  # no overflow


def test_rational_lp_certificates_check_exactly_either_way(monkeypatch):
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(60):
        m, n = int(rng.integers(4, 30)), int(rng.integers(1, 6))
        x = rng.standard_normal((m, n)) * 10.0 ** rng.integers(-3, 4, n)
        t = np.where(rng.random(m) < 0.5, 1.0, -1.0)
        t[:2] = [1.0, -1.0]
        answer = exact_separation(x, t)
        seen.add(answer.separable)
        if answer.separable:
            check_exact_separator(x, t, answer.weight, answer.bias)
        else:
            check_exact_witness(x, t, answer.mu)
        assert answer.separable == bool(separable(x, t))  # these are far from float64's limits
    assert seen == {True, False}
    for seed in range(5):
        answer = exact_separation(*rank_deficient(seed))
        check_exact_witness(*rank_deficient(seed), answer.mu) if not answer.separable else \
            check_exact_separator(*rank_deficient(seed), answer.weight, answer.bias)
    for stall in (0, 3):  # Bland's rule from the first pivot, or after 3 degenerate ones
        monkeypatch.setattr(rational, "STALL_PIVOTS", stall)
        for seed in range(3):
            x, t = rank_deficient(seed, m=20)
            answer = exact_separation(x, t)
            check_exact_witness(x, t, answer.mu) if not answer.separable else \
                check_exact_separator(x, t, answer.weight, answer.bias)
    assert exact_separation(x, t, max_work=10) == "too large"
    # The limit also stops the pivots: 90% of the work a problem takes is refused after some of
    # them (the pre-check estimate is below it here), 101% is enough.
    monkeypatch.setattr(rational, "STALL_PIVOTS", 50)
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((100, 8)), np.where(rng.random(100) < 0.5, 1.0, -1.0)
    done = exact_separation(x, t)
    assert done.pivots > 10 and exact_separation(x, t, max_work=done.work * 1.01).pivots == done.pivots
    calls = []
    cost = rational._limb_cost
    monkeypatch.setattr(rational, "_limb_cost", lambda bits: calls.append(bits) or cost(bits))
    assert exact_separation(x, t, max_work=done.work * 0.9) == "too large" and len(calls) > 5
    with pytest.raises(ValueError, match="both present"):
        exact_separation(x, np.ones(len(x)))


def test_first_inexact_witness_is_kept_when_the_whitened_retry_finds_none(monkeypatch):
    from ftprop.exact import lp

    real, calls = lp._float_witness, []

    def first_only(*args):
        calls.append(1)
        return real(*args) if len(calls) == 1 else None

    monkeypatch.setattr(lp, "_float_witness", first_only)
    monkeypatch.setattr(rational, "MAX_SIMPLEX_WORK", 0)  # (the rational LP would settle it)
    sep = separable(np.array([[0.0], [1.0], [1.0 + 1e-12], [2.0]]), [-1, -1, 1, 1])
    assert len(calls) == 1 and not sep and not sep.exact

@pytest.mark.parametrize("hidden", [[], [1]])
def test_search_settles_gaps_its_float_lps_cannot_see(hidden, monkeypatch):
    # Separable, but only by a gap of 1e-10 that the search's LPs cannot see: the rational LP
    # finds the separator.
    x = np.array([[0.0, 0.0], [1.0, 1.0], [1.0 + 1e-10, 1.0], [2.0, 2.0]])
    t = np.array([[-1.0], [-1.0], [1.0], [1.0]])
    res = solve(x, t, hidden=hidden, time_limit=20)
    check_feasible(res, x, t)
    assert "float_conflicts" not in res.stats
    # Without the rational LP, the float64 LPs' certificates fail their exact check: no proof.
    monkeypatch.setattr(rational, "MAX_SIMPLEX_WORK", 0)
    res = solve(x, t, hidden=hidden, time_limit=20)
    assert res.status == "unknown" and res.stats["doubtful_conflicts"] >= 1 and "float_conflicts" not in res.stats
    assert "infeasibility not proved" in res.message
    # Without the exact check too, the search's (wrong) "infeasible" says that it rests on float tolerance.
    monkeypatch.setattr(certify, "MAX_EXACT_WORK", 0)
    res = solve(x, t, hidden=hidden, time_limit=20)
    assert res.status == "infeasible" and res.stats["float_conflicts"] >= 1
    assert "float64 tolerance only" in res.message
    monkeypatch.undo()
    gap = solve(x + [[0.0, 0.0], [0.0, 0.0], [1e-3, 0.0], [0.0, 0.0]], t, hidden=hidden)
    assert gap.status == "feasible" and "float_conflicts" not in gap.stats
    proof = solve(*xor(), hidden=[1])
    assert proof.status == "infeasible" and "float_conflicts" not in proof.stats


def test_search_conflicts_on_data_rank_deficient_up_to_rounding_are_exact(monkeypatch):
    x, t = rank_deficient()
    res = solve(x, t[:, None], hidden=[], time_limit=20)
    assert res.status == "infeasible" and "float_conflicts" not in res.stats
    monkeypatch.setattr(rational, "MAX_SIMPLEX_WORK", 0)  # without the rational LP: not proved
    res = solve(x, t[:, None], hidden=[], time_limit=20)
    assert res.status == "unknown" and res.stats["doubtful_conflicts"] >= 1
    monkeypatch.setattr(certify, "MAX_EXACT_WORK", 0)  # and without the exact check: flagged
    res = solve(x, t[:, None], hidden=[], time_limit=20)
    assert res.status == "infeasible" and res.stats["float_conflicts"] >= 1


def test_hull_witness_is_checked_exactly():
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_normal((60, 5)), 3)
    t = np.where(rng.random(60) < 0.5, 1.0, -1.0)
    sep = separable(x, t)
    assert not sep and sep.exact and "checked exactly" in sep.reason
    mu = exact_hull_weights(x, t, sep.witness)
    assert isinstance(mu, list)
    check_exact_witness(x, t, mu)
    # A float witness that is only approximately a common point fails the exact check.
    x2 = np.array([[0.0], [1.0], [1.0 + 1e-12], [2.0]])
    assert exact_hull_weights(x2, np.array([-1.0, -1.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0, 0.0])) is None


def test_separator_check_recomputes_rows_float64_cannot_decide():
    # 1e16 + 1 - 1e16 is 0 in float64 but 1 exactly; 1e16 - 1 - 1e16 is 0 in float64 but -1.
    w, b = np.array([1.0, 1.0]), -1e16
    assert separator_holds(np.array([[1e16, 1.0]]), np.array([1.0]), w, b)
    assert not separator_holds(np.array([[1e16, 1.0]]), np.array([-1.0]), w, b)
    assert not separator_holds(np.array([[1e16, -1.0]]), np.array([1.0]), w, b)
    assert separator_holds(np.array([[1e16, -1.0]]), np.array([-1.0]), w, b)


def test_fraction_free_echelon_solves_rank_deficient_systems_exactly():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rank = int(rng.integers(1, 5))
        a = rng.integers(-5, 6, (7, rank)) @ rng.integers(-5, 6, (rank, 6))
        v = rng.integers(-3, 4, 6)
        m = np.array(np.hstack([a, (a @ v)[:, None]]).tolist(), dtype=object)
        pivots = fraction_free_echelon(m, 6)
        assert len(pivots) == np.linalg.matrix_rank(a.astype(float))
        sol = [Fraction(0)] * 6  # free unknowns 0, pivots by back-substitution
        for r, c in reversed(pivots):
            sol[c] = (m[r, 6] - sum(m[r, j] * sol[j] for j in range(c + 1, 6))) / m[r, c]
        assert all(sum(int(a[i, j]) * sol[j] for j in range(6)) == int(a[i] @ v) for i in range(7))

# ---- the acceptance problems ------------------------------------------------------------------

def test_xor_two_hidden_units_is_solved_and_verified():
    x, t = xor()
    res = solve(x, t, hidden=[2], method="ftprop")
    check_feasible(res, x, t)
    assert set(res.stats) >= {"nodes", "lp_calls", "cache_hits", "seconds"}
    assert len(res.hidden_targets) == 1 and res.hidden_targets[0].shape == (4, 2)


@pytest.mark.parametrize("method", ["ftprop", "milp"])
def test_xor_one_hidden_unit_is_proved_infeasible(method):
    x, t = xor()
    res = solve(x, t, hidden=[1], method=method)
    assert res.status == "infeasible" and res.weights is None


def test_parity3_three_hidden_units_is_solved():
    x, t = parity(3)
    check_feasible(solve(x, t, hidden=[3]), x, t)


def test_deeper_and_wider_architectures():
    x, t = parity(3)
    check_feasible(solve(x, t, hidden=[3, 2], heuristic="none"), x, t)
    x, t = planted(5, 24, [3, 2], n_outputs=2, seed=1)
    check_feasible(solve(x, t, hidden=[3, 2], heuristic="none", time_limit=20), x, t)


def test_no_hidden_layer_is_a_perceptron():
    x, t = xor()
    assert solve(x, t, hidden=[]).status == "infeasible"
    check_feasible(solve(x, np.where(x[:, :1] + x[:, 1:] > 0, 1.0, -1.0), hidden=[]), x,
                   np.where(x[:, :1] + x[:, 1:] > 0, 1.0, -1.0))


def _random_instance(rng):
    n = int(rng.integers(2, 5))
    m = int(rng.integers(4, min(2**n, 10) + 1))
    codes = rng.choice(2**n, size=m, replace=False)
    x = (((codes[:, None] >> np.arange(n)) & 1) * 2 - 1).astype(float)
    t = rng.choice([-1.0, 1.0], size=(m, int(rng.integers(1, 3))))
    hidden = [[1], [2], [3], [2, 1]][int(rng.integers(4))]
    return x, t, hidden


def test_search_and_milp_agree_on_30_random_instances():
    rng = np.random.default_rng(2024)
    seen = {"feasible": 0, "infeasible": 0}
    for _ in range(30):
        x, t, hidden = _random_instance(rng)
        a = solve(x, t, hidden, method="ftprop", heuristic="none", time_limit=20)
        b = solve(x, t, hidden, method="milp", time_limit=20)
        assert a.status == b.status, (x.tolist(), t.tolist(), hidden, a.status, b.status)
        seen[a.status] += 1
        if a.feasible:
            check_feasible(a, x, t)
            check_feasible(b, x, t)
    assert seen["feasible"] >= 5 and seen["infeasible"] >= 5, seen


def _brute_force(x, t, hidden):
    """Every hidden target setting, every unit checked by the public LP: an independent oracle."""
    xu, tu, _, _, clash = dedupe(x, t)
    if clash:
        return "infeasible"
    m = len(xu)

    @functools.lru_cache(None)
    def sep(inp, shape, col):
        return separable(np.frombuffer(inp).reshape(shape), np.frombuffer(col)).separable

    for bits in itertools.product((-1.0, 1.0), repeat=m * sum(hidden)):
        layers, o = [xu], 0
        for h in hidden:
            layers.append(np.array(bits[o:o + m * h]).reshape(m, h))
            o += m * h
        layers.append(tu)
        if all(sep(np.ascontiguousarray(layers[d - 1]).tobytes(), layers[d - 1].shape,
                   np.ascontiguousarray(layers[d][:, u]).tobytes())
               for d in range(1, len(layers)) for u in range(layers[d].shape[1])):
            return "feasible"
    return "infeasible"


def test_search_matches_brute_force_on_real_valued_inputs():
    rng = np.random.default_rng(7)
    for _ in range(12):
        m, n = int(rng.integers(3, 6)), int(rng.integers(1, 3))
        x = rng.standard_normal((m, n))
        t = rng.choice([-1.0, 1.0], size=(m, 1))
        hidden = [[1], [2], [1, 1]][int(rng.integers(3))]
        assert solve(x, t, hidden, heuristic="none").status == _brute_force(x, t, hidden)


def test_backjumping_and_restarts_do_not_change_answers():
    rng = np.random.default_rng(5)
    for _ in range(10):
        x, t, hidden = _random_instance(rng)
        xu, tu, _, _, clash = dedupe(x, t)
        if clash:
            continue
        plain = search_targets(xu, tu, hidden, restarts=False)[0]
        assert search_targets(xu, tu, hidden, restarts=True, base_cutoff=2)[0] == plain


def test_luby_sequence():
    assert [luby(i) for i in range(1, 16)] == [1, 1, 2, 1, 1, 2, 4, 1, 1, 2, 1, 1, 2, 4, 8]


# ---- budgets -----------------------------------------------------------------------------------

def test_budget_gives_unknown_never_a_wrong_answer():
    x, t = parity(4)
    res = solve(x, t, hidden=[2], method="ftprop", heuristic="none", node_limit=3)
    assert res.status == "unknown" and res.weights is None and res.stats["nodes"] <= 3
    res = solve(x, t, hidden=[4], method="milp", node_limit=1, time_limit=0.05)
    assert res.status in ("unknown", "feasible")
    if res.feasible:
        check_feasible(res, x, t)
    x, t = xor()
    res = solve(x, t, hidden=[1], method="mb", time_limit=0.3)
    assert res.status == "unknown" and "cannot prove" in res.message


def test_milp_time_limit_counts_the_model_building():
    """A big MILP takes seconds to build in Python before HiGHS runs: the limit covers that too."""
    x, t = planted(10, 1500, [10, 10])
    start = time.perf_counter()
    res = solve(x, t, hidden=[10, 10], method="milp", time_limit=0.3)
    assert time.perf_counter() - start < 3.0  # building it all took 5 s on the 2-core EPYC
    assert res.status == "unknown" and "while building the MILP" in res.message
    assert {"binaries", "constraints", "weight_bounds", "infeasible_is_proof"} <= set(res.stats)  # as after HiGHS


def test_points_ulps_apart_get_a_network_whose_bias_puts_a_score_at_exactly_zero():
    """Four points on a line a few ulps apart: the unit 'x < x0' has no float64 bias strictly
    inside its exact interval, but sign(0) = -1 lets the bias sit on the interval's end."""
    x = np.array([float.fromhex(h) for h in ("0x1.86a0000000003p+16", "0x1.86a0000000001p+16",
                                             "0x1.86a0000000000p+16", "0x1.869fffffffffcp+16")])[:, None]
    t = np.array([[-1.0], [1.0], [-1.0], [-1.0]])
    for heuristic in ("none", "mb"):
        res = solve(x, t, [2], heuristic=heuristic, time_limit=30)
        check_feasible(res, x, t)


@pytest.mark.parametrize("trouble", ["thin conflicts", "weights that fail"])
def test_a_network_ftprop_mb_fitted_is_not_lost_when_the_search_cannot_prove_its_answer(monkeypatch, trouble):
    """The search's "infeasible" rests on conflicts known to be separable (so nothing is proved), or
    its targets' LP weights fail the float64 check: the network FTPROP-MB fitted answers."""
    solve_mod = importlib.import_module("ftprop.exact.solve")  # (ftprop.exact.solve is also the function)
    x, t = xor()
    calls = []

    def fake_search(xu, tu, hidden, *, stats, **kw):
        calls.append(kw.get("hint"))
        if len(calls) == 1:  # the probe before any training: no answer
            return "unknown", None, "probe spent", None
        if trouble == "thin conflicts":
            stats.extra["thin_conflicts"] = 1
            return "infeasible", None, "every candidate refuted", None
        return "feasible", [np.ones((len(xu), hidden[0]))], "targets found", None  # all +1: not realisable

    monkeypatch.setattr(solve_mod, "search_targets", fake_search)
    res = solve(x, t, hidden=[3], method="ftprop", time_limit=20, seed=1)
    assert len(calls) >= 2 and calls[1] is not None  # the second search ran with FTPROP-MB's hint
    check_feasible(res, x, t)


def test_mb_method_fits_xor():
    x, t = xor()
    check_feasible(solve(x, t, hidden=[3], method="mb", time_limit=20, seed=1), x, t)


def test_mb_adam_is_torchs_adam_bit_for_bit():
    from ftprop.exact import mb

    x, t = parity(5)
    nets = [mb._build([5, 4, 1], torch.Generator().manual_seed(3)) for _ in range(2)]
    opts = [mb.Adam(nets[0].parameters(), lr=0.03), torch.optim.Adam(nets[1].parameters(), lr=0.03)]
    xs, tt = torch.as_tensor(x), torch.as_tensor(t)
    for _ in range(60):
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            torch.relu(1 - tt * net(xs)).mean().backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()))


def test_mb_does_not_pay_for_importing_torch_dynamo():
    # torch's optimisers import torch._dynamo when a process makes its first one (one to several
    # seconds), which the first mb solve's time limit used to pay: its own Adam does not
    code = ("import sys; from ftprop.exact import solve, xor; solve(*xor(), hidden=[2], method='mb', time_limit=5); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_mb_budget_includes_building_the_trainer(monkeypatch):
    # Building the trainer counts against the budget. The build's 0.8 s go onto mb's clock instead of
    # being slept: the outcome does not hang on the machine's speed.
    from types import SimpleNamespace

    from ftprop.exact import mb

    x, t = parity(6)
    mb.MBTrainer(x, t, [6])  # the real import, out of the timing
    late = [0.0]
    monkeypatch.setattr(mb, "time", SimpleNamespace(perf_counter=lambda: time.perf_counter() + late[0]))
    built, run, budgets = mb.MBTrainer.__init__, mb.MBTrainer.run, []

    def slow_init(self, *args, **kwargs):
        late[0] += 0.8
        built(self, *args, **kwargs)

    def recorded_run(self, time_limit=np.inf, max_steps=None):
        budgets.append(time_limit)
        return run(self, time_limit, max_steps)

    monkeypatch.setattr(mb.MBTrainer, "__init__", slow_init)
    monkeypatch.setattr(mb.MBTrainer, "run", recorded_run)
    res = solve(x, t, hidden=[6], method="mb", time_limit=0.5)
    assert len(budgets) == 1 and budgets[0] <= 0.5 - 0.8  # training got what the build left: nothing
    assert res.stats["steps"] == 0 and res.status == "unknown"


def test_search_uses_given_hint():
    x, t, w = planted(4, 12, [2], seed=3, return_weights=True)
    hint = [forward(w[:1], x)]
    res = solve(x, t, hidden=[2], heuristic=hint)
    check_feasible(res, x, t)
    assert res.stats["nodes"] == len(dedupe(x, t)[0]) and res.stats["hint_rows_taken"] > 0


def test_milp_proves_nothing_from_inputs_its_rescaling_merged():
    # 0 and 1 beside 1e17 both round to -1 on [-1, 1]: the MILP sees two clashing examples
    x, t = np.array([[0.0], [1.0], [1e17]]), np.array([1.0, -1.0, -1.0])
    check_feasible(solve(x, t, []), x, t)  # one unit fits it
    for hidden in ([], [1]):
        assert solve(x, t, hidden, method="milp").status != "infeasible"


@pytest.mark.filterwarnings("error")  # (the rescaling's overflow warned, then mapped every input to 0)
def test_milp_rescales_inputs_at_the_ends_of_float64():
    for column in ([1.7e308, -1.7e308, 0.0], [1.7e308, 1.6e308, 1.65e308], [0.0, 1e-300, 0.0]):
        x = np.array(column)[:, None]
        t = np.array([[1.0], [-1.0], [1.0]]) if column[2] == 0 else np.array([[1.0], [1.0], [-1.0]])
        check_feasible(solve(x, t, [2], method="milp", time_limit=20), x, t)
    # subnormal inputs: their half-range rounded to 0, the column counted as constant, and the MILP
    # "proved" that no network exists; a float64 network does (w = -1.8e308, b = 1e-16), but not one
    # with margin 1, so the MILP cannot give it: unknown, saying why
    x, t = np.array([[0.0], [5e-324]]), np.array([[1.0], [-1.0]])
    answer = solve(x, t, [2], method="milp", time_limit=20)
    assert answer.status == "unknown" and "exceed float64" in answer.message, answer.message


def test_muroga_bound_is_exact_in_integers():
    from ftprop.exact.milp import muroga_bound

    for n in (1, 2, 5, 10, 40, 60):  # floor((n+1)^((n+1)/2) / 2^n), computed apart
        exact = Fraction((n + 1) ** (n + 1), 4**n)  # its square
        w = muroga_bound(n)
        assert w * w <= exact < (w + 1) ** 2 or (w == 1 and exact < 4)
    assert muroga_bound(400) > 10**300  # no float overflow for wide layers
    x, t = xor()  # fan-in 300 above the first layer: the bound is capped, not an OverflowError
    assert solve(x, t, [300], method="milp", time_limit=20).status in ("feasible", "unknown")


def test_without_a_time_limit_the_clock_plays_no_part(monkeypatch):
    solve_mod = importlib.import_module("ftprop.exact.solve")  # (the package exports the function solve)
    monkeypatch.setattr(solve_mod, "MB_STEPS", 400)  # a shorter FTPROP-MB round than the 2500 steps: same path
    x, t, hidden = make_problem("planted:4,100,3-3", seed=0)
    keys = ("nodes", "lp_calls", "mb_steps", "mb_fitted", "mb_errors")
    runs = [solve(x, t, hidden, node_limit=600, seed=3) for _ in range(2)]
    assert runs[0].stats["mb_steps"] == 400  # the probe ran out and FTPROP-MB trained its round
    assert [r.status for r in runs] == [runs[0].status] * 2
    assert [{k: r.stats.get(k) for k in keys} for r in runs] == [{k: runs[0].stats.get(k) for k in keys}] * 2


def test_an_infinite_time_limit_is_no_limit(monkeypatch):
    solve_mod = importlib.import_module("ftprop.exact.solve")
    monkeypatch.setattr(solve_mod, "MB_STEPS", 400)  # a shorter FTPROP-MB round than the 2500 steps: same path
    x, t = parity(4)
    res = solve(x, t, [2], time_limit=float("inf"), node_limit=8)  # the mb rounds' shares were infinite
    assert res.status == "unknown" and res.stats["nodes"] <= 8
    assert res.stats["mb_rounds"] == 1 and res.stats["mb_steps"] == 400  # one round of steps, as with no limit


def test_a_fitted_ftprop_mb_network_answers_when_the_search_runs_out(monkeypatch):
    solve_mod = importlib.import_module("ftprop.exact.solve")  # (the package exports the function solve)

    def out_of_budget(*args, stats=None, **kwargs):
        stats.nodes += 1
        return "unknown", None, "budget spent", None

    monkeypatch.setattr(solve_mod, "search_targets", out_of_budget)
    x, t = xor()
    for limits in ({"time_limit": 30}, {"node_limit": 50}):
        res = solve(x, t, [3], seed=1, **limits)
        check_feasible(res, x, t)
        assert res.stats["mb_fitted"] and "FTPROP-MB's network fits T" in res.message


def test_a_fitted_ftprop_mb_network_answers_the_same_however_the_search_ends(monkeypatch):
    """Out of budget, or an "infeasible" that proves nothing (thin conflicts): either way the fitted
    network's hidden outputs are the targets, and the answer is their LP weights."""
    solve_mod = importlib.import_module("ftprop.exact.solve")  # (the package exports the function solve)
    x, t = xor()
    answers = []
    for ending in ("unknown", "thin conflicts"):

        def search(xu, tu, hidden, *, stats, calls=[], ending=ending, **kw):  # noqa: B006 (one list per ending)
            calls.append(1)
            stats.nodes += 1
            if len(calls) > 1 and ending == "thin conflicts":
                stats.extra["thin_conflicts"] = 1
                return "infeasible", None, "every candidate refuted", None
            return "unknown", None, "budget spent", None

        monkeypatch.setattr(solve_mod, "search_targets", search)
        res = solve(x, t, [3], seed=1, node_limit=50)  # no time limit: one round of a fixed number of MB steps
        check_feasible(res, x, t)
        assert res.stats["mb_fitted"] and "FTPROP-MB's network fits T" in res.message, res.message
        lp = solve_mod._weights_from_targets(x, t, res.hidden_targets)
        assert all(np.array_equal(a, b) for got, want in zip(res.weights, lp) for a, b in zip(got, want))
        answers.append(res.weights)
    assert all(np.array_equal(a, b) for got, want in zip(*answers) for a, b in zip(got, want))


def test_a_spent_budget_builds_no_trainer(monkeypatch):
    solve_mod = importlib.import_module("ftprop.exact.solve")  # (the package exports the function solve)

    def search_spends_it(*args, time_limit=None, stats=None, **kwargs):
        time.sleep(time_limit)
        return "unknown", None, "budget spent", None

    def no_trainer(*args, **kwargs):
        raise AssertionError("a trainer was built with no time left")

    monkeypatch.setattr(solve_mod, "search_targets", search_spends_it)
    monkeypatch.setattr(solve_mod, "MBTrainer", no_trainer)
    x, t = parity(4)
    assert solve(x, t, [2], time_limit=0.05).status == "unknown"


def test_milp_on_real_inputs_reports_bounded_infeasibility_as_unknown():
    x = np.array([[0.0], [0.3], [0.7], [1.0]])
    t = np.array([[1.0], [-1.0], [1.0], [-1.0]])  # needs two hidden units: with one, infeasible
    assert solve(x, t, hidden=[1], method="ftprop", heuristic="none").status == "infeasible"
    res = solve(x, t, hidden=[1], method="milp")
    assert res.status == "unknown" and res.stats.get("bounded_infeasible")


# ---- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("args, match", [
    ((np.zeros((3, 2)), np.ones((4, 1)), [2]), "3 examples but T has 4"),
    ((np.zeros((3, 2)), np.array([[1.0], [0.0], [1.0]]), [2]), "only -1 and \\+1"),
    ((np.zeros((3, 2)), np.array([[1.0], [2.0], [1.0]]), [2]), "only -1 and \\+1"),
    ((np.zeros((0, 2)), np.zeros((0, 1)), [2]), "empty"),
    ((np.zeros((3, 2)), np.ones((3, 1)), [0]), "widths must be integers >= 1"),
    ((np.zeros((3, 2)), np.ones((3, 1)), [2, -1]), "widths must be integers >= 1"),
    ((np.zeros((3, 2, 2)), np.ones((3, 1)), [2]), "2-D"),
    ((np.array([[np.nan, 1.0]]), np.ones((1, 1)), [1]), "NaN"),
    ((np.array([[1 + 5j], [1 + 0j]]), np.array([1.0, -1.0]), []), "complex"),  # not cast to 1, 1: a clash
])
def test_bad_input_gets_a_clear_error(args, match):
    with pytest.raises(ValueError, match=match):
        solve(*args)


def test_bad_method_and_budget():
    x, t = xor()
    with pytest.raises(ValueError, match="unknown method"):
        solve(x, t, [2], method="sat")
    with pytest.raises(ValueError, match="time_limit"):
        solve(x, t, [2], time_limit=0)
    with pytest.raises(ValueError, match="node_limit"):
        solve(x, t, [2], node_limit=0)
    # limits and seeds of the wrong kind: a message, not OverflowError, TypeError or a NaN's conversion
    for kw, match in [({"node_limit": math.inf}, "node_limit must be a whole number >= 1"),
                      ({"node_limit": math.nan}, "node_limit must be a whole number >= 1"),
                      ({"time_limit": "5"}, "time_limit must be a number of seconds > 0"),
                      ({"time_limit": math.nan}, "time_limit must be a number of seconds > 0"),
                      ({"seed": math.nan}, r"seed must be an integer in \[0, 2\^63\)"),
                      ({"seed": 10**400}, r"seed must be an integer in \[0, 2\^63\)"),
                      ({"node_limit": 10**400}, "node_limit must be a whole number >= 1"),
                      ({"method": "milp", "weight_bound": 10**400}, "weight_bound must be a positive finite"),
                      ({"method": "milp", "weight_bound": -1}, "weight_bound must be a positive finite bound"),
                      ({"method": "milp", "weight_bound": math.nan}, "weight_bound must be a positive finite bound")]:
        with pytest.raises(ValueError, match=match):
            solve(x, t, [2], **kw)
    assert solve(x, t, [2], node_limit=100.0, seed=np.int64(3)).feasible  # whole numbers of any kind
    assert solve(x, t, [2], method="milp", node_limit=2**40).feasible  # beyond HiGHS' C int: no limit
    with pytest.raises(SystemExit):
        main(["solve", "--data", "xor", "--node-limit", "1e400"])


def test_contradictory_examples_are_infeasible_at_once():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    t = np.array([[1.0], [-1.0], [1.0]])
    for method in ("ftprop", "milp", "mb"):
        res = solve(x, t, [3], method=method, time_limit=1)
        assert res.status == "infeasible" and "same input" in res.message


# ---- generators, report, CLI ----------------------------------------------------------------------

def test_generators():
    x, t = parity(4)
    assert x.shape == (16, 4) and t.shape == (16, 1) and set(np.unique(t)) == {-1.0, 1.0}
    assert np.array_equal(xor()[1], parity(2)[1])
    x, t, w = planted(6, 30, [3, 2], n_outputs=2, seed=0, return_weights=True)
    assert x.shape == (30, 6) and t.shape == (30, 2) and np.array_equal(forward(w, x), t)
    x, t = digits(20, classes=(3, 8), pool=2, seed=0)
    assert x.shape == (20, 16) and set(np.unique(x)) <= {-1.0, 1.0} and t.shape == (20, 1)
    x, t = digits(30, classes=(0, 1, 2), pool=4)
    assert x.shape == (30, 4) and t.shape == (30, 3)
    assert make_problem("parity:3")[2] == [3] and make_problem("planted:4,10,2-2,1")[2] == [2, 2]
    with pytest.raises(ValueError, match="bad problem spec"):
        make_problem("parity:x")
    with pytest.raises(ValueError, match="unknown problem"):
        make_problem("mnist")


def test_feasibility_report_on_sign_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.BatchNorm1d(6), Sign(), nn.Linear(6, 5), Sign(),
                          nn.Linear(5, 3))
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rep = feasibility_report(model, (x, y))
    assert [lay.units for lay in rep.layers] == [6, 5]
    assert [lay.input_width for lay in rep.layers] == [8, 6]
    assert all(0 <= lay.no_target <= lay.separable <= lay.units for lay in rep.layers)
    assert rep.fractions == [lay.separable / lay.units for lay in rep.layers]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # BN stats untouched
    assert all(p.grad is None for p in model.parameters())
    first = rep.layers[0]
    assert f"| 1 | 6 | 8 | {first.separable} ({first.no_target}) | {first.fraction:.3f} |" in rep.table()
    with pytest.raises(ValueError, match="labels"):
        feasibility_report(model, x)
    with pytest.raises(ValueError, match="no hard-threshold"):
        feasibility_report(nn.Sequential(nn.Linear(8, 3)), x, y)


def test_cli_solve(tmp_path, capsys):
    assert main(["solve", "--data", "xor", "--hidden", "1", "--no-save"]) == 0
    out = capsys.readouterr().out
    assert "INFEASIBLE" in out and "LP calls" in out and "cache hits" in out
    path = tmp_path / "net.npz"
    assert main(["solve", "--data", "parity:3", "--method", "ftprop", "--time-limit", "20", "--save", str(path)]) == 0
    assert "FEASIBLE" in capsys.readouterr().out
    x, t = parity(3)
    assert np.array_equal(forward(load_weights(path), x), t)
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.hstack(xor()), delimiter=",")
    assert main(["solve", "--data", str(csv), "--hidden", "2", "--method", "milp", "--json", "--no-save"]) == 0
    assert '"status": "feasible"' in capsys.readouterr().out
    assert main(["solve", "--data", "nope:3"]) == 2
    assert "unknown problem" in capsys.readouterr().err
    assert main(["solve", "--data", str(csv)]) == 2
    assert "--hidden is required" in capsys.readouterr().err
    one_column = tmp_path / "t1d.npz"  # T as a vector, as solve() accepts it
    x, t = xor()
    np.savez(one_column, X=x, T=t[:, 0])
    assert main(["solve", "--data", str(one_column), "--hidden", "2", "--no-save"]) == 0
    assert "1 output(s)" in capsys.readouterr().out
    np.savez(tmp_path / "x1d.npz", X=np.arange(4.0), T=np.array([1.0, 1.0, -1.0, -1.0]))  # X as a vector too
    assert main(["solve", "--data", str(tmp_path / "x1d.npz"), "--hidden", "--no-save"]) == 0
    assert "4 examples (4 distinct), 1 inputs" in capsys.readouterr().out
    assert main(["solve", "--data", "digits:0", "--no-save"]) == 2
    assert "at least one example" in capsys.readouterr().err
    for seed in ("-1", str(2**64)):
        assert main(["solve", "--data", "xor", "--seed", seed, "--method", "mb", "--time-limit", "1", "--no-save"]) == 2
        assert "--seed must be in [0, 2^63)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="seed must be an integer in"):
        solve(*xor(), [2], method="mb", time_limit=1, seed=2**64)
    (tmp_path / "semi.csv").write_text("1;2;1\n2;1;-1\n")
    (tmp_path / "dir.csv").mkdir()
    for name, said in [("semi.csv", "separated by semicolons: save it with commas"), ("dir.csv", "is a folder")]:
        assert main(["solve", "--data", str(tmp_path / name), "--hidden", "1", "--no-save"]) == 2
        assert said in capsys.readouterr().err
    assert main(["solve", "--data", "xor", "--hidden", "2", "--save", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err


def test_plain_linprog_fallback_gives_the_same_answers(monkeypatch):
    """Without SciPy's private HiGHS binding the LPs go through linprog (no Farkas rays)."""
    from ftprop.exact import lp

    monkeypatch.setattr(lp, "_hc", None)
    x, t = xor()
    assert solve(x, t, [1], heuristic="none").status == "infeasible"
    assert not separable(x, t[:, 0])
    x, t = parity(3)
    check_feasible(solve(x, t, [3], heuristic="none"), x, t)


def test_suggested_targets_are_given_per_example_even_with_repeated_rows():
    x, t = xor()
    h = np.array([[1, -1], [1, 1], [-1, -1], [1, -1]], dtype=float)
    res = solve(np.vstack([x, x]), np.vstack([t, t]), [2], heuristic=[np.vstack([h, h])])
    check_feasible(res, np.vstack([x, x]), np.vstack([t, t]))


def test_suggested_targets_must_be_plus_minus_one_arrays():
    x, t = xor()
    with pytest.raises(ValueError, match="must be -1 or \\+1"):
        solve(x, t, [2], heuristic=[np.zeros((4, 2))])
    from ftprop.exact.search import Hint  # internal: its rows would be the distinct examples', not X's

    with pytest.raises(ValueError, match="one \\(examples x width\\) array"):
        solve(x, t, [2], heuristic=Hint([np.ones((4, 2))]))


def test_no_hidden_layer_takes_any_number_of_outputs():
    # one layer: a separability LP per output unit, no target codes, so no width limit
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    t = np.where(x @ rng.normal(size=(3, 25)) > 0, 1.0, -1.0)
    check_feasible(solve(x, t, []), x, t)
    t[:, 24] = np.where(x[:, 0] * x[:, 1] > 0, 1.0, -1.0)  # not separable by one unit
    assert solve(x, t, []).status == "infeasible"


def test_limits_of_the_exact_search_are_clear_errors(tmp_path, capsys):
    x, t = xor()
    with pytest.raises(ValueError, match="at most 20 units"):
        solve(x, t, [21])
    wide = solve(x, t, [21], method="mb", time_limit=60)  # the mini-batch method takes wider layers
    check_feasible(wide, x, t)  # and xor is easy for 21 units: found, and its weights verified
    with pytest.raises(ValueError, match="at most 20 bits"):
        parity(21)
    with pytest.raises(ValueError, match="heuristic must be"):
        solve(x, t, [2], method="milp", heuristic="foo")
    assert main(["solve", "--data", "xor", "--targets", "0", "--no-save"]) == 2
    assert "--targets" in capsys.readouterr().err
    assert main(["solve", "--data", "xor", "--save", str(tmp_path / "no" / "net.npz")]) == 2
    assert "there is no folder" in capsys.readouterr().err
    assert main(["solve", "--data", "xor", "--save", str(tmp_path / "net")]) == 0
    assert f"saved to {tmp_path / 'net.npz'}" in capsys.readouterr().out


def test_csv_header_is_skipped_but_a_bad_first_row_is_an_error(tmp_path):
    from ftprop.exact.problems import load_problem_file

    (tmp_path / "h.csv").write_text("x1,x2,t\n1,2,1\n3,4,-1\n")
    x, t = load_problem_file(tmp_path / "h.csv")
    assert x.shape == (2, 2) and t.ravel().tolist() == [1, -1]
    (tmp_path / "bad.csv").write_text("1,,1\n3,4,1\n5,6,-1\n")
    with pytest.raises(ValueError, match="not a CSV file of numbers"):
        load_problem_file(tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="not a CSV file of numbers"):
        load_problem_file(tmp_path / "empty.csv")


def test_a_file_that_is_not_an_npz_archive_is_refused_with_what_to_write(tmp_path):
    import numpy as np

    from ftprop.exact.problems import load_problem_file

    (tmp_path / "text.npz").write_text("x,t\n1,1\n")
    with open(tmp_path / "one.npz", "wb") as f:
        np.save(f, np.zeros(3))
    np.savez(tmp_path / "objects.npz", X=np.array([{"a": 1}], dtype=object), T=np.ones(1))
    for name, message in [("text.npz", "is not a NumPy .npz archive"), ("one.npz", "holds one array"),
                          ("objects.npz", "is not a NumPy .npz archive|must be arrays of numbers")]:
        with pytest.raises(ValueError, match=message):
            load_problem_file(tmp_path / name)
    np.savez(tmp_path / "ok.npz", X=np.eye(2), T=np.ones(2))
    x, t = load_problem_file(tmp_path / "ok.npz")
    assert x.shape == (2, 2) and t.tolist() == [1.0, 1.0]
    whole = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    at = whole.index(np.eye(2).tobytes())  # a flipped byte inside X's data: its CRC fails
    (tmp_path / "flipped.npz").write_bytes(whole[:at] + bytes([whole[at] ^ 1]) + whole[at + 1 :])
    for name, message in [("cut.npz", "is not a NumPy .npz archive"), ("flipped.npz", "is damaged .*CRC")]:
        with pytest.raises(ValueError, match=message):
            load_problem_file(tmp_path / name)


def test_solver_inputs_that_would_hang_or_exhaust_memory_are_refused(tmp_path):
    from ftprop.exact.problems import load_problem_file, make_problem

    x, t = xor()
    with pytest.raises(ValueError, match="never proves there are none: give it a finite time_limit"):
        solve(x, t, [1], method="mb", time_limit=float("inf"))
    with pytest.raises(ValueError, match="at most 50,000,000"):
        make_problem("planted:1000000,1000000,2")
    r = solve(*parity(4), hidden=[2], method="milp", node_limit=5)
    assert r.status == "unknown" and r.message == "MILP stopped at its node limit (5) without an answer"
    (tmp_path / "bom.CSV").write_bytes("\ufeff1,1,1\n-1,-1,-1\n".encode())  # a spreadsheet's export
    x2, t2 = load_problem_file(tmp_path / "bom.CSV")
    assert x2.tolist() == [[1, 1], [-1, -1]] and t2.ravel().tolist() == [1, -1]
    (tmp_path / "latin1.csv").write_bytes(b"1,\xe9,1\n")
    with pytest.raises(ValueError, match="latin1.csv is not UTF-8 text"):
        load_problem_file(tmp_path / "latin1.csv")
    np.savez(tmp_path / "c.npz", X=np.ones((2, 2)) * 1j, T=np.ones(2))
    with pytest.raises(ValueError, match="complex numbers"):
        load_problem_file(tmp_path / "c.npz")


def test_solve_prints_the_outcome_even_when_the_weights_cannot_be_saved(tmp_path, capsys, monkeypatch):
    import ftprop.exact.network as network

    (tmp_path / "dd" / "net.npz").mkdir(parents=True)
    assert main(["solve", "--data", "xor", "--save", str(tmp_path / "dd" / "net")]) == 2  # .npz is added
    assert "is a folder" in capsys.readouterr().err

    def failing(path, write):  # as a full disk or a lost permission would, after the search
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(network, "atomic_write", failing)
    rc = main(["solve", "--data", "xor", "--save", str(tmp_path / "net.npz")])
    captured = capsys.readouterr()
    assert rc == 1 and "outcome   FEASIBLE" in captured.out and "could not be saved" in captured.err


def test_solve_cli_takes_no_budget_and_refuses_flags_its_method_ignores(capsys):
    assert main(["solve", "--data", "xor", "--time-limit", "none", "--no-save", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "feasible"
    assert main(["solve", "--data", "xor", "--method", "milp", "--heuristic", "none", "--no-save"]) == 2
    assert "--method milp has none" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["solve", "--data", "xor", "--time-limit", "abc"])
    assert "'abc': a number of seconds, or 'none'" in capsys.readouterr().err
