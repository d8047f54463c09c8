"""Vertical wind in the downscaled output: ``upward_air_velocity`` (m s-1).

A correction table may hold ``vertical(angle, y, x)`` = w / inflow speed (the networks
output w for a 3 m/s inflow). At each pixel and time step the downscaled upward wind is
``vertical[k] * S``, with ``S`` the speed of the interpolated NWP wind and ``k`` the same
table direction as the horizontal lookup (grid-relative FROM direction; nearest or linear
between directions). Per-step mode (:mod:`.per_step`) computes it directly from the network.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from devine_onnx.wind import earth_to_grid, uv_to_speed_dir

from .lookup import TableLookup
from .tableio import read_variable

__all__ = [
    "VERTICAL_ATTRS",
    "VERTICAL_NAME",
    "add_vertical",
    "read_vertical",
    "table_vertical",
    "vertical_wind",
]

#: Name (and CF standard name) of the output variable.
VERTICAL_NAME = "upward_air_velocity"
#: Its attributes, without ``grid_mapping`` (added by :func:`add_vertical`).
VERTICAL_ATTRS = {
    "units": "m s-1",
    "standard_name": "upward_air_velocity",
    "long_name": "downscaled upward wind (w)",
    "comment": "w of the network scaled by the NWP wind speed / 3 m/s; NaN where unknown",
}


def add_vertical(layout) -> None:
    """Append ``upward_air_velocity`` to a downscale output layout (names and attributes)."""
    if VERTICAL_NAME in layout.names:
        return
    layout.names = tuple(layout.names) + (VERTICAL_NAME,)
    layout.var_attrs[VERTICAL_NAME] = {**VERTICAL_ATTRS, "grid_mapping": layout.gm_name}


def table_vertical(table: xr.Dataset) -> bool:
    """True when the table has a ``vertical(angle, y, x)`` variable."""
    return "vertical" in table.data_vars and set(table["vertical"].dims) == {"angle", "y", "x"}


def read_vertical(table: xr.Dataset, dtype=np.float32, region=None) -> np.ndarray | None:
    """``vertical`` as a C-contiguous ``(angle, y, x)`` array, or None without one.

    ``region``: ``(rows, columns)`` slices of the table grid to read (a spatial block).
    """
    if not table_vertical(table):
        return None
    return read_variable(table["vertical"], dtype, region)


def vertical_wind(vertical, angles, method, u, v, gamma=None) -> np.ndarray:
    """Upward wind ``vertical[k] * S`` (float32) for interpolated NWP components ``u, v``.

    Parameters
    ----------
    vertical : numpy.ndarray
        ``(n_angles, ny, nx)`` table of w / inflow speed.
    angles : array_like
        Table directions in degrees (FROM, clockwise from grid north).
    method : {"nearest", "linear"}
        As the horizontal lookup.
    u, v : numpy.ndarray
        ``(..., ny, nx)`` wind components on the table grid, earth-relative (rotated into
        the grid with ``gamma``) or grid-relative (``gamma`` None).
    gamma : numpy.ndarray, optional
        Meridian convergence in degrees of each table pixel.

    Returns
    -------
    numpy.ndarray
        ``(..., ny, nx)`` float32 m/s; 0 for calm wind where the table has data, NaN where the
        wind or the table is unknown.
    """
    u = np.asarray(u, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    if gamma is not None:
        u, v = earth_to_grid(u, v, np.asarray(gamma, dtype=np.float32))
    speed, from_dir = uv_to_speed_dir(u, v)
    # The lookup scales its first table by the speed: with vertical as that table, its first
    # result is vertical[k] * S (the second table only sets the direction, unused here).
    w, _ = TableLookup(vertical, vertical, angles, method)(speed, from_dir)
    return np.asarray(w, dtype=np.float32)
