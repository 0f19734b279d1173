import functools

import pytest
import torch


@functools.cache
def _cpu_inductor_error() -> str | None:
    """Why torch.compile cannot build CPU kernels here (no C++ compiler or Python headers), or None.
    Only a failure to compile a trivial function counts: a wrong result in a test still fails it."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except Exception as e:  # inductor raises several exception types for a missing toolchain
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
    return None


@pytest.fixture
def cpu_inductor() -> None:
    """Skips a test that compiles for the CPU where inductor cannot build CPU kernels."""
    error = _cpu_inductor_error()
    if error is not None:
        pytest.skip(f"torch.compile cannot build CPU kernels on this machine ({error})")
