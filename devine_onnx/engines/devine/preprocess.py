"""UNet input of one table direction (docs/method.md §3 steps 1-3), numpy only.

``prepare_input`` rotates the DEM, normalises it with the sliding box mean and crops it; the
UNet (:mod:`devine_onnx.engines.devine.model`) then runs on the result and
:func:`devine_onnx.engines.devine.postprocess.finish_output` turns its output into table values.
"""

from __future__ import annotations

import numpy as np

from .boxfilter import WINDOW, normalise
from .geometry import CropGeometry
from .rotation import rotate_nearest, rotation_angle

__all__ = ["DEM_FILL", "prepare_input"]

#: Value of the rotated DEM outside the source frame, in metres, as in the original (it is
#: counted by the sliding mean, so it must be reproduced, not replaced by NaN).
DEM_FILL = -1.0


def prepare_input(
    dem: np.ndarray,
    k: int,
    sigma: float,
    geometry: CropGeometry | None = None,
    window: tuple[int, int] = WINDOW,
    fill: float = DEM_FILL,
) -> np.ndarray:
    """Normalised, rotated ``s x s`` crop of the DEM for table direction ``k``.

    Steps (docs/method.md §3): rotate the DEM counter-clockwise by ``theta(k)`` about
    ``((W-1)/2, (H-1)/2)`` with nearest neighbour and fill -1 m (§3.1); normalise as
    ``(Zr - M) / sigma`` with the 79 x 69 box mean ``M`` of the whole rotated frame (§3.2);
    crop ``geometry.rows, geometry.cols`` (§3.3).

    Only the part of the rotated DEM that the crop's box windows read is computed (crop plus
    a 39-row / 34-column halo, clipped to the frame); the result is identical to rotating
    and normalising the whole frame and then cropping.

    Parameters
    ----------
    dem : numpy.ndarray, shape (H, W)
        Elevations in metres, row 0 = north (converted to float32, as the original feeds
        float32 to TensorFlow). Pass a DEM already trimmed with
        :func:`~devine_onnx.engines.devine.geometry.trim_to_odd` unless the faithful geometry is wanted.
    k : int
        Table direction in degrees (0..359), the meteorological from-direction.
    sigma : float
        Normalisation scale in metres (``train_std``: 141.1161085195641 for the official
        model).
    geometry : CropGeometry, optional
        Crop geometry of ``dem`` (default: ``CropGeometry.from_shape(dem.shape)``).
    window : (int, int), optional
        Box-mean window (rows, columns); default (79, 69).
    fill : float, optional
        Rotated DEM outside the source frame, m (the original's -1; other values only to
        test what depends on terrain outside the DEM, docs/method.md §9.1).

    Returns
    -------
    numpy.ndarray of float32, shape (s, s)
        The UNet input (dimensionless), before the padding to multiples of 8.
    """
    dem = np.asarray(dem, dtype=np.float32)
    if dem.ndim != 2:
        raise ValueError(f"expected a 2-D DEM, got shape {dem.shape}")
    if geometry is None:
        geometry = CropGeometry.from_shape(dem.shape)
    elif geometry.shape != dem.shape:
        raise ValueError(f"geometry is for a {geometry.shape} DEM, got {dem.shape}")
    h, w = dem.shape
    kr, kc = window
    pr, pc = (kr - 1) // 2, (kc - 1) // 2
    r0, r1 = geometry.rows.start, geometry.rows.stop
    c0, c1 = geometry.cols.start, geometry.cols.stop
    # Rows/columns of the rotated DEM read by the box windows of the crop pixels.
    er0, er1 = max(r0 - pr, 0), min(r1 - pr + kr - 1, h)
    ec0, ec1 = max(c0 - pc, 0), min(c1 - pc + kc - 1, w)
    rotated = rotate_nearest(
        dem, rotation_angle(k), fill, rows=slice(er0, er1), cols=slice(ec0, ec1)
    )
    # The block's edges are either frame edges (zeros beyond, as in the full computation) or
    # lie beyond every window of the crop, so the block's box means equal the full frame's.
    return normalise(
        rotated,
        sigma,
        window,
        rows=slice(r0 - er0, r1 - er0),
        cols=slice(c0 - ec0, c1 - ec0),
    )
