"""devine-torch's WindUNet rebuilt with PyTorch modules (for loading ``model.pt`` and exporting).

Written from docs/devine_torch.md; attribute names follow the state-dict keys listed in
:mod:`.torch_layout`, so ``load_state_dict`` takes a devine-torch ``model.pt`` as it is.
PyTorch is imported here (converter only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .torch_layout import ACTIVATIONS, CHANNELS, OUTPUTS, WIDTH


def make_activation(name: str) -> nn.Module:
    """``torch.nn`` activation of that class name (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r}: expected one of {', '.join(ACTIVATIONS)}")
    return getattr(nn, name)()


class _DoubleConv(nn.Module):
    """3x3 "same" conv, activation, 3x3 "same" conv, activation (``double_conv.{0,2}``)."""

    def __init__(self, cin: int, cout: int, act: nn.Module):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding="same"),
            act,
            nn.Conv2d(cout, cout, 3, padding="same"),
            act,
        )

    def forward(self, x):
        return self.double_conv(x)


class _UpConv(nn.Module):
    """Bilinear x2 upsampling with align_corners=True, 2x2 "same" conv, activation."""

    def __init__(self, cin: int, cout: int, act: nn.Module):
        super().__init__()
        self.conv_up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(cin, cout, 2, padding="same"),  # PyTorch pads 0 before, 1 after
            act,
        )

    def forward(self, x):
        return self.conv_up(x)


class _Stack(nn.Module):
    """Zero-pad ``up`` to the size of ``skip`` (top/left get half), concatenate, DoubleConv."""

    def __init__(self, cin: int, cout: int, act: nn.Module):
        super().__init__()
        self.double_conv = _DoubleConv(cin, cout, act)

    def forward(self, skip, up):
        dy = skip.size(2) - up.size(2)
        dx = skip.size(3) - up.size(3)
        up = F.pad(up, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.double_conv(torch.cat([skip, up], dim=1))


class _Output(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.output_conv = nn.Sequential(nn.Conv2d(cin, cout, 1))

    def forward(self, x):
        return self.output_conv(x)


class WindUNet(nn.Module):
    """devine-torch's network: (N, 3, H, W) normalised features -> (N, 3, H, W) u, v, w in m/s.

    Any H, W >= 8 (three 2x2 max pools, floor sizes; the decoder pads back to the skip sizes).
    """

    def __init__(self, activation: str = "ReLU", in_channels: int = len(CHANNELS)):
        super().__init__()
        w = WIDTH
        act = make_activation(activation)
        self.conv1 = _DoubleConv(in_channels, w, act)
        self.conv2 = _DoubleConv(w, 2 * w, act)
        self.conv3 = _DoubleConv(2 * w, 4 * w, act)
        self.conv4 = _DoubleConv(4 * w, 8 * w, act)
        self.pool = nn.MaxPool2d(2)
        self.up4 = _UpConv(8 * w, 4 * w, act)
        self.stack_conv3 = _Stack(8 * w, 4 * w, act)
        self.up3 = _UpConv(4 * w, 2 * w, act)
        self.stack_conv2 = _Stack(4 * w, 2 * w, act)
        self.up2 = _UpConv(2 * w, w, act)
        self.stack_conv1 = _Stack(2 * w, w, act)
        self.out_layer = _Output(w, len(OUTPUTS))

    def forward(self, x):
        c1 = self.conv1(x)
        c2 = self.conv2(self.pool(c1))
        c3 = self.conv3(self.pool(c2))
        c4 = self.conv4(self.pool(c3))
        x = self.stack_conv3(c3, self.up4(c4))
        x = self.stack_conv2(c2, self.up3(x))
        x = self.stack_conv1(c1, self.up2(x))
        return self.out_layer(x)
