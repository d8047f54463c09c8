"""The 18 convolution layers of DEVINE's UNet (docs/method.md §1), with no TensorFlow import.

``LAYERS`` lists them in checkpoint order: ``layer_with_weights-N`` of the official SavedModel
is ``LAYERS[N]``. Kernels are HWIO (height, width, in channels, out channels), as Keras stores
them. A *weights dict* maps each layer name to ``(kernel, bias)`` float32 arrays.
"""

from __future__ import annotations

from typing import NamedTuple


class ConvLayer(NamedTuple):
    name: str
    kernel: tuple[int, int, int, int]  # HWIO
    activation: str  # "relu" or "linear"

    @property
    def bias(self) -> tuple[int]:
        return (self.kernel[3],)


LAYERS: tuple[ConvLayer, ...] = (
    ConvLayer("conv1_0", (3, 3, 1, 32), "relu"),
    ConvLayer("conv1", (3, 3, 32, 32), "relu"),
    ConvLayer("conv2_0", (3, 3, 32, 64), "relu"),
    ConvLayer("conv2", (3, 3, 64, 64), "relu"),
    ConvLayer("conv3_0", (3, 3, 64, 128), "relu"),
    ConvLayer("conv3", (3, 3, 128, 128), "relu"),
    ConvLayer("conv4_0", (3, 3, 128, 256), "relu"),
    ConvLayer("conv4", (3, 3, 256, 256), "relu"),
    ConvLayer("up4", (2, 2, 256, 128), "relu"),
    ConvLayer("conv3_up_0", (3, 3, 256, 128), "relu"),
    ConvLayer("conv3_up", (3, 3, 128, 128), "relu"),
    ConvLayer("up3", (2, 2, 128, 64), "relu"),
    ConvLayer("conv2_up_0", (3, 3, 128, 64), "relu"),
    ConvLayer("conv2_up", (3, 3, 64, 64), "relu"),
    ConvLayer("up2", (2, 2, 64, 32), "relu"),
    ConvLayer("conv1_up_0", (3, 3, 64, 32), "relu"),
    ConvLayer("conv1_up", (3, 3, 32, 32), "relu"),
    ConvLayer("conv1_1", (1, 1, 32, 3), "linear"),
)

LAYER_NAMES: tuple[str, ...] = tuple(layer.name for layer in LAYERS)

#: The size-agnostic model needs H and W to be multiples of this (three 2x2 max-pools).
MULTIPLE = 8

#: Output channels of the UNet, in the rotated frame (u along the inflow, v across it).
CHANNELS = ("u", "v", "w")


def n_parameters() -> int:
    """Number of trainable parameters (1,925,091 for DEVINE)."""
    total = 0
    for layer in LAYERS:
        kh, kw, cin, cout = layer.kernel
        total += kh * kw * cin * cout + cout
    return total
