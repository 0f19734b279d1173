"""Algorithm 1 made exact on small networks of sign units: feasible target propagation with
feasibility checks (LP), a complete backtracking target search, and a MILP cross-check.

    >>> from ftprop.exact import solve, xor
    >>> X, T = xor()
    >>> solve(X, T, hidden=[2]).status
    'feasible'

Modules: :mod:`.lp` (one unit's separability LP), :mod:`.certify` (its certificates checked
in exact arithmetic), :mod:`.rational` (the LP decided in exact arithmetic, for small problems
float64 cannot settle), :mod:`.search` (the target search),
:mod:`.milp` (the MILP baseline), :mod:`.mb` (FTPROP-MB training, the "mb" method and the
search's heuristic), :mod:`.problems` (generators), :mod:`.report` (``feasibility_report``),
:mod:`.solve` (the ``solve`` entry point), :mod:`.cli` (``ftprop solve``).
"""

from .lp import NumericalTrouble, Separation, separable
from .network import SolveResult, forward, load_weights
from .problems import digits, make_problem, parity, planted, xor
from .report import feasibility_report
from .solve import METHODS, solve

__all__ = [
    "METHODS",
    "NumericalTrouble",
    "Separation",
    "SolveResult",
    "digits",
    "feasibility_report",
    "forward",
    "load_weights",
    "make_problem",
    "parity",
    "planted",
    "separable",
    "solve",
    "xor",
]
