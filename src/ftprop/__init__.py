"""ftprop: deep networks of hard-threshold units, trained by feasible target propagation."""

from .activations import (
    ACTIVATIONS,
    HardThreshold,
    SaturatedReLU,
    Sign,
    Staircase,
    Step,
    ThresholdUnit,
    hard_threshold,
    make_activation,
)
from .losses import LOSSES, LayerLoss, available_losses, get_loss

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "HardThreshold",
    "LOSSES",
    "LayerLoss",
    "SaturatedReLU",
    "Sign",
    "Staircase",
    "Step",
    "ThresholdUnit",
    "available_losses",
    "get_loss",
    "hard_threshold",
    "make_activation",
]
