"""The paper's small convnets: ``convnet4`` (CIFAR-10 / MNIST) and ``convnet8`` (DoReFa's SVHN net).

Both follow the reference code (afriesen/ftprop ``models/convnet4.py``, ``models/convnet8.py``;
PAPER.md §7.1-7.2) layer for layer: the first layer sees the real-valued image, every other
conv/fc layer feeds the chosen activation, and the last linear layer outputs real logits.
Weights stay full precision with PyTorch's default init (U(±1/√fan_in), as in the reference).

Deliberate deviations:
  * BN γ starts at 1 (modern PyTorch); the 2017 PyTorch of the reference drew γ ~ U(0, 1)
    (PAPER.md §11 item 8).
  * ``convnet4``'s flatten width is computed from the input size instead of hard-coded, so
    28×28 MNIST works (28 -> 30 -> 15 -> 7: 7·7·64 = 3136) as well as 32×32 (4096).
"""

from __future__ import annotations

from torch import nn

from . import register_model

__all__ = ["convnet4", "convnet8", "conv_out", "image_shape"]


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a conv or pool layer (floor mode), as PyTorch computes it."""
    return (size + 2 * padding - kernel) // stride + 1


def image_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) from ``input_shape``, or a ValueError saying the model needs images."""
    if len(input_shape) != 3:
        raise ValueError(f"{model} is a convnet and needs image inputs (C, H, W); got input_shape "
                         f"{tuple(input_shape)!r} (flat vectors go to the 'mlp' model)")
    c, h, w = input_shape
    return c, h, w


@register_model("convnet4")
def convnet4(act, num_classes: int, input_shape: tuple[int, ...], batch_norm: bool = False) -> nn.Module:
    """4-layer convnet, 3 activation layers (PAPER.md §7.1). The paper's runs have no BN.

    With ``batch_norm`` the reference puts BN *after* the activations of blocks 2 and 3,
    in front of the next linear layer, and so does this.
    """
    c, h, w = image_shape("convnet4", input_shape)

    def side(s: int) -> int:  # conv(k5, pad 3) -> pool2 -> conv(k5, pad 2) -> pool2
        return conv_out(conv_out(conv_out(conv_out(s, 5, padding=3), 2, 2), 5, padding=2), 2, 2)

    oh, ow = side(h), side(w)
    if oh < 1 or ow < 1:
        raise ValueError(f"convnet4 pools twice by 2 and needs inputs of at least 2x2; got {h}x{w}")
    # one row per block, as in PAPER.md §7.1
    # fmt: off
    layers: list[nn.Module] = [
        nn.Conv2d(c, 32, 5, padding=3), nn.MaxPool2d(2), act(),   # block 1
        nn.Conv2d(32, 64, 5, padding=2), nn.MaxPool2d(2), act(),  # block 2
    ]
    # fmt: on
    if batch_norm:
        layers.append(nn.BatchNorm2d(64))
    layers += [nn.Flatten(), nn.Linear(64 * oh * ow, 1024), act()]  # block 3
    if batch_norm:
        layers.append(nn.BatchNorm1d(1024))
    layers.append(nn.Linear(1024, num_classes))  # block 4: real-valued logits
    return nn.Sequential(*layers)


# Input side -> (pad of conv0, kernel of conv6): both bring the map to 1x1 before the classifier.
_CONVNET8_SIZES = {32: (2, 4), 40: (0, 5)}


@register_model("convnet8")
def convnet8(act, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """DoReFa's SVHN net, 8 weight layers and 7 activation layers, BN (eps 1e-4) always on
    (PAPER.md §7.2). Conv1-6 have no bias since BN follows them; conv0 has a bias and no BN."""
    c, h, w = image_shape("convnet8", input_shape)
    if h != w or h not in _CONVNET8_SIZES:
        raise ValueError(f"convnet8 takes 32x32 (CIFAR-10) or 40x40 (SVHN as in DoReFa) inputs exactly, "
                         f"so that its last conv sees a 4x4 or 5x5 map; got {h}x{w}")
    pad0, ks6 = _CONVNET8_SIZES[h]

    def bn(n: int) -> nn.Module:
        return nn.BatchNorm2d(n, eps=1e-4)

    # one row per block, as in PAPER.md §7.2
    # fmt: off
    return nn.Sequential(
        nn.Conv2d(c, 48, 5, padding=pad0), nn.MaxPool2d(2), act(),                   # 0
        nn.Conv2d(48, 64, 3, padding=1, bias=False), bn(64), act(),                   # 1
        nn.Conv2d(64, 64, 3, padding=1, bias=False), bn(64), nn.MaxPool2d(2), act(),  # 2
        nn.Conv2d(64, 128, 3, padding=0, bias=False), bn(128), act(),                 # 3
        nn.Conv2d(128, 128, 3, padding=1, bias=False), bn(128), act(),                # 4
        nn.Conv2d(128, 128, 3, padding=0, bias=False), bn(128), act(),                # 5
        nn.Dropout2d(0.5), nn.Conv2d(128, 512, ks6, bias=False), bn(512), act(),      # 6
        nn.Flatten(), nn.Linear(512, num_classes),                                    # 7: logits
    )
    # fmt: on
