"""Networks of sign units as plain float64 arrays, input checks, and the result of a solve.

A network is a list of layers ``(W_d, b_d)`` with W_d of shape (n_d, n_{d-1}); every unit is a
sign unit, +1 if w.h + b > 0 else -1 (sign(0) = -1, as everywhere in ftprop), the output
layer included. Every "feasible" answer of every method is checked by :func:`forward` here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..runs import atomic_write
from .certify import exact_signs

__all__ = ["SolveResult", "forward", "check_problem", "dedupe", "fits", "STATUSES"]

STATUSES = ("feasible", "infeasible", "unknown")


def forward(weights, x, *, all_layers: bool = False):
    """Outputs of the sign network ``weights`` on inputs x (m, n): the float64 scores decide,
    except those within float64's rounding error of 0, which are decided in exact arithmetic
    (:func:`.certify.exact_signs`), so no order of summation changes an output.

    With ``all_layers=True`` return the list [h_1, ..., h_L] of every layer's outputs.
    """
    h = np.asarray(x, dtype=np.float64)
    outs = []
    for w, b in weights:
        h = exact_signs(h, np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64))
        outs.append(h)
    return outs if all_layers else h


def fits(weights, x, t) -> bool:
    """Does the network reproduce targets t on every example (:func:`forward`)?"""
    return bool(np.array_equal(forward(weights, x), np.asarray(t, dtype=np.float64)))


def check_problem(x, t, hidden) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Validate (X, T, hidden widths); return float64 X (m, n), T (m, k) and the widths.

    Raises ValueError with one clear message for anything a user can get wrong.
    """
    for name, a in (("X", x), ("T", t)):
        if np.iscomplexobj(a):  # cast to float64 it would lose its imaginary part, and with it examples
            raise ValueError(f"{name} holds complex numbers: inputs and targets must be real")
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X must be a numeric array (examples x features): {exc}") from None
    try:
        t = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"T must be a numeric array of -1/+1 targets: {exc}") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"X must be 2-D (examples x features), got shape {x.shape}")
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(f"T must be 2-D (examples x outputs) or a vector, got shape {t.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"X is empty (shape {x.shape}): need at least one example and one feature")
    if t.shape[1] == 0:
        raise ValueError("T has no output columns")
    if t.shape[0] != x.shape[0]:
        raise ValueError(f"X has {x.shape[0]} examples but T has {t.shape[0]}: one target row per example")
    if not np.all(np.isfinite(x)):
        raise ValueError("X contains NaN or infinity")
    if not np.all((t == 1) | (t == -1)):
        bad = np.unique(t[(t != 1) & (t != -1)])[:5]
        hint = " (for 0/1 labels use T = 2*y - 1)" if np.all(np.isin(t, (0, 1))) else ""
        raise ValueError(f"T must contain only -1 and +1, found {bad.tolist()}{hint}")
    if isinstance(hidden, (int, np.integer)):
        hidden = [hidden]
    try:
        widths = [int(h) for h in hidden]
    except (TypeError, ValueError):
        raise ValueError(f"hidden must be a list of layer widths, got {hidden!r}") from None
    if any(h != hh for h, hh in zip(widths, hidden)) or any(w < 1 for w in widths):
        raise ValueError(f"hidden layer widths must be integers >= 1, got {list(hidden)!r}")
    return x, t, widths


def dedupe(x: np.ndarray, t: np.ndarray):
    """Distinct rows of X, in order of first appearance, with their targets.

    Returns (x_unique, t_unique, index_of_first, inverse, clash) where clash is None or a pair
    (i, j) of examples with equal inputs and different targets (then no network exists).
    """
    _, first, inverse = np.unique(x, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(first)  # keep first-appearance order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    first = first[order]
    inverse = rank[inverse]
    tu = t[first]
    bad = np.flatnonzero(np.any(t != tu[inverse], axis=1))
    clash = None if len(bad) == 0 else (int(first[inverse[bad[0]]]), int(bad[0]))
    return x[first], tu, first, inverse, clash


@dataclass
class SolveResult:
    """Outcome of :func:`ftprop.exact.solve`.

    status: "feasible" (``weights`` reproduce T exactly, checked by a float64 forward pass),
        "infeasible" (proved: no weights exist for this architecture), or "unknown" (budget
        spent, or a method that cannot prove infeasibility).
    weights: list of (W_d, b_d) float64 arrays, input layer first, when feasible.
    hidden_targets: the hidden layers' outputs on X (the feasible target setting), when feasible.
    stats: nodes, lp_calls, cache_hits, seconds and method-specific counters.
    message: one line saying why this status.
    """

    status: str
    method: str
    hidden: list[int]
    weights: list[tuple[np.ndarray, np.ndarray]] | None = None
    hidden_targets: list[np.ndarray] | None = None
    stats: dict = field(default_factory=dict)
    message: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def feasible(self) -> bool:
        return self.status == "feasible"

    def predict(self, x) -> np.ndarray:
        """Outputs of the found network on new inputs."""
        if self.weights is None:
            raise ValueError(f"no network: status is {self.status!r}")
        return forward(self.weights, x)

    def save(self, path) -> Path:
        """Save the weights (W1, b1, W2, b2, ...) and the architecture to an .npz file (``.npz`` is
        added to a name without it, as np.savez does); return the path written."""
        if self.weights is None:
            raise ValueError(f"no weights to save: status is {self.status!r}")
        arrays = {}
        for d, (w, b) in enumerate(self.weights, 1):
            arrays[f"W{d}"] = w
            arrays[f"b{d}"] = b
        path = Path(path)
        if path.suffix != ".npz":  # as np.savez names a path
            path = path.with_name(path.name + ".npz")
        atomic_write(path, lambda f: np.savez(f, hidden=np.asarray(self.hidden, dtype=np.int64), **arrays))
        return path


def load_weights(path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights saved by :meth:`SolveResult.save`."""
    with np.load(path) as f:
        n = sum(1 for k in f.files if k.startswith("W"))
        return [(f[f"W{d}"], f[f"b{d}"]) for d in range(1, n + 1)]
