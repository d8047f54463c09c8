"""Wind conventions: components, from-directions, grid north versus true north.

Conventions used throughout devine-onnx (docs/method.md §4):

- ``u`` is the eastward (or grid +x) component and ``v`` the northward (or grid +y)
  component, in m/s.
- A direction is the meteorological FROM direction in degrees clockwise from north, in
  ``[0, 360)``: a westerly wind (``u > 0``, ``v = 0``) comes from 270, a northerly from 0
  (never 360). "North" is true north for earth-relative components and grid north (the
  projection's +y axis) for grid-relative components.
- The meridian convergence ``gamma`` (degrees) at a point of a projected CRS is defined so
  that ``dir_grid = dir_true - gamma``: the direction of a wind measured clockwise from grid
  north equals its direction measured clockwise from true north minus ``gamma``. Equivalently,
  grid north lies ``gamma`` degrees clockwise of true north. This is the sign of pyproj's
  ``Factors.meridian_convergence`` (checked against a finite-difference computation in the
  tests); in Lambert-93 (EPSG:2154) ``gamma`` is positive east of the central meridian 3°E
  (≈ +2.29° at 6.15°E, 45.2°N) and negative west of it.
"""

from __future__ import annotations

import numpy as np
from pyproj import CRS, Proj

from devine_onnx.errors import OptionError

__all__ = [
    "earth_to_grid",
    "grid_to_earth",
    "meridian_convergence",
    "speed_dir_to_uv",
    "uv_to_speed_dir",
    "wrap360",
]


def wrap360(angle):
    """Wrap angles (degrees) into ``[0, 360)``.

    Unlike a bare ``np.mod``, a tiny negative input never yields exactly 360.

    Parameters
    ----------
    angle : array_like
        Angles in degrees. NaN stays NaN.

    Returns
    -------
    numpy.ndarray
        Angles in degrees in ``[0, 360)``, same dtype as ``angle`` (float).
    """
    a = np.asarray(angle)
    a = a.astype(np.result_type(a, np.float32), copy=False)
    # a - 360 floor(a / 360) is much faster than np.mod (fmod semantics) and equal in [0, 360]
    # up to rounding; rounding can only give exactly 360 or a tiny negative: both mean 0.
    r = a - 360 * np.floor(a / 360)
    return np.where((r >= 360) | (r < 0), 0, r)


def uv_to_speed_dir(u, v):
    """Speed and meteorological FROM direction of wind components.

    Parameters
    ----------
    u, v : array_like
        Wind components in m/s toward the east (``u``) and the north (``v``), either
        earth-relative (directions are then from true north) or grid-relative (from grid
        north). Broadcast together.

    Returns
    -------
    speed : numpy.ndarray
        ``sqrt(u² + v²)`` in m/s.
    from_dir : numpy.ndarray
        Direction the wind blows FROM, in degrees clockwise from north, in ``[0, 360)``:
        ``mod(180 + degrees(atan2(u, v)), 360)``. A westerly (``u > 0, v = 0``) gives 270,
        a southerly (``v > 0``) 180, a northerly 0 and an easterly 90. Calm wind
        (``speed == 0``) has no direction: NaN. NaN components give NaN speed and direction.
    """
    u = np.asarray(u)
    v = np.asarray(v)
    speed = np.sqrt(u * u + v * v)  # 5x faster than np.hypot; winds never overflow
    from_dir = wrap360(180.0 + np.degrees(np.arctan2(u, v)))
    from_dir = np.where(speed == 0, np.nan, from_dir)
    return speed, from_dir


def speed_dir_to_uv(speed, from_dir):
    """Wind components from speed and meteorological FROM direction.

    Parameters
    ----------
    speed : array_like
        Wind speed in m/s.
    from_dir : array_like
        Direction the wind blows FROM, in degrees clockwise from (true or grid) north.

    Returns
    -------
    u, v : numpy.ndarray
        ``u = -speed * sin(dir)``, ``v = -speed * cos(dir)`` in m/s, toward the east and the
        north of the frame ``from_dir`` refers to. Where ``speed == 0`` both are 0 even if the
        direction is NaN (calm wind, see :func:`uv_to_speed_dir`).
    """
    speed = np.asarray(speed)
    rad = np.radians(from_dir)
    u = -speed * np.sin(rad)
    v = -speed * np.cos(rad)
    calm = speed == 0
    if np.any(calm):
        u = np.where(calm, 0, u)
        v = np.where(calm, 0, v)
    return u, v


def meridian_convergence(x, y, crs):
    """Meridian convergence ``gamma`` at projected points, in degrees.

    ``gamma`` is defined so that ``dir_grid = dir_true - gamma`` (see the module docstring):
    grid north lies ``gamma`` degrees clockwise of true north. It is computed with pyproj:
    the points are converted to longitude/latitude on the CRS's own datum, then
    ``pyproj.Proj(crs).get_factors(lon, lat).meridian_convergence`` (whose sign is exactly
    this convention).

    Parameters
    ----------
    x, y : array_like
        Projected coordinates (easting, northing) in the units of ``crs``; broadcast
        together (pass ``x[None, :]`` and ``y[:, None]`` for the 1-D axes of a grid).
    crs : pyproj.CRS or str or int
        Anything ``pyproj.CRS.from_user_input`` accepts (WKT, "EPSG:2154", ...).

    Returns
    -------
    numpy.ndarray
        ``gamma`` in degrees, float64, broadcast shape of ``x`` and ``y``. Zero everywhere for
        a geographic CRS (grid north is true north). NaN where the projection is undefined.

    Raises
    ------
    OptionError
        For a derived geographic CRS (e.g. rotated pole), whose grid north is not true
        north and which is not supported.
    """
    crs = CRS.from_user_input(crs)
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    if crs.is_geographic:
        if crs.is_derived:
            raise OptionError(
                f"CRS {crs.name!r}: derived geographic CRSs (rotated pole...) are not supported "
                "for the table grid; use a projected CRS"
            )
        return np.zeros(x.shape, dtype=np.float64)
    proj = Proj(crs)
    lon, lat = proj(x, y, inverse=True, errcheck=False)
    factors = proj.get_factors(lon, lat, errcheck=False)
    gamma = np.asarray(factors.meridian_convergence, dtype=np.float64).reshape(x.shape)
    bad = ~(np.isfinite(lon) & np.isfinite(lat) & np.isfinite(x) & np.isfinite(y))
    return np.where(np.reshape(bad, x.shape), np.nan, gamma)


def _rotate(u, v, angle_deg):
    """Rotate the frame: components of the same vector in axes turned by ``angle_deg``."""
    u = np.asarray(u)
    v = np.asarray(v)
    rad = np.radians(angle_deg)
    c = np.cos(rad)
    s = np.sin(rad)
    dtype = np.result_type(u, v, np.float32)
    if dtype == np.float32:
        c = np.asarray(c, dtype=np.float32)
        s = np.asarray(s, dtype=np.float32)
    return u * c - v * s, v * c + u * s


def earth_to_grid(u, v, gamma):
    """Convert earth-relative wind components to grid-relative ones.

    Parameters
    ----------
    u, v : array_like
        Eastward and northward wind components in m/s (relative to true north).
    gamma : array_like
        Meridian convergence in degrees (see :func:`meridian_convergence`), broadcast with
        ``u`` and ``v``.

    Returns
    -------
    u_grid, v_grid : numpy.ndarray
        Components in m/s along the grid's +x and +y axes:
        ``u_grid = u cos(gamma) - v sin(gamma)``, ``v_grid = v cos(gamma) + u sin(gamma)``,
        so that the grid-relative FROM direction is ``dir_true - gamma``. Exact inverse of
        :func:`grid_to_earth`. float32 inputs stay float32.
    """
    return _rotate(u, v, gamma)


def grid_to_earth(u, v, gamma):
    """Convert grid-relative wind components to earth-relative ones.

    Parameters
    ----------
    u, v : array_like
        Wind components in m/s along the grid's +x and +y axes.
    gamma : array_like
        Meridian convergence in degrees (see :func:`meridian_convergence`).

    Returns
    -------
    u_earth, v_earth : numpy.ndarray
        Eastward and northward components in m/s, so that ``dir_true = dir_grid + gamma``.
        Exact inverse of :func:`earth_to_grid`.
    """
    return _rotate(u, v, -np.asarray(gamma))
