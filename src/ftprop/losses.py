"""Layer losses L(z, t) of feasible target propagation, and their derivatives dL/dz.

Once every hard-threshold unit has a target t, the network splits into perceptrons and
each unit is trained on a *layer loss* of its pre-activation z and its target t. In the
mini-batch algorithm (FTPROP-MB) the target comes from the heuristic t = sign(-g), where g
is dL_next/dh, and the unit's update is |g| * dL/dz(z, t) (weighted) or dL/dz(z, t) / B.

With the |g| weighting, three of these losses are known estimators (PAPER.md §4.5):
``linear`` is the straight-through estimator (STE), ``saturated_hinge`` is the saturated
STE (SSTE) and ``soft_hinge`` is the paper's FTP-SH.

Every loss here is a pure tensor function of (z, t) with t in {-1, 0, +1}; t = 0 means "no
target" and always gives dL/dz = 0, also where z overflowed to +-inf (which counts as the
dtype's largest finite value). Losses whose derivative is piecewise constant in z
declare their ``breakpoints``; the hard-threshold units then save a one-byte region code
for backward instead of the pre-activation.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["LayerLoss", "LOSSES", "get_loss", "available_losses"]

LECUN_A = 1.7159  # LeCun's scaled tanh constant (the reference code writes 1.7519, a typo)


@dataclass(frozen=True, eq=False)
class LayerLoss:
    """A per-unit layer loss ``value(z, t)`` with its analytic derivative ``grad(z, t)``.

    ``breakpoints`` lists the z values where dL/dz may jump, for either sign of t, when
    dL/dz is piecewise constant in z; it is None when dL/dz varies continuously.

    ``phi`` is given for *symmetric* losses, whose derivative is dL/dz(z, t) = -t * phi(z)
    for t = +-1 with phi even; their weighted update is then simply g * phi(z). A
    piecewise-constant phi takes only the values 0 and 1 (it may return a bool mask).
    ``tanh_phi = (a, c)`` says that phi(z) = c * (1 - tanh(a*z)^2): a unit then keeps z, and its
    backward evaluates phi (at each step's argument for the per-step staircase), with no extra
    forward work.

    ``phi_`` is phi written into its argument, for a caller that made that tensor and gives it
    up (the staircase's 2z - 1 or z - theta_i): one allocation fewer than phi. Optional.

    ``update(z, g)`` is the weighted FTPROP-MB update |g| * dL/dz(z, -sign(g)) written directly,
    in fewer passes over memory than the definition, for losses that keep z itself (no ``phi``,
    no ``breakpoints``); it must return a new tensor and leave z and g unchanged. It is optional
    (a loss without one is updated through ``grad``, as is every loss when the backward is itself
    differentiated) and is checked against ``grad`` by the tests.
    """

    name: str
    formula: str
    value: Callable[[Tensor, Tensor], Tensor]
    grad: Callable[[Tensor, Tensor], Tensor]
    breakpoints: tuple[float, ...] | None = None
    aliases: tuple[str, ...] = field(default=())
    note: str = ""
    phi: Callable[[Tensor], Tensor] | None = None
    phi_: Callable[[Tensor], Tensor] | None = None  # phi into its argument (see above)
    tanh_phi: tuple[float, float] | None = None  # (a, c) when phi(z) = c * (1 - tanh(a*z)^2)
    update: Callable[[Tensor, Tensor], Tensor] | None = None  # (z, g) -> |g| * grad(z, -sign(g))

    @property
    def piecewise_constant(self) -> bool:
        return self.breakpoints is not None

    def __repr__(self) -> str:
        return f"LayerLoss({self.name!r}: {self.formula})"


def _ramp_value(u: Tensor) -> Tensor:
    # R(u) = 1.5 - integral_0^u r, with r(s) = clamp(2 - |s|, 0, 1) (a trapezoid).
    a = u.abs()
    inner = torch.where(a <= 1, a, torch.where(a < 2, 2 * a - a * a / 2 - 0.5, torch.full_like(a, 1.5)))
    return 1.5 - torch.sign(u) * inner


def _ramp_phi_of_abs(a: Tensor) -> Tensor:
    """The ramp's phi, clamp(2 - |u|, 0, 1), from a = |u| and written into a, as 2 - clamp(a, 1, 2):
    bit-identical (both round 2 - |u| once where 1 <= |u| <= 2, and are exactly 1 or 0 elsewhere)."""
    return a.clamp_(1, 2).neg_().add_(2)


def _sech2(z: Tensor) -> Tensor:
    """1 - tanh(z)^2, computed in place after one allocation (bit-identical to the formula)."""
    p = torch.tanh(z)
    return p.square_().neg_().add_(1)


def _unit_sign(t: Tensor) -> Tensor:
    """+-1 with the sign of t, -1 at -0.0 and +1 at +0.0: a factor of z that never makes 0 * inf.

    Where t = 0 (no target) the loss's derivative is multiplied by 0 anyway, but sign(t) * z
    there is NaN if z overflowed to +-inf (float16 autocast, the staircase's 2z - 1), and the NaN
    would survive that multiplication. In the symmetric losses sign(t) only appears inside an even
    function, and in the others where t = 0 any sign gives the same 0; one pass, as sign(t)."""
    return torch.copysign(torch.ones((), dtype=t.dtype, device=t.device), t)


def _square_grad(z: Tensor, t: Tensor) -> Tensor:
    # -2t max(0, 1 - tz), its factor capped at the dtype's largest value so that t = 0 gives 0 at z = +-inf
    return -2 * t * (1 - _unit_sign(t) * z).clamp(0, torch.finfo(z.dtype).max)


def _square_update(z: Tensor, g: Tensor) -> Tensor:
    # t = -sign(g): |g| * 2 sign(g) * max(0, 1 + sign(g) z) = 2 g max(0, 1 + sign(g) z), in place after one
    # allocation; max(...) is capped at the dtype's largest value, so g = 0 gives 0 where z = +-inf
    u = _unit_sign(g).mul_(z).add_(1).clamp_(0, torch.finfo(z.dtype).max).mul_(g)
    return u.add_(u)


_DEFS = [
    LayerLoss(
        name="linear",
        aliases=("ste",),
        formula="L = -t*z",
        value=lambda z, t: -t * z,
        grad=lambda z, t: -t * torch.ones_like(z),
        phi=torch.ones_like,
        breakpoints=(),
        note="weighted, this is the straight-through estimator (STE): backward passes g unchanged",
    ),
    LayerLoss(
        name="saturated_hinge",
        aliases=("sste", "truncated_hinge"),
        formula="L = clamp(1 - t*z, 0, 2)",
        value=lambda z, t: (1 - t * z).clamp(0, 2),
        # at the kinks tz = +-1 the subgradient 1[|z| <= 1] is taken: it keeps the loss
        # symmetric and equals the reference code's SSTE rule everywhere
        grad=lambda z, t: -t * (z.abs() <= 1).to(z.dtype),
        phi=lambda z: z.abs() <= 1,
        breakpoints=(-1.0, 1.0),
        note="weighted, this is the saturated STE (SSTE): g * 1[|z| <= 1]",
    ),
    LayerLoss(
        name="hinge",
        formula="L = max(0, 1 - t*z)",
        value=lambda z, t: (1 - t * z).clamp_min(0),
        grad=lambda z, t: -t * (t * z < 1).to(z.dtype),
        breakpoints=(-1.0, 1.0),
        note="unbounded: one wrong target can dominate; the paper found training erratic",
    ),
    LayerLoss(
        name="perceptron",
        formula="L = max(0, -t*z)",
        value=lambda z, t: (-t * z).clamp_min(0),
        grad=lambda z, t: -t * (t * z <= 0).to(z.dtype),
        breakpoints=(0.0,),
        note="the perceptron criterion: only misclassified units move",
    ),
    LayerLoss(
        name="ramp",
        formula="L = 1.5 - sign(tz) * integral_0^|tz| clamp(2 - |s|, 0, 1) ds",
        value=lambda z, t: _ramp_value(t * z),
        grad=lambda z, t: -t * (2 - z.abs()).clamp(0, 1),
        phi=lambda z: _ramp_phi_of_abs(z.abs()),  # in place after one allocation
        phi_=lambda u: _ramp_phi_of_abs(u.abs_()),
        note="the saturated hinge with linear ramps at its corners (the reference's Ramp rule)",
    ),
    LayerLoss(
        name="soft_hinge",
        aliases=("ftp_sh", "sh"),
        formula="L = tanh(-t*z) + 1",
        value=lambda z, t: torch.tanh(-t * z) + 1,
        grad=lambda z, t: -t * (1 - torch.tanh(_unit_sign(t) * z) ** 2),
        phi=_sech2,
        tanh_phi=(1.0, 1.0),
        note="the paper's FTP-SH: weighted, backward is g * (1 - tanh(z)^2); not convex",
    ),
    LayerLoss(
        name="sigmoid",
        formula="L = sigmoid(-2*t*z)",
        value=lambda z, t: torch.sigmoid(-2 * t * z),
        grad=lambda z, t: -2 * t * torch.sigmoid(2 * _unit_sign(t) * z) * torch.sigmoid(-2 * _unit_sign(t) * z),
        phi=lambda z: 2 * torch.sigmoid(2 * z) * torch.sigmoid(-2 * z),
        tanh_phi=(1.0, 0.5),
        note="half the soft hinge: weighted backward is 0.5 * g * (1 - tanh(z)^2)",
    ),
    LayerLoss(
        name="lecun_tanh",
        formula=f"L = {LECUN_A} * tanh(-(2/3)*t*z) + 1",
        value=lambda z, t: LECUN_A * torch.tanh(-(2.0 / 3.0) * t * z) + 1,
        grad=lambda z, t: -t * (LECUN_A * 2.0 / 3.0) * (1 - torch.tanh((2.0 / 3.0) * _unit_sign(t) * z).square()),
        phi=lambda z: (LECUN_A * 2.0 / 3.0) * (1 - torch.tanh((2.0 / 3.0) * z).square()),
        tanh_phi=(2.0 / 3.0, LECUN_A * 2.0 / 3.0),
        note="LeCun's scaled tanh (constant 1.7159; the reference code has 1.7519)",
    ),
    LayerLoss(
        name="square",
        formula="L = max(0, 1 - t*z)^2",
        value=lambda z, t: (1 - t * z).clamp_min(0).square(),
        grad=_square_grad,
        update=_square_update,
        note="the squared hinge",
    ),
    LayerLoss(
        name="log",
        aliases=("logistic",),
        formula="L = log(1 + exp(-t*z))",
        value=lambda z, t: torch.nn.functional.softplus(-t * z),
        grad=lambda z, t: -t * torch.sigmoid(-_unit_sign(t) * z),
        update=lambda z, g: _unit_sign(g).mul_(z).sigmoid_().mul_(g),  # t = -sign(g): g * sigmoid(sign(g) z)
        note="the logistic loss",
    ),
]

LOSSES: dict[str, LayerLoss] = {loss.name: loss for loss in _DEFS}
_ALIASES: dict[str, str] = {alias: loss.name for loss in _DEFS for alias in loss.aliases}


def _canonical(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def get_loss(name: str | LayerLoss) -> LayerLoss:
    """Look a layer loss up by name or alias (``"sste"``, ``"soft-hinge"``, ...)."""
    if isinstance(name, LayerLoss):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a layer loss is given by name (a str), got {type(name).__name__}")
    key = _canonical(name)
    key = _ALIASES.get(key, key)
    if key in LOSSES:
        return LOSSES[key]
    valid = sorted(LOSSES) + sorted(_ALIASES)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown layer loss {name!r}.{hint} Valid names: {', '.join(sorted(LOSSES))} "
        f"(aliases: {', '.join(f'{a}={n}' for a, n in sorted(_ALIASES.items()))})."
    )


def available_losses() -> dict[str, str]:
    """Name -> formula of every registered layer loss."""
    return {name: loss.formula for name, loss in LOSSES.items()}
