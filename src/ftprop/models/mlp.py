"""Multi-layer perceptron of hard-threshold (or baseline) units, for small data and the demo."""

from __future__ import annotations

import math

from torch import nn

from . import register_model


@register_model("mlp")
def mlp(act, num_classes: int, input_shape: tuple[int, ...], hidden: tuple[int, ...] | list[int] = (256, 256),
        batch_norm: bool = True, dropout: float = 0.0) -> nn.Module:
    """Flatten -> [Linear -> (BN) -> act -> (Dropout)] per hidden width -> Linear logits."""
    hidden = [int(h) for h in hidden]
    if not hidden or any(h < 1 for h in hidden):
        raise ValueError(f"mlp needs at least one hidden width, all >= 1; got {hidden!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers.append(nn.Linear(width, h, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(act())
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
