"""The size-agnostic DEVINE UNet (docs/method.md §2) as a TensorFlow function of fixed weights.

Same layers and weights as the trained 79x69 graph, without its internal pads and crops:
input ``(N, H, W, 1)`` with H and W multiples of 8, output ``(N, H, W, 3)`` = (u, v, w) in
the rotated frame. Built from core TF ops (no Keras) so that tf2onnx sees a plain graph.
"""

from __future__ import annotations

import numpy as np

from ._tf import import_tensorflow
from .layers import LAYERS

tf = import_tensorflow()


def build_unet_function(weights: dict, dtype=tf.float32):
    """Return a ``tf.function`` computing the size-agnostic UNet with ``weights``.

    Parameters
    ----------
    weights : dict
        ``{layer name: (kernel HWIO, bias)}`` for the 18 layers of :data:`LAYERS`.
    """
    # numpy arrays (not eager tensors) in the closure: they become graph constants, whereas
    # captured eager tensors would become extra graph inputs in the exported model.
    np_dtype = np.float16 if dtype == tf.float16 else np.float32
    consts = {
        layer.name: (
            np.asarray(weights[layer.name][0], dtype=np_dtype),
            np.asarray(weights[layer.name][1], dtype=np_dtype),
        )
        for layer in LAYERS
    }
    activation = {layer.name: layer.activation for layer in LAYERS}

    def conv(x, name):
        kernel, bias = (tf.constant(a) for a in consts[name])
        # 'SAME' pads (k-1)//2 before and the rest after: 3x3 -> (1, 1); 2x2 -> (0, 1),
        # i.e. the 2x2 up-convolutions read taps (i, i+1) as in Keras.
        y = tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"), bias)
        return tf.nn.relu(y) if activation[name] == "relu" else y

    def pool(x):
        return tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")

    def up(x):
        # Nearest x2 with 'asymmetric' coordinates: output i reads input i // 2, exactly as
        # Keras' UpSampling2D; exported as a plain ONNX Resize(nearest, floor).
        size = tf.shape(x)[1:3] * 2
        return tf.raw_ops.ResizeNearestNeighbor(
            images=x, size=size, align_corners=False, half_pixel_centers=False
        )

    def unet(x):
        c1 = conv(conv(x, "conv1_0"), "conv1")
        c2 = conv(conv(pool(c1), "conv2_0"), "conv2")
        c3 = conv(conv(pool(c2), "conv3_0"), "conv3")
        c4 = conv(conv(pool(c3), "conv4_0"), "conv4")
        u4 = conv(up(c4), "up4")
        d3 = conv(conv(tf.concat([c3, u4], axis=3), "conv3_up_0"), "conv3_up")
        u3 = conv(up(d3), "up3")
        d2 = conv(conv(tf.concat([c2, u3], axis=3), "conv2_up_0"), "conv2_up")
        u2 = conv(up(d2), "up2")
        d1 = conv(conv(tf.concat([c1, u2], axis=3), "conv1_up_0"), "conv1_up")
        return conv(d1, "conv1_1")

    spec = tf.TensorSpec([None, None, None, 1], dtype, name="dem")

    @tf.function(input_signature=[spec])
    def devine_unet(dem):
        return tf.identity(unet(dem), name="uvw")

    return devine_unet
