"""Independent TensorFlow implementation of one correction table (docs/method.md §3), for tests.

Built from core TensorFlow ops only (no Keras, no devine_onnx code), following the original
scripts: ``ImageProjectiveTransformV3`` for both rotations with TensorFlow's own float32
cos/sin, the box mean as a 'SAME' convolution (in float64: the original's
float32 convolution is off by up to 0.06 m), the crop, the size-agnostic UNet of docs/method.md §2
from a weights dict, speed/alpha, and -1 written where the back-rotation falls outside the
crop, as the original does. The original's rounding to float16 precision is not reproduced.

TensorFlow is imported lazily with ``importlib`` (ruff bans ``import tensorflow`` outside
``convert/``); tests that use this module must first call
``pytest.importorskip("tensorflow")``.
"""

from __future__ import annotations

import importlib
import math

import numpy as np

# Encoder blocks: layers "<block>_0" then "<block>" (names as in ``convert.layers.LAYERS``).
_ENCODER = ("conv1", "conv2", "conv3", "conv4")
WINDOW = (79, 69)
ARPS_INFLOW = 3.0
OUTSIDE = -1.0  # what the original writes outside the back-rotated crop


def _tf():
    return importlib.import_module("tensorflow")


def theta(k: int):
    """Forward angle ``f32(pi/2) + f32(k) * f32(0.01745329)``, in TF float32 arithmetic."""
    tf = _tf()
    return tf.constant(np.pi / 2, tf.float32) + tf.cast(k, tf.float32) * tf.constant(
        0.01745329, tf.float32
    )


def phi(k: int):
    """Back angle ``f32(-pi/2) - f32(k * 0.01745329)`` (product in float64), in TF float32."""
    tf = _tf()
    return tf.constant(-np.pi / 2, tf.float32) - tf.constant(k * 0.01745329, tf.float32)


def rotate(images, angle, fill: float):
    """``tfa.image.rotate`` of ``(N, H, W, C)`` float32 images, nearest, constant fill."""
    tf = _tf()
    images = tf.convert_to_tensor(images, tf.float32)
    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    c, s = tf.cos(angle), tf.sin(angle)
    x_off = ((w - 1) - (c * (w - 1) - s * (h - 1))) / 2.0
    y_off = ((h - 1) - (s * (w - 1) + c * (h - 1))) / 2.0
    zero = tf.zeros_like(c)
    transform = tf.stack([c, -s, x_off, s, c, y_off, zero, zero])[None, :]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transform,
        output_shape=tf.shape(images)[1:3],
        fill_value=tf.constant(fill, tf.float32),
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )


def box_mean(z, window=WINDOW):
    """Float64 'SAME' convolution of ``(N, H, W, 1)`` with a box of ones, / window area."""
    tf = _tf()
    kernel = tf.ones((*window, 1, 1), tf.float64)
    total = tf.nn.conv2d(tf.cast(z, tf.float64), kernel, strides=1, padding="SAME")
    return total / float(window[0] * window[1])


def crop_slices(h: int, w: int) -> tuple[slice, slice]:
    """docs/method.md §3 step 3 crop of a ``(h, w)`` DEM."""
    d = math.floor(math.floor(min(h, w) / math.sqrt(2)) / 2)
    return slice(h // 2 - d, h // 2 + d + 1), slice(w // 2 - d, w // 2 + d + 1)


def normalised_crop(dem: np.ndarray, k: int, sigma: float):
    """Steps 1-3: rotated DEM (fill -1), ``(Zr - M) / sigma`` in float64, cropped; float32."""
    tf = _tf()
    dem = np.asarray(dem, np.float32)
    rows, cols = crop_slices(*dem.shape)
    zr = rotate(dem[None, :, :, None], theta(k), -1.0)
    norm = (tf.cast(zr, tf.float64) - box_mean(zr)) / float(sigma)
    return tf.cast(norm, tf.float32)[:, rows, cols, :]


def _conv(x, weights, name: str, relu: bool = True):
    tf = _tf()
    kernel, bias = weights[name]
    y = tf.nn.conv2d(x, tf.constant(kernel, tf.float32), strides=1, padding="SAME")
    y = tf.nn.bias_add(y, tf.constant(bias, tf.float32))
    return tf.nn.relu(y) if relu else y


def _upsample(x):
    tf = _tf()
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)


def unet(x, weights: dict):
    """The size-agnostic UNet (docs/method.md §2) on ``(N, H, W, 1)`` float32, H, W any size.

    Pads with zeros at the bottom/right to multiples of 8, crops the output back; returns
    ``(N, H, W, 3)`` = (u, v, w). 2x2 'SAME' convolutions pad 0 before and 1 after, as Keras.
    """
    tf = _tf()
    x = tf.convert_to_tensor(x, tf.float32)
    h, w = int(x.shape[1]), int(x.shape[2])
    ph, pw = -h % 8, -w % 8
    x = tf.pad(x, [[0, 0], [0, ph], [0, pw], [0, 0]])
    skips = []
    for i, name in enumerate(_ENCODER):
        if i:
            x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")
        x = _conv(_conv(x, weights, name + "_0"), weights, name)
        skips.append(x)  # Dropout after conv3/conv4 is the identity at inference
    for level, up in ((3, "up4"), (2, "up3"), (1, "up2")):
        x = _conv(_upsample(x), weights, up)
        x = tf.concat([skips[level - 1], x], axis=3)
        x = _conv(_conv(x, weights, f"conv{level}_up_0"), weights, f"conv{level}_up")
    x = _conv(x, weights, "conv1_1", relu=False)
    return x[:, :h, :w, :]


def speed_alpha(u, v):
    """docs/method.md §3 step 5 with TF float32 ops (atan, not atan2)."""
    tf = _tf()
    speed = tf.sqrt(u**2 + v**2)
    small_u = tf.abs(u) <= 1e-5
    small_v = tf.abs(v) <= 1e-5
    safe_u = tf.where(small_u, tf.ones_like(u), u)
    alpha = tf.where(
        small_u & small_v,
        tf.zeros_like(u),
        tf.where(small_u, tf.sign(v) * 3.14159 / 2, tf.math.atan(v / safe_u)),
    )
    return speed, alpha


def back_rotate(fields, k: int, fill: float = OUTSIDE):
    """Step 6 (and the -1 of step 7): rotate ``(N, s, s, C)`` by ``phi(k)``, fill ``fill``."""
    return rotate(fields, phi(k), fill)


def reference_table(
    dem: np.ndarray, weights: dict, sigma: float, angles
) -> tuple[np.ndarray, np.ndarray]:
    """Acceleration and alpha tables ``(n, s, s)`` float32 for the directions ``angles``.

    Parameters
    ----------
    dem : numpy.ndarray, shape (H, W)
        Elevations in metres (float32), row 0 = north.
    weights : dict
        ``{layer name: (kernel HWIO float32, bias float32)}`` for the 18 layers of
        ``convert.layers.LAYERS``.
    sigma : float
        Normalisation scale in metres.
    angles : iterable of int
        Table directions k in degrees.

    Returns
    -------
    acceleration, alpha : numpy.ndarray of float32, shape (n, s, s)
        ``speed / 3`` and alpha in radians; -1 where the back-rotation falls outside the crop
        (both fields), as the original writes.
    """
    tf = _tf()
    accel, alpha_all = [], []
    for k in angles:
        k = int(k)
        x = normalised_crop(dem, k, sigma)
        out = unet(x, weights)
        speed, alpha = speed_alpha(out[..., 0], out[..., 1])
        fields = tf.stack([speed / ARPS_INFLOW, alpha], axis=-1)
        back = back_rotate(fields, k, OUTSIDE)
        accel.append(back[0, :, :, 0].numpy())
        alpha_all.append(back[0, :, :, 1].numpy())
    return np.stack(accel), np.stack(alpha_all)
