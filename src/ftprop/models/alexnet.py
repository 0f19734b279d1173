"""AlexNet as DoReFa-Net structures it (the reference's ``alexnet_drf``; PAPER.md §7.3), for ImageNet.

Five conv and three fc layers, 7 activation layers, BN (eps 1e-4) on every layer but the first
and the last, no dropout. The first conv has neither bias nor BN, so its threshold sits at 0.
Weights stay full precision with PyTorch's default init (U(±1/√fan_in), as in the reference).

Deliberate deviations:
  * the reference applies ``BatchNorm2d(4096)`` to the 2-D fc outputs (which 2017 PyTorch
    allowed); this uses ``BatchNorm1d``, which computes the same thing (PAPER.md §11 item 7);
  * BN γ starts at 1 (modern PyTorch); the 2017 PyTorch of the reference drew γ ~ U(0, 1)
    (PAPER.md §11 item 8).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from . import register_model
from .convnets import conv_out, image_shape

__all__ = ["alexnet"]


def _final_side(s: int) -> int:
    """Side of the last conv block's output for an input of side ``s`` (6 for 224)."""
    s = conv_out(s, 12, 4)                     # conv0
    s = conv_out(s, 3, 2, 1)                   # conv1 (same size) -> pool(3, 2, pad 1)
    s = conv_out(s, 3, 2)                      # conv2 -> pool(3, 2)
    return conv_out(s, 3, 2)                   # conv3, conv4 -> pool(3, 2)


_VALID_SIDES = [s for s in range(12, 512) if _final_side(s) == 6]  # 220..251


@register_model("alexnet")
def alexnet(act, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """DoReFa AlexNet: 224x224 input -> 6x6x256 conv features -> 4096 -> 4096 -> logits."""
    c, h, w = image_shape("alexnet", input_shape)
    if _final_side(h) != 6 or _final_side(w) != 6:
        raise ValueError(f"alexnet needs ImageNet-size inputs, 224x224 (any side from {_VALID_SIDES[0]} to "
                         f"{_VALID_SIDES[-1]} gives the 6x6x256 = 9216 features its first fc layer takes); "
                         f"got {h}x{w}")

    def bn(n: int) -> nn.Module:
        return nn.BatchNorm2d(n, eps=1e-4)

    # one row per block, as in PAPER.md §7.3
    # fmt: off
    features = nn.Sequential(
        nn.Conv2d(c, 96, 12, stride=4, bias=False), act(),                                        # 0: 54x54
        nn.Conv2d(96, 256, 5, padding=2, bias=False), bn(256), nn.MaxPool2d(3, 2, 1), act(),       # 1: 27x27
        nn.Conv2d(256, 384, 3, padding=1, bias=False), bn(384), nn.MaxPool2d(3, 2), act(),         # 2: 13x13
        nn.Conv2d(384, 384, 3, padding=1, bias=False), bn(384), act(),                             # 3: 13x13
        nn.Conv2d(384, 256, 3, padding=1, bias=False), bn(256), nn.MaxPool2d(3, 2), act(),         # 4: 6x6
    )
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(256 * 6 * 6, 4096, bias=False), nn.BatchNorm1d(4096, eps=1e-4), act(),  # 5
        nn.Linear(4096, 4096, bias=False), nn.BatchNorm1d(4096, eps=1e-4), act(),         # 6
        nn.Linear(4096, num_classes),                                                     # 7: logits
    )
    # fmt: on
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))
