import math

import pytest
import torch

from ftprop import LOSSES, available_losses, get_loss


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_analytic_grad_matches_autograd(name):
    loss = LOSSES[name]
    gen = torch.Generator().manual_seed(1)
    z = (torch.randn(4000, generator=gen, dtype=torch.float64) * 2.5).requires_grad_()
    t = torch.randint(0, 2, (4000,), generator=gen).to(torch.float64) * 2 - 1
    (auto,) = torch.autograd.grad(loss.value(z, t).sum(), z)
    torch.testing.assert_close(loss.grad(z.detach(), t), auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_no_target_means_no_update(name):
    """t = 0 gives dL/dz = 0, also where z overflowed to +-inf (0 * inf must not leak in as NaN)."""
    z = torch.cat([torch.linspace(-3, 3, 101, dtype=torch.float64),
                   torch.tensor([math.inf, -math.inf, 1e308, -1e308], dtype=torch.float64)])
    for zero in (0.0, -0.0):
        assert torch.all(LOSSES[name].grad(z, torch.full_like(z, zero)) == 0), zero
        assert torch.all(LOSSES[name].grad(z.float(), torch.full_like(z.float(), zero)) == 0), zero


@pytest.mark.parametrize("name", [n for n, loss in LOSSES.items() if loss.piecewise_constant])
def test_declared_breakpoints_are_the_only_jumps(name):
    """Between declared breakpoints a piecewise-constant derivative really is constant."""
    loss = LOSSES[name]
    z = torch.linspace(-4, 4, 8001, dtype=torch.float64)
    for tval in (-1.0, 1.0):
        d = loss.grad(z, torch.full_like(z, tval))
        jumps = z[1:][d[1:] != d[:-1]]
        for zj in jumps.tolist():
            assert min(abs(zj - b) for b in loss.breakpoints) < 2e-3, (name, tval, zj)


def test_aliases_and_registry():
    assert get_loss("sste").name == "saturated_hinge"
    assert get_loss("STE").name == "linear"
    assert get_loss("soft-hinge").name == "soft_hinge"
    assert set(available_losses()) == set(LOSSES)
    assert {"linear", "saturated_hinge", "hinge", "soft_hinge", "ramp", "sigmoid", "lecun_tanh", "square",
            "log"} <= set(LOSSES)


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_loss("soft_hing")
    msg = str(err.value)
    assert "soft_hinge" in msg and "Did you mean" in msg
    for name in LOSSES:
        assert name in msg
    with pytest.raises(TypeError):
        get_loss(3)


@pytest.mark.parametrize("name", [n for n, loss in LOSSES.items() if loss.phi is not None])
def test_symmetric_losses_have_grad_minus_t_phi(name):
    """The fast update g * phi(z) rests on dL/dz(z, t) = -t * phi(z) with phi even."""
    loss = LOSSES[name]
    z = torch.linspace(-4, 4, 8001, dtype=torch.float64)
    for tval in (-1.0, 1.0):
        t = torch.full_like(z, tval)
        torch.testing.assert_close(loss.grad(z, t), -t * loss.phi(z), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(loss.phi(z), loss.phi(-z), rtol=1e-14, atol=1e-15)
    if loss.piecewise_constant:
        assert set(loss.phi(z).unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", [n for n, loss in LOSSES.items() if loss.phi_ is not None])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_phi_into_its_argument_equals_phi(name, dtype):
    """phi_ gives phi bit for bit (kinks, infinities and NaN included) and writes into its argument."""
    loss = LOSSES[name]
    z = torch.cat([torch.linspace(-4, 4, 4001, dtype=torch.float64),
                   torch.tensor([-2.0, -1.0, -0.0, 0.0, 1.0, 2.0, math.inf, -math.inf, math.nan],
                                dtype=torch.float64)]).to(dtype)
    arg = z.clone()
    out = loss.phi_(arg)
    assert out.data_ptr() == arg.data_ptr()
    torch.testing.assert_close(out, loss.phi(z), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("name", [n for n, loss in LOSSES.items() if loss.update is not None])
def test_direct_update_equals_weighted_grad(name):
    """A loss's shortcut update(z, g) is |g| * dL/dz(z, -sign g), also where g = 0 (no target)
    and at the kinks, in float64 and float32."""
    loss = LOSSES[name]
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(3000, generator=gen, dtype=torch.float64) * 2.5
    g = torch.randn(3000, generator=gen, dtype=torch.float64)
    z[:4] = torch.tensor([1.0, -1.0, 0.0, 1.0])
    g[:4] = torch.tensor([1.0, -1.0, 1.0, 0.0])
    g[100:200] = 0
    z[100:104] = torch.tensor([math.inf, -math.inf, math.inf, -math.inf])  # no target where z overflowed: 0
    g[101] = g[103] = -0.0
    want = g.abs() * loss.grad(z, -torch.sign(g))
    assert torch.all(want[100:200] == 0) and not want.isnan().any()
    torch.testing.assert_close(loss.update(z, g), want, rtol=1e-12, atol=1e-15)
    got32 = loss.update(z.float(), g.float())
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_an_overflowed_pre_activation_counts_as_the_largest_finite_one(name, dtype):
    """z = +-inf (an overflow) gives dL/dz, and the update, of the dtype's largest finite z."""
    loss = LOSSES[name]
    big = torch.finfo(dtype).max
    z = torch.tensor([math.inf, -math.inf] * 2, dtype=dtype)
    t = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=dtype)
    g = torch.tensor([-0.25, -0.25, 0.25, 0.25], dtype=dtype)  # t = -sign(g); small enough that 2|g| * big is finite
    finite = torch.tensor([big, -big] * 2, dtype=dtype)
    assert torch.equal(loss.grad(z, t), loss.grad(finite, t))
    if loss.update is not None:
        assert torch.equal(loss.update(z, g), loss.update(finite, g))


@pytest.mark.parametrize("name, rule", [("saturated_hinge", lambda z, t: z.abs() <= 1),
                                        ("hinge", lambda z, t: t * z < 1),
                                        ("perceptron", lambda z, t: t * z <= 0)])
def test_kinks_take_the_subgradient_the_readme_gives(name, rule):
    """README's table of losses: the weighted backward is g * 1[rule] with t = -sign(g), so dL/dz =
    -t * 1[rule], at the kinks too (tz = 1 for the hinge, z = 0 for the perceptron), for either target."""
    from ftprop import Sign

    z = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=torch.float64).repeat(2)
    t = torch.cat([torch.ones(7), -torch.ones(7)]).double()
    assert torch.equal(LOSSES[name].grad(z, t), -t * rule(z, t).double())
    g = -0.5 * t  # the target heuristic gives back t
    x = z.clone().requires_grad_()
    Sign(name)(x).backward(g)
    assert torch.equal(x.grad, g * rule(z, t).double())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_values_are_continuous(name):
    """Every layer loss is continuous in z, also where its derivative jumps: by the mean value theorem
    a step of h changes it by at most max |dL/dz| * h (a piece's formula off by a constant breaks this)."""
    loss = LOSSES[name]
    z = torch.linspace(-4, 4, 80001, dtype=torch.float64)
    for tval in (-1.0, 1.0):
        t = torch.full_like(z, tval)
        steps = loss.value(z, t).diff().abs()
        bound = loss.grad(z, t).abs().max() * (z[1] - z[0])
        assert steps.max() <= bound * (1 + 1e-6) + 1e-12, (name, tval, steps.max().item(), bound.item())
