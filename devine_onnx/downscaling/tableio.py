"""Reading correction-table variables piece by piece, along their storage chunks."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["read_variable"]

#: Bytes of one piece read at once (its decoded storage chunks come on top, once).
PIECE_BYTES = 32 << 20


def _edges(start: int, stop: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` cut on the storage chunk grid (multiples of ``chunk``)."""
    cuts = [start] + list(range((start // chunk + 1) * chunk, stop, chunk)) + [stop]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def read_variable(
    var: xr.DataArray, dtype=np.float32, region: tuple[slice, slice] | None = None, scale=None
) -> np.ndarray:
    """A table variable ``(angle, y, x)`` as a C-contiguous ``dtype`` array.

    Parameters
    ----------
    var : xarray.DataArray
        ``acceleration``, ``alpha`` or ``vertical`` of a table (lazy or in memory).
    dtype
        Type of the result.
    region : (slice, slice), optional
        Rows and columns to read (a spatial block); default: the whole grid.
    scale : callable, optional
        Applied to each piece read (e.g. :func:`numpy.deg2rad`).

    Notes
    -----
    The values are read in pieces of at most :data:`PIECE_BYTES` that follow the variable's
    storage chunks (``encoding["preferred_chunks"]``: whole chunks along ``angle``, one chunk
    along ``y``/``x`` at a time), so that each chunk is decoded once and the memory beyond the
    result stays that of one piece and its chunks.
    """
    var = var.transpose("angle", "y", "x")
    n, ny, nx = var.shape
    rows, cols = region if region is not None else (slice(None), slice(None))
    y0, y1, _ = rows.indices(ny)
    x0, x1, _ = cols.indices(nx)
    pref = var.encoding.get("preferred_chunks") or {}
    ca = max(1, int(pref.get("angle", 1)))
    cy = max(1, int(pref.get("y", ny)))
    cx = max(1, int(pref.get("x", nx)))
    out = np.empty((n, y1 - y0, x1 - x0), dtype=dtype)
    for ty0, ty1 in _edges(y0, y1, cy):
        for tx0, tx1 in _edges(x0, x1, cx):
            pixels = (ty1 - ty0) * (tx1 - tx0)
            slab = ca * max(1, PIECE_BYTES // max(1, ca * pixels * 8))
            for a in range(0, n, slab):
                piece = np.asarray(var[a : a + slab, ty0:ty1, tx0:tx1].values)
                if scale is not None:
                    piece = scale(piece)
                out[a : a + slab, ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0] = piece
                del piece
    return out
