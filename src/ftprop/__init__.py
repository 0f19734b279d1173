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
from .config import Config, load_config
from .data import load_dataset
from .engine import evaluate, load_model, train
from .losses import LOSSES, LayerLoss, available_losses, get_loss
from .models import build_model

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Config",
    "build_model",
    "evaluate",
    "load_config",
    "load_dataset",
    "load_model",
    "train",
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
