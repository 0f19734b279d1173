"""``feasibility_report``: how far is a network trained by FTPROP-MB from a feasible target setting?

For every sign (or step) layer d of an MLP ``Flatten -> Linear -> [BatchNorm1d] -> Sign -> ...
-> Linear``, take one batch, run the model, and compute the targets that FTPROP-MB's
heuristic gives the layer, t_d = sign(-dL/dh_d) (0 = no target: that example is ignored for
that unit). A unit is *feasible on the batch* when its targets are linearly separable from the
layer's actual input h_{d-1} (the flattened batch for d = 1), as decided by :func:`separable`.
If every unit of every layer were feasible, exact target propagation could satisfy all the
targets at once; the report shows the fraction of units per layer for which that holds.

Batch normalisation: Linear followed by BN is, on a fixed batch, an affine map of h_{d-1}
(train mode uses the batch's statistics, eval mode the running ones: both are constants for
the batch), and a Linear layer alone can realise any affine map. So the unit's question does
not depend on BN or its mode; BN only shapes the targets (through the gradient) and the layer
inputs above it. The model is run in whatever mode it is in; BN running statistics and
parameter gradients are left untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..activations import HardThreshold
from .lp import separable

__all__ = ["LayerFeasibility", "FeasibilityReport", "feasibility_report"]

_AFFINE_BETWEEN = (nn.BatchNorm1d, nn.Identity)


@dataclass
class LayerFeasibility:
    layer: int  # 1 = first hidden layer
    units: int
    separable: int  # units whose targets are separable from the layer input
    no_target: int  # units with no target on any example (counted as separable)
    satisfied: float  # fraction of (example, unit) targets the current output already meets
    examples: int
    input_width: int

    @property
    def fraction(self) -> float:
        return self.separable / self.units if self.units else 1.0


@dataclass
class FeasibilityReport:
    layers: list[LayerFeasibility] = field(default_factory=list)

    @property
    def fractions(self) -> list[float]:
        return [lay.fraction for lay in self.layers]

    def table(self) -> str:
        lines = ["| layer | units | input width | separable units (of them, with no target) | fraction "
                 "| targets already met |", "|---|---|---|---|---|---|"]
        for lay in self.layers:
            lines.append(f"| {lay.layer} | {lay.units} | {lay.input_width} | {lay.separable} ({lay.no_target}) | "
                         f"{lay.fraction:.3f} | {lay.satisfied:.3f} |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _flat_modules(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        out = []
        for child in model:
            out.extend(_flat_modules(child))
        return out
    return [model]


def feasibility_report(model: nn.Module, inputs, labels=None, *, loss_fn=None) -> FeasibilityReport:
    """Fraction of units per hard-threshold layer whose FTPROP-MB targets on this batch are
    linearly separable from the layer's actual input (see the module docstring).

    ``inputs``: a batch tensor, or an ``(inputs, labels)`` pair. ``labels``: class indices
    (the loss is cross-entropy on the logits) or ±1 float targets (hinge loss); ``loss_fn``
    (logits, labels) -> scalar overrides the loss.
    """
    if labels is None and isinstance(inputs, (tuple, list)) and len(inputs) == 2:
        inputs, labels = inputs
    if labels is None:
        raise ValueError("feasibility_report needs labels: the targets come from the gradient of the loss")
    x = torch.as_tensor(inputs)
    y = torch.as_tensor(labels)
    mods = _flat_modules(model)
    units = [i for i, mod in enumerate(mods) if isinstance(mod, HardThreshold)]
    if not units:
        raise ValueError("the model has no hard-threshold (Sign/Step) layer to report on")
    pairs = []
    for p in units:
        if mods[p].unit.kind not in ("sign", "step"):
            raise ValueError(f"feasibility_report covers sign and step units; layer {p} is a {mods[p].unit.kind}")
        q = p - 1
        while q >= 0 and isinstance(mods[q], _AFFINE_BETWEEN):
            q -= 1
        if q < 0 or not isinstance(mods[q], nn.Linear):
            found = type(mods[q]).__name__ if q >= 0 else "nothing"
            raise ValueError(f"feasibility_report supports MLPs of Linear -> [BatchNorm1d] -> Sign; before "
                             f"hard-threshold module {p} it found {found}")
        pairs.append((mods[q], mods[p]))

    captured_in: dict[int, torch.Tensor] = {}
    captured_out: dict[int, torch.Tensor] = {}
    hooks = []
    for d, (lin, act) in enumerate(pairs):
        hooks.append(lin.register_forward_pre_hook(lambda m, a, d=d: captured_in.__setitem__(d, a[0].detach())))
        hooks.append(act.register_forward_hook(lambda m, a, out, d=d: captured_out.__setitem__(d, out)))
    buffers = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith(("weight", "bias"))}
    try:
        with torch.enable_grad():
            logits = model(x)
            if loss_fn is not None:
                loss = loss_fn(logits, y)
            elif y.is_floating_point():
                loss = torch.relu(1 - y.to(logits.dtype).reshape(logits.shape) * logits).mean()
            else:
                loss = torch.nn.functional.cross_entropy(logits, y)
            outs = [captured_out[d] for d in range(len(pairs))]
            grads = torch.autograd.grad(loss, outs, allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
        model.load_state_dict(buffers, strict=False)

    report = FeasibilityReport()
    for d, (out, g) in enumerate(zip(outs, grads)):
        h_in = captured_in[d].reshape(len(x), -1).double().cpu().numpy()
        g = torch.zeros_like(out) if g is None else g
        t = (-torch.sign(g)).reshape(len(x), -1).double().cpu().numpy()
        cur = out.detach().reshape(len(x), -1).double().cpu().numpy()
        high = cur > (0.0 if pairs[d][1].unit.kind == "sign" else 0.5)
        n_units = t.shape[1]
        n_sep = n_none = 0
        for u in range(n_units):
            if not np.any(t[:, u]):
                n_none += 1
                n_sep += 1
                continue
            n_sep += bool(separable(h_in, t[:, u]).separable)
        has = t != 0
        met = float(np.mean((high == (t > 0))[has])) if has.any() else 1.0
        report.layers.append(LayerFeasibility(d + 1, n_units, n_sep, n_none, met, len(x), h_in.shape[1]))
    return report
