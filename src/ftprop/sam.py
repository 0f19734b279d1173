"""Sharpness-aware minimisation (SAM; Foret, Kleiner, Mobahi & Neyshabur, ICLR 2021) around any optimiser.

Each step takes its gradient not at the weights w but at w + rho * g / ||g||, the point of
steepest ascent within a ball of radius ``rho`` (g: the gradient at w, all parameters as one
vector). The optimiser then updates w itself with that gradient. It costs a second forward
and backward pass per step. For hard-threshold units the gradients are the layer losses'
(the surrogate's); SAM needs nothing else from them.

The training loop (``engine``) calls ``ascend()`` after the first backward pass and
``restore()`` after the second, before the optimiser's step. ``restore`` puts back the exact
weights (saved, not recomputed as w + e - e, which rounds) and the buffers, so batch-norm
running statistics count each batch once, from the pass at w.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SharpnessAware"]


class SharpnessAware:
    def __init__(self, model: nn.Module, rho: float) -> None:
        if not rho > 0:
            raise ValueError(f"SAM's radius rho must be > 0, got {rho}")
        self.rho = rho
        self._model = model  # its tensors are looked up at each ascend: .to(device) or .double() replaces buffers
        self._saved: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] | None = None

    @torch.no_grad()
    def ascend(self) -> None:
        """Move the weights to w + rho * g / ||g||, with g the gradients they hold now (parameters
        without a gradient stay). No host-device synchronisation: the norm stays a tensor."""
        if self._saved is not None:
            raise RuntimeError("SharpnessAware.ascend() called twice without restore()")
        params = [p for p in self._model.parameters() if p.requires_grad and p.grad is not None]
        grads = [p.grad for p in params]
        weights = [p.detach().clone() for p in params]
        buffers = list(self._model.buffers())
        saved_buffers = [b.detach().clone() for b in buffers]
        if params:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            scale = self.rho / (norm + 1e-12)  # a zero gradient moves nothing
            torch._foreach_add_(params, torch._foreach_mul(grads, scale))
        self._saved = (params, weights, buffers, saved_buffers)

    @torch.no_grad()
    def restore(self) -> None:
        """Put back the weights and buffers saved by ``ascend``; the gradients stay (those at w + e)."""
        if self._saved is None:
            raise RuntimeError("SharpnessAware.restore() called without ascend()")
        params, weights, buffers, saved_buffers = self._saved
        for p, w in zip(params, weights):
            p.copy_(w)
        for b, s in zip(buffers, saved_buffers):
            b.copy_(s)
        self._saved = None
