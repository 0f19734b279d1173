"""Fused CUDA kernels for the hard-threshold units: one elementwise pass where aten takes 2-4.

On a GPU a unit is memory-bound: what it costs is the bytes its kernels read and write. The aten
path of :mod:`ftprop.activations` moves 30 bytes per element for a sign unit with the soft hinge
(``gt`` + ``where`` forward, ``tanh`` + ``tanh_backward`` backward) and about 60 for the
staircase, where ReLU moves 20 (benchmarks/README.md, the H200 profile). Each kernel here is one
pass, so a unit moves what ReLU moves: 8 bytes per element forward (read z, write the output) and
12 backward (read g and z, write the update).

The kernels are C++ bodies compiled at first use by PyTorch's jiterator (NVRTC), in float
arithmetic. They serve float32 CUDA tensors in eager mode, when turned on with
:func:`use_fused_kernels` (or ``FTPROP_FUSED_KERNELS=1`` in the environment); everything else
(CPU, other dtypes, torch.compile, which fuses by itself, and a differentiated backward) keeps
the aten path. They are off by default until a GPU measurement says they pay: jiterator's host
cost per call may outweigh the bytes saved on a host-bound step. Before they serve a unit they are
compiled and run once on the GPU: where that fails (no NVRTC, a compile error), turning them on
raises, and a process that asked for them through the environment warns and keeps the aten path.

``KERNELS`` holds the C++ sources: the tests compile them with the host's C++ compiler and
compare them with the aten path on the CPU (tests/test_cuda_kernels.py); on a GPU two more tests
run them through jiterator against the aten path there.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor

__all__ = ["KERNELS", "use_fused_kernels", "applies", "quantize", "tanh_phi_update"]

# Each body is plain C++ over a template type T, arithmetic in float. Comparisons are written so that
# NaN behaves as in the aten path (x > 0 is false for NaN; a NaN staircase input stays NaN; sign(NaN)
# of an unweighted update is 0, as torch.sign gives).
KERNELS = {
    # +1 if z > 0 else -1 (sign(0) = -1), as torch.where(x > 0, 1, -1)
    "sign": "template <typename T> T ftprop_sign(T x) { return static_cast<float>(x) > 0.0f ? T(1) : T(-1); }",
    "step": "template <typename T> T ftprop_step(T x) { return static_cast<float>(x) > 0.0f ? T(1) : T(0); }",
    # (1/n) * clamp(ceil(z * (n - 1)), 0, n): the reference's staircase, its levels as k / n
    "staircase": """template <typename T> T ftprop_staircase(T x, T n) {
    float nf = static_cast<float>(n);
    float k = ceilf(static_cast<float>(x) * (nf - 1.0f));
    k = k < 0.0f ? 0.0f : (k > nf ? nf : k);
    return T(k / nf);
}""",
    # c * g' * mean over `steps` arguments a*z - b - a*theta_i of (1 - tanh^2), theta_i = i / (steps - 1)
    # (steps = 1: the one argument a*z - b); g' = g (weighted) or sign(g) (unweighted)
    "tanh_phi": """template <typename T> T ftprop_tanh_phi(T x, T g, T a, T b, T c, T steps, T sign_of_g) {
    float gf = static_cast<float>(g);
    if (static_cast<float>(sign_of_g) != 0.0f) { gf = gf > 0.0f ? 1.0f : (gf < 0.0f ? -1.0f : 0.0f); }
    float af = static_cast<float>(a), u = af * static_cast<float>(x) - static_cast<float>(b);
    int n = static_cast<int>(static_cast<float>(steps));
    float phi = 0.0f;
    for (int i = 0; i < n; ++i) {
        float y = tanhf(n > 1 ? u - af * (static_cast<float>(i) / static_cast<float>(n - 1)) : u);
        phi += 1.0f - y * y;
    }
    return T(gf * (phi * (static_cast<float>(c) / static_cast<float>(n))));  // g last: no overflow before phi
}""",
}

# Each kernel's scalar arguments after its tensors, with defaults, in the order of its C++ signature
# (jiterator passes them in this order)
_SCALARS = {"staircase": {"n": 3.0}, "tanh_phi": {"a": 1.0, "b": 0.0, "c": 1.0, "steps": 1.0, "sign_of_g": 0.0}}
_TENSORS = {"sign": 1, "step": 1, "staircase": 1, "tanh_phi": 2}  # each kernel's tensor arguments

_ENABLED = os.environ.get("FTPROP_FUSED_KERNELS", "0").strip().lower() in ("1", "true", "yes", "on")
_JITTED: dict = {}
_WORK = False  # the kernels compiled and ran once in this process (see _try_kernels)


def use_fused_kernels(enabled: bool = True) -> None:
    """Turn the fused CUDA kernels on or off for every hard-threshold unit of this process; where a
    GPU is visible, turning them on first compiles and runs them there (RuntimeError if they fail)."""
    global _ENABLED
    if not isinstance(enabled, bool):
        raise TypeError(f"use_fused_kernels takes True or False, got {enabled!r}")
    if enabled and not hasattr(torch.cuda, "jiterator"):
        raise RuntimeError("the fused kernels need torch.cuda.jiterator (a CUDA build of PyTorch >= 1.12)")
    if enabled and torch.cuda.is_available() and not _WORK and (failure := _try_kernels(torch.device("cuda"))):
        raise RuntimeError(f"the fused CUDA kernels do not compile or run here ({failure}); they stay off")
    _ENABLED = enabled


def applies(x: Tensor) -> bool:
    """Whether the fused kernels serve this tensor now: on, float32 CUDA, eager, no autograd of the
    backward itself (the kernels are not differentiable), and they work here (tried at first use,
    outside a CUDA graph capture: until they have been tried, a capture records the aten path)."""
    return (_ENABLED and x.is_cuda and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
            and (_WORK or (not torch.cuda.is_current_stream_capturing() and _first_use(x.device))))


def _try_kernels(device: torch.device) -> str | None:
    """Compile and launch every kernel once on a one-element tensor of ``device``: None if they work,
    else what failed (NVRTC missing or failing, jiterator refusing the device). (Not synchronised: a
    fault inside a kernel would surface at the next synchronisation, as any CUDA error does.)"""
    global _WORK
    try:
        t = torch.zeros(1, device=device)
        for name, tensors in _TENSORS.items():
            _kernel(name)(*[t] * tensors)
    except Exception as err:  # noqa: BLE001 (whatever jiterator raises, the aten path serves)
        return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
    _WORK = True
    return None


def _first_use(device: torch.device) -> bool:
    """Kernels turned on through FTPROP_FUSED_KERNELS, tried at their first use: if they fail, a
    warning, and the aten path from then on."""
    global _ENABLED
    failure = _try_kernels(device)
    if failure:
        _ENABLED = False
        warnings.warn(f"ftprop: the fused CUDA kernels do not compile or run here ({failure}); the hard-threshold "
                      f"units use the aten path", RuntimeWarning, stacklevel=2)
    return failure is None


def _kernel(name: str):
    fn = _JITTED.get(name)
    if fn is None:
        fn = _JITTED[name] = torch.cuda.jiterator._create_jit_fn(KERNELS[name], **_SCALARS.get(name, {}))
    return fn


def quantize(x: Tensor, kind: str, steps: int) -> Tensor:
    """The unit's output in one pass (``kind``: sign, step or staircase with ``steps`` > 1)."""
    if kind == "staircase":
        return _kernel("staircase")(x, n=float(steps))
    return _kernel(kind)(x)


def tanh_phi_update(x: Tensor, g: Tensor, a: float, b: float, c: float, steps: int = 1,
                    sign_of_g: bool = False) -> Tensor:
    """c * g * mean_i (1 - tanh(a*x - b - a*theta_i)^2) in one pass (see ``KERNELS['tanh_phi']``)."""
    return _kernel("tanh_phi")(x, g, a=float(a), b=float(b), c=float(c), steps=float(steps),
                               sign_of_g=1.0 if sign_of_g else 0.0)
