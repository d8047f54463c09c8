"""One rotated frame, computed tile by tile: the ``frame`` method of the DEVINE engine.

docs/method.md §9.1. For direction ``k`` the rotation of the DEM about its centre (§3.1) maps
every pixel ``(i, j)`` of the integer lattice to a source point of the DEM; evaluated on the
whole lattice, beyond the DEM's own ``H x W`` frame, it defines one *extended rotated frame*
per direction, with the rotation fill (-1 m) wherever the source lies outside the DEM. The
sliding mean (§3.2) is taken in that frame (fill, never zeros), and the UNet runs on windows
whose origin lies on the frame's 8-pixel pooling grid, which is the grid of the single-crop
method (origin at the crop's first row and column, §3.3). A table pixel then gets the UNet
output at its back-rotated source (§3.6, the same float32 arithmetic as the crop method), so
its value does not depend on which window computed it: every tile of the table is computed
on its own window (sources plus a 64 px halo, plus the 39/34 px of the box mean), and the
table is seamless whatever the tile size.

Which pixels are free of *edge influence*, i.e. whose value, for every direction, depends only
on terrain inside the DEM: the UNet output at ``q`` reads the inputs within
:data:`RECEPTIVE_FIELD` px of ``q`` on each axis (§2), each of which reads the rotated DEM
within the 79 x 69 box; rotated back to the DEM, that rectangle around the table pixel must
not reach outside the DEM. That holds, for all 360 directions, at least
:func:`edge_margins` px inside the DEM's edges (135 px for the official window sizes): the
frame method's clean area is the DEM less that band, 87 % of a 4000 x 4000 DEM. The crop
method's clean area is the same band intersected with its interior disc (radius ``d - 64``:
beyond it the UNet also sees the crop's zero padding), so the frame method never has fewer
clean pixels; ``auto`` takes the crop where both are equal (small square DEMs), which keeps
today's tables there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from devine_onnx.engines.runtime import HALO

from .boxfilter import WINDOW
from .geometry import CropGeometry
from .rotation import _cos_sin, rotation_angle, rotation_offsets

__all__ = [
    "DEFAULT_TILE_SIZE",
    "METHODS",
    "RECEPTIVE_FIELD",
    "FrameGeometry",
    "edge_margins",
]

#: Methods of the devine engine: ``crop`` (one crop per direction about the centre, §3.3),
#: ``frame`` (one extended rotated frame, tile by tile, §9.1), ``auto`` (the one with more
#: pixels free of edge influence; the crop on a tie).
METHODS = ("auto", "crop", "frame")
#: Default side (pixels of the table grid) of the tiles of the frame method: the UNet window
#: of a tile (its sources plus halos, at most 704·√2 + 2·64 + 16 < 1152 px) then stays within
#: the size the UNet runs untiled by default (1024 + 2·64, devine_onnx/engines/runtime.py).
DEFAULT_TILE_SIZE = 704
#: Largest accepted tile side (the windows stay within the exact fixed-point sums).
MAX_TILE_SIZE = 32768
#: The UNet's output at ``p`` reads inputs ``p - 51 .. p + 58`` on each axis (docs/method.md
#: §2, checked with impulses on the demonstration model); the marker uses 58 on both sides.
RECEPTIVE_FIELD = 58
#: Half sizes of the sliding-mean box (rows, columns): 39 and 34 for 79 x 69.
BOX_HALF = (WINDOW[0] // 2, WINDOW[1] // 2)
#: Reach, in rotated-frame pixels, of a table value's dependence on the rotated DEM.
REACH = (RECEPTIVE_FIELD + BOX_HALF[0], RECEPTIVE_FIELD + BOX_HALF[1])
#: Width of the crop method's rim influenced by its zero padding (as ``interior_radius``).
CROP_MARGIN = HALO


def edge_margins(angles=None) -> tuple[int, int]:
    """Rows and columns ``(E_r, E_c)`` of the DEM's edge band where values feel its edge.

    For direction ``k`` the dependence rectangle (``REACH`` rows x columns around the source
    ``q`` in the rotated frame) rotated back to the DEM extends ``|s|·R_c + |c|·R_r`` rows and
    ``|c|·R_c + |s|·R_r`` columns from ``q``'s source point, which lies within 0.71 px of the
    table pixel (nearest-neighbour back-rotation). A pixel at least ``E`` = that extent + 1
    (rounded up) px from every edge therefore reads no rotated pixel whose source falls
    outside the DEM, for any direction of ``angles`` (default: all 360).
    """
    key = None if angles is None else tuple(sorted({int(k) % 360 for k in angles}))
    return _edge_margins(key)


@lru_cache(maxsize=64)
def _edge_margins(angles: tuple[int, ...] | None) -> tuple[int, int]:
    rr, rc = REACH
    er = ec = 0.0
    for k in range(360) if angles is None else angles:
        c, s = (abs(float(v)) for v in _cos_sin(rotation_angle(k)))
        er = max(er, s * rc + c * rr)
        ec = max(ec, c * rc + s * rr)
    return math.ceil(er + 1.0), math.ceil(ec + 1.0)


def _span(lo: int, hi: int, start: int, stop: int) -> np.ndarray:
    """Boolean mask of ``range(start, stop)`` that lies in ``[lo, hi]``."""
    idx = np.arange(start, stop)
    return (idx >= lo) & (idx <= hi)


@dataclass(frozen=True)
class FrameGeometry:
    """Coverage and edge influence of both methods on a prepared DEM of shape ``(H, W)``.

    All indices are DEM rows and columns (row 0 = north).
    """

    height: int
    width: int

    @classmethod
    def from_shape(cls, shape) -> FrameGeometry:
        return cls(int(shape[-2]), int(shape[-1]))

    @property
    def crop(self) -> CropGeometry:
        return CropGeometry(self.height, self.width)

    @property
    def margins(self) -> tuple[int, int]:
        """``(E_r, E_c)`` for all 360 directions (:func:`edge_margins`)."""
        return edge_margins()

    @property
    def origin(self) -> tuple[int, int]:
        """Origin of the frame's pooling grid: the crop's first row and column."""
        crop = self.crop
        return crop.rows.start, crop.cols.start

    @property
    def clean_rows(self) -> tuple[int, int]:
        """Inclusive range of rows free of edge influence (empty when lo > hi)."""
        return self.margins[0], self.height - 1 - self.margins[0]

    @property
    def clean_cols(self) -> tuple[int, int]:
        return self.margins[1], self.width - 1 - self.margins[1]

    # --- masks ------------------------------------------------------------------------------
    def band_clean(self, rows: slice, cols: slice) -> np.ndarray:
        """True where the frame method's value is free of edge influence (window of the DEM)."""
        r = _span(*self.clean_rows, rows.start, rows.stop)
        c = _span(*self.clean_cols, cols.start, cols.stop)
        return r[:, None] & c[None, :]

    @property
    def crop_radius(self) -> int:
        """Radius (px) of the crop's disc free of its zero padding: ``d - 64``."""
        return self.crop.d - CROP_MARGIN

    def _crop_frame_ok(self) -> bool:
        """The crop's clean disc reads no zero beyond the ``H x W`` rotated frame (§9.1)."""
        reach = self.crop_radius + 1
        return (
            self.crop_radius >= 0
            and reach + REACH[0] <= (self.height - 1) / 2
            and reach + REACH[1] <= (self.width - 1) / 2
        )

    def crop_clean(self, rows: slice, cols: slice) -> np.ndarray:
        """True where the crop method's value is free of edge influence (window of the DEM)."""
        cy, cx = self.crop.center
        a = np.arange(rows.start, rows.stop) - cy
        b = np.arange(cols.start, cols.stop) - cx
        radius = self.crop_radius
        disc = a[:, None] ** 2 + b[None, :] ** 2 <= radius * radius
        if not self._crop_frame_ok():
            disc[...] = False
        return disc & self.band_clean(rows, cols)

    def clean(self, method: str, rows: slice, cols: slice) -> np.ndarray:
        return self.band_clean(rows, cols) if method == "frame" else self.crop_clean(rows, cols)

    def edge_influence(self, method: str, rows: slice, cols: slice) -> np.ndarray:
        """The table's ``edge_influence`` (uint8): 0 where clean, 1 elsewhere (also where the
        crop method has no value)."""
        if method != "frame":
            return (~self.clean(method, rows, cols)).astype(np.uint8)
        out = np.ones((rows.stop - rows.start, cols.stop - cols.start), np.uint8)
        (r0, r1), (c0, c1) = self.clean_rows, self.clean_cols
        r0, r1 = max(r0, rows.start) - rows.start, min(r1 + 1, rows.stop) - rows.start
        c0, c1 = max(c0, cols.start) - cols.start, min(c1 + 1, cols.stop) - cols.start
        if r1 > r0 and c1 > c0:
            out[r0:r1, c0:c1] = 0
        return out

    # --- counts and the automatic choice ----------------------------------------------------
    def clean_count(self, method: str, rows: slice | None = None, cols: slice | None = None) -> int:
        """Pixels free of edge influence in the method's coverage (within ``rows x cols``)."""
        rows = slice(0, self.height) if rows is None else rows
        cols = slice(0, self.width) if cols is None else cols
        (r0, r1), (c0, c1) = self.clean_rows, self.clean_cols
        r0, r1 = max(r0, rows.start), min(r1, rows.stop - 1)
        c0, c1 = max(c0, cols.start), min(c1, cols.stop - 1)
        if r1 < r0 or c1 < c0:
            return 0
        if method == "frame":
            return (r1 - r0 + 1) * (c1 - c0 + 1)
        radius = self.crop_radius
        if not self._crop_frame_ok():
            return 0
        cy, cx = self.crop.center
        total = 0
        for a in range(max(-radius, r0 - cy), min(radius, r1 - cy) + 1):
            half = math.isqrt(radius * radius - a * a)
            lo, hi = max(-half, c0 - cx), min(half, c1 - cx)
            total += max(0, hi - lo + 1)
        return total

    def auto_method(self, rows: slice | None = None, cols: slice | None = None) -> str:
        """The automatic choice: ``frame`` when it has more pixels free of edge influence
        than the crop, else ``crop``; over each method's whole coverage, or, for a window
        (a target), within it (``frame`` when the window leaves the crop)."""
        if rows is not None and cols is not None:
            crop = self.crop
            inside = (
                rows.start >= crop.rows.start
                and rows.stop <= crop.rows.stop
                and cols.start >= crop.cols.start
                and cols.stop <= crop.cols.stop
            )
            if not inside:
                return "frame"
        frame = self.clean_count("frame", rows, cols)
        return "frame" if frame > self.clean_count("crop", rows, cols) else "crop"

    # --- windows of the frame method --------------------------------------------------------
    def back_offsets(self, k: int):
        """Float32 back-rotation coefficients of direction ``k``, as the crop method has them
        (about the crop centre, offsets of the ``s x s`` crop; docs/method.md §3.6)."""
        s = self.crop.s
        return rotation_offsets((s, s), rotation_angle(int(k), inverse=True))

    def source_box(self, k: int, rows: slice, cols: slice) -> tuple[int, int, int, int]:
        """Rotated-frame rows ``[i0, i1]`` and columns ``[j0, j1]`` (inclusive, conservative by
        2 px) holding the back-rotated sources of the DEM window ``rows x cols``."""
        c, s, x_off, y_off = (float(v) for v in self.back_offsets(k))
        o_r, o_c = self.origin
        a = np.array([rows.start, rows.stop - 1], np.float64) - o_r
        b = np.array([cols.start, cols.stop - 1], np.float64) - o_c
        aa, bb = np.meshgrid(a, b, indexing="ij")
        x = c * bb - s * aa + x_off
        y = s * bb + c * aa + y_off
        return (
            math.floor(y.min()) - 2 + o_r,
            math.ceil(y.max()) + 2 + o_r,
            math.floor(x.min()) - 2 + o_c,
            math.ceil(x.max()) + 2 + o_c,
        )

    def unet_window(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """UNet window ``(r0, r1, c0, c1)`` (half-open, rotated frame) for sources in ``box``:
        a :data:`HALO` px margin, origin on the pooling grid, sides multiples of 8."""
        i0, i1, j0, j1 = box
        o_r, o_c = self.origin
        r0 = o_r + (i0 - HALO - o_r) // 8 * 8
        c0 = o_c + (j0 - HALO - o_c) // 8 * 8
        r1 = r0 + -(-(i1 + 1 + HALO - r0) // 8) * 8
        c1 = c0 + -(-(j1 + 1 + HALO - c0) // 8) * 8
        return r0, r1, c0, c1


def tiles(rows: slice, cols: slice, size: int) -> list[tuple[slice, slice]]:
    """Tiles of ``size x size`` (the last ones smaller) covering a window, row-major."""
    return [
        (slice(r, min(r + size, rows.stop)), slice(c, min(c + size, cols.stop)))
        for r in range(rows.start, rows.stop, size)
        for c in range(cols.start, cols.stop, size)
    ]
