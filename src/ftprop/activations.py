"""Hard-threshold units trained by feasible target propagation (FTPROP-MB).

All hard-threshold modules (:class:`Sign`, :class:`Step`, :class:`Staircase`) run through
ONE autograd function. Its forward quantises; its backward is the FTPROP-MB update of the
unit's layer loss (PAPER.md §4):

* the target heuristic sets t = sign(-g), g being the incoming gradient dL_next/dh
  (t = 0 where g = 0: the unit has no target for that example and gets no update);
* ``weighted=True`` passes |g| * dL/dz(z, t) down, ``weighted=False`` passes dL/dz(z, t) / B
  (B = size of dim 0, the batch).

STE, SSTE and FTP-SH are not code paths: they are the ``linear``, ``saturated_hinge`` and
``soft_hinge`` layer losses of :mod:`ftprop.losses`.

Memory: a loss with a piecewise-constant derivative saves a one-byte code of the region of
z (which breakpoint interval it lies in) rather than z itself; ``linear`` saves nothing.

A NaN pre-activation (forward: -1 for sign and 0 for step, as z <= 0; the staircase passes NaN
on) gets a NaN update where the unit keeps z (the smooth losses), and the update of z = -inf where
it keeps a region code or a count (below every breakpoint: every comparison with NaN is false).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor, nn

from . import cuda_kernels
from .losses import LayerLoss, get_loss

__all__ = [
    "ThresholdUnit",
    "HardThreshold",
    "Sign",
    "Step",
    "Staircase",
    "SaturatedReLU",
    "ACTIVATIONS",
    "make_activation",
    "hard_threshold",
]

SURROGATES = ("single", "per_step")


@dataclass(frozen=True, eq=False)
class ThresholdUnit:
    """The math of one kind of hard-threshold unit: its quantiser and its layer-loss update.

    ``kind`` is ``"sign"`` (+1 if z > 0 else -1), ``"step"`` (1 if z > 0 else 0) or
    ``"staircase"`` (``steps`` unit steps at thresholds 0, 1/(steps-1), ..., 1, each adding
    1/steps: the reference code's quantised ReLU).
    """

    kind: str
    loss: LayerLoss
    weighted: bool = True
    steps: int = 1
    surrogate: str = "single"

    def __post_init__(self) -> None:
        # Derived constants, computed once here (functools.cached_property takes a lock that
        # torch.compile cannot trace on Python 3.11).
        for name in ("thresholds", "breakpoints", "saving", "count_scale", "count_spans", "signed_table",
                     "code_bits", "fused_quantizer"):
            object.__setattr__(self, name, getattr(self, f"_compute_{name}")())
        # The mask losses keep one byte per element (a region code, or a count of active steps):
        # a staircase with more regions than a byte holds would wrap around and corrupt the update.
        counted = len(self.count_spans[torch.float64]) if self.count_spans else 1  # steps whose phi is summed
        regions = {"code": 2 * len(self.breakpoints or ()) + 1, "count": counted + 1}.get(self.saving, 0)
        if regions > 256:
            raise ValueError(f"a staircase of {self.steps} steps with the {self.loss.name} layer loss "
                             f"({self.surrogate}) has {regions} regions, more than the one byte per element it "
                             f"keeps for backward can count (256): use fewer steps, or a smooth loss such as "
                             f"soft_hinge")

    # ---- forward -------------------------------------------------------------------
    def _compute_thresholds(self) -> tuple[float, ...]:
        if self.kind != "staircase" or self.steps == 1:
            return (0.0,)
        return tuple(i / (self.steps - 1) for i in range(self.steps))

    def quantize(self, x: Tensor) -> Tensor:
        if cuda_kernels.applies(x):
            return cuda_kernels.quantize(x, *self.fused_quantizer)
        if self.kind in ("sign", "step") or self.steps == 1:
            if self.kind == "sign" and x.device.type != "cpu":
                return _sign_by_where(x)
            out = torch.empty_like(x)
            torch.gt(x, 0, out=out)  # straight to x's dtype: where() and a bool .to() are slow on CPU
            return out.mul_(2).sub_(1) if self.kind == "sign" else out
        n = self.steps
        # (1/n) * sum_i 1[x > i/(n-1)], written as the reference does, in place after one copy
        return (x * (n - 1)).ceil_().clamp_(0, n).div_(n)

    def _compute_fused_quantizer(self) -> tuple[str, int]:
        """(kernel, steps) of :func:`ftprop.cuda_kernels.quantize` for this unit."""
        if self.kind == "staircase" and self.steps == 1:
            return "step", 1
        return self.kind, self.steps

    # ---- the layer loss in x-space ------------------------------------------------
    def _over_steps(self, f, x: Tensor, f_=None) -> Tensor:
        """f of the layer-loss argument(s) of x: z itself, 2z - 1 (one soft unit over the
        staircase), or the mean of f over each step's z - theta_i. ``f_``, f written into its
        argument, serves the arguments made here (never x itself)."""
        if self.kind != "staircase" or self.steps == 1:
            return f(x)
        f_ = f_ or f
        if self.surrogate == "single":  # [0, 1] is mapped onto [-1, 1]: 2x - 1 in one pass
            return f_(torch.add(_constant(-1.0, x), x, alpha=2.0))
        out = f_(x - self.thresholds[0])
        for theta in self.thresholds[1:]:
            out = out + f_(x - theta)
        return out.div_(self.steps)  # a sum made here: divided in place

    def loss_grad(self, x: Tensor, t: Tensor) -> Tensor:
        """dL/dz of this unit's layer loss at pre-activation x and target t (the definition)."""
        return self._over_steps(lambda z: self.loss.grad(z, t), x)

    def loss_value(self, x: Tensor, t: Tensor) -> Tensor:
        """L(z, t) of this unit's layer loss (the function whose derivative is loss_grad)."""
        if self.kind == "staircase" and self.steps > 1 and self.surrogate == "single":
            return self.loss.value(2 * x - 1, t) / 2  # d/dx of this is grad(2x - 1, t)
        return self._over_steps(lambda z: self.loss.value(z, t), x)

    def _compute_breakpoints(self) -> tuple[float, ...] | None:
        """x values where loss_grad may jump, if it is piecewise constant; else None."""
        bps = self.loss.breakpoints
        if bps is None:
            return None
        if self.kind != "staircase" or self.steps == 1:
            pts = set(bps)
        elif self.surrogate == "single":
            pts = {(b + 1) / 2 for b in bps}
        else:
            pts = {b + theta for b in bps for theta in self.thresholds}
        return tuple(sorted(pts))

    # ---- what backward needs ------------------------------------------------------
    def _compute_saving(self) -> str:
        """What forward keeps for backward, the least that gives the exact update:

        ``none``   linear loss: the update is g (or sign(g)/B) -- nothing to keep;
        ``count``  symmetric piecewise-constant loss (saturated hinge): phi in {0, 1} per
                   step, kept as a uint8 count of the steps where it is 1;
        ``tanh``   phi(z) = c * (1 - tanh(a*z)^2) (soft hinge, sigmoid, LeCun tanh): z itself
                   (already in memory: forward does no extra work), and backward evaluates phi
                   at each of the loss's arguments (see :func:`_tanh_phi_update`);
        ``phi``    other symmetric smooth losses (ramp): z itself, and backward is g * phi(z), phi
                   evaluated there (on CPU a fresh tensor the size of z costs several passes, so
                   making phi in forward cost more than keeping z: ``perf.py unit-time``);
        ``code``   other piecewise-constant losses (hinge, perceptron): a uint8 code of the
                   interval of z between breakpoints, looked up in a table per target; or, when
                   the table holds one nonzero value (hinge, perceptron), two bits, the update's
                   mask for either target (see :meth:`_compute_code_bits`);
        ``input``  other smooth losses (square, log): z itself.

        When the backward is itself differentiated (create_graph=True), the update is
        differentiated through g always, and through z where z is kept (``tanh``, ``phi``,
        ``input``); for ``count`` and ``code`` the update's slope in z is 0 anyway.
        """
        loss = self.loss
        if loss.phi is not None:
            if loss.breakpoints == ():
                return "none"
            if loss.breakpoints is not None:
                return "count"
            return "tanh" if loss.tanh_phi is not None else "phi"
        return "code" if loss.breakpoints is not None else "input"

    def _compute_count_scale(self) -> float:
        per_step = self.kind == "staircase" and self.steps > 1 and self.surrogate == "per_step"
        return 1.0 / self.steps if per_step else 1.0

    def _compute_count_spans(self) -> dict[torch.dtype, tuple[tuple[float, float], ...]] | None:
        """For the ``count`` saving: per floating dtype of x, the x interval [lo, hi] of each step
        where phi is 1, its ends rounded inwards to values of that dtype (x is compared with them
        in its own dtype). The count compares x with these ends rather than mapping x onto each
        step's argument (2x - 1, x - theta) first, since that rounds: in bfloat16, 2x - 1 is -1 for
        x = -1e-3, just outside the staircase, and phi would be 1 there. For one unit at z = x the
        interval is phi's own: two comparisons are cheaper than phi's |x| <= 1 on CPU."""
        if self.saving != "count":
            return None
        lo, hi = self.loss.breakpoints
        ends = self.loss.phi(torch.tensor([lo, hi, lo - 1.0, hi + 1.0], dtype=torch.float64)).tolist()
        if ends != [True, True, False, False]:
            raise NotImplementedError(f"the count saving takes a phi that is 1 on [lo, hi], 0 outside; "
                                      f"{self.loss.name}'s is not")
        lo, hi = Fraction(lo), Fraction(hi)
        if self.kind != "staircase" or self.steps == 1:  # z = x: two comparisons, no |x| to allocate
            spans = [(lo, hi)]
        elif self.surrogate == "single":  # z = 2x - 1
            spans = [((lo + 1) / 2, (hi + 1) / 2)]
        else:  # z = x - theta_i, theta_i = i / (steps - 1), exactly
            spans = [(lo + Fraction(i, self.steps - 1), hi + Fraction(i, self.steps - 1)) for i in range(self.steps)]

        def inwards(end: Fraction, dtype: torch.dtype, up: bool) -> float:  # the dtype's first value inside
            v = torch.tensor(float(end), dtype=torch.float64).to(dtype)
            while (Fraction(v.item()) < end) if up else (Fraction(v.item()) > end):
                v = torch.nextafter(v, torch.tensor(math.inf if up else -math.inf, dtype=dtype))
            return v.item()

        return {dtype: tuple((inwards(a, dtype, True), inwards(b, dtype, False)) for a, b in spans)
                for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16)}

    def _compute_signed_table(self) -> tuple[float, ...] | None:
        """dL/dz(t = -1, code) for every region code, then -dL/dz(t = +1, code), each evaluated
        once at a representative point of the region (see :meth:`backward`)."""
        bps = self.breakpoints
        if bps is None:
            return None
        reps = []
        for code in range(2 * len(bps) + 1):
            j = code // 2
            if code % 2:
                reps.append(bps[j])
            elif not bps:
                reps.append(0.0)
            elif j == 0:
                reps.append(bps[0] - 1.0)
            elif j == len(bps):
                reps.append(bps[-1] + 1.0)
            else:
                reps.append((bps[j - 1] + bps[j]) / 2)
        x = torch.tensor(reps, dtype=torch.float64)
        grad = (self.loss_grad(x, torch.full_like(x, t)).tolist() for t in (-1.0, 1.0))
        return tuple(next(grad)) + tuple(-v for v in next(grad))

    def _compute_code_bits(self) -> tuple[float, tuple, tuple] | None:
        """When every nonzero entry of :attr:`signed_table` is one value v (hinge, perceptron and
        their single-surrogate staircases: v = 1), the ``code`` saving keeps two bits instead of
        the region code: bit 0 says whether the update is v * g for t = -1 (g > 0), bit 1 for t = +1
        (g < 0). Backward is then a shift and a mask, not a table lookup. Each bit is made from
        x by comparisons with the breakpoints: (v, bit 0's, bit 1's), a bit's being (its value in
        the first region, the comparisons (breakpoint, strict) whose results flip it), from the
        region codes' order (code > 2j iff x >= b_j, code > 2j + 1 iff x > b_j). None otherwise."""
        table = self.signed_table
        if table is None or len({v for v in table if v != 0}) != 1:
            return None
        width = len(table) // 2
        bits = []
        for row in (table[:width], table[width:]):
            on = [v != 0 for v in row]
            flips = tuple((self.breakpoints[c // 2], c % 2 == 1) for c in range(width - 1) if on[c + 1] != on[c])
            bits.append((on[0], flips))
        return next(v for v in table if v != 0), bits[0], bits[1]

    def _code_bit(self, x: Tensor, first: bool, flips: tuple) -> Tensor:
        """One of :attr:`code_bits`' bits of x, as a bool tensor (NaN: the first region's, as its code)."""
        bit = None
        for b, strict in flips:
            above = torch.gt(x, b) if strict else torch.ge(x, b)
            bit = above if bit is None else bit.logical_xor_(above)
        if bit is None:
            bit = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
        return bit.logical_not_() if first else bit

    def save(self, x: Tensor) -> Tensor | None:
        """What the backward pass keeps of x (see :attr:`saving`)."""
        mode = self.saving
        if mode == "none":
            return None
        if mode in ("tanh", "phi", "input"):
            return x
        if mode == "count":
            count = None
            for lo, hi in self.count_spans[x.dtype]:
                inside = _as_bytes(torch.logical_and(x >= lo, x <= hi))
                count = inside if count is None else count.add_(inside)
            return count
        if self.code_bits is not None:  # two bits: the update's mask for t = -1, and for t = +1
            _, neg, pos = self.code_bits
            return torch.add(_as_bytes(self._code_bit(x, *neg)), _as_bytes(self._code_bit(x, *pos)), alpha=2)
        # code = #{b < x} + #{b <= x}: 2j strictly inside the j-th interval, 2j + 1 on breakpoint j
        # (bool masks summed as bytes: bucketize and bool -> int conversions are far slower on CPU)
        code = _as_bytes(x > self.breakpoints[0])
        code = code + _as_bytes(x >= self.breakpoints[0])
        for b in self.breakpoints[1:]:
            code += _as_bytes(x > b)
            code += _as_bytes(x >= b)
        return code

    def tanh_args(self, batch: int) -> tuple[float, float, float, int, bool]:
        """(a, b, c, steps, sign_of_g) of the ``tanh`` saving's update c * g' * mean_i (1 - tanh(a*x
        - b - a*theta_i)^2), g' = sign(g) if sign_of_g else g, over ``steps`` thresholds theta_i (one
        argument when steps = 1): what both :meth:`backward` and the fused CUDA kernel evaluate."""
        a, c = self.loss.tanh_phi
        c = c if self.weighted else c / batch
        if self.kind != "staircase" or self.steps == 1:
            return a, 0.0, c, 1, not self.weighted
        if self.surrogate == "single":  # tanh(a * (2x - 1))
            return 2.0 * a, a, c, 1, not self.weighted
        return a, 0.0, c, self.steps, not self.weighted

    def backward(self, saved: Tensor | None, g: Tensor, batch: int) -> Tensor:
        """The FTPROP-MB update passed to the layer below, from the incoming gradient g.

        The target is t = -sign(g) (0 where g = 0: no target, no update). Symmetric losses
        have dL/dz(z, t) = -t * phi(z), so the weighted update |g| * dL/dz is g * phi(z) and
        the unweighted one sign(g) * phi(z) / B.
        """
        mode = self.saving
        if mode == "tanh":  # at x itself, at 2x - 1 (the staircase's single surrogate) or at each x - theta_i
            a, b, c, steps, sign_of_g = self.tanh_args(batch)
            if cuda_kernels.applies(g):
                return cuda_kernels.tanh_phi_update(saved, g, a, b, c, steps, sign_of_g)
            if (steps > 1 or sign_of_g) and _in_chunks_applies(saved):  # without a temporary the size of x
                thetas = self.thresholds if steps > 1 else (0.0,)
                return _tanh_update_in_chunks(saved, g, a, tuple(b + a * t for t in thetas), c / steps, sign_of_g)
            if sign_of_g:
                g = torch.sign(g)
            if steps == 1:
                return _tanh_phi_update(saved, g, a, b, c)
            out = None
            for theta in self.thresholds:  # the mean over steps of phi(x - theta)
                u = _tanh_phi_update(saved, g, a, b + a * theta, c / steps)
                out = u if out is None else out.add_(u)
            return out
        if mode in ("none", "phi", "count"):
            scale = self.count_scale if mode == "count" else 1.0
            h = g if self.weighted else torch.sign(g)
            if not self.weighted:
                scale = scale / batch
            if mode == "phi":  # phi of the kept z, a tensor of ours (written into 2z - 1 for the staircase),
                # in place after it unless the backward is differentiated (then through z as well)
                if torch.is_grad_enabled():
                    out = h * self._over_steps(self.loss.phi, saved)
                else:
                    out = self._over_steps(self.loss.phi, saved, f_=self.loss.phi_).mul_(h)
            elif saved is None:
                out = h
            else:  # the count's bytes: converted once, then multiplied in place (g * bytes would make the
                out = saved.to(h.dtype).mul_(h)  # same converted copy, and a product beside it)
            if scale == 1.0:
                return out
            return out * scale if out is g else out.mul_(scale)
        if mode == "input":
            # |g| dL/dz(z, -sign g) directly (with sign(g) for g: dL/dz itself); in place, so not when
            # the backward is differentiated (create_graph=True)
            if self.loss.update is not None and not torch.is_grad_enabled():
                h = g if self.weighted else torch.sign(g)
                out = self._over_steps(lambda z: self.loss.update(z, h), saved.to(g.dtype))
                return out if self.weighted else out.div_(batch)
            t = -torch.sign(g)  # the target heuristic
            d = self.loss_grad(saved.to(g.dtype), t)
            return g.abs() * d if self.weighted else d / batch
        if self.code_bits is not None:  # g < 0 (t = +1) reads bit 1, else bit 0: d = v * that bit
            # (a bool compare viewed as bytes, not lt(out=uint8): 6x faster on CPU; a float d, since
            # g * uint8 is slower than the conversion and a float product together)
            d = torch.bitwise_right_shift(saved, _as_bytes(torch.lt(g, 0))).bitwise_and_(1).to(g.dtype)
            if self.code_bits[0] != 1.0:
                d.mul_(self.code_bits[0])
            return d.mul_(g) if self.weighted else torch.sign(g).mul_(d).div_(batch)
        # code: t = -1 where g > 0 and t = +1 where g < 0, so |g| * dL/dz(t, code) is g times the entry
        # of signed_table at [g < 0, code] (the t = +1 row negated), and 0 where g = 0
        width = len(self.signed_table) // 2
        idx = torch.empty(g.shape, dtype=torch.int32, device=g.device)
        torch.lt(g, 0, out=idx)  # straight to int32: a bool -> int conversion is slow on CPU
        idx.mul_(width).add_(saved)
        d = torch.index_select(_constant(self.signed_table, g), 0, idx.view(-1)).view(g.shape)
        return g * d if self.weighted else torch.sign(g).mul_(d).div_(batch)


_CONSTANTS: dict = {}  # (value, device, dtype) -> tensor, made once: no host-to-device copy per step


def _constant(values: float | tuple[float, ...], like: Tensor) -> Tensor:
    """A constant (0-dim for a float) on ``like``'s device and dtype, cached (built inline when compiling)."""
    if torch.compiler.is_compiling():
        return torch.tensor(values, dtype=like.dtype, device=like.device)
    key = (values, like.device, like.dtype)
    t = _CONSTANTS.get(key)
    if t is None:
        t = _CONSTANTS[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return t


def _tanh_phi_update(x: Tensor, g: Tensor, a: float, b: float, c: float) -> Tensor:
    """c * g * (1 - tanh(a*x - b)^2): the update of a tanh-based layer loss, from the saved x.

    On CPU below float64, 1 - tanh(u)^2 = 4 s (1 - s) with s = sigmoid(2u): one new tensor and
    four passes over it, faster there than torch.tanh followed by tanh_backward (benchmarks/perf.py
    unit-time), and within 1e-6 of it (tests/test_activations.py). Elsewhere, and when the backward
    itself is differentiated (create_graph=True: out= and in-place calls are not differentiable),
    tanh then the fused tanh_backward."""
    if x.dtype in (torch.float16, torch.bfloat16):  # 1 - tanh^2 cancels: in bf16 it is 0 from |u| = 3.5
        return _tanh_phi_update(x.float(), g.float(), a, b, c).to(g.dtype)
    fast = x.device.type == "cpu" and x.dtype != torch.float64 and not torch.is_grad_enabled()
    if fast and not torch.compiler.is_compiling():
        return _quarter_sech2_times(x, g, a, b).mul_(4.0 * c)
    if a == 1.0 and not b:
        y = torch.tanh(x)
    else:
        y = (torch.add(_constant(-b, x), x, alpha=a) if b else torch.mul(x, a)).tanh_()
    out = torch.ops.aten.tanh_backward(g, y)  # g * (1 - y^2) in one pass
    return out.mul_(c) if c != 1.0 else out


# Rows of at most this many elements per chunk in _tanh_update_in_chunks (4 MB of float32 per tensor):
# 2^19 to 2^21 ran within 7% of each other, 2^16 40% slower (per-step backward at 128x64x32x32, ad hoc).
_CHUNK_ELEMENTS = 1 << 20


def _in_chunks_applies(x: Tensor) -> bool:
    """Whether :func:`_tanh_update_in_chunks` serves x: float32 on CPU, eager, the backward not differentiated."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() > 0
            and not torch.is_grad_enabled() and not torch.compiler.is_compiling())


def _tanh_update_in_chunks(x: Tensor, g: Tensor, a: float, shifts: tuple[float, ...], c: float,
                           sign_of_g: bool) -> Tensor:
    """c * g' * sum_i (1 - tanh(a*x - shift_i)^2), g' = sign(g) if sign_of_g else g, on CPU in float32.

    The per-step staircase (one shift per step) and the unweighted update (sign(g)) made
    tensors the size of x for each term and for sign(g). On this machine a fresh tensor of
    32 MB costs as much as several passes over it (8193 page faults, each page zeroed), so
    the update is written straight into one output, a chunk of rows at a time, with one
    chunk-sized scratch tensor for the second and later terms and one for sign(g): the
    per-step staircase's backward went from 65 to 30 ms, ReLU's being 12 ms (128x64x32x32;
    benchmarks/results/unit_time_cpu_{before,in}_chunks.md). Each term is
    :func:`_quarter_sech2_times`, as in :func:`_tanh_phi_update`; the sum is scaled once at
    the end (so with 5 or more steps and |g| within a factor steps / 4 of the float32 maximum it
    overflows where term-by-term scaling would not)."""
    out = torch.empty_like(g)
    rows = max(1, _CHUNK_ELEMENTS // max(1, math.prod(x.shape[1:])))
    scratch = torch.empty_like(x[:rows]) if len(shifts) > 1 else None
    signs = torch.empty_like(g[:rows]) if sign_of_g else None
    for i in range(0, x.shape[0], rows):
        xs, h, dst = x[i:i + rows], g[i:i + rows], out[i:i + rows]
        n = xs.shape[0]
        if sign_of_g:
            h = torch.sign(h, out=signs[:n])
        for k, shift in enumerate(shifts):
            term = _quarter_sech2_times(xs, h, a, shift, out=dst if k == 0 else scratch[:n])
            if k:
                dst.add_(term)
        dst.mul_(4.0 * c)
    return out


def _quarter_sech2_times(x: Tensor, h: Tensor, a: float, shift: float, out: Tensor | None = None) -> Tensor:
    """h * s * (1 - s) with s = sigmoid(2 (a*x - shift)), i.e. h * (1 - tanh(a*x - shift)^2) / 4,
    into ``out`` (a new tensor if None): the CPU form of one tanh-update term, in three passes."""
    if shift:
        s = torch.add(_constant(-2.0 * shift, x), x, alpha=2.0 * a, out=out)
    else:
        s = torch.mul(x, 2.0 * a, out=out)
    s.sigmoid_()
    return torch.ops.aten.sigmoid_backward.grad_input(h, s, grad_input=s)  # h * s * (1 - s), into s


def _sign_by_where(x: Tensor) -> Tensor:
    """+1 where x > 0, else -1, in 2 kernels and 1 + (1 + size) bytes/element written and read
    beyond x (vs 3 kernels and 5x size): the quantiser on GPUs. On CPU where() is not
    vectorised and the in-place form is faster."""
    return torch.where(x > 0, _constant(1.0, x), _constant(-1.0, x))


def _as_bytes(mask: Tensor) -> Tensor:
    """A 0/1 tensor as uint8; a bool mask is reinterpreted in place (no copy) in eager mode.
    Compiled graphs convert instead: inductor fuses the conversion into the kernel that makes
    the mask, and its CUDA lowering of a bool -> uint8 view fails (torch 2.11)."""
    if mask.dtype == torch.bool and not torch.compiler.is_compiling():
        return mask.view(torch.uint8)
    return mask.to(torch.uint8)


class _HardThresholdFn(torch.autograd.Function):
    """Forward: quantise. Backward: the unit's weighted (or mean) layer-loss derivative."""

    @staticmethod
    def forward(ctx, x: Tensor, unit: ThresholdUnit) -> Tensor:  # type: ignore[override]
        # As few Python steps as possible: on a fast GPU a small network's step is bound by the
        # host, and every line here runs once per unit per step.
        ctx.unit = unit
        ctx.batch = max(x.shape[0], 1) if x.dim() > 0 else 1  # an empty batch has nothing to divide
        if ctx.needs_input_grad[0]:  # nothing is kept in evaluation
            ctx.save_for_backward(unit.save(x))  # None for the linear loss
        return unit.quantize(x)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        # g has the output's dtype, which is x's; so has every update computed from it and the saved tensor
        return ctx.unit.backward(ctx.saved_tensors[0], g, ctx.batch), None


def hard_threshold(x: Tensor, unit: ThresholdUnit) -> Tensor:
    """Functional form of the hard-threshold units: ``unit.quantize`` forward, FTPROP-MB backward."""
    return _HardThresholdFn.apply(x, unit)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


class HardThreshold(nn.Module):
    """Base class of the hard-threshold modules; subclasses choose the quantiser."""

    kind = "sign"

    def __init__(self, loss: str | LayerLoss = "soft_hinge", weighted: bool = True, *, steps: int = 1,
                 surrogate: str = "single") -> None:
        super().__init__()
        if surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {', '.join(SURROGATES)}, got {surrogate!r}")
        self.unit = ThresholdUnit(self.kind, get_loss(loss), _check_bool("weighted", weighted), steps, surrogate)

    @property
    def loss(self) -> LayerLoss:
        return self.unit.loss

    @property
    def weighted(self) -> bool:
        return self.unit.weighted

    def forward(self, x: Tensor) -> Tensor:
        return _HardThresholdFn.apply(x, self.unit)

    def extra_repr(self) -> str:
        return f"loss={self.unit.loss.name}, weighted={self.unit.weighted}"


class Sign(HardThreshold):
    """Sign unit: +1 if z > 0 else -1 (sign(0) = -1, as in the reference code)."""

    kind = "sign"

    def __init__(self, loss: str | LayerLoss = "soft_hinge", weighted: bool = True) -> None:
        super().__init__(loss, weighted)


class Step(HardThreshold):
    """Step unit: 1 if z > 0 else 0. Its layer loss is centred on the threshold, like Sign's."""

    kind = "step"

    def __init__(self, loss: str | LayerLoss = "soft_hinge", weighted: bool = True) -> None:
        super().__init__(loss, weighted)


class Staircase(HardThreshold):
    """Quantised ReLU: ``steps`` unit steps at 0, 1/(steps-1), ..., 1, each adding 1/steps.

    ``steps=3`` is the paper's 2-bit qReLU (levels 0, 1/3, 2/3, 1; thresholds 0, .5, 1) and
    ``steps=5`` its ResNet-18 "3-bit" one; ``steps=1`` is a :class:`Step`.

    ``surrogate`` says how the layer loss sees the staircase:
      * ``"single"`` (default): one soft unit spanning the staircase, the loss taken at
        u = 2z - 1. This is the reference code's rule, the one behind the paper's qReLU
        results (for soft_hinge: g * (1 - tanh(2z - 1)^2)).
      * ``"per_step"``: every step is its own unit with the loss at z - threshold, and the
        staircase's update is their mean (for soft_hinge: g * mean_i sech^2(z - theta_i)).
    """

    kind = "staircase"

    def __init__(self, steps: int = 3, loss: str | LayerLoss = "soft_hinge", weighted: bool = True,
                 surrogate: str = "single") -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"Staircase needs an integer steps >= 1 (3 = the paper's 2-bit qReLU), got {steps!r}")
        super().__init__(loss, weighted, steps=steps, surrogate=surrogate)

    def extra_repr(self) -> str:
        return f"steps={self.unit.steps}, surrogate={self.unit.surrogate}, " + super().extra_repr()


class SaturatedReLU(nn.Module):
    """Full-precision baseline: min(max(z, 0), 1), trained by ordinary backprop."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.hardtanh(x, 0.0, 1.0)


ACTIVATIONS = ("sign", "step", "staircase", "relu", "saturated_relu")
_ACTIVATION_ALIASES = {"satrelu": "saturated_relu", "threshrelu": "saturated_relu", "qrelu": "staircase",
                       "step11": "sign", "step01": "step", "staircase3": "staircase"}
# the reference code's staircase names fix the number of steps: its `staircase3` is 3 (2 bits); its
# plain `staircase` is 5, but here "staircase" takes `steps` (default 3), so that name is not an alias
_ALIAS_STEPS = {"staircase3": 3}


def canonical_activation(name: str) -> str:
    """The registered name of an activation, or a ValueError that lists the valid ones."""
    key = str(name).strip().lower().replace("-", "_")
    key = _ACTIVATION_ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        import difflib

        close = difflib.get_close_matches(key, list(ACTIVATIONS) + list(_ACTIVATION_ALIASES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown activation {name!r}.{hint} Valid: {', '.join(ACTIVATIONS)}.")
    return key


def implied_steps(name: str) -> int | None:
    """The number of steps an activation name fixes (``staircase3``: 3), or None."""
    return _ALIAS_STEPS.get(str(name).strip().lower().replace("-", "_"))


def make_activation(name: str, *, loss: str | LayerLoss | None = None, weighted: bool | None = None,
                    steps: int | None = None, surrogate: str | None = None) -> nn.Module:
    """Build one activation module by name; options that the activation cannot use are refused.

    ``loss``/``weighted`` apply to hard-threshold units only; ``steps``/``surrogate`` to the
    staircase only. None means "the default".
    """
    kind = canonical_activation(name)
    implied = implied_steps(name)
    if implied is not None:
        if steps is not None and steps != implied:
            raise ValueError(f"activation {name!r} has {implied} steps, but steps = {steps} was given: "
                             f"use activation 'staircase' with steps = {steps}")
        steps = implied
    if kind in ("relu", "saturated_relu"):
        given = [k for k, v in (("loss", loss), ("weighted", weighted), ("steps", steps), ("surrogate", surrogate))
                 if v is not None]
        if given:
            raise ValueError(f"activation {kind!r} is full precision and trained by backprop; "
                             f"it takes no {', '.join(given)} option (those are for sign/step/staircase)")
        return nn.ReLU() if kind == "relu" else SaturatedReLU()
    opts = {"loss": "soft_hinge" if loss is None else loss, "weighted": True if weighted is None else weighted}
    if kind == "staircase":
        return Staircase(3 if steps is None else steps, surrogate="single" if surrogate is None else surrogate, **opts)
    extra = [k for k, v in (("steps", steps), ("surrogate", surrogate)) if v is not None]
    if extra:
        raise ValueError(f"{', '.join(extra)} only apply to the staircase activation, not {kind!r}")
    return Sign(**opts) if kind == "sign" else Step(**opts)
