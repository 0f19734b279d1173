"""Exact feasible target propagation (Algorithm 1, PAPER.md §3): a complete target search.

The search looks for hidden target matrices T_1..T_{L-1} (one ±1 row per distinct example
and layer) such that every unit's problem -- its input targets T_{d-1} -> its own column of
T_d, with T_0 = X and T_L = the given outputs -- is linearly separable. Then the LP
certificates of all units form a network that reproduces T exactly.

How it searches (depth first, with backtracking):

* Examples are taken one at a time. For each example the rows are chosen **top down**, as in
  Algorithm 1: first the row of the last hidden layer (so that the output layer stays
  separable), then the row of the layer below (so that the layer above stays separable and,
  at layer 1, every unit stays separable from X), down to the input.
* **Feasibility checks prune**: a partial assignment is rejected as soon as one unit's
  problem restricted to the examples seen so far is not separable -- adding examples never
  makes it separable again. A unit is checked by its current separator when that already
  classifies the new example (no LP), else by an LP cached by the dichotomy itself (so equal
  dichotomies of different units, layers, branches and restarts share one LP).
* **Target heuristic** (the paper's: pick the lower layer's targets so that the upper layer's
  loss is small under its current weights): candidate rows are tried in order of (number of
  units of the layer above whose current separator the row would violate + number of bits
  flipped from the preferred row). The preferred row is a hint's (e.g. an FTPROP-MB network's
  outputs or gradient-sign targets) or else the row the current separators compute.
* **Equal inputs**: repeated rows of X are merged before the search; two examples whose codes
  coincide at a layer must get equal rows above it (checked before any LP).
* **Symmetries**: flipping a hidden unit (negating its weights and its outgoing weights) and
  permuting the units of a layer do not change the network. So every hidden column is +1 on
  the first example, and the columns of each layer are in non-increasing lexicographic
  order. Every network has exactly such a canonical twin, so nothing is lost.
* **Conflict-directed backjumping**: an infeasible LP comes with a Farkas certificate whose
  support names the few examples that already conflict (their two classes' hulls share a
  point, checked exactly on the original inputs by :mod:`.certify`); a dead end jumps back to the latest
  choice that its conflicts depend on, skipping choices that cannot help.
* **Restarts** (:func:`search_targets`): run r uses another example order (radial, along the
  principal direction, nearest-neighbour, then randomised) and stops after base * luby(r)
  nodes. The cutoffs grow without bound, so the search stays complete.

Without a budget the search is complete: it reports "infeasible" only after every canonical
target setting was ruled out. With a node or time budget it may stop with "unknown".
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from .lp import common_exponent, conflict_lp, scaled_coordinates
from .rational import DeadlineReached

__all__ = ["Hint", "SearchStats", "TargetSearch", "example_order", "search_targets", "luby"]


@dataclass
class Hint:
    """Suggested hidden rows for the search, one (m, n_d) ±1 array per hidden layer.

    ``first`` is tried first; ``second`` (optional) next; then the other rows by the search's
    cost (violated units above + bits flipped from ``first``, flips of bits with a low
    ``confidence`` >= 0, e.g. |pre-activation|, counting a little less).
    """

    first: list[np.ndarray]
    second: list[np.ndarray] | None = None
    confidence: list[np.ndarray] | None = None


@dataclass
class SearchStats:
    nodes: int = 0  # accepted row assignments (search-tree nodes)
    candidates: int = 0  # rows tried (accepted or pruned)
    lp_calls: int = 0
    cache_hits: int = 0
    reused_separators: int = 0  # checks answered by a unit's current separator, no LP
    contradictions: int = 0  # rows pruned because equal codes need equal rows above
    backtracks: int = 0
    deepest: int = 0  # most examples assigned at once
    hint_rows_taken: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


NN_MAX = 3000  # largest number of examples for the nearest-neighbour order


class BudgetExceeded(Exception):
    pass  # (a rational LP past the deadline raises DeadlineReached, handled alike)


class Cutoff(Exception):
    pass


def example_order(x: np.ndarray, t: np.ndarray, kind: str = "nn", start: int = 0,
                  direction: np.ndarray | None = None) -> np.ndarray:
    """An order of the (distinct) examples for the search.

    "nn": each next example is the one closest to those already placed (from ``start``),
    preferring one whose target differs from its nearest placed neighbour: close examples
    with different targets constrain each other early. "radial": by distance from ``start``
    (for ±1 data: Hamming shells around it). "projection": along ``direction``.
    """
    m = len(x)
    if kind == "radial":
        return np.lexsort((np.arange(m), ((x - x[start]) ** 2).sum(1)))
    if kind == "projection":
        return np.lexsort((np.arange(m), (x - x.mean(0)) @ direction))
    if kind != "nn":
        raise ValueError(f"unknown example order {kind!r}")
    if m > NN_MAX:  # the nearest-neighbour order needs an m x m distance matrix
        return example_order(x, t, "radial", start)
    if m <= 2:
        return np.roll(np.arange(m), -start)
    sq = (x * x).sum(1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    placed = np.zeros(m, dtype=bool)
    order = [start]
    placed[start] = True
    best = dist[start].copy()  # distance to the nearest placed example
    near = np.full(m, start, dtype=np.int64)  # which placed example that is
    for _ in range(m - 1):
        cand = np.flatnonzero(~placed)
        d = best[cand]
        differs = np.any(t[cand] != t[near[cand]], axis=1)
        key = np.lexsort((~differs, d))  # nearest first, then differing target first
        j = int(cand[key[0]])
        order.append(j)
        placed[j] = True
        closer = dist[j] < best
        best = np.where(closer, dist[j], best)
        near = np.where(closer, j, near)
    return np.asarray(order)


def _orders(x: np.ndarray, t: np.ndarray, rng: np.random.Generator):
    """Example orders for successive restarts: three fixed ones, then randomised variants."""
    m = len(x)
    x = np.ldexp(x, -common_exponent(x))  # squared distances must not overflow or underflow
    centre = x.mean(0)
    far = int(np.argmax(((x - centre) ** 2).sum(1)))
    yield example_order(x, t, "radial", far)
    _, _, vt = np.linalg.svd(x - centre, full_matrices=False)
    yield example_order(x, t, "projection", direction=vt[0])
    nn_ok = m <= NN_MAX
    if nn_ok:
        yield example_order(x, t, "nn", far)
    while True:
        k = int(rng.integers(3 if nn_ok else 2))
        if k == 0:
            yield example_order(x, t, "radial", int(rng.integers(m)))
        elif k == 1:
            yield example_order(x, t, "projection", direction=rng.standard_normal(x.shape[1]))
        else:
            yield example_order(x, t, "nn", int(rng.integers(m)))


def luby(i: int) -> int:
    """The i-th term (i >= 1) of Luby's restart sequence 1, 1, 2, 1, 1, 2, 4, 1, ..."""
    k = 1
    while (1 << k) - 1 < i:
        k += 1
    while True:
        if i == (1 << k) - 1:
            return 1 << (k - 1)
        i -= (1 << (k - 1)) - 1
        k = 1
        while (1 << k) - 1 < i:
            k += 1


def search_targets(x: np.ndarray, t: np.ndarray, hidden: list[int], hint: Hint | None = None,
                   time_limit: float | None = None, node_limit: int | None = None, restarts: bool = True,
                   seed: int = 0, base_cutoff: int | None = None, shared: dict | None = None,
                   stats: SearchStats | None = None) -> tuple[str, list | None, str, SearchStats]:
    """Run the target search with restarts: run r uses another example order and stops after
    ``base_cutoff * luby(r)`` nodes. Separability caches are shared by all runs (and with
    other calls that pass the same ``shared`` dict). Cutoffs grow without bound, so without a
    time or node limit the search still ends with a complete answer.
    Returns (status, hidden targets in the given example order or None, message, stats)."""
    stats = SearchStats() if stats is None else stats
    shared = {} if shared is None else shared
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + time_limit
    base = base_cutoff or max(64, 8 * len(x) * len(hidden))
    orders = _orders(x, t, np.random.default_rng(seed))
    run = 0
    while True:
        run += 1
        order = next(orders) if restarts else example_order(x, t, "nn")
        search = TargetSearch(x, t, hidden, hint=hint, node_limit=node_limit, order=order, shared=shared,
                              stats=stats)
        status, targets, message = search.run(cutoff=base * luby(run) if restarts else None, deadline=deadline)
        stats.extra["restarts"] = stats.extra.get("restarts", 0) + (status == "cutoff")
        if status != "cutoff":
            stats.seconds = time.perf_counter() - t0
            return status, targets, message, stats


def _decode(codes: np.ndarray, width: int) -> np.ndarray:
    """Integer codes -> rows of ±1 (bit j of a code is unit j's output)."""
    return ((codes[:, None] >> np.arange(width)) & 1) * 2.0 - 1.0


def _mask_indices(mask: int) -> np.ndarray:
    s = bin(mask)[:1:-1]
    return np.flatnonzero(np.frombuffer(s.encode(), dtype=np.uint8) == 49)


class TargetSearch:
    """One run of the depth-first search over canonical hidden targets (module docstring).

    ``x`` (m, n) must have distinct rows and ``t`` (m, k) be ±1; ``order`` is the order in
    which examples are assigned (default: as given); ``hint`` rows are in the given order and
    are put into canonical form here. Candidate rows are tried by violated units above plus
    flipped bits. ``shared`` and ``stats`` let several runs share LP caches and counters.
    """

    def __init__(self, x: np.ndarray, t: np.ndarray, hidden: list[int], hint: Hint | None = None,
                 node_limit: int | None = None, *, order=None,
                 backjump: bool = True, shared: dict | None = None, stats: SearchStats | None = None) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.m = len(self.x)
        self.order = np.arange(self.m) if order is None else np.asarray(order, dtype=np.int64)
        if sorted(self.order.tolist()) != list(range(self.m)):
            raise ValueError("order must be a permutation of the examples")
        self.rank = np.empty(self.m, dtype=np.int64)
        self.rank[self.order] = np.arange(self.m)
        self.t = np.asarray(t, dtype=np.float64)[self.order]  # targets in search order
        self.hidden = list(hidden)
        self.L = len(self.hidden) + 1
        self.widths = [self.x.shape[1], *self.hidden, self.t.shape[1]]
        self.node_limit = node_limit
        self.backjump = backjump
        self.stats = stats if stats is not None else SearchStats()
        self.deadline: float | None = None
        # Caches survive restarts with other example orders: layer-1 dichotomies are keyed by
        # masks over the examples' original indices, code dichotomies by masks over codes.
        shared = {} if shared is None else shared
        if "z" not in shared:
            z, shared["x_to_z"] = scaled_coordinates(self.x)
            shared["z"] = np.hstack([z, np.ones((self.m, 1))])
            shared["cache1"], shared["cache_code"], shared["decoded"] = {}, {}, {}
        self.z = shared["z"]
        self._x_to_z = shared["x_to_z"]
        # separability caches: dichotomy -> (separator or None, conflict mask)
        self.cache1: dict[tuple[int, int], tuple[np.ndarray | None, int]] = shared["cache1"]
        self.cache_code: dict[tuple[int, int, int], tuple[np.ndarray | None, int]] = shared["cache_code"]
        self._decoded: dict[tuple[int, int], np.ndarray] = shared["decoded"]
        self.hint = self._canonical_hint(hint) if hint is not None else None

    # ---- separability of one unit's partial problem --------------------------------------
    def _separator(self, cache: dict, prefix: tuple, pos: int, neg: int, ncols: int,
                   rows_of, exact_of=None, to_rows=None) -> tuple[np.ndarray | None, int]:
        """Cached separator of items ``pos`` vs ``neg`` (bit masks), with rows_of(indices) giving
        their LP rows ([inputs, 1]); or None and a mask of items whose targets already conflict,
        checked exactly on exact_of(indices) (their original inputs; default: the LP's), with
        to_rows mapping a separator there to the LP's inputs (see :func:`.lp.conflict_lp`).
        A problem and its mirror (classes swapped) share one cache entry."""
        flip = pos > neg
        if flip:
            pos, neg = neg, pos
        key = (*prefix, pos, neg)
        hit = cache.get(key)
        if hit is not None:
            self.stats.cache_hits += 1
            sol, conflict = hit
        else:
            conflict = 0
            if pos == 0 or neg == 0:
                sol = np.zeros(ncols)
                sol[-1] = 1.0 if neg == 0 else -1.0
            else:
                ia, ib = _mask_indices(pos), _mask_indices(neg)
                items = np.concatenate([ia, ib])
                self.stats.lp_calls += 1
                targets = np.concatenate([np.ones(len(ia)), -np.ones(len(ib))])
                sol, support, how = conflict_lp(rows_of(items)[:, :-1], targets,
                                                None if exact_of is None else exact_of(items), to_rows,
                                                deadline=self.deadline)
                if how != "exact":  # counted as float_conflicts or thin_conflicts
                    self.stats.extra[how + "_conflicts"] = self.stats.extra.get(how + "_conflicts", 0) + 1
                for i in items[support]:
                    conflict |= 1 << int(i)
            cache[key] = (sol, conflict)
        if sol is None:
            return None, conflict
        return (-sol if flip else sol), 0

    def _check1(self, pos: int, neg: int) -> tuple[np.ndarray | None, int]:
        """Layer 1: separator of examples ``pos`` vs ``neg`` (bit masks over example positions,
        z-space [w, b]); or None and a mask of examples whose targets already conflict."""
        return self._separator(self.cache1, (), pos, neg, self.z.shape[1], lambda idx: self.z[idx],
                               lambda idx: self.x[idx], self._separator_on_z)

    def _separator_on_z(self, w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
        """A separator (w, b) on X as one on z = (X - mean) / spread (constant columns dropped):
        w.x + b = (w * spread).z + (b + w.mean)."""
        mean, spread, cols = self._x_to_z
        return w[cols] * spread[cols], b + float(w @ mean)

    def _check_code(self, width: int, pos: int, neg: int) -> tuple[np.ndarray | None, int]:
        """Layers >= 2: separator of ±1 codes ``pos`` vs ``neg`` (bit masks over codes), or None
        and a mask of codes that already conflict."""
        def rows_of(codes: np.ndarray) -> np.ndarray:
            return np.hstack([_decode(codes, width), np.ones((len(codes), 1))])

        return self._separator(self.cache_code, (width,), pos, neg, width + 1, rows_of)

    def _decode_row(self, width: int, code: int) -> np.ndarray:
        row = self._decoded.get((width, code))
        if row is None:
            row = np.append(_decode(np.array([code]), width)[0], 1.0)
            self._decoded[(width, code)] = row
        return row

    # ---- hints -------------------------------------------------------------------------
    def _canonical_hint(self, hint: Hint) -> Hint:
        """Flip and sort the hint's columns like the search's canonical form (first row +1, lex order)."""
        first, second, conf = [], [], []
        o = self.order
        for d, h in enumerate(hint.first):
            h = np.where(np.asarray(h, dtype=np.float64)[o] > 0, 1.0, -1.0)
            if h.shape != (self.m, self.hidden[d]):
                raise ValueError(f"hint for hidden layer {d + 1} has shape {h.shape}, "
                                 f"expected {(self.m, self.hidden[d])}")
            flip = h[0].copy()
            h = h * flip
            perm = np.lexsort(h[::-1])[::-1]  # columns in decreasing lexicographic order
            first.append(h[:, perm])
            if hint.second is not None:
                s = np.asarray(hint.second[d], dtype=np.float64)[o]
                s = np.where(s > 0, 1.0, np.where(s < 0, -1.0, h * flip))  # 0 = same as first
                second.append((s * flip)[:, perm])
            c = (np.ones_like(h) if hint.confidence is None
                 else np.abs(np.asarray(hint.confidence[d], dtype=np.float64))[o])
            conf.append(c[:, perm])
        return Hint(first, second if hint.second is not None else None, conf)

    # ---- state ---------------------------------------------------------------------------
    def _setup_state(self) -> None:
        L, m = self.L, self.m
        self.rows = [None] + [np.zeros((m, w)) for w in self.hidden] + [self.t]  # rows[d][i]
        self.codes = [None] + [np.zeros(m, dtype=np.int64) for _ in self.hidden]
        self.codes.append(((self.t > 0).astype(np.int64) << np.arange(self.widths[L])).sum(1))
        # per layer d (1..L), per unit: pos mask, neg mask, current separator
        self.pos = [None] + [[0] * self.widths[d] for d in range(1, L + 1)]
        self.neg = [None] + [[0] * self.widths[d] for d in range(1, L + 1)]
        self.sep = [None] + [[None] * self.widths[d] for d in range(1, L + 1)]
        # seen[d] (d >= 2): code of layer d-1's row -> (code of layer d's row, first example with it)
        self.seen: list[dict[int, tuple[int, int]] | None] = [None, None] + [{} for _ in range(2, L + 1)]
        # tied[d][u]: columns u and u+1 of hidden layer d are equal so far
        self.tied = [None] + [[True] * (w - 1) for w in self.hidden]
        # conflict-directed backjumping: levels are (example, layer) pairs, top layer first
        self.levels = [(i, d) for i in range(m) for d in range(L - 1, 0, -1)]
        self.conf = [0] * len(self.levels)
        self.gens: list = [None] * len(self.levels)
        self.undo: list = [None] * len(self.levels)
        self.same_layer_before = [0] * len(self.levels)  # levels (e, d) with e < i, as a mask
        acc = [0] * (L + 1)
        for k, (_, d) in enumerate(self.levels):
            self.same_layer_before[k] = acc[d]
            acc[d] |= 1 << k

    def _bit(self, i: int, d: int) -> int:
        """Conflict-set bit of the level that chose hidden layer d's row of example i (0 for T)."""
        if d >= self.L:
            return 0
        return 1 << (i * (self.L - 1) + (self.L - 1 - d))

    def _deadline_check(self) -> None:
        s = self.stats
        if self.node_limit is not None and s.nodes >= self.node_limit:
            raise BudgetExceeded("node limit")
        if self.cutoff is not None and s.nodes - self.start_nodes >= self.cutoff:
            raise Cutoff("restart cutoff")
        if self.deadline is not None and (s.candidates & 15) == 0 and time.perf_counter() > self.deadline:
            raise BudgetExceeded("time limit")

    # ---- candidates ------------------------------------------------------------------------
    def _current_row(self, i: int, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Row of hidden layer d that the current separators compute on example i, and |z|."""
        h = self.z[self.order[i]]
        for dd in range(1, d + 1):
            with np.errstate(over="ignore", invalid="ignore"):  # huge inputs: a nan score (inf - inf) counts as 0
                z = np.nan_to_num(np.array([(s @ h) if s is not None else 0.0 for s in self.sep[dd]]), nan=0.0)
            r = np.where(z > 0, 1.0, -1.0)
            h = np.append(r, 1.0)
        return r, np.abs(z)

    def _candidates(self, i: int, d: int, domain: list[tuple[float, ...]], tied: tuple[bool, ...]):
        """Rows for (example i, hidden layer d) in heuristic order, restricted to ``domain``
        (allowed values per bit) and to the lexicographic column order."""
        w = self.hidden[d - 1]
        if self.hint is not None:
            pref = self.hint.first[d - 1][i]
            conf = self.hint.confidence[d - 1][i]
            extra = [self.hint.second[d - 1][i]] if self.hint.second is not None else []
            extra.append(self._current_row(i, d)[0])
        else:
            pref, conf = self._current_row(i, d)
            extra = []
        base = np.array([v[0] if len(v) == 1 else pref[u] for u, v in enumerate(domain)])
        free = [u for u in range(w) if len(domain[u]) == 2]
        free.sort(key=lambda u: conf[u])
        tried = set()
        pairs = [u for u in range(w - 1) if tied[u]]

        def ok(r) -> bool:
            return all(r[u] >= r[u + 1] for u in pairs) and all(r[u] in domain[u] for u in range(w))

        for r in [base, *extra]:
            key = r.tobytes()
            if key not in tried and ok(r):
                tried.add(key)
                yield r
        if len(free) <= 12:
            yield from self._sorted_rows(i, d, base, free, conf, pairs, tried)
            return
        for k in range(1, len(free) + 1):
            for flips in itertools.combinations(free, k):
                r = base.copy()
                r[list(flips)] *= -1
                key = r.tobytes()
                if key in tried or not ok(r):
                    continue
                tried.add(key)
                yield r

    def _sorted_rows(self, i, d, base, free, conf, pairs, tried):
        """All rows that differ from ``base`` on free bits, best first: fewest units of the
        layer above whose current separator they would violate, then fewest flips from base."""
        nf = len(free)
        flips = ((np.arange(1 << nf)[:, None] >> np.arange(nf)) & 1).astype(bool)
        rows = np.repeat(base[None, :], len(flips), axis=0)
        rows[:, free] = np.where(flips, -base[free], base[free])
        keep = np.ones(len(rows), dtype=bool)
        for u in pairs:
            keep &= rows[:, u] >= rows[:, u + 1]
        rows, flips = rows[keep], flips[keep]
        up = d + 1
        target = self.rows[up][i]
        viol = np.zeros(len(rows))
        aug = np.hstack([rows, np.ones((len(rows), 1))])
        for u in range(self.widths[up]):
            sep = self.sep[up][u]
            if sep is not None:
                viol += (target[u] * (aug @ sep)) <= 0
        cost = flips @ (1.0 + np.asarray(conf, dtype=np.float64)[free] / (1.0 + np.max(np.abs(conf))))
        key = np.lexsort((viol, cost + viol))
        for j in key:
            r = rows[j]
            kb = r.tobytes()
            if kb not in tried:
                tried.add(kb)
                yield r

    def _layer1_options(self, i: int) -> list[dict]:
        """Per layer-1 unit, what is known about its values on example i: value -> separator
        (allowed: the column stays separable on X) or None (excluded), with ("why", value) ->
        conflict mask of levels. Values are decided lazily; a unit's current separator decides
        the value it already predicts without an LP. Units with equal columns share one dict."""
        z = self.z[self.order[i]]
        memo: dict[tuple[int, int], dict] = {}
        out = []
        for u in range(self.hidden[0]):
            key = (self.pos[1][u], self.neg[1][u])
            if key not in memo:
                st: dict = {"key": key}
                sep = self.sep[1][u]
                if sep is not None:
                    with np.errstate(over="ignore", invalid="ignore"):
                        score = float(sep @ z)
                    if np.isfinite(score) and score != 0:  # inf - inf = nan decides nothing
                        st[1.0 if score > 0 else -1.0] = sep
                        self.stats.reused_separators += 1
                memo[key] = st
            out.append(memo[key])
        return out

    def _allowed1(self, i: int, st: dict, v: float) -> bool:
        """Decide (and remember) whether a layer-1 unit with options ``st`` may take value v on example i."""
        if v not in st:
            pos, neg = st["key"]
            bit = 1 << int(self.order[i])  # layer-1 masks are over original example indices
            sep, conflict = self._check1(pos | bit, neg) if v > 0 else self._check1(pos, neg | bit)
            st[v] = sep
            if sep is None:
                why = 0
                for e in _mask_indices(conflict & ~bit):
                    why |= self._bit(int(self.rank[e]), 1)
                st[("why", v)] = why
        return st[v] is not None

    def _upper_check(self, i: int, d: int, r: np.ndarray):
        """Can hidden layer d take row r on example i, given the row above (layer d+1, or T)?
        Returns (code, updates for layer d+1's units) or (None, conflict mask of levels)."""
        up = d + 1
        code = int(((r > 0).astype(np.int64) << np.arange(len(r))).sum())
        ucode = int(self.codes[up][i])
        seen = self.seen[up]
        here = self._bit(i, up)  # the row above this one is part of every reason
        if code in seen:
            other, e = seen[code]
            if other != ucode:
                self.stats.contradictions += 1
                return None, here | self._bit(e, d) | self._bit(e, up)
            return code, []
        hrow = self._decode_row(len(r), code)
        urow = self.rows[up][i]
        updates = []
        memo: dict[tuple[int, int, float], tuple] = {}
        bit = 1 << code
        for u in range(self.widths[up]):
            v = urow[u]
            pos, neg, sep = self.pos[up][u], self.neg[up][u], self.sep[up][u]
            npos, nneg = (pos | bit, neg) if v > 0 else (pos, neg | bit)
            if sep is not None and v * float(sep @ hrow) > 0:
                self.stats.reused_separators += 1
                s, conflict = sep, 0
            elif (pos, neg, v) in memo:
                s, conflict = memo[(pos, neg, v)]
            else:
                s, conflict = self._check_code(len(r), npos, nneg)
                memo[(pos, neg, v)] = (s, conflict)
            if s is None:
                reason = here
                for c in _mask_indices(conflict & ~bit):
                    e = seen[int(c)][1]
                    reason |= self._bit(e, d) | self._bit(e, up)
                return None, reason
            updates.append((u, npos, nneg, s))
        return code, updates

    # ---- levels: enter, next accepted row, undo ------------------------------------------------
    def _enter(self, k: int) -> None:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise BudgetExceeded("time limit")
        i, d = self.levels[k]
        w = self.hidden[d - 1]
        reason = 0
        options = self._layer1_options(i) if d == 1 else None
        domain = [(1.0, -1.0)] * w
        if i == 0:
            domain = [(1.0,)] * w  # sign symmetry: every hidden column starts with +1
        tied = tuple(self.tied[d])
        if i > 0 and any(tied):
            reason |= self.same_layer_before[k]  # the lexicographic order depends on all rows above
        self.conf[k] = reason
        self.gens[k] = (self._candidates(i, d, domain, tied), options)

    def _next(self, k: int) -> bool:
        """Apply the next acceptable row at level k; False when there is none left."""
        i, d = self.levels[k]
        gen, options = self.gens[k]
        for r in gen:
            self.stats.candidates += 1
            self._deadline_check()
            if options is not None:  # layer 1: every unit's column must stay separable on X
                bad = next((u for u in range(len(r)) if not self._allowed1(i, options[u], r[u])), None)
                if bad is not None:
                    self.conf[k] |= options[bad][("why", r[bad])]
                    continue
            code, updates = self._upper_check(i, d, r)
            if code is None:
                self.conf[k] |= updates
                continue
            up = d + 1
            saved_up = [(u, self.pos[up][u], self.neg[up][u], self.sep[up][u]) for u, *_ in updates]
            for u, npos, nneg, s in updates:
                self.pos[up][u], self.neg[up][u], self.sep[up][u] = npos, nneg, s
            new_code = code not in self.seen[up]
            if new_code:
                self.seen[up][code] = (int(self.codes[up][i]), i)
            w = len(r)
            saved_tied = list(self.tied[d])
            for u in range(w - 1):
                self.tied[d][u] = saved_tied[u] and r[u] == r[u + 1]
            self.rows[d][i] = r
            self.codes[d][i] = code
            saved_1 = None
            if d == 1:
                saved_1 = (list(self.pos[1]), list(self.neg[1]), list(self.sep[1]))
                bit = 1 << int(self.order[i])
                for u in range(w):
                    pos, neg = self.pos[1][u], self.neg[1][u]
                    self.sep[1][u] = options[u][r[u]]
                    if r[u] > 0:
                        self.pos[1][u] = pos | bit
                    else:
                        self.neg[1][u] = neg | bit
            self.undo[k] = (saved_up, new_code, code, saved_tied, saved_1)
            self.stats.nodes += 1
            if self.hint is not None and np.array_equal(r, self.hint.first[d - 1][i]):
                self.stats.hint_rows_taken += 1
            return True
        return False

    def _undo(self, k: int) -> None:
        i, d = self.levels[k]
        saved_up, new_code, code, saved_tied, saved_1 = self.undo[k]
        self.undo[k] = None
        up = d + 1
        if saved_1 is not None:
            self.pos[1][:], self.neg[1][:], self.sep[1][:] = saved_1
        self.tied[d][:] = saved_tied
        if new_code:
            del self.seen[up][code]
        for u, p, n, s in saved_up:
            self.pos[up][u], self.neg[up][u], self.sep[up][u] = p, n, s

    # ---- the search ----------------------------------------------------------------------
    def run(self, cutoff: int | None = None, deadline: float | None = None) -> tuple[str, list | None, str]:
        """Search. Returns (status, hidden targets in the original example order or None, message).

        ``cutoff``: give up ("cutoff") after this many nodes of this run; ``deadline``: an
        absolute time.perf_counter() value (None: no limit).
        """
        t0 = time.perf_counter()
        self.deadline = deadline
        self.cutoff, self.start_nodes = cutoff, self.stats.nodes
        try:
            return self._run()
        except Cutoff:
            return "cutoff", None, f"restart cutoff of {cutoff} nodes reached"
        except (BudgetExceeded, DeadlineReached) as exc:
            return "unknown", None, f"{exc} reached after {self.stats.nodes} nodes; the search was not finished"
        finally:
            self.stats.seconds += time.perf_counter() - t0

    def _run(self):
        if self.L == 1:  # no hidden layer: each output unit must be separable from X
            for u in range(self.widths[1]):
                pos = sum(1 << int(self.order[i]) for i in np.flatnonzero(self.t[:, u] > 0))
                neg = sum(1 << int(self.order[i]) for i in np.flatnonzero(self.t[:, u] < 0))
                if self._check1(pos, neg)[0] is None:
                    return "infeasible", None, f"output unit {u} is not linearly separable from X"
            return "feasible", [], "every output unit is separable from X"
        self._setup_state()
        last = len(self.levels) - 1
        k = 0
        self._enter(0)
        while True:
            if self._next(k):
                self.stats.deepest = max(self.stats.deepest, self.levels[k][0] + 1)
                if k == last:
                    targets = [r[self.rank].copy() for r in self.rows[1:self.L]]  # original order
                    return "feasible", targets, "feasible target setting found"
                k += 1
                self._enter(k)
                continue
            # level k has no row left: jump back to the latest level its failure depends on
            self.stats.backtracks += 1
            conf = self.conf[k] if self.backjump else (1 << k) - 1
            if conf == 0:
                return "infeasible", None, "every canonical target setting was ruled out (complete search)"
            h = conf.bit_length() - 1
            self.conf[h] |= conf & ~(1 << h)
            if h < k - 1:
                self.stats.extra["backjumped_levels"] = self.stats.extra.get("backjumped_levels", 0) + (k - 1 - h)
            for j in range(k - 1, h - 1, -1):
                self._undo(j)
                if j > h:
                    self.gens[j] = None
            k = h
