"""ResNet-18 with hard-threshold units: ``resnet18`` (ImageNet, torchvision-style; PAPER.md §7.4)
and ``resnet18_cifar`` (kuangliu's 32x32 variant; §7.5), as in the reference's ``models/resnet_*.py``.

Activation placement (17 activation layers): after the stem's BN, after each block's first
BN, and after the residual sum ``bn2(conv2(.)) + shortcut``. Shortcuts are the identity
(carrying the block's already-quantised input) or 1x1 conv (no bias) -> BN, never activated.
The head (global average pool -> Linear) is full precision with real-valued logits.

Init: ``resnet18`` does what the reference (old torchvision) does: conv weights ~ N(0, 2/(k²·out))
(He-normal, fan-out), BN γ = 1, β = 0; the fc keeps PyTorch's default. ``resnet18_cifar`` keeps
PyTorch's defaults throughout, as kuangliu's code does, so its BN γ = 1 (modern PyTorch; the 2017
PyTorch of the reference drew γ ~ U(0, 1): PAPER.md §11 item 8).

Module names follow torchvision (``conv1``, ``bn1``, ``layer1``-``layer4``, ``downsample``, ``fc``),
so a torchvision ResNet-18 ``state_dict`` loads into ``resnet18``.

Deliberate deviation: the head pools adaptively to 1x1 (the reference: AvgPool(7) for 224 inputs,
avg_pool(4) for 32), which is the same for those sizes and lets other input sizes work.
"""

from __future__ import annotations

from torch import Tensor, nn

from . import register_model
from .convnets import image_shape

__all__ = ["BasicBlock", "ResNet18", "resnet18", "resnet18_cifar"]


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> act -> conv3x3 -> BN -> (+ shortcut) -> act."""

    def __init__(self, act, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = act()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module = nn.Identity()  # the shortcut: no activation on it
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))
        self.act2 = act()

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.downsample(x))


class ResNet18(nn.Module):
    """Stem -> 4 stages of 2 BasicBlocks (64, 128, 256, 512 channels) -> avg pool -> Linear.

    ``imagenet=True``: stem conv7x7 s2 -> BN -> act -> maxpool 3x3 s2 (input downsampled 32x).
    ``imagenet=False``: stem conv3x3 s1 -> BN -> act, no maxpool (downsampled 8x).
    """

    def __init__(self, act, num_classes: int, in_channels: int = 3, imagenet: bool = True) -> None:
        super().__init__()
        if imagenet:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act = act()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if imagenet else nn.Identity()
        self.layer1 = nn.Sequential(BasicBlock(act, 64, 64), BasicBlock(act, 64, 64))
        self.layer2 = nn.Sequential(BasicBlock(act, 64, 128, 2), BasicBlock(act, 128, 128))
        self.layer3 = nn.Sequential(BasicBlock(act, 128, 256, 2), BasicBlock(act, 256, 256))
        self.layer4 = nn.Sequential(BasicBlock(act, 256, 512, 2), BasicBlock(act, 512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        if imagenet:  # the reference's (old torchvision's) init; the CIFAR net keeps the defaults
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _check_side(model: str, h: int, w: int, minimum: int, typical: str) -> None:
    if h < minimum or w < minimum:
        raise ValueError(f"{model} downsamples its input {minimum}x and needs inputs of at least "
                         f"{minimum}x{minimum} ({typical}); got {h}x{w}")


@register_model("resnet18")
def resnet18(act, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """ImageNet ResNet-18 (PAPER.md §7.4); 224x224 in the paper, any side >= 32 works."""
    c, h, w = image_shape("resnet18", input_shape)
    _check_side("resnet18", h, w, 32, "ImageNet's 224x224 is the usual size; for 32x32 CIFAR use resnet18_cifar")
    return ResNet18(act, num_classes, c, imagenet=True)


@register_model("resnet18_cifar")
def resnet18_cifar(act, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """kuangliu's CIFAR ResNet-18 (PAPER.md §7.5); 32x32 in the reference, any side >= 8 works."""
    c, h, w = image_shape("resnet18_cifar", input_shape)
    _check_side("resnet18_cifar", h, w, 8, "CIFAR's 32x32 is the usual size")
    return ResNet18(act, num_classes, c, imagenet=False)
