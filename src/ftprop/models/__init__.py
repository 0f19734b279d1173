"""Model registry: ``build_model(name, activation=..., num_classes=..., input_shape=...)``.

Every model file registers its variants with :func:`register_model`. A model builder takes
``act`` (a zero-argument factory that returns a fresh activation module), ``num_classes``,
``input_shape`` (C, H, W) or (D,), and its own keyword options; it raises ValueError when the
input shape cannot work with the architecture.
"""

from __future__ import annotations

import difflib
import inspect
import operator
from collections.abc import Callable

from torch import nn

from ..activations import make_activation

__all__ = ["MODELS", "register_model", "check_model", "model_name", "option_defaults", "build_model",
           "ActivationFactory"]

ActivationFactory = Callable[[], nn.Module]
MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: register ``fn(act, num_classes, input_shape, **options)`` under ``name``."""

    def deco(fn):
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = fn
        return fn

    return deco


def activation_factory(activation: str | ActivationFactory, **act_options) -> ActivationFactory:
    """A zero-argument activation factory from a name plus options, or a factory as given."""
    if isinstance(activation, nn.Module):  # callable too, but calling it runs forward() without an input
        kind = type(activation).__name__
        raise ValueError(f"activation must be a name or a zero-argument factory, not a module: every layer needs "
                         f"its own unit, so pass {kind} (the class) or lambda: {kind}(...), not {kind}(...)")
    if callable(activation) and not isinstance(activation, str):
        if act_options:
            raise ValueError("activation options (loss, weighted, steps, surrogate) go with an activation "
                             "name; a factory already fixes them")
        return activation
    make_activation(activation, **act_options)  # validate once, with a clear error
    return lambda: make_activation(activation, **act_options)


_ALIASES = {"alexnet_drf": "alexnet"}  # the reference code's name (its DoReFa AlexNet)


def model_name(name: str) -> str:
    """The registered name of model ``name`` (any case, '-' for '_', an alias), or a ValueError."""
    return _builder(name)[0]


def _builder(name: str) -> tuple[str, Callable[..., nn.Module]]:
    """The registered name of model ``name`` and its builder, or a ValueError naming the valid ones."""
    from . import alexnet, convnets, mlp, resnet  # noqa: F401  (registration side effects)

    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in MODELS:
        close = difflib.get_close_matches(key, list(MODELS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Valid: {', '.join(sorted(MODELS))}.")
    return key, MODELS[key]


def option_defaults(name: str) -> dict:
    """The options model ``name`` takes (``model.options``), each with its default."""
    return {k: p.default for k, p in inspect.signature(_builder(name)[1]).parameters.items()
            if k not in ("act", "num_classes", "input_shape") and p.default is not inspect.Parameter.empty}


def check_model(name: str, activation: str | ActivationFactory = "sign", *, loss=None, weighted=None, steps=None,
                surrogate=None, **options) -> tuple[Callable[..., nn.Module], ActivationFactory]:
    """The builder and activation factory that ``build_model`` would use, or the ValueError it would
    raise for an unknown model, activation, layer loss or option: a check that needs no data."""
    key, fn = _builder(name)
    act_options = {k: v for k, v in (("loss", loss), ("weighted", weighted), ("steps", steps),
                                     ("surrogate", surrogate)) if v is not None}
    act = activation_factory(activation, **act_options)
    accepted = set(inspect.signature(fn).parameters) - {"act", "num_classes", "input_shape"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        close = {u: difflib.get_close_matches(u, sorted(accepted), n=1) for u in unknown}
        typos = [f"{u!r}: did you mean {c[0]!r}?" for u, c in close.items() if c]
        others = [u for u, c in close.items() if not c]
        raise ValueError(f"model {key!r} takes no option {', '.join(map(repr, unknown))}; "
                         f"its options are: {', '.join(sorted(accepted)) or 'none'}"
                         + (f" ({'; '.join(typos)})" if typos else "")
                         + (" (switching models? drop the other model's options: model.options = {}, e.g. "
                            "--set model.options={})" if others else ""))
    params = inspect.signature(fn).parameters
    for k, v in options.items():
        wanted = _kind_wanted(v, params[k].default)
        if wanted:
            raise ValueError(f"model {key!r} option {k!r} must be {wanted}, got {v!r}")
    return fn, act


def build_model(name: str, activation: str | ActivationFactory = "sign", num_classes: int = 10,
                input_shape: tuple[int, ...] = (3, 32, 32), *, loss=None, weighted=None, steps=None,
                surrogate=None, **options) -> nn.Module:
    """Build a registered model with the given hidden-unit activation.

    ``activation`` is a name (sign, step, staircase, relu, saturated_relu) with the options
    ``loss``, ``weighted``, ``steps``, ``surrogate``; or a zero-argument factory of modules.
    The input to the first layer and the logits always stay real-valued.
    """
    fn, act = check_model(name, activation, loss=loss, weighted=weighted, steps=steps, surrogate=surrogate,
                          **options)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    try:  # whole numbers (numpy's too): a float side is refused, not rounded down; 64 is not (64,)
        shape = () if isinstance(input_shape, str) else tuple(operator.index(s) for s in input_shape)
    except TypeError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be positive whole sizes, (C, H, W) or (D,), got {input_shape!r}")
    return fn(act, num_classes, shape, **options)


def _kind_wanted(value, default) -> str | None:
    """What ``value`` should be to stand where ``default`` does (a bool for a bool, a whole
    number for an int, a number for a float, a list of such items for a tuple or list), or
    None when it can."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if number and isinstance(value, int) else "a whole number"
    if isinstance(default, float):
        return None if number else "a number"
    if isinstance(default, (tuple, list)):
        ok = isinstance(value, (tuple, list)) and not any(_kind_wanted(v, d) for v in value for d in default[:1])
        return None if ok else f"a list like {list(default)}"
    return None
