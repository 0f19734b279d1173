"""The "mb" method: FTPROP-MB gradient training of a sign network until it fits T exactly.

An MLP ``Linear -> Sign -> ... -> Linear`` (ftprop's :class:`~ftprop.Sign` units, soft-hinge
layer loss, |g| weighting: the paper's FTP-SH) is trained with Adam on the hinge loss of the
output pre-activations, full batch when the data is small. Every few steps the weights are
copied out in float64 and the sign network (the output layer thresholded too) is run on X: if
it reproduces T exactly, that is a verified solution. Otherwise, after ``patience`` steps
without fewer errors it restarts from a new random initialisation, until the budget ends. It
can never prove infeasibility: its answers are "feasible" or "unknown".

The same trained network is also the search's heuristic (:func:`mb_hint`): its hidden outputs
and its gradient-sign targets t = sign(-dL/dh) (the FTPROP-MB target heuristic).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..activations import Sign
from .network import fits, forward
from .search import Hint

__all__ = ["MBOutcome", "MBTrainer", "train_mb", "mb_hint"]


@dataclass
class MBOutcome:
    fitted: bool
    weights: list[tuple[np.ndarray, np.ndarray]]  # float64, in the original input space
    model: nn.Sequential  # the last (or fitted) torch model, on standardised inputs
    errors: int  # wrong output entries of ``weights`` on X (0 when fitted)
    steps: int
    restarts: int
    seconds: float
    x_mean: np.ndarray
    x_scale: np.ndarray


def _build(widths: list[int], gen: torch.Generator) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d in range(1, len(widths)):
        lin = nn.Linear(widths[d - 1], widths[d]).double()
        with torch.no_grad():
            bound = 1.0 / np.sqrt(widths[d - 1])
            lin.weight.uniform_(-bound, bound, generator=gen)
            lin.bias.uniform_(-bound, bound, generator=gen)
        layers.append(lin)
        if d < len(widths) - 1:
            layers.append(Sign(loss="soft_hinge", weighted=True))
    return nn.Sequential(*layers)


def _extract(model: nn.Sequential, mean: np.ndarray, scale: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Float64 weights of the model, with the input standardisation folded into layer 1."""
    lins = [m for m in model if isinstance(m, nn.Linear)]
    out = []
    for d, lin in enumerate(lins):
        w = lin.weight.detach().double().numpy().copy()
        b = lin.bias.detach().double().numpy().copy()
        if d == 0:  # z = w.((x - mean)/scale) + b
            w = w / scale
            b = b - w @ mean
        out.append((w, b))
    return out


class Adam:
    """Adam (Kingma & Ba, 2015) as ``torch.optim.Adam`` with its defaults (no weight decay),
    written out with the same arithmetic as its single-tensor update, which the CPU uses, so the
    two give the same weights bit for bit. torch's optimisers import ``torch._dynamo`` when the
    process makes its first one: one to several seconds, which a search's time limit would pay."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [0] * len(self.params)  # per parameter, as torch's: one without a gradient does not step

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, (p, m, v) in enumerate(zip(self.params, self.exp_avg, self.exp_avg_sq)):
            if p.grad is None:
                continue
            self.steps[i] += 1
            g = p.grad
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            step = float(self.steps[i])
            step_size = self.lr / (1 - self.beta1**step)
            denom = (v.sqrt() / (1 - self.beta2**step) ** 0.5).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)


_saved_threads: list[int] = []


def _enter_single_thread() -> None:
    """These networks are tiny: intra-op threads only add overhead (and spin badly on a busy
    machine), so train single-threaded; :func:`_leave_single_thread` restores the caller's setting."""
    _saved_threads.append(torch.get_num_threads())
    torch.set_num_threads(1)


def _leave_single_thread() -> None:
    torch.set_num_threads(_saved_threads.pop())


class MBTrainer:
    """FTPROP-MB training with restarts that can be resumed: ``run(seconds)`` continues where
    the last call stopped and returns the outcome so far (the best network seen)."""

    def __init__(self, x: np.ndarray, t: np.ndarray, hidden: list[int], *, lr: float = 0.03, patience: int = 400,
                 seed: int = 0, batch_size: int = 1024) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.t = np.asarray(t, dtype=np.float64)
        self.mean = self.x.mean(0)
        scale = np.abs(self.x - self.mean).max(0)
        scale[scale == 0] = 1.0
        self.scale = scale
        self.xs = torch.as_tensor((self.x - self.mean) / scale)
        self.tt = torch.as_tensor(self.t)
        self.widths = [self.x.shape[1], *hidden, self.t.shape[1]]
        self.lr, self.patience, self.batch_size = lr, patience, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.best: tuple[int, list, nn.Sequential] | None = None
        self.steps = self.restarts = 0
        self.seconds = 0.0
        self.fitted: tuple[list, nn.Sequential] | None = None
        self._new_run()

    def _new_run(self) -> None:
        self.model = _build(self.widths, self.gen)
        self.opt = Adam(self.model.parameters(), lr=self.lr)
        self.run_best, self.since = None, 0

    def outcome(self) -> MBOutcome:
        if self.fitted is not None:
            weights, model, errors = *self.fitted, 0
        elif self.best is not None:
            errors, weights, model = self.best
        else:
            model, weights = self.model, _extract(self.model, self.mean, self.scale)
            errors = int(np.sum(forward(weights, self.x) != self.t))
        return MBOutcome(self.fitted is not None, weights, model, errors, self.steps, self.restarts, self.seconds,
                         self.mean, self.scale)

    def run(self, time_limit: float = np.inf, max_steps: int | None = None) -> MBOutcome:
        """Train until a network reproduces T, ``time_limit`` seconds pass or the total number
        of steps reaches ``max_steps``."""
        t0 = time.perf_counter()
        m = len(self.x)
        full = m <= self.batch_size
        try:
            _enter_single_thread()
            while self.fitted is None:
                if max_steps is not None and self.steps >= max_steps:
                    break
                if time.perf_counter() - t0 > time_limit:
                    break
                if self.since >= self.patience:
                    self.restarts += 1
                    self._new_run()
                model = self.model
                idx = slice(None) if full else torch.randperm(m, generator=self.gen)[: self.batch_size]
                z = model(self.xs[idx])
                if full or self.steps % 5 == 0:
                    # errors of the current weights (before this step): free from this forward pass on full batches
                    with torch.no_grad():
                        zz = z if full else model(self.xs)
                        errors = int(((zz > 0).double() * 2 - 1 != self.tt).sum())
                    if self.run_best is None or errors < self.run_best:
                        self.run_best, self.since = errors, 0
                    if self.best is None or errors < self.best[0]:
                        self.best = (errors, _extract(model, self.mean, self.scale), copy.deepcopy(model))
                    if errors == 0:
                        weights = _extract(model, self.mean, self.scale)
                        if fits(weights, self.x, self.t):
                            self.fitted = (weights, model)
                            break
                loss = torch.relu(1 - self.tt[idx] * z).mean()
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                self.steps += 1
                self.since += 1
        finally:
            _leave_single_thread()
            self.seconds += time.perf_counter() - t0
        return self.outcome()


def train_mb(x: np.ndarray, t: np.ndarray, hidden: list[int], *, time_limit: float = 10.0,
             max_steps: int | None = None, lr: float = 0.03, patience: int = 400, seed: int = 0,
             batch_size: int = 1024) -> MBOutcome:
    """Train FTPROP-MB sign networks (with restarts) until one reproduces T or the budget ends
    (building the trainer included)."""
    t0 = time.perf_counter()
    trainer = MBTrainer(x, t, hidden, lr=lr, patience=patience, seed=seed, batch_size=batch_size)
    return trainer.run(time_limit - (time.perf_counter() - t0), max_steps)


def mb_hint(outcome: MBOutcome, x: np.ndarray, t: np.ndarray) -> Hint:
    """Search hint from a trained network: per example, its hidden outputs when its output is
    right, else the gradient-sign targets (then the other one); confidence = |pre-activation|."""
    _enter_single_thread()
    try:
        return _mb_hint(outcome, x, t)
    finally:
        _leave_single_thread()


def _mb_hint(outcome: MBOutcome, x: np.ndarray, t: np.ndarray) -> Hint:
    model = outcome.model
    xs = torch.as_tensor((np.asarray(x, dtype=np.float64) - outcome.x_mean) / outcome.x_scale)
    outs, pres = [], []
    h = xs
    for mod in model:
        if isinstance(mod, Sign):
            pres.append(h.detach())
            h = mod(h)
            h.retain_grad()
            outs.append(h)
        else:
            h = mod(h)
    tt = torch.as_tensor(np.asarray(t, dtype=np.float64))
    torch.relu(1 - tt * h).sum().backward()
    right = np.all(np.where(h.detach().numpy() > 0, 1.0, -1.0) == t, axis=1)
    first, second, conf = [], [], []
    for out, pre in zip(outs, pres):
        cur = out.detach().numpy().copy()
        g = out.grad.numpy() if out.grad is not None else np.zeros_like(cur)
        tgt = np.where(g < 0, 1.0, np.where(g > 0, -1.0, cur))  # t = sign(-g); 0 -> keep the output
        first.append(np.where(right[:, None], cur, tgt))
        second.append(np.where(right[:, None], tgt, cur))
        conf.append(np.abs(pre.numpy()))
    return Hint(first, second, conf)
