"""The devine-torch network (WindUNet, base width 32) as a list of tensors, no PyTorch import.

devine-torch (F. Hammer & N. Helbig) retrained DEVINE's UNet in PyTorch on three terrain
features. Its ``model.pt`` is a state dict of 36 tensors; :data:`TENSORS` lists them in the
module order of the network with their shapes (PyTorch's OIHW kernels). A folder is accepted
only when its keys and shapes are exactly these (see :mod:`.torch_folder`).

Architecture (docs/method.md §11, docs/devine_torch.md): DoubleConv(cin, cout) = 3x3 "same" conv, act, 3x3
"same" conv, act; conv1..conv4 = DoubleConv(3, 32), (32, 64), (64, 128), (128, 256) with 2x2
max pools between them; up4/up3/up2 = bilinear x2 upsampling (align_corners=True), 2x2
"same" conv, act; stack_conv3/2/1 = zero-pad the upsampled map to the skip's size, concatenate
[skip, up], DoubleConv; out_layer = 1x1 conv 32 -> 3 (u, v, w in m/s for a 3 m/s inflow).
"""

from __future__ import annotations

from typing import NamedTuple

#: Input channels, in the network's order (devine-torch sorts its input variables).
CHANNELS = ("deflLis", "reldem", "ydsc")
#: Output channels: u toward +x (east), v toward +y (north), w upward, m/s for a 3 m/s inflow.
OUTPUTS = ("u", "v", "w")
#: Inflow speed of the ARPS training simulations, m/s.
INFLOW_SPEED = 3.0
#: Base width of the network.
WIDTH = 32
#: Activations the converter knows (info.yaml ``activation``), as ``torch.nn`` class names.
ACTIVATIONS = ("ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Tanh")


class Tensor(NamedTuple):
    key: str
    shape: tuple[int, ...]


def _conv(prefix: str, cin: int, cout: int, k: int) -> list[Tensor]:
    return [Tensor(f"{prefix}.weight", (cout, cin, k, k)), Tensor(f"{prefix}.bias", (cout,))]


def _double(prefix: str, cin: int, cout: int) -> list[Tensor]:
    return _conv(f"{prefix}.0", cin, cout, 3) + _conv(f"{prefix}.2", cout, cout, 3)


def _tensors(in_channels: int = len(CHANNELS), width: int = WIDTH) -> tuple[Tensor, ...]:
    w = width
    out: list[Tensor] = []
    for i, (cin, cout) in enumerate(
        [(in_channels, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)], start=1
    ):
        out += _double(f"conv{i}.double_conv", cin, cout)
    for name, cin, cout, stack in (
        ("4", 8 * w, 4 * w, "3"),
        ("3", 4 * w, 2 * w, "2"),
        ("2", 2 * w, w, "1"),
    ):
        out += _conv(f"up{name}.conv_up.1", cin, cout, 2)
        out += _double(f"stack_conv{stack}.double_conv.double_conv", 2 * cout, cout)
    out += _conv("out_layer.output_conv.0", w, len(OUTPUTS), 1)
    return tuple(out)


#: The 36 state-dict tensors of devine-torch's WindUNet, in module order.
TENSORS: tuple[Tensor, ...] = _tensors()
#: Their keys.
KEYS: tuple[str, ...] = tuple(t.key for t in TENSORS)


def n_parameters() -> int:
    """Number of parameters (1,925,667 for devine-torch's WindUNet)."""
    total = 0
    for t in TENSORS:
        n = 1
        for s in t.shape:
            n *= s
        total += n
    return total
