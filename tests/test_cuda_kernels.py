"""The fused CUDA kernels (ftprop.cuda_kernels) against the aten path of the units.

The kernels' C++ sources are compiled with the host's C++ compiler and run on the same inputs as
the CPU units (wherever a compiler is found); on a GPU, two more tests run them through jiterator
against the aten path on the GPU."""

import shutil
import subprocess

import pytest
import torch

from ftprop import Sign, Staircase, Step, cuda_kernels
from ftprop.activations import ThresholdUnit
from ftprop.losses import get_loss

CXX = shutil.which("g++") or shutil.which("c++")
TANH_LOSSES = ("soft_hinge", "sigmoid", "lecun_tanh")

_MAIN = r"""
#include <cstdio>
#include <cstdlib>
#include <cstring>
int main(int argc, char** argv) {
    int nin = atoi(argv[2]);
    float v[8];
    while (true) {
        for (int i = 0; i < nin; ++i) if (scanf("%f", &v[i]) != 1) return 0;
        float r;
        if (!strcmp(argv[1], "sign")) r = ftprop_sign<float>(v[0]);
        else if (!strcmp(argv[1], "step")) r = ftprop_step<float>(v[0]);
        else if (!strcmp(argv[1], "staircase")) r = ftprop_staircase<float>(v[0], v[1]);
        else r = ftprop_tanh_phi<float>(v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
        printf("%.9g\n", r);
    }
}
"""


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """Run a kernel's C++ body on the CPU: f(name, columns) -> tensor of its results."""
    if CXX is None:
        pytest.skip("no C++ compiler on this machine")
    d = tmp_path_factory.mktemp("kernels")
    src = d / "kernels.cpp"
    src.write_text("#include <math.h>\n" + "\n".join(cuda_kernels.KERNELS.values()) + _MAIN)
    exe = d / "kernels"
    subprocess.run([CXX, "-O1", "-ffp-contract=off", "-o", str(exe), str(src)], check=True, capture_output=True)

    def run(name: str, *columns: torch.Tensor) -> torch.Tensor:
        cols = [c.reshape(-1).double() for c in columns]
        lines = "\n".join(" ".join(f"{float(c[i]):.9g}" for c in cols) for i in range(len(cols[0])))
        out = subprocess.run([str(exe), name, str(len(cols))], input=lines + "\n", capture_output=True, text=True,
                             check=True).stdout.split()
        return torch.tensor([float(v) for v in out], dtype=torch.float32).view(columns[0].shape)

    return run


def _inputs(n: int = 4000, nan: bool = False) -> torch.Tensor:
    """n pre-activations: the edges first (0, -0, the staircase thresholds, large values; NaN last
    when asked), then normal draws."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=gen) * 1.5
    edges = [0.0, -0.0, 1.0, -1.0, 0.5, 1 / 3, 2 / 3, 0.25, 0.75, 1e-8, -1e-8, 4.0, -4.0, 30.0, -30.0]
    edges += [float("nan")] if nan else []
    x[: len(edges)] = torch.tensor(edges)
    return x


def _units(loss: str):
    yield ThresholdUnit("sign", get_loss(loss), True)
    yield ThresholdUnit("step", get_loss(loss), False)
    yield ThresholdUnit("staircase", get_loss(loss), True, 1)
    for steps in (3, 5):
        yield ThresholdUnit("staircase", get_loss(loss), True, steps)
        yield ThresholdUnit("staircase", get_loss(loss), False, steps, "per_step")
        yield ThresholdUnit("staircase", get_loss(loss), True, steps, "per_step")


@pytest.mark.parametrize("kind, steps", [("sign", 1), ("step", 1), ("staircase", 1), ("staircase", 3),
                                         ("staircase", 5)])
def test_quantizer_kernels_equal_the_units_exactly(host_kernels, kind, steps):
    unit = ThresholdUnit(kind, get_loss("soft_hinge"), True, steps)
    x = _inputs(nan=True)
    name, n = unit.fused_quantizer
    got = host_kernels(name, x, torch.full_like(x, float(n))) if name == "staircase" else host_kernels(name, x)
    torch.testing.assert_close(got, unit.quantize(x), rtol=0, atol=0, equal_nan=True)  # NaN in, NaN (or -1) out


@pytest.mark.parametrize("loss", TANH_LOSSES)
def test_tanh_update_kernel_equals_the_units_backward(host_kernels, loss):
    x = _inputs()
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    g[:20] = 0.0  # no target: no update
    g[20] = float("nan")  # unweighted: sign(NaN) = 0, no update; weighted: NaN, as the aten path
    x[21:23], g[21:23] = float("inf"), 3e38  # g scaled after phi (0 here): 0, not inf * 0 (the c * g of a LeCun tanh)
    batch = 37
    for unit in _units(loss):
        a, b, c, steps, sign_of_g = unit.tanh_args(batch)
        full = lambda v: torch.full_like(x, float(v))  # noqa: E731
        got = host_kernels("tanh_phi", x, g, full(a), full(b), full(c), full(steps), full(sign_of_g))
        want = unit.backward(unit.save(x), g, batch)
        torch.testing.assert_close(got, want, rtol=2e-5, atol=1e-6, equal_nan=True, msg=str(unit))
        assert (got[:20] == 0).all() and (got[20].isnan() if unit.weighted else got[20] == 0)
        assert (got[21:23] == 0).all(), unit


def test_jiterator_reads_each_kernels_entry_function():
    """jiterator finds the entry point with a regular expression over the source (no GPU needed)."""
    jiterator = pytest.importorskip("torch.cuda.jiterator")
    for name, code in cuda_kernels.KERNELS.items():
        assert jiterator._CodeParser(code).function_name == f"ftprop_{name}"


def test_each_kernels_scalar_arguments_follow_its_tensors_in_its_signature():
    """jiterator passes the scalar arguments in the order given to it: they must be the signature's."""
    import re

    assert set(cuda_kernels._TENSORS) == set(cuda_kernels.KERNELS)
    for name, code in cuda_kernels.KERNELS.items():
        params = re.findall(r"T (\w+)[,)]", code.split("{")[0])
        scalars = list(cuda_kernels._SCALARS.get(name, {}))
        tensors = cuda_kernels._TENSORS[name]
        assert len(params) == tensors + len(scalars) and params[tensors:] == scalars, name


def test_kernels_that_do_not_work_here_are_refused_or_left_for_the_aten_path(monkeypatch):
    """NVRTC missing or failing: turning the kernels on raises; turned on by the environment, their
    first use warns and the aten path serves. (Every kernel fails here, on a GPU too.)"""
    import types

    def fails(name):
        raise RuntimeError("nvrtc: error: failed to open libnvrtc-builtins.so")

    monkeypatch.setattr(cuda_kernels, "_kernel", fails)
    monkeypatch.setattr(cuda_kernels, "_WORK", False)
    monkeypatch.setattr(cuda_kernels, "_ENABLED", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU that is not there
    with pytest.raises(RuntimeError, match="the fused CUDA kernels do not compile or run here"):
        cuda_kernels.use_fused_kernels(True)
    assert not cuda_kernels._ENABLED
    monkeypatch.setattr(cuda_kernels, "_ENABLED", True)  # FTPROP_FUSED_KERNELS=1
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)  # a CUDA graph capture
    looks_cuda = types.SimpleNamespace(is_cuda=True, dtype=torch.float32, device=torch.device("cpu"))
    with torch.no_grad():
        assert not cuda_kernels.applies(looks_cuda)  # not tried inside a capture: the aten path, no warning
    assert cuda_kernels._ENABLED
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="the hard-threshold units use the aten path"):
        assert not cuda_kernels.applies(looks_cuda)
    assert not cuda_kernels._ENABLED and not cuda_kernels._WORK


def test_fused_kernels_leave_cpu_units_alone():
    x = _inputs(64).requires_grad_()
    ref = Sign("soft_hinge")(x)
    ref.backward(torch.ones_like(ref))
    before = x.grad.clone()
    x.grad = None
    cuda_kernels.use_fused_kernels(True)
    try:
        assert not cuda_kernels.applies(x.detach())  # CPU tensors keep the aten path
        out = Sign("soft_hinge")(x)
        out.backward(torch.ones_like(out))
    finally:
        cuda_kernels.use_fused_kernels(False)
    assert torch.equal(out, ref) and torch.equal(x.grad, before)
    with pytest.raises(TypeError, match="True or False"):
        cuda_kernels.use_fused_kernels("yes")


def _counting(monkeypatch) -> dict:
    """Count the calls of the fused entry points (so a test sees whether they ran)."""
    calls = {"quantize": 0, "tanh_phi_update": 0}
    for name in calls:
        real = getattr(cuda_kernels, name)

        def wrapper(*args, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*args, **kw)

        monkeypatch.setattr(cuda_kernels, name, wrapper)
    return calls


def _fwd_bwd(module, x, g, fused: bool):
    cuda_kernels.use_fused_kernels(fused)
    try:
        xi = x.clone().requires_grad_()
        y = module(xi)
        y.backward(g)
    finally:
        cuda_kernels.use_fused_kernels(False)
    return y.detach(), xi.grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("loss", [*TANH_LOSSES, "saturated_hinge", "linear"])
@pytest.mark.parametrize("weighted", [True, False])
def test_fused_kernels_on_gpu_match_the_aten_path(monkeypatch, loss, weighted):
    x = _inputs(64 * 33).view(64, 33).cuda()
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2)).cuda()
    g[1, :5] = 0.0
    calls = _counting(monkeypatch)
    for module in (Sign(loss, weighted), Step(loss, weighted), Staircase(3, loss, weighted),
                   Staircase(5, loss, weighted), Staircase(5, loss, weighted, surrogate="per_step")):
        before = dict(calls)
        y0, d0 = _fwd_bwd(module, x, g, fused=False)
        assert calls == before  # off: the aten path
        y1, d1 = _fwd_bwd(module, x, g, fused=True)
        assert calls["quantize"] == before["quantize"] + 1, module
        assert calls["tanh_phi_update"] == before["tanh_phi_update"] + (loss in TANH_LOSSES), module
        torch.testing.assert_close(y1, y0, rtol=1e-6, atol=0, msg=str(module))  # levels k/n: within an ulp
        torch.testing.assert_close(d1, d0, rtol=2e-5, atol=1e-6, msg=str(module))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_kernels_serve_float32_only(monkeypatch):
    calls = _counting(monkeypatch)
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        x = torch.randn(8, 16, device="cuda", dtype=dtype)
        y0, d0 = _fwd_bwd(Sign("soft_hinge"), x, torch.ones_like(x), fused=False)
        y1, d1 = _fwd_bwd(Sign("soft_hinge"), x, torch.ones_like(x), fused=True)
        assert torch.equal(y1, y0) and torch.equal(d1, d0)
    assert calls == {"quantize": 0, "tanh_phi_update": 0}
