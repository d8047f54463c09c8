"""Fingerprints of grids: short hashes that tell whether saved weights fit a new file.

A fingerprint hashes a grid's coordinates (rounded to 1e-6 degree or 1e-3 m), its shape and
its CRS identity, so that weights built for one NWP grid and one table grid are reused for
every file on the same grids and refused for any other (:meth:`RegridWeights.validate`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from pyproj import CRS

__all__ = [
    "crs_identity",
    "grid_fingerprint",
    "source_grid_fingerprint",
    "source_grid_shape",
    "target_grid_fingerprint",
]


def crs_identity(crs) -> str:
    """Canonical text of a CRS used in fingerprints.

    ``"AUTHORITY:CODE"`` when the CRS is exactly an authority CRS (so that the same CRS read
    from different files gives the same fingerprint), else its WKT2 text.

    Parameters
    ----------
    crs : pyproj.CRS or str or int
        Anything ``pyproj.CRS.from_user_input`` accepts.

    Returns
    -------
    str
    """
    crs = CRS.from_user_input(crs)
    auth = crs.to_authority(min_confidence=100)
    if auth is not None:
        return f"{auth[0]}:{auth[1]}"
    return crs.to_wkt()


def grid_fingerprint(x, y, crs, shape: Sequence[int] | None = None) -> str:
    """SHA-256 fingerprint (16 hex characters) of a grid's coordinates.

    Hashes the shapes of ``x`` and ``y``, their values rounded to 1e-6 (degrees, geographic
    CRS) or 1e-3 (metres, projected CRS) as float64 bytes, the grid shape and the CRS
    identity (:func:`crs_identity`). Use the same arrays as given to
    :meth:`RegridWeights.from_grids` (1-D axes stay 1-D) to compare a new NWP file with saved
    weights.

    Parameters
    ----------
    x, y : array_like
        Coordinates: longitude/latitude in degrees or projected x/y in CRS units, 1-D axes or
        2-D arrays.
    crs : pyproj.CRS or str or int
        CRS of ``x`` and ``y``.
    shape : sequence of int, optional
        Grid shape; defaults to ``(len(y), len(x))`` for 1-D axes, else ``x.shape``.

    Returns
    -------
    str
    """
    crs = CRS.from_user_input(crs)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if shape is None:
        shape = (y.size, x.size) if (x.ndim == 1 and y.ndim == 1) else x.shape
    decimals = 6 if crs.is_geographic else 3
    h = hashlib.sha256()
    h.update(f"x{x.shape};y{y.shape};grid{tuple(int(n) for n in shape)};".encode())
    for a in (x, y):
        r = np.round(a, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
        h.update(np.ascontiguousarray(r).tobytes())
    h.update(crs_identity(crs).encode())
    return h.hexdigest()[:16]


def source_grid_shape(src_lon_or_x, src_lat_or_y, *, scattered: bool = False) -> tuple[int, ...]:
    """Source grid shape implied by NWP coordinates (see :meth:`RegridWeights.from_grids`).

    Parameters
    ----------
    src_lon_or_x, src_lat_or_y : array_like
        1-D axes (shape ``(len(lat), len(lon))``), 2-D arrays of equal shape (that shape),
        or with ``scattered=True`` 1-D point lists of equal length (``(n,)``).
    scattered : bool
        Interpret 1-D arrays as point lists.

    Returns
    -------
    tuple of int
    """
    sx = np.asarray(src_lon_or_x)
    sy = np.asarray(src_lat_or_y)
    if sx.ndim == 1 and sy.ndim == 1 and not scattered:
        return (int(sy.size), int(sx.size))
    if sx.shape == sy.shape and sx.ndim >= 1:
        return tuple(int(n) for n in sx.shape)
    raise ValueError(
        f"source coordinates of shapes {sx.shape} and {sy.shape}: expected 1-D axes, "
        "two arrays of equal shape, or scattered=True with equal 1-D lengths"
    )


def source_grid_fingerprint(src_lon_or_x, src_lat_or_y, src_crs, *, scattered: bool = False) -> str:
    """Fingerprint of NWP coordinates as stored by :meth:`RegridWeights.from_grids`.

    Parameters
    ----------
    src_lon_or_x, src_lat_or_y, src_crs, scattered
        As in :meth:`RegridWeights.from_grids`.

    Returns
    -------
    str
        :func:`grid_fingerprint` of the arrays as given, with :func:`source_grid_shape`.
    """
    shape = source_grid_shape(src_lon_or_x, src_lat_or_y, scattered=scattered)
    return grid_fingerprint(src_lon_or_x, src_lat_or_y, src_crs, shape)


def target_grid_fingerprint(tgt_x, tgt_y, tgt_crs) -> str:
    """Fingerprint of the table's 1-D axes as stored by :meth:`RegridWeights.from_grids`.

    Parameters
    ----------
    tgt_x, tgt_y : array_like
        1-D table axes (projected, CRS units).
    tgt_crs : pyproj.CRS or str or int
        Table CRS.

    Returns
    -------
    str
    """
    return grid_fingerprint(tgt_x, tgt_y, tgt_crs)
