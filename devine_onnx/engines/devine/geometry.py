"""Crop geometry of a correction table (docs/method.md §3 step 3, §6.6).

For a DEM of shape ``(H, W)`` (row 0 = north, columns eastward):
``m = min(H, W)``, ``q = floor(m / sqrt(2))``, ``d = floor(q / 2)``, ``s = 2 d + 1``. The
table covers the ``s x s`` crop of rows ``H//2 - d .. H//2 + d`` and columns
``W//2 - d .. W//2 + d`` (inclusive), centred on pixel ``(H//2, W//2)``: the largest odd
square that stays inside the DEM whatever the rotation, since its half-diagonal
``d * sqrt(2) <= m / 2``.

The DEM is rotated about ``((W - 1) / 2, (H - 1) / 2)`` (``(x, y)`` = (column, row)), which is
half a pixel north-west of the crop centre along each even dimension (docs/method.md §6.6). The
*faithful* geometry keeps that offset for parity with the original; by default the DEM is
first trimmed to odd dimensions with :func:`trim_to_odd`, and both centres coincide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from devine_onnx.errors import DEMError

from .boxfilter import WINDOW

__all__ = ["MIN_SIZE", "CropGeometry", "trim_to_odd"]

#: Smallest usable short side of the DEM, in pixels. The model was trained on 79 x 69
#: patches and the normalisation averages over a 79 x 69 window: below 79 rows or columns
#: the sliding mean sees mostly zero padding and the rotated DEM no longer contains a full
#: training-sized neighbourhood, so the output is meaningless. With ``m = 79`` the table
#: is ``s = 55`` pixels wide. 79 is odd, so :func:`trim_to_odd` keeps any DEM whose short
#: side is 79 or 80 usable.
MIN_SIZE = WINDOW[0]


def trim_to_odd(height: int, width: int) -> tuple[int, int]:
    """Shape after dropping the last row and/or column of even dimensions (docs/method.md §6.6).

    The dropped row is the last one (southernmost, since row 0 is north) and the dropped
    column the last one (easternmost), i.e. use ``dem[:h, :w]`` with the returned ``(h, w)``.
    With odd dimensions the rotation centre ``((W-1)/2, (H-1)/2)`` is the pixel
    ``(H//2, W//2)`` on which the crop is centred, which removes the half-pixel
    misregistration of the original scripts.

    Parameters
    ----------
    height, width : int
        DEM shape ``(H, W)`` in pixels.

    Returns
    -------
    (int, int)
        ``(H - 1 if H is even else H, W - 1 if W is even else W)``.
    """
    height, width = int(height), int(width)
    return height - (1 - height % 2), width - (1 - width % 2)


@dataclass(frozen=True)
class CropGeometry:
    """Where the ``s x s`` table lies in a DEM of shape ``(height, width)``.

    All quantities are in pixels of the DEM grid; row 0 is north.

    Parameters
    ----------
    height, width : int
        DEM shape ``(H, W)``. The short side must be at least :data:`MIN_SIZE`, else
        :class:`~devine_onnx.errors.DEMError` is raised.

    Attributes
    ----------
    m, q, d, s : int
        ``min(H, W)``, ``floor(m / sqrt(2))``, ``floor(q / 2)``, ``2 d + 1`` (METHOD
        notation); ``q`` is computed exactly with integers.
    rows, cols : slice
        The crop, ``dem[rows, cols]`` (``slice(H//2 - d, H//2 + d + 1)`` and likewise).
    """

    height: int
    width: int

    def __post_init__(self) -> None:
        h, w = int(self.height), int(self.width)
        object.__setattr__(self, "height", h)
        object.__setattr__(self, "width", w)
        if min(h, w) < MIN_SIZE:
            raise DEMError(
                f"DEM of {h} x {w} pixels is too small: both sides must be at least "
                f"{MIN_SIZE} pixels; use a larger DEM extent"
            )

    @classmethod
    def from_shape(cls, shape: tuple[int, ...]) -> CropGeometry:
        """Geometry of a DEM array shape ``(..., H, W)``."""
        return cls(int(shape[-2]), int(shape[-1]))

    @property
    def shape(self) -> tuple[int, int]:
        """DEM shape ``(H, W)``."""
        return self.height, self.width

    @property
    def m(self) -> int:
        return min(self.height, self.width)

    @property
    def q(self) -> int:
        # floor(m / sqrt(2)) = isqrt(floor(m**2 / 2)), exactly; m / sqrt(2) is never an integer.
        return math.isqrt(self.m * self.m // 2)

    @property
    def d(self) -> int:
        return self.q // 2

    @property
    def s(self) -> int:
        return 2 * self.d + 1

    @property
    def center(self) -> tuple[int, int]:
        """Crop centre pixel ``(row, col) = (H//2, W//2)`` in the DEM."""
        return self.height // 2, self.width // 2

    @property
    def rows(self) -> slice:
        r = self.height // 2
        return slice(r - self.d, r + self.d + 1)

    @property
    def cols(self) -> slice:
        c = self.width // 2
        return slice(c - self.d, c + self.d + 1)

    @property
    def rotation_center(self) -> tuple[float, float]:
        """Centre of the DEM rotation ``(x, y) = ((W-1)/2, (H-1)/2)`` = (column, row)."""
        return (self.width - 1) / 2, (self.height - 1) / 2

    @property
    def center_offset(self) -> tuple[float, float]:
        """Rotation centre minus crop centre, ``(dx, dy)`` in pixels (columns, rows).

        ``-0.5`` along each even dimension (rotation centre half a pixel west / north of the
        crop centre), ``0.0`` along odd ones (docs/method.md §6.6).
        """
        return (self.width - 1) / 2 - self.width // 2, (self.height - 1) / 2 - self.height // 2

    @property
    def centered(self) -> bool:
        """True when both dimensions are odd: no rotation/crop misregistration."""
        return self.height % 2 == 1 and self.width % 2 == 1

    @property
    def valid_radius(self) -> float:
        """Radius in pixels of the disc, around the crop centre, valid for every direction.

        The back-rotation maps each crop pixel ``(i, j)`` to a source point of the crop at
        the same distance ``r`` from the centre ``(d, d)`` (rotations preserve distances);
        the pixel gets a value iff that point, rounded half away from zero, is an index of
        the crop, i.e. iff both of its coordinates lie strictly within ``d + 0.5`` of the
        centre. In exact arithmetic every pixel with ``r < d + 0.5`` (``r**2 <= d**2 + d``)
        is therefore valid for every angle. The float32 evaluation moves the source point by
        a few ulps of ``s`` (< 1e-3 pixel for ``s < 4000``) while the pixels nearest that
        limit lie only ``~1 / (8 d)`` inside it, so we only *guarantee* ``r <= d`` (a 0.5-pixel
        margin): the disc inscribed in the crop, which is what this returns (``d``, as a
        float). For the 360 table directions, ``r**2 <= d**2 + d`` was checked to be valid
        as well for s = 55, 141, 301 and 1415, and the first pixels beyond it are NaN for
        some direction. Outside the disc some directions read outside the crop (NaN), and
        within ~58 pixels of its rim the UNet's zero padding influences the values for some
        directions (docs/method.md §3 step 7).
        """
        return float(self.d)

    def valid_disc(self) -> np.ndarray:
        """Boolean ``(s, s)`` mask of the pixels within :attr:`valid_radius` of the centre."""
        offsets = np.arange(self.s) - self.d
        return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= self.d * self.d
