"""The exact search's time limit reaches into the LPs it decides in rational arithmetic."""

import time

import pytest

from ftprop.exact import lp, search, xor
from ftprop.exact.rational import DeadlineReached, exact_separation


def test_a_rational_lp_stops_at_the_deadline():
    x, t = xor()
    assert not exact_separation(x, t[:, 0]).separable  # decided, given the time
    with pytest.raises(DeadlineReached):
        exact_separation(x, t[:, 0], deadline=time.perf_counter() - 1)


def test_the_search_passes_its_deadline_to_the_lps_and_answers_unknown_when_one_runs_out(monkeypatch):
    seen = []

    def slow_lp(*args, deadline=None, **kwargs):  # a rational LP that outlasts the search's budget
        seen.append(deadline)
        raise DeadlineReached("time limit")

    monkeypatch.setattr(search, "conflict_lp", slow_lp)
    x, t = xor()
    status, targets, message, _ = search.search_targets(x, t, [2], time_limit=30)
    assert status == "unknown" and targets is None and message.startswith("time limit reached")
    assert seen and seen[0] is not None and seen[0] > time.perf_counter()  # the deadline, 30 s ahead
    seen.clear()
    monkeypatch.setattr(search, "conflict_lp", lambda *a, deadline=None, **k: (seen.append(deadline),
                                                                                lp.conflict_lp(*a, **k))[1])
    assert search.search_targets(x, t, [2])[0] == "feasible" and set(seen) == {None}  # no limit: none passed


def test_conflict_lp_gives_its_deadline_to_the_rational_lp(monkeypatch):
    seen = []
    real = lp.exact_separation

    def recording(*args, deadline=None, **kwargs):
        seen.append(deadline)
        return real(*args, deadline=deadline, **kwargs)

    monkeypatch.setattr(lp, "exact_separation", recording)
    monkeypatch.setattr(lp, "exact_hull_weights", lambda *a: "too large")  # force the rational LP
    x, t = xor()
    later = time.perf_counter() + 3600  # (perf_counter counts from an arbitrary point, e.g. the boot)
    sol, support, how = lp.conflict_lp(x, t[:, 0], deadline=later)
    assert sol is None and how == "exact" and len(support) > 0 and seen == [later]
    with pytest.raises(DeadlineReached):
        lp.conflict_lp(x, t[:, 0], deadline=time.perf_counter() - 1)
