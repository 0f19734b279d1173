"""The model zoo: parameter counts, layer order, activation placement, shapes, gradients, refusals."""

import math

import pytest
import torch
from torch import nn

from ftprop.activations import HardThreshold
from ftprop.models import build_model

ACTIVATIONS = ["sign", "step", "staircase", "relu", "saturated_relu"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_thresholds(model: nn.Module) -> int:
    return sum(isinstance(m, HardThreshold) for m in model.modules())


def batch(shape, n=2, seed=0):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def forward_backward(model, x, num_classes):
    """One training step's forward and backward; returns the logits."""
    model.train()
    out = model(x)
    assert out.shape == (x.shape[0], num_classes)
    nn.functional.cross_entropy(out, torch.arange(x.shape[0]) % num_classes).backward()
    return out


def first_weight(model: nn.Module) -> torch.Tensor:
    return next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))).weight


_SHORT = {nn.Conv2d: "conv", nn.Linear: "fc", nn.MaxPool2d: "pool", nn.Flatten: "flat", nn.Dropout2d: "drop",
          nn.AdaptiveAvgPool2d: "avgpool"}


def layer_trace(model: nn.Module, x: torch.Tensor) -> str:
    """The leaf modules in the order they run, in short names: 'conv pool act ...'."""
    names: list[str] = []

    def short(m):
        if isinstance(m, HardThreshold):
            return "act"
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return "bn"
        return _SHORT[type(m)]

    hooks = [m.register_forward_hook(lambda m, i, o: names.append(short(m)))
             for m in model.modules() if not list(m.children()) and not isinstance(m, nn.Identity)]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return " ".join(names)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on 2 shared cores, 2 threads spin-wait and run this file ~5x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The two big ImageNet models are built once for the whole file.
@pytest.fixture(scope="module")
def alexnet():
    torch.manual_seed(0)
    return build_model("alexnet", "sign", num_classes=1000, input_shape=(3, 224, 224))


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return build_model("resnet18", "sign", num_classes=1000, input_shape=(3, 224, 224))


# ---- parameter counts (PAPER.md §7) --------------------------------------------------------------

@pytest.mark.parametrize("name, shape, classes, expected", [
    ("convnet4", (3, 32, 32), 10, 4_259_274),
    ("convnet8", (3, 32, 32), 10, 1_492_554),
    ("resnet18_cifar", (3, 32, 32), 10, 11_173_962),
])
def test_parameter_counts(name, shape, classes, expected):
    assert n_params(build_model(name, num_classes=classes, input_shape=shape)) == expected


def test_parameter_counts_imagenet(alexnet, resnet18):
    assert n_params(alexnet) == 62_394_344
    assert n_params(resnet18) == 11_689_512


def test_convnet4_batch_norm_adds_only_the_two_bn_layers():
    model = build_model("convnet4", num_classes=10, input_shape=(3, 32, 32), batch_norm=True)
    assert n_params(model) == 4_259_274 + 2 * 64 + 2 * 1024
    assert layer_trace(model, batch((3, 32, 32))) == "conv pool act conv pool act bn flat fc act bn fc"


# ---- layer order and activation placement -------------------------------------------------------

def test_convnet4_layer_order():
    model = build_model("convnet4", "sign", input_shape=(3, 32, 32))
    assert n_thresholds(model) == 3
    assert layer_trace(model, batch((3, 32, 32))) == "conv pool act conv pool act flat fc act fc"
    assert model[0].padding == (3, 3) and model[3].padding == (2, 2)
    assert model[7].in_features == 4096


@pytest.mark.parametrize("side", [32, 40])
def test_convnet8_layer_order_bn_and_bias(side):
    model = build_model("convnet8", "sign", input_shape=(3, side, side))
    assert n_thresholds(model) == 7
    assert layer_trace(model, batch((3, side, side))) == (
        "conv pool act "                  # 0: conv with bias, no BN
        "conv bn act conv bn pool act "   # 1, 2
        "conv bn act conv bn act conv bn act "  # 3, 4, 5
        "drop conv bn act "               # 6: Dropout2d before the last conv
        "flat fc")
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [c.bias is not None for c in convs] == [True] + [False] * 6
    assert convs[0].padding == ((2, 2) if side == 32 else (0, 0))
    assert convs[-1].kernel_size == ((4, 4) if side == 32 else (5, 5))
    assert all(m.eps == 1e-4 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_alexnet_layer_order_bn_and_bias(alexnet):
    assert n_thresholds(alexnet) == 7
    assert layer_trace(alexnet, batch((3, 224, 224))) == (
        "conv act "                                     # 0: no bias, no BN
        "conv bn pool act conv bn pool act conv bn act conv bn pool act "
        "flat fc bn act fc bn act "                     # 5, 6: fc without bias + BN1d
        "fc")
    convs = [m for m in alexnet.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in alexnet.modules() if isinstance(m, nn.Linear)]
    assert (convs[0].kernel_size, convs[0].stride) == ((12, 12), (4, 4))
    assert all(c.bias is None for c in convs)
    assert [f.bias is not None for f in fcs] == [False, False, True]
    bns = [m for m in alexnet.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(bns) == 6 and all(b.eps == 1e-4 for b in bns)
    assert sum(isinstance(b, nn.BatchNorm1d) for b in bns) == 2


def _resnet_trace(stem: str) -> str:
    plain = "conv bn act conv bn act"
    down = "conv bn act conv bn conv bn act"  # the 1x1 conv + BN shortcut runs before the sum's act
    return " ".join([stem, plain, plain, down, plain, down, plain, down, plain, "avgpool fc"])


def test_resnet18_layer_order(resnet18):
    assert n_thresholds(resnet18) == 17
    assert layer_trace(resnet18, batch((3, 64, 64))) == _resnet_trace("conv bn act pool")
    assert (resnet18.conv1.kernel_size, resnet18.conv1.stride) == ((7, 7), (2, 2))


def test_resnet18_cifar_layer_order():
    model = build_model("resnet18_cifar", "sign", input_shape=(3, 32, 32))
    assert n_thresholds(model) == 17
    assert layer_trace(model, batch((3, 32, 32))) == _resnet_trace("conv bn act")
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))


def test_resnet_shortcuts_have_no_activation(resnet18):
    blocks = [b for layer in (resnet18.layer1, resnet18.layer2, resnet18.layer3, resnet18.layer4) for b in layer]
    assert len(blocks) == 8
    downs = [b.downsample for b in blocks if not isinstance(b.downsample, nn.Identity)]
    assert len(downs) == 3  # first block of stages 2-4
    for d in downs:
        assert [type(m) for m in d] == [nn.Conv2d, nn.BatchNorm2d]
        assert d[0].kernel_size == (1, 1) and d[0].stride == (2, 2) and d[0].bias is None
        assert n_thresholds(d) == 0


def test_resnet18_init(resnet18):
    w = resnet18.layer4[1].conv2.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (9 * 512)), rel=0.02)
    bns = [m for m in resnet18.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((b.weight == 1).all()) and bool((b.bias == 0).all()) for b in bns)


def test_every_activation_module_is_its_own():
    model = build_model("convnet8", "staircase", input_shape=(3, 32, 32))
    acts = [m for m in model.modules() if isinstance(m, HardThreshold)]
    assert len({id(a) for a in acts}) == len(acts) == 7


# ---- output shapes ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, shape, classes", [
    ("convnet4", (3, 32, 32), 10),
    ("convnet4", (1, 28, 28), 7),
    ("convnet8", (3, 32, 32), 100),
    ("convnet8", (3, 40, 40), 10),
    ("resnet18_cifar", (3, 32, 32), 100),
    ("resnet18", (3, 64, 64), 3),
])
def test_output_shapes(name, shape, classes):
    model = build_model(name, "sign", num_classes=classes, input_shape=shape).eval()
    with torch.no_grad():
        assert model(batch(shape, n=3)).shape == (3, classes)


def test_channels_last_input_gives_the_same_logits():
    for name in ("convnet4", "resnet18_cifar"):
        torch.manual_seed(0)
        model = build_model(name, "relu", input_shape=(3, 16, 16)).eval()
        x = batch((3, 16, 16))
        with torch.no_grad():
            ref = model(x)
            out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


# ---- forward + backward with every activation ---------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name, shape", [("convnet4", (3, 32, 32)), ("convnet8", (3, 32, 32)),
                                         ("resnet18_cifar", (3, 16, 16))])
def test_forward_backward_every_activation(name, shape, activation):
    torch.manual_seed(0)
    model = build_model(name, activation, num_classes=5, input_shape=shape)
    forward_backward(model, batch(shape), 5)
    g = first_weight(model).grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_alexnet_forward_backward(alexnet):
    alexnet.zero_grad()
    forward_backward(alexnet, batch((3, 224, 224)), 1000)
    assert first_weight(alexnet).grad.abs().sum() > 0


def test_resnet18_forward_backward(resnet18):
    resnet18.zero_grad()
    forward_backward(resnet18, batch((3, 64, 64)), 1000)  # adaptive pooling: 64x64 works and is cheap
    assert first_weight(resnet18).grad.abs().sum() > 0
    with torch.no_grad():
        assert resnet18.eval()(batch((3, 224, 224), n=1)).shape == (1, 1000)


@pytest.mark.parametrize("name, shape", [("alexnet", (3, 224, 224)), ("resnet18", (3, 96, 96))])
def test_imagenet_models_with_relu(name, shape):
    torch.manual_seed(0)
    model = build_model(name, "relu", num_classes=7, input_shape=shape)
    assert n_thresholds(model) == 0
    forward_backward(model, batch(shape), 7)
    assert first_weight(model).grad.abs().sum() > 0


@pytest.mark.parametrize("loss", ["soft_hinge", "saturated_hinge", "linear"])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("name, shape", [("convnet4", (1, 28, 28)), ("convnet8", (3, 32, 32))])
def test_sign_gradients_reach_the_first_layer(name, shape, loss, weighted):
    torch.manual_seed(0)
    model = build_model(name, "sign", num_classes=10, input_shape=shape, loss=loss, weighted=weighted)
    forward_backward(model, batch(shape, n=4), 10)
    g = first_weight(model).grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_staircase_options_reach_every_unit():
    model = build_model("resnet18_cifar", "staircase", input_shape=(3, 32, 32), steps=5, loss="saturated_hinge",
                        surrogate="per_step")
    acts = [m for m in model.modules() if isinstance(m, HardThreshold)]
    assert len(acts) == 17
    assert all(a.unit.steps == 5 and a.unit.surrogate == "per_step" and a.loss.name == "saturated_hinge"
               for a in acts)


# ---- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, shape, words", [
    ("alexnet", (3, 32, 32), ["224x224", "32x32"]),
    ("convnet8", (3, 28, 28), ["32x32", "40x40", "28x28"]),
    ("convnet8", (3, 32, 40), ["32x32", "40x40"]),
    ("convnet4", (784,), ["(C, H, W)", "mlp"]),
    ("convnet4", (1, 1, 1), ["at least 2x2"]),
    ("resnet18", (3, 16, 16), ["at least 32x32", "resnet18_cifar"]),
    ("resnet18_cifar", (3, 4, 4), ["at least 8x8"]),
])
def test_impossible_input_shapes_are_refused(name, shape, words):
    with pytest.raises(ValueError) as err:
        build_model(name, input_shape=shape)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_the_reference_codes_alexnet_name_builds_the_alexnet():
    from ftprop.config import Config, apply_overrides
    from ftprop.models import model_name
    from ftprop.runs import resume_differences

    assert model_name("alexnet_drf") == model_name("AlexNet") == "alexnet"
    a, b = (build_model(n, num_classes=10, input_shape=(3, 224, 224)) for n in ("alexnet_drf", "alexnet"))
    assert str(a) == str(b)
    cfg = apply_overrides(Config(name="t"), ["model.name='alexnet'", "data.name='imagefolder'"])
    assert resume_differences(cfg, apply_overrides(cfg, ["model.name='alexnet_drf'"]), mid_epoch=True) == []


def test_unknown_model_option_is_refused():
    with pytest.raises(ValueError, match="takes no option 'batch_norm'"):
        build_model("convnet8", input_shape=(3, 32, 32), batch_norm=True)


def test_an_activation_module_instead_of_a_factory_is_refused():
    from ftprop.activations import Sign

    for unit in (Sign(), nn.ReLU()):  # callable, but calling it ran forward() with no input
        with pytest.raises(ValueError, match=f"pass {type(unit).__name__} \\(the class\\)"):
            build_model("mlp", unit, input_shape=(64,))
    model = build_model("mlp", Sign, input_shape=(64,))  # the class is a factory: one unit per layer
    assert n_thresholds(model) == 2


@pytest.mark.parametrize("shape", [64, (3, 32.9, 32), "3x32x32"])
def test_input_shape_that_is_not_whole_sizes_is_refused(shape):
    with pytest.raises(ValueError, match="input_shape must be positive whole sizes"):
        build_model("mlp", input_shape=shape)


def test_option_defaults_list_what_a_model_or_dataset_takes():
    from ftprop.data import option_defaults as data_options
    from ftprop.models import option_defaults as model_options

    assert model_options("mlp") == {"hidden": (256, 256), "batch_norm": True, "dropout": 0.0}
    assert model_options("ConvNet4") == {"batch_norm": False} and model_options("resnet18") == {}
    assert data_options("cifar10")["crop_pad"] == 4 and data_options("digits") == {}
    with pytest.raises(ValueError, match="unknown model 'convnet5'"):
        model_options("convnet5")
