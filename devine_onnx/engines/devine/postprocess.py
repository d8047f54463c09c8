"""Table values from the UNet output of one direction (docs/method.md §3 steps 5-7), numpy only.

The UNet outputs ``(u, v, w)`` in the rotated frame (u along the inflow, v across it, m/s,
for a 3 m/s ARPS inflow). :func:`finish_output` turns ``(u, v)`` into the acceleration
(speed / 3) and the deviation angle alpha, back-rotated onto the crop's grid, NaN where the
back-rotation falls outside the crop. :func:`prepare_input` (the steps before the UNet) is
re-exported from :mod:`devine_onnx.engines.devine.preprocess` for convenience.
"""

from __future__ import annotations

import numpy as np

from .preprocess import prepare_input
from .rotation import rotate_nearest, rotation_angle

__all__ = [
    "ARPS_INFLOW",
    "CALM_THRESHOLD",
    "back_rotate",
    "finish_output",
    "prepare_input",
    "speed_alpha",
]

#: Inflow speed of the ARPS training simulations, m/s: acceleration = speed / ARPS_INFLOW.
ARPS_INFLOW = 3.0

#: |u| or |v| at or below this (m/s, compared in float32) counts as zero for alpha.
CALM_THRESHOLD = 1e-5

# The original writes sign(v) * 3.14159 / 2 (not pi/2) where only u vanishes.
_HALF_PI_ORIGINAL = np.float32(3.14159 / 2)


def speed_alpha(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wind speed and deviation angle in the rotated frame (docs/method.md §3 step 5).

    Parameters
    ----------
    u, v : numpy.ndarray
        UNet output components in m/s (u along the inflow, v across it, to its left);
        converted to float32.

    Returns
    -------
    speed : numpy.ndarray of float32
        ``sqrt(u*u + v*v)`` in m/s, evaluated in float32 like the original (not ``hypot``).
    alpha : numpy.ndarray of float32
        ``atan(v / u)`` in radians, in [-pi/2, pi/2] (``atan``, not ``atan2``: a reversed
        flow, u < 0, is folded back as in the original); 0 where ``|u| <= 1e-5`` and
        ``|v| <= 1e-5``; ``sign(v) * f32(3.14159 / 2)`` where only ``|u| <= 1e-5``.
        Positive alpha turns the flow to the left (counter-clockwise).
    """
    u = np.asarray(u, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    speed = np.sqrt(u * u + v * v)
    threshold = np.float32(CALM_THRESHOLD)
    small_u = np.abs(u) <= threshold
    small_v = np.abs(v) <= threshold
    # Divide only where u is not ~0 (the original divides everywhere and discards the inf/nan).
    ratio = np.divide(v, u, out=np.zeros_like(u), where=~small_u)
    across = np.where(small_v, np.float32(0.0), np.sign(v) * _HALF_PI_ORIGINAL)
    alpha = np.where(small_u, across, np.arctan(ratio))
    return speed, alpha


def back_rotate(fields: np.ndarray, k: int, fill=np.nan) -> np.ndarray:
    """Rotate table fields from the rotated frame back onto the DEM grid (docs/method.md §3 step 6).

    Counter-clockwise rotation by ``phi(k) = f32(f32(-pi/2) - f32(k * 0.01745329))`` about
    the crop centre ``((s-1)/2, (s-1)/2)``, nearest neighbour, exactly as the original's
    ``tfa.image.rotate`` (see :mod:`devine_onnx.engines.devine.rotation`).

    Parameters
    ----------
    fields : numpy.ndarray, shape (..., s, s)
        One field or a stack of fields on the crop grid (all rotated by the same angle).
    k : int
        Table direction in degrees (0..359).
    fill : scalar, optional
        Value where the source falls outside the crop: NaN by default (the original writes
        -1, which is indistinguishable from data).

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``fields``.
    """
    return rotate_nearest(fields, rotation_angle(k, inverse=True), fill)


def finish_output(u: np.ndarray, v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Acceleration and alpha of direction ``k`` on the crop grid (docs/method.md §3 steps 5-7).

    Parameters
    ----------
    u, v : numpy.ndarray, shape (s, s)
        UNet outputs (channels 0 and 1) in m/s, in the rotated frame, already cropped back
        to ``s x s``.
    k : int
        Table direction in degrees (0..359).

    Returns
    -------
    acceleration : numpy.ndarray of float32, shape (s, s)
        ``speed / 3`` (dimensionless; 3 m/s is the ARPS inflow), NaN outside the
        back-rotated crop.
    alpha : numpy.ndarray of float32, shape (s, s)
        Deviation angle in radians (see :func:`speed_alpha`), NaN outside.
    """
    speed, alpha = speed_alpha(u, v)
    # Nearest-neighbour rotation only moves values, so dividing before it is bit-identical
    # to dividing after it; both fields share one index computation.
    fields = np.stack([speed / np.float32(ARPS_INFLOW), alpha])
    acceleration, alpha = back_rotate(fields, k, np.nan)
    return acceleration, alpha
