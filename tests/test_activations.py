import pytest
import torch
from torch import nn

from ftprop import LOSSES, SaturatedReLU, Sign, Staircase, Step, make_activation
from ftprop.activations import _sign_by_where


def grad_through(module, x, g):
    x = x.clone().requires_grad_()
    module(x).backward(g)
    return x.grad


@pytest.fixture
def xg():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 17, generator=gen, dtype=torch.float64) * 2
    g = torch.randn(32, 17, generator=gen, dtype=torch.float64)
    g[0, :5] = 0.0  # no target for these units
    return x, g


def test_sign_forward_maps_zero_to_minus_one():
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, 3.0])
    assert Sign()(x).tolist() == [-1, -1, -1, 1, 1]
    assert Step()(x).tolist() == [0, 0, 0, 1, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_gpu_sign_quantiser_equals_cpu_one(dtype):
    x = torch.cat([torch.tensor([-2.0, -0.0, 0.0, 1e-30, 3.0]), torch.randn(1000)]).to(dtype)
    got = _sign_by_where(x)
    assert got.dtype == dtype and torch.equal(got, Sign()(x))


def test_weighted_soft_hinge_is_tanh_derivative(xg):
    x, g = xg
    # one fused tanh_backward kernel: the formula up to the rounding of y*y (it may use an FMA)
    got = grad_through(Sign("soft_hinge"), x, g)
    torch.testing.assert_close(got, g * (1 - torch.tanh(x) ** 2), rtol=0, atol=1e-15)
    assert torch.all(got[g == 0] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tanh_losses_below_float64(dtype):
    """Below float64 the CPU computes 1 - tanh(z)^2 as 4 s (1 - s), s = sigmoid(2z) (faster there):
    same update to float32 (bfloat16) precision."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 50, generator=gen) * 3
    g = torch.randn(64, 50, generator=gen)
    tol = {torch.float32: 1e-6, torch.bfloat16: 2e-2}[dtype]
    for name, a, c in (("soft_hinge", 1.0, 1.0), ("sigmoid", 1.0, 0.5), ("lecun_tanh", 2 / 3, 1.7159 * 2 / 3)):
        got = grad_through(Sign(name), x.to(dtype), g.to(dtype)).double()
        want = g.double() * c * (1 - torch.tanh(a * x.double()) ** 2)
        torch.testing.assert_close(got, want, rtol=0, atol=tol * g.abs().max().item(), msg=name)
        got = grad_through(Staircase(3, name), x.to(dtype), g.to(dtype)).double()  # at 2x - 1
        want = g.double() * c * (1 - torch.tanh(a * (2 * x.double() - 1)) ** 2)
        torch.testing.assert_close(got, want, rtol=0, atol=2 * tol * g.abs().max().item(), msg=f"staircase {name}")


@pytest.mark.filterwarnings("error")  # an out= tensor of the wrong size would be resized, with a warning
@pytest.mark.parametrize("chunk", [10 ** 6, 3 * 50, 64])  # one chunk; rows of 3 (the last of 1); 1 row
@pytest.mark.parametrize("channels_last", [False, True])
def test_tanh_updates_written_in_chunks(monkeypatch, chunk, channels_last):
    """In float32 on CPU the per-step staircase's and the unweighted tanh updates are written
    into one output a chunk of rows at a time (ftprop.activations._tanh_update_in_chunks):
    the definition's update, whatever the chunks and the memory format."""
    from ftprop import activations

    monkeypatch.setattr(activations, "_CHUNK_ELEMENTS", chunk)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(10, 2, 5, 5, generator=gen) * 2
    g = torch.randn(10, 2, 5, 5, generator=gen)
    g[0, 0, 0, :3] = 0.0  # no target: no update
    if channels_last:
        x, g = (v.contiguous(memory_format=torch.channels_last) for v in (x, g))
    for name in ("soft_hinge", "sigmoid", "lecun_tanh"):
        for module in (Staircase(3, name, surrogate="per_step"), Staircase(4, name, False, surrogate="per_step"),
                       Sign(name, weighted=False), Step(name, weighted=False)):
            got = grad_through(module, x, g)
            assert got.dtype == torch.float32 and got.is_contiguous(memory_format=torch.channels_last) == channels_last
            t = -torch.sign(g.double())
            d = module.unit.loss_grad(x.double(), t)
            want = g.double().abs() * d if module.weighted else d / x.shape[0]
            torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6 * want.abs().max().item(), msg=str(module))
            assert torch.all(got[g == 0] == 0)
    empty = torch.zeros(0, 3, requires_grad=True)
    Staircase(3, surrogate="per_step")(empty).sum().backward()
    assert empty.grad.shape == (0, 3)


def test_tanh_updates_take_the_chunked_path_where_it_applies(monkeypatch):
    """The chunked writing is a speed-up whose fallback gives the same values, so only a count of
    its calls sees it switched off: float32 on CPU, per-step or unweighted, eager, not double backward."""
    from ftprop import activations

    calls = []
    real = activations._tanh_update_in_chunks
    monkeypatch.setattr(activations, "_tanh_update_in_chunks", lambda *a: calls.append(1) or real(*a))
    x, g = torch.randn(8, 5), torch.randn(8, 5)
    for module, dtype, expected in ((Staircase(3, surrogate="per_step"), torch.float32, 1),
                                    (Sign(weighted=False), torch.float32, 1),
                                    (Staircase(3, "sigmoid", False), torch.float32, 1),
                                    (Sign(), torch.float32, 0),  # one term, g itself: one new tensor anyway
                                    (Staircase(3), torch.float32, 0),
                                    (Staircase(3, surrogate="per_step"), torch.float64, 0),
                                    (Staircase(3, surrogate="per_step"), torch.bfloat16, 0)):
        calls.clear()
        grad_through(module, x.to(dtype), g.to(dtype))
        assert len(calls) == expected, (module, dtype)
    calls.clear()
    xx = x.clone().requires_grad_()
    torch.autograd.grad(Staircase(3, surrogate="per_step")(xx), xx, g.requires_grad_(), create_graph=True)
    assert not calls  # differentiated again: the out= calls are not differentiable


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_update_keeps_channels_last(name):
    """Updates made in place or in chunks keep the layout x and g share (in a network they do):
    a channels-last network's convolution backward would otherwise get a gradient to convert."""
    x, g = (torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last) for _ in range(2))
    for weighted in (True, False):
        for module in (Sign(name, weighted), Staircase(3, name, weighted),
                       Staircase(3, name, weighted, surrogate="per_step")):
            assert grad_through(module, x, g).is_contiguous(memory_format=torch.channels_last), module


def test_weighted_saturated_hinge_is_sste(xg):
    x, g = xg
    x[1, :4] = torch.tensor([1.0, -1.0, 1.0, -1.0])  # the kinks: the subgradient is the SSTE's 1[|x| <= 1]
    g[1, :4] = torch.tensor([1.0, 1.0, -1.0, -1.0])
    assert torch.equal(grad_through(Sign("saturated_hinge"), x, g), g * (x.abs() <= 1))


def test_weighted_linear_is_ste(xg):
    x, g = xg
    assert torch.equal(grad_through(Sign("linear"), x, g), g)


def test_unweighted_soft_hinge(xg):
    x, g = xg
    got = grad_through(Sign("soft_hinge", weighted=False), x, g)
    torch.testing.assert_close(got, torch.sign(g) * (1 - torch.tanh(x) ** 2) / x.shape[0], rtol=0, atol=1e-15)


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_zero_incoming_gradient_gives_zero(name, weighted):
    """No target, no update: also where the pre-activation (or the staircase's 2z - 1) overflowed,
    in every dtype, and when the backward is differentiated (create_graph=True)."""
    x = torch.randn(8, 6, dtype=torch.float64)
    x[0, :4] = torch.tensor([float("inf"), float("-inf"), 6e4, -6e4])  # 6e4: 2z - 1 overflows float16
    for dtype in (torch.float64, torch.float32, torch.float16):
        for module in (Sign(name, weighted), Step(name, weighted), Staircase(3, name, weighted),
                       Staircase(5, name, weighted, surrogate="per_step")):
            for g in (torch.zeros_like(x, dtype=dtype), torch.full_like(x, -0.0, dtype=dtype)):
                assert torch.all(grad_through(module, x.to(dtype), g) == 0), (module, dtype)
                xx = x.to(dtype, copy=True).requires_grad_()
                (got,) = torch.autograd.grad(module(xx), xx, g, create_graph=True)
                assert torch.all(got == 0), (module, dtype, "create_graph")


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_nan_pre_activation_gets_the_update_the_docs_give(name, weighted):
    """NaN in z: NaN where the unit keeps z, the update of z = -inf where it keeps a mask or a code."""
    g = torch.tensor([1.0, -1.0, 0.5, -0.5])
    nan = torch.full((4,), float("nan"))
    assert torch.equal(Sign(name)(nan), -torch.ones(4)) and torch.equal(Step(name)(nan), torch.zeros(4))
    assert Staircase(3, name)(nan).isnan().all()
    for module in (Sign(name, weighted), Step(name, weighted), Staircase(3, name, weighted),
                   Staircase(3, name, weighted, surrogate="per_step")):
        got = grad_through(module, nan, g)
        if module.unit.saving in ("tanh", "phi", "input"):
            assert got.isnan().all(), module
        else:
            assert torch.equal(got, grad_through(module, torch.full((4,), float("-inf")), g)), module


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("module_fn", [
    lambda n, w: Sign(n, w),
    lambda n, w: Step(n, w),
    lambda n, w: Staircase(3, n, w),
    lambda n, w: Staircase(5, n, w, surrogate="per_step"),
    lambda n, w: Staircase(4, n, w, surrogate="per_step"),
])
def test_backward_is_weighted_layer_loss_derivative(module_fn, name, weighted):
    """The saved-code path equals the definition: |g| dL/dz(z, -sign g) or dL/dz / B."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(64, 9, generator=gen, dtype=torch.float64) * 1.5
    g = torch.randn(64, 9, generator=gen, dtype=torch.float64)
    module = module_fn(name, weighted)
    # exactly on the unit's breakpoints, each with either sign of g (so either target): at a breakpoint
    # dL/dz may equal the region's on one side for one target and not for the other. Only those in
    # quarters: at 1 + 1/3, say, x - theta rounds (test_staircase_sste_mask_is_exact_at_its_ends has those)
    on = torch.tensor([b for b in module.unit.breakpoints or (1.0, -1.0, 0.0) if (4 * b).is_integer()],
                      dtype=torch.float64)
    n = len(on)
    x.view(-1)[: 2 * n] = torch.cat([on, on])
    g.view(-1)[: 2 * n] = g.view(-1)[: 2 * n].abs() * torch.cat([torch.ones(n), -torch.ones(n)]).double()
    t = -torch.sign(g)
    d = module.unit.loss_grad(x, t)
    want = g.abs() * d if weighted else d / x.shape[0]
    torch.testing.assert_close(grad_through(module, x, g), want, rtol=1e-12, atol=1e-15)


def _custom(name, grad):
    from ftprop.losses import LayerLoss

    return LayerLoss(name=name, formula="", value=lambda z, t: z * 0, grad=grad, breakpoints=(-1.0, 0.0, 1.0))


CUSTOM_PIECEWISE = {  # piecewise-constant losses of no built-in shape: the "code" saving's two forms
    # dL/dz nonzero on a band in z: two flips per target, so the bit is a parity of comparisons
    "band": (_custom("band", lambda z, t: -t * ((t * z > -1) & (t * z <= 0)).to(z.dtype)), True),
    "double_hinge": (_custom("double_hinge", lambda z, t: -2 * t * (t * z < 1).to(z.dtype)), True),  # v = 2
    # three values (0, 1, 2): the region-code table, not two bits
    "stairs": (_custom("stairs", lambda z, t: -t * ((t * z < 1).to(z.dtype) + (t * z < 0).to(z.dtype))), False),
}


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("name", sorted(CUSTOM_PIECEWISE))
@pytest.mark.parametrize("make", [lambda loss, w: Sign(loss, w), lambda loss, w: Staircase(3, loss, w)])
def test_piecewise_constant_custom_losses_keep_one_byte_and_the_exact_update(make, name, weighted):
    loss, as_bits = CUSTOM_PIECEWISE[name]
    module = make(loss, weighted)
    assert (module.unit.code_bits is not None) == as_bits
    gen = torch.Generator().manual_seed(5)
    on = torch.tensor(module.unit.breakpoints, dtype=torch.float64)
    x = torch.cat([on, on, torch.randn(200, generator=gen, dtype=torch.float64) * 1.5])
    g = torch.cat([torch.ones(len(on)), -torch.ones(len(on)), torch.randn(200, generator=gen)]).double()
    g[-1] = 0.0
    assert module.unit.save(x).dtype == torch.uint8
    d = module.unit.loss_grad(x, -torch.sign(g))
    want = g.abs() * d if weighted else d / x.shape[0]
    torch.testing.assert_close(grad_through(module, x, g), want, rtol=1e-12, atol=1e-15)


def test_staircase_levels_and_thresholds():
    # steps=3: levels {0, 1/3, 2/3, 1}, jumps when x exceeds 0, 0.5, 1.0 (PAPER.md §6.2)
    s3 = Staircase(3)
    x = torch.tensor([-1.0, 0.0, 1e-6, 0.5, 0.5001, 1.0, 1.0001, 7.0])
    torch.testing.assert_close(s3(x), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]) / 3.0)
    # steps=5: levels {0, .2, ..., 1}, thresholds 0, .25, .5, .75, 1.0
    s5 = Staircase(5)
    x = torch.tensor([0.0, 0.01, 0.25, 0.26, 0.5, 0.51, 0.75, 0.76, 1.0, 1.01])
    torch.testing.assert_close(s5(x), torch.tensor([0, 1, 1, 2, 2, 3, 3, 4, 4, 5]) / 5.0)
    assert s3.unit.thresholds == (0.0, 0.5, 1.0)
    # the staircase is (1/n) sum_i 1[x > theta_i]
    xs = torch.linspace(-1, 2, 3001)
    for n in (2, 3, 4, 5, 8):
        s = Staircase(n)
        want = sum((xs > th).float() for th in s.unit.thresholds) / n
        torch.testing.assert_close(s(xs), want)
    assert torch.equal(Staircase(1)(xs), Step()(xs))


def test_staircase_surrogates(xg):
    x, g = xg
    x = x / 2 + 0.5
    torch.testing.assert_close(grad_through(Staircase(3), x, g), g * (1 - torch.tanh(2 * x - 1) ** 2))
    away = ((x - 0).abs() > 1e-9) & ((x - 1).abs() > 1e-9)
    got = grad_through(Staircase(3, "sste"), x, g)
    assert torch.equal(got[away], (g * ((x >= 0) & (x <= 1)))[away])
    per = grad_through(Staircase(3, surrogate="per_step"), x, g)
    torch.testing.assert_close(per, g * sum(1 - torch.tanh(x - th) ** 2 for th in (0, 0.5, 1)) / 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape", [(7, 5), (4, 3, 6, 6), (9,)])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_shapes_and_dtypes(dtype, shape, name):
    """Output and update keep x's shape and dtype, for every saving mode (the backward returns
    what it computes from g and the saved tensor without a final cast)."""
    x = torch.randn(shape).to(dtype).requires_grad_()
    for module in (Sign(name), Sign(name, weighted=False), Staircase(3, name),
                   Staircase(3, name, surrogate="per_step")):
        y = module(x)
        assert y.shape == x.shape and y.dtype == dtype
        (gx,) = torch.autograd.grad(y.sum(), x)
        assert gx.shape == x.shape and gx.dtype == dtype and torch.isfinite(gx).all()


def test_memory_saved_for_backward():
    """Soft hinge keeps z; mask-type losses keep one byte per element; linear keeps nothing."""
    def saved_bytes(module):
        total = []
        def pack(t):
            total.append(t.numel() * t.element_size())
            return t
        x = torch.randn(64, 100, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(x)
        return sum(total)
    n = 64 * 100
    assert saved_bytes(Sign("soft_hinge")) == 4 * n
    for name in ("saturated_hinge", "hinge", "perceptron"):
        assert saved_bytes(Sign(name)) == n
    assert saved_bytes(Staircase(5, "sste", surrogate="per_step")) == n
    assert saved_bytes(Sign("linear")) == 0


def test_autocast_bf16_cpu():
    model = nn.Sequential(nn.Linear(8, 16), Sign(), nn.Linear(16, 4))
    x = torch.randn(5, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_torch_compile_cpu(cpu_inductor):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), Sign("sste"), nn.Linear(12, 12), Staircase(3), nn.Linear(12, 3))
    x = torch.randn(10, 6)
    eager = model(x)
    eager.square().sum().backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model)
    out = compiled(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, eager)
    for p, w in zip(model.parameters(), want):
        torch.testing.assert_close(p.grad, w)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_compiled_units_equal_eager_for_every_loss(device, request):
    """One compiled network holding a unit of every loss (after a max-pool, whose fused kernel
    once broke the uint8 view of masks on CUDA): same outputs and gradients as eager, in float64."""
    if device == "cpu":
        request.getfixturevalue("cpu_inductor")
    torch.manual_seed(0)
    units = [Sign(name) for name in sorted(LOSSES)]
    units += [Staircase(3, "hinge"), Staircase(3, "ramp", surrogate="per_step")]
    layers: list[nn.Module] = [nn.Conv2d(2, 4, 3, padding=1), nn.MaxPool2d(2)]
    for u in units:
        layers += [u, nn.Conv2d(4, 4, 3, padding=1)]
    model = nn.Sequential(*layers).double().to(device)
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, device=device)
    results = []
    for m in (model, torch.compile(model)):
        model.zero_grad()
        out = m(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (out_e, grads_e), (out_c, grads_c) = results
    torch.testing.assert_close(out_c, out_e)
    assert any(g.abs().sum() > 0 for g in grads_e[:2])  # the update reaches the first layer
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="steps >= 1"):
        Staircase(0)
    with pytest.raises(ValueError, match="steps >= 1"):
        Staircase(2.5)
    with pytest.raises(ValueError, match="surrogate"):
        Staircase(3, surrogate="both")
    with pytest.raises(TypeError, match="weighted"):
        Sign(weighted="yes")
    with pytest.raises(ValueError, match="Valid names"):
        Sign("nope")
    with pytest.raises(ValueError, match="full precision"):
        make_activation("relu", loss="sste")
    with pytest.raises(ValueError, match="only apply to the staircase"):
        make_activation("sign", steps=3)
    with pytest.raises(ValueError, match="Valid"):
        make_activation("tanhh")


def test_make_activation():
    assert isinstance(make_activation("relu"), nn.ReLU)
    assert isinstance(make_activation("satrelu"), SaturatedReLU)
    s = make_activation("qrelu", steps=5, loss="sste")
    assert isinstance(s, Staircase) and s.unit.steps == 5 and s.loss.name == "saturated_hinge"
    # the reference code's name for the 2-bit staircase fixes its 3 steps
    assert make_activation("staircase3").unit.steps == 3 and make_activation("Staircase3", steps=3).unit.steps == 3
    with pytest.raises(ValueError, match="'staircase3' has 3 steps, but steps = 5 .*'staircase' with steps = 5"):
        make_activation("staircase3", steps=5)
    assert isinstance(make_activation("sign"), Sign)
    x = torch.linspace(-2, 2, 9)
    assert torch.equal(SaturatedReLU()(x), x.clamp(0, 1))


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_no_graph_breaks_under_dynamo(loss):
    """Every unit traces into one graph, so torch.compile can fuse its elementwise work."""
    model = nn.Sequential(nn.Linear(6, 8), Sign(loss), nn.Linear(8, 8), Staircase(3, loss, surrogate="per_step"),
                          nn.Linear(8, 2), Step(loss, weighted=False))
    explanation = torch._dynamo.explain(model)(torch.randn(4, 6))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_backward_can_be_differentiated(name):
    """create_graph=True (e.g. a gradient penalty): every loss's backward runs differentiably, in
    float32 (where the CPU fast paths write in place) and float64, and its first-order gradients
    equal those of the ordinary backward."""
    for dtype in (torch.float32, torch.float64):
        for module in (Sign(name), Staircase(3, name), Sign(name, weighted=False)):
            torch.manual_seed(0)
            net = nn.Sequential(nn.Linear(4, 8), module, nn.Linear(8, 3)).to(dtype)
            x = torch.randn(5, 4, dtype=dtype)
            params = list(net.parameters())
            plain = torch.autograd.grad(net(x).square().sum(), params)
            grads = torch.autograd.grad(net(x).square().sum(), params, create_graph=True)
            for a, b in zip(plain, grads):
                torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)
            sum(g.square().sum() for g in grads).backward()
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params), (name, dtype)
    # and the second derivatives are the true ones: the update's slopes in z and in g against finite
    # differences (the ramp's slope in z included, since it keeps z rather than phi(z))
    gen = torch.Generator().manual_seed(4)
    x = (torch.randn(6, 5, generator=gen, dtype=torch.float64) * 1.5).requires_grad_()
    g = torch.randn(6, 5, generator=gen, dtype=torch.float64).requires_grad_()
    for module in (Sign(name), Sign(name, weighted=False), Staircase(3, name),
                   Staircase(3, name, surrogate="per_step")):
        assert torch.autograd.gradgradcheck(module, (x,), (g,)), module


@pytest.mark.parametrize("weighted", [True, False])
def test_empty_batch(weighted):
    """A batch of 0 examples goes through every unit, forward and backward (no division by 0)."""
    for name in LOSSES:
        for module in (Sign(name, weighted), Staircase(3, name, weighted)):
            x = torch.zeros(0, 5, requires_grad=True)
            module(x).backward(torch.zeros(0, 5))
            assert x.grad.shape == (0, 5), name


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("module_fn", [lambda n: Staircase(3, n), lambda n: Staircase(4, n, surrogate="per_step")])
def test_loss_value_is_the_function_whose_derivative_is_loss_grad(module_fn, name):
    """autograd of L(z, t) = loss_value equals loss_grad, off the breakpoints (random x). The staircase's
    (a sign or step unit's are the loss's own value and grad: test_losses.py's test_analytic_grad_matches_autograd)."""
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(40, 7, generator=gen, dtype=torch.float64) * 1.5).requires_grad_()
    t = torch.where(torch.rand(40, 7, generator=gen) < 0.5, -1.0, 1.0).double()
    unit = module_fn(name).unit
    (auto,) = torch.autograd.grad(unit.loss_value(x, t).sum(), x)
    torch.testing.assert_close(auto, unit.loss_grad(x.detach(), t), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss, most", [("hinge", 63), ("perceptron", 127), ("saturated_hinge", 255)])
def test_staircases_whose_regions_overflow_a_byte_are_refused(loss, most):
    from ftprop.activations import ThresholdUnit, hard_threshold
    from ftprop.losses import LOSSES

    unit = ThresholdUnit("staircase", LOSSES[loss], True, most, "per_step")  # the largest that fits: still exact
    torch.manual_seed(0)
    x = (torch.rand(4000, dtype=torch.float64) * 4 - 1.5).requires_grad_()
    g = torch.randn(4000, dtype=torch.float64)
    hard_threshold(x, unit).backward(g)
    assert torch.allclose(x.grad, g.abs() * unit.loss_grad(x.detach(), -g.sign()))
    with pytest.raises(ValueError, match=f"staircase of {most + 1} steps .* more than the one byte"):
        ThresholdUnit("staircase", LOSSES[loss], True, most + 1, "per_step")
    if loss == "saturated_hinge":  # one surrogate over the whole staircase keeps a 0/1 mask, whatever the steps
        ThresholdUnit("staircase", LOSSES[loss], True, 1000, "single")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("steps, surrogate", [(3, "single"), (3, "per_step"), (4, "per_step")])
def test_staircase_sste_mask_is_exact_at_its_ends(dtype, steps, surrogate):
    # mapped first onto each step's argument (2x - 1, x - theta), a point just outside a step rounds
    # onto its edge; and an edge such as -2/3 compared in bfloat16 rounds too
    from fractions import Fraction

    unit = Staircase(steps, "saturated_hinge", surrogate=surrogate)
    thetas = [Fraction(i, steps - 1) for i in range(steps)]
    spans = [(Fraction(0), Fraction(1))] if surrogate == "single" else [(th - 1, th + 1) for th in thetas]
    edges = [float(e) for span in spans for e in span]
    up, down = torch.tensor(float("inf"), dtype=dtype), torch.tensor(float("-inf"), dtype=dtype)
    near = []
    for e in edges:
        x = torch.tensor(e, dtype=torch.float64).to(dtype)
        near += [x, torch.nextafter(x, up), torch.nextafter(x, down), torch.nextafter(torch.nextafter(x, down), down)]
    tiny = {torch.float64: 1e-300, torch.float32: 1e-9, torch.bfloat16: 1e-3, torch.float16: 2e-4}[dtype]
    x = torch.cat([torch.stack(near), torch.tensor([-tiny, tiny], dtype=dtype)])
    got = grad_through(unit, x, torch.ones_like(x))
    # SSTE: 1[|z| <= 1] at z = 2x - 1, or its mean over z = x - theta, decided exactly at x's values
    want = torch.tensor([sum(lo <= Fraction(v) <= hi for lo, hi in spans) / len(spans) for v in x.double().tolist()],
                        dtype=torch.float64)
    assert torch.equal(got == 0, want == 0), (x[(got == 0) != (want == 0)], got, want)
    torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("make", [lambda: Sign("soft_hinge"), lambda: Staircase(3, "soft_hinge"),
                                  lambda: Staircase(3, "soft_hinge", surrogate="per_step"),
                                  lambda: Sign("lecun_tanh"), lambda: Sign("soft_hinge", weighted=False)])
def test_tanh_updates_in_half_precision_are_the_rounded_exact_value(dtype, make):
    # 1 - tanh(u)^2 evaluated in bf16 cancels: +58% at u = 3 and 0 from 3.5 on
    x = torch.linspace(-4, 5, 91, dtype=torch.float64)
    g = torch.linspace(-1, 1, 91, dtype=torch.float64).flip(0)
    got = grad_through(make(), x.to(dtype), g.to(dtype))
    want = grad_through(make(), x.to(dtype).double(), g.to(dtype).double())  # the same inputs, in float64
    assert got.dtype == dtype  # (float32's own cancellation, where the update is below 1e-7, is let be)
    torch.testing.assert_close(got.double(), want.to(dtype).double(), rtol=1e-2, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("unit", ["sign", "staircase", "per_step"])
def test_units_leave_their_input_and_gradient_unchanged(name, unit):
    """Forward and backward write only tensors they made (a loss's phi_, for one, gets the
    staircase's 2z - 1, never z); float32 on CPU, where the in-place and chunked paths run."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(8, 3, 5, 5, generator=gen) * 2
    g = torch.randn(8, 3, 5, 5, generator=gen)
    module = {"sign": lambda: Sign(name), "staircase": lambda: Staircase(3, name),
              "per_step": lambda: Staircase(3, name, surrogate="per_step")}[unit]()
    xx, gg = x.clone().requires_grad_(), g.clone()
    module(xx).backward(gg)
    assert torch.equal(xx.detach(), x) and torch.equal(gg, g)
