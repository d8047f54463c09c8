"""The ``micromet`` engine: MicroMet's terrain wind parameterisation (Liston & Elder 2006).

MicroMet (the meteorological driver of SnowModel, subroutine ``topo_mod_winds``) scales the
wind speed with a weighted sum of the terrain slope seen by the wind and the terrain curvature,
and turns the wind on slopes that face it. Written from the specification in
docs/method.md §7; the symbols follow it.

Conventions
-----------
- Directions ``theta`` are FROM directions in degrees clockwise from grid north.
- The DEM is north-up: row 0 is the northern edge and rows run SOUTH, so the northward
  derivative is ``dz/dy = -dz/drow``; columns run east, ``dz/dx = dz/dcol``.
- Slope ``beta`` in radians; aspect ``xi`` = azimuth (radians, clockwise from grid north) of the
  downslope direction ``-grad z``.
- Outputs follow the table convention of the project: ``acceleration`` is the speed ratio (1),
  ``alpha`` the deflection in radians, > 0 when the flow is turned to the LEFT, i.e. the
  downscaled FROM direction is ``theta - degrees(alpha)``.

Equations, per direction ``theta`` (pixel size ``D``, length scale ``eta``)::

    Omega_s  = beta * cos(theta - xi)                      (> 0: the wind blows upslope)
    Omega_c  = 1/4 * [ (z - (zW + zE)/2) / (2 eta') + (z - (zS + zN)/2) / (2 eta')
                     + (z - (zSW + zNE)/2) / (2 sqrt(2) eta')
                     + (z - (zNW + zSE)/2) / (2 sqrt(2) eta') ]
               with inc = max(1, round(eta / D)) pixels, eta' = inc * D, indices clamped
    Ws = clip(Omega_s / (2 Sref), -0.5, 0.5)               (scaled slope, "+-0.5")
    Wc = clip(Omega_c / (2 Cref), -0.5, 0.5)               (scaled curvature)
    acceleration = 1 + gamma_s * Ws + gamma_c * Wc          in [1 - (gs+gc)/2, 1 + (gs+gc)/2]
    alpha    = 0.5 * min(Ws, 45 deg) * sin(2 (xi - theta))  where |wrap(xi - theta)| <= 90
             = 0                                            elsewhere

SnowModel's references are domain maxima: ``Sref(theta) = max |Omega_s|`` over the domain for
that direction and ``Cref = max |Omega_c|`` over the domain, both at least 0.001. With them
``|Ws|, |Wc| <= 0.5`` and the clipping changes nothing; with fixed references (or pixels
outside the reference area, see below) it keeps the scaled terms to the +-0.5 range they are
defined on, so the speed ratio stays positive. SnowModel's 45 degree cap on the diverting
angle is kept (it cannot bind once ``Ws <= 0.5`` rad = 28.6 deg). The values depend on the
extent of the DEM; fixed references make the table local (a distant hill changes nothing,
tiles agree).

Edge band: the curvature stencil reaches ``inc`` pixels out; within ``inc`` pixels of the
DEM's edge the missing neighbours are replaced by the edge pixel (clamped indices, as in
SnowModel), which makes a tilted plane look curved there. The engine therefore takes the
domain references over the pixels at least ``inc`` pixels from the edge (the whole DEM when
there are none) and flags the band in ``edge_influence``.

Implementation notes
--------------------
- The direction-independent arrays ``beta cos(xi)``, ``beta sin(xi)``, ``cos(2 xi)``,
  ``sin(2 xi)`` and the curvature term are computed once (float64, stored as float32); a
  direction then costs about ten in-place float32 operations per pixel, done in cache-sized
  row blocks on a few threads (numpy releases the GIL).
- For ``beta > 0``, ``Omega_s >= 0`` exactly when ``cos(xi - theta) >= 0``, i.e. when
  ``|wrap(xi - theta)| <= 90 deg``, so the windward mask is applied as ``max(Omega_s, 0)``.
  Flat pixels have ``Omega_s = 0`` and thus ``alpha = 0``.
- ``max |Omega_s|`` over the domain, for any direction, is reached at a vertex of the convex
  hull of the points ``(beta cos xi, beta sin xi)`` (a maximum of a convex function over a
  convex set), so the domain references of all directions cost one hull of the DEM's pixels
  (float64) instead of one pass over the DEM per direction.
- Domain curvature reference: floored at 0.001 like the slope reference, as SnowModel does
  (``curve_max`` starts at 0.001 in ``topo_data``), so flat terrain gives exactly
  acceleration 1 and the round-off curvature of a plane (1e-15) is not blown up to +-0.5.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr

from devine_onnx.engines.base import TableEngine, TableWindow
from devine_onnx.errors import OptionError, option

__all__ = ["MicroMetEngine", "curvature", "edge_band", "micromet_factors", "slope_aspect"]

#: SnowModel's floor of the domain slope reference (radians).
SLOPE_REFERENCE_FLOOR = 1e-3
#: SnowModel's floor of the domain curvature reference (1).
CURVATURE_REFERENCE_FLOOR = 1e-3
#: Limit of the scaled slope and curvature terms ("scaled to +-0.5").
SCALED_LIMIT = 0.5
#: SnowModel's cap on the scaled slope in the diverting angle (45 degrees, in radians).
DIVERTING_CAP = math.radians(45.0)
#: Upper bound of the windward scaled slope used in the diverting angle.
_WINDWARD_MAX = min(SCALED_LIMIT, DIVERTING_CAP)
#: Text recorded in the table when the slope reference is the domain maximum.
DOMAIN_SLOPE_REFERENCE = "domain maximum per direction"

#: What ``edge_influence`` means in a micromet table.
_EDGE_COMMENT = (
    "micromet engine: 1 within {inc} pixels (the curvature step inc = nint(length_scale / "
    "resolution)) of the DEM's edge, where the curvature stencil uses clamped neighbours and "
    "shows curvature that the terrain does not have (a tilted plane looks curved); the domain "
    "references leave these pixels out; 0 elsewhere"
)

# Elements per row block of the direction loop (float32 scratch of ~128 kB per array).
_BLOCK_ELEMENTS = 32768


def _n_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(8, n))


# --- direction-independent geometry --------------------------------------------------------


def slope_aspect(z: np.ndarray, resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Slope and aspect of a north-up DEM.

    Parameters
    ----------
    z : numpy.ndarray, shape (ny, nx)
        Elevations in metres, row 0 = north (rows run south), column 0 = west.
    resolution : float
        Pixel size in metres (square pixels).

    Returns
    -------
    beta : numpy.ndarray of float64, shape (ny, nx)
        Slope angle ``atan(|grad z|)`` in radians, from centred differences inside the grid and
        one-sided differences on its edges.
    xi : numpy.ndarray of float64, shape (ny, nx)
        Aspect in radians, in [0, 2 pi): azimuth of the downslope direction ``-grad z``,
        clockwise from grid north (0 = the slope descends to the north, pi/2 = to the east).
        ``xi = 3 pi / 2 - atan2(dz/dy, dz/dx)`` with ``dz/dy = -dz/drow``; on flat pixels
        (``beta == 0``) it is 3 pi / 2 and irrelevant.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 2:
        raise ValueError(f"slope_aspect needs a 2-D DEM of at least 2 x 2 pixels, got {z.shape}")
    dz_drow, dz_dx = np.gradient(z, float(resolution))
    dz_dy = -dz_drow
    beta = np.arctan(np.hypot(dz_dx, dz_dy))
    xi = np.mod(1.5 * np.pi - np.arctan2(dz_dy, dz_dx), 2.0 * np.pi)
    return beta, xi


def curvature_step(resolution: float, length_scale: float) -> int:
    """Neighbour offset ``inc = max(1, round(length_scale / resolution))`` in pixels.

    Halves round away from zero (Fortran's ``nint``).
    """
    return max(1, int(math.floor(float(length_scale) / float(resolution) + 0.5)))


def curvature(z: np.ndarray, resolution: float, length_scale: float = 500.0) -> np.ndarray:
    """MicroMet's terrain curvature ``Omega_c`` (dimensionless, > 0 on ridges and summits).

    Parameters
    ----------
    z : numpy.ndarray, shape (ny, nx)
        Elevations in metres, row 0 = north.
    resolution : float
        Pixel size in metres.
    length_scale : float
        Curvature length scale ``eta`` in metres (default 500, SnowModel's recommended value:
        about half the wavelength of the terrain features).

    Returns
    -------
    numpy.ndarray of float64, shape (ny, nx)
        ``1/4 [(z - (zW + zE)/2)/(2 eta') + (z - (zS + zN)/2)/(2 eta')
        + (z - (zSW + zNE)/2)/(2 sqrt(2) eta') + (z - (zNW + zSE)/2)/(2 sqrt(2) eta')]``
        with neighbours ``inc = max(1, round(eta / resolution))`` pixels away,
        ``eta' = inc * resolution``. Neighbour indices beyond the DEM are clamped to its edge
        (no wrap-around).
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"curvature needs a 2-D DEM, got shape {z.shape}")
    ny, nx = z.shape
    inc = curvature_step(resolution, length_scale)
    eta = inc * float(resolution)
    rows, cols = np.arange(ny), np.arange(nx)
    north = np.clip(rows - inc, 0, ny - 1)  # rows run south: north is the smaller index
    south = np.clip(rows + inc, 0, ny - 1)
    west = np.clip(cols - inc, 0, nx - 1)
    east = np.clip(cols + inc, 0, nx - 1)
    z_n, z_s = z[north, :], z[south, :]
    straight = (z - 0.5 * (z[:, west] + z[:, east])) + (z - 0.5 * (z_s + z_n))
    diagonal = (z - 0.5 * (z_s[:, west] + z_n[:, east])) + (z - 0.5 * (z_n[:, west] + z_s[:, east]))
    return 0.25 * (straight / (2.0 * eta) + diagonal / (2.0 * math.sqrt(2.0) * eta))


def edge_band(shape: tuple[int, int], inc: int) -> np.ndarray:
    """Pixels whose curvature stencil reaches beyond the DEM (clamped neighbours).

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the DEM.
    inc : int
        Neighbour offset in pixels (:func:`curvature_step`).

    Returns
    -------
    numpy.ndarray of bool, shape (ny, nx)
        True within ``inc`` pixels of an edge: row or column index ``< inc`` or ``>= n - inc``.
    """
    ny, nx = (int(n) for n in shape)
    inc = max(0, int(inc))
    rows = np.arange(ny)
    cols = np.arange(nx)
    r = (rows < inc) | (rows >= ny - inc)
    c = (cols < inc) | (cols >= nx - inc)
    return r[:, None] | c[None, :]


# --- references ------------------------------------------------------------------------------


def _slope_extremes(beta: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """Points ``(beta cos xi, beta sin xi)`` among which ``max |Omega_s|`` is always reached.

    The vertices of the convex hull of all (finite) pixels; float64, shape (m, 2).
    """
    a = np.ravel(beta * np.cos(xi))
    b = np.ravel(beta * np.sin(xi))
    ok = np.isfinite(a) & np.isfinite(b)
    pts = np.column_stack([a[ok], b[ok]]).astype(np.float64, copy=False)
    if len(pts) <= 256:
        return pts if len(pts) else np.zeros((1, 2))
    from scipy.spatial import ConvexHull, QhullError

    try:
        return pts[ConvexHull(pts).vertices]
    except QhullError:
        # Degenerate set (all points on one line, or equal): the extremes along the line.
        d = pts - pts[0]
        far = int(np.argmax(np.hypot(d[:, 0], d[:, 1])))
        length = float(np.hypot(*d[far]))
        if length == 0.0:
            return pts[:1]
        proj = d @ (d[far] / length)
        return pts[[int(np.argmin(proj)), int(np.argmax(proj))]]


def _domain_slope_reference(extremes: np.ndarray, theta_rad: np.ndarray) -> np.ndarray:
    """``max(SLOPE_REFERENCE_FLOOR, max |Omega_s|)`` per direction (float64, shape (n,))."""
    proj = extremes[:, :1] * np.cos(theta_rad)[None, :] + extremes[:, 1:] * np.sin(theta_rad)
    return np.maximum(np.max(np.abs(proj), axis=0), SLOPE_REFERENCE_FLOOR)


def _domain_curvature_reference(omega_c: np.ndarray) -> float:
    """``max(CURVATURE_REFERENCE_FLOOR, max |Omega_c|)`` over the finite pixels."""
    mag = np.abs(np.asarray(omega_c, dtype=np.float64))
    mag = mag[np.isfinite(mag)]
    peak = float(mag.max()) if mag.size else 0.0
    return max(peak, CURVATURE_REFERENCE_FLOOR)


def _theta_radians(theta_deg) -> np.ndarray:
    """Directions in radians, reduced modulo 360 degrees first (theta and theta + 360 agree)."""
    theta = np.atleast_1d(np.asarray(theta_deg, dtype=np.float64))
    if theta.ndim != 1:
        raise ValueError(f"theta_deg must be a scalar or a 1-D array, got shape {theta.shape}")
    return np.deg2rad(np.mod(theta, 360.0))


# --- the direction loop ----------------------------------------------------------------------


class _Geometry:
    """Direction-independent float32 arrays of a window, and the direction loop over them."""

    def __init__(self, beta, xi, omega_c, slope_weight, curvature_weight, curvature_reference):
        beta = np.asarray(beta, dtype=np.float64)
        xi = np.asarray(xi, dtype=np.float64)
        f32 = np.float32
        self.shape = beta.shape
        self.a = np.ascontiguousarray(beta * np.cos(xi), dtype=f32)
        self.b = np.ascontiguousarray(beta * np.sin(xi), dtype=f32)
        self.cos2 = np.ascontiguousarray(np.cos(2.0 * xi), dtype=f32)
        self.sin2 = np.ascontiguousarray(np.sin(2.0 * xi), dtype=f32)
        omega_c = np.asarray(omega_c, dtype=np.float64)
        scaled_c = np.clip(omega_c / (2.0 * curvature_reference), -SCALED_LIMIT, SCALED_LIMIT)
        base = 1.0 + curvature_weight * scaled_c
        self.base = np.ascontiguousarray(base, dtype=f32)
        self.slope_weight = float(slope_weight)

    def fill(self, theta_rad: np.ndarray, slope_reference: np.ndarray, acc, alpha, threads=None):
        """Write acceleration and alpha of the directions ``theta_rad`` into ``acc``, ``alpha``.

        ``acc`` and ``alpha`` are C-contiguous float32 arrays of shape (n, ny, nx).
        """
        n = len(theta_rad)
        ny, nx = self.shape
        if n == 0 or ny == 0 or nx == 0:
            return
        # Per-direction scalars (float64 -> Python floats, so float32 arrays stay float32).
        # cos(theta) / (2 Sref), sin(theta) / (2 Sref): a cos + b sin is then the scaled slope.
        k_s = 1.0 / (2.0 * np.asarray(slope_reference, dtype=np.float64))
        cos_t, sin_t = k_s * np.cos(theta_rad), k_s * np.sin(theta_rad)
        # 0.5 sin(2(xi - theta)) = 0.5 (sin2xi cos2theta - cos2xi sin2theta).
        c2t = 0.5 * np.cos(2.0 * theta_rad)
        s2t = 0.5 * np.sin(2.0 * theta_rad)
        gs = self.slope_weight
        scal = [(float(cos_t[i]), float(sin_t[i]), float(c2t[i]), float(s2t[i])) for i in range(n)]
        block = max(1, _BLOCK_ELEMENTS // nx)
        threads = _n_threads() if threads is None else max(1, int(threads))
        threads = min(threads, -(-ny // block))
        edges = np.linspace(0, ny, threads + 1).round().astype(int)

        def work(r_start: int, r_stop: int) -> None:
            t1 = np.empty(block * nx, np.float32)
            t2 = np.empty(block * nx, np.float32)
            for r0 in range(r_start, r_stop, block):
                r1 = min(r0 + block, r_stop)
                m = (r1 - r0) * nx
                a, b = self.a[r0:r1].ravel(), self.b[r0:r1].ravel()
                cos2, sin2 = self.cos2[r0:r1].ravel(), self.sin2[r0:r1].ravel()
                base = self.base[r0:r1].ravel()
                s1, s2 = t1[:m], t2[:m]
                for i, (ct, st, c2, s2_) in enumerate(scal):
                    acc_v = acc[i, r0:r1].reshape(m)
                    alp_v = alpha[i, r0:r1].reshape(m)
                    np.multiply(a, ct, out=s1)
                    np.multiply(b, st, out=s2)
                    np.add(s1, s2, out=s1)  # Omega_s / (2 Sref), Omega_s = beta cos(theta - xi)
                    np.clip(s1, -SCALED_LIMIT, SCALED_LIMIT, out=s1)  # Ws
                    np.multiply(s1, gs, out=acc_v)
                    np.add(acc_v, base, out=acc_v)
                    # Windward only (Ws >= 0), and SnowModel's 45 degree cap.
                    np.clip(s1, 0.0, _WINDWARD_MAX, out=s1)
                    np.multiply(sin2, c2, out=s2)
                    np.multiply(cos2, s2_, out=alp_v)
                    np.subtract(s2, alp_v, out=s2)  # 0.5 sin(2(xi - theta))
                    np.multiply(s1, s2, out=alp_v)

        jobs = [(int(edges[j]), int(edges[j + 1])) for j in range(threads)]
        jobs = [job for job in jobs if job[1] > job[0]]
        if len(jobs) == 1:
            work(*jobs[0])
            return
        with ThreadPoolExecutor(len(jobs)) as pool:
            for fut in [pool.submit(work, *job) for job in jobs]:
                fut.result()


def micromet_factors(
    beta: np.ndarray,
    xi: np.ndarray,
    omega_c: np.ndarray,
    theta_deg,
    slope_weight: float = 0.58,
    curvature_weight: float = 0.42,
    slope_reference=None,
    curvature_reference: float | None = None,
    *,
    reference_mask: np.ndarray | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """MicroMet's speed ratio and deflection for one or several inflow directions.

    Parameters
    ----------
    beta, xi : numpy.ndarray, shape (ny, nx)
        Slope and aspect in radians (see :func:`slope_aspect`).
    omega_c : numpy.ndarray, shape (ny, nx)
        Curvature (see :func:`curvature`).
    theta_deg : float or array_like of shape (n,)
        Inflow FROM directions in degrees clockwise from grid north (any real value; reduced
        modulo 360, so ``theta`` and ``theta + 360`` give identical results).
    slope_weight, curvature_weight : float
        ``gamma_s`` and ``gamma_c`` (defaults 0.58 and 0.42, SnowModel's).
    slope_reference : None, float or array_like of shape (n,)
        ``Sref`` in radians. None (default): SnowModel's ``max |Omega_s|`` over the given arrays
        (or the ``reference_mask`` pixels) for each direction, floored at 0.001.
    curvature_reference : None or float
        ``Cref`` (1). None (default): ``max |Omega_c|`` over the given arrays (or the
        ``reference_mask`` pixels), floored at 0.001 (flat terrain: exactly acceleration 1,
        alpha 0).
    reference_mask : numpy.ndarray of bool, shape (ny, nx), optional
        Pixels over which the domain references are taken (default: all). The engine passes
        the pixels outside the edge band (:func:`edge_band`).
    threads : int, optional
        Threads of the direction loop (default: the usable cores, at most 8).

    Returns
    -------
    acceleration : numpy.ndarray of float32, shape (n, ny, nx)
        ``1 + gamma_s Ws + gamma_c Wc`` (speed ratio, 1) with the scaled terms
        ``Ws = clip(Omega_s / (2 Sref), -0.5, 0.5)``, ``Wc = clip(Omega_c / (2 Cref), -0.5, 0.5)``;
        always within ``[1 - (gamma_s + gamma_c)/2, 1 + (gamma_s + gamma_c)/2]``.
    alpha : numpy.ndarray of float32, shape (n, ny, nx)
        Deflection in radians, > 0 = flow turned left (downscaled FROM direction =
        ``theta - degrees(alpha)``): ``0.5 min(Ws, 45 deg) sin(2 (xi - theta))`` on slopes
        facing the wind (``|wrap(xi - theta)| <= 90 deg``), 0 elsewhere and on flat pixels;
        hence ``|alpha| <= 0.25`` rad (14.3 deg).
    used_slope_reference : numpy.ndarray of float64, shape (n,)
        ``Sref`` of each direction.
    used_curvature_reference : float
        ``Cref``.

    Notes
    -----
    The domain references are taken over the arrays passed in; to get a sub-window that agrees
    with the full domain, pass the full-domain references explicitly (as
    :class:`MicroMetEngine` does).
    """
    beta = np.asarray(beta)
    if beta.ndim != 2 or np.shape(xi) != beta.shape or np.shape(omega_c) != beta.shape:
        raise ValueError("beta, xi and omega_c must be 2-D arrays of one shape")
    theta = _theta_radians(theta_deg)
    n = len(theta)
    if reference_mask is None:
        ref_beta, ref_xi, ref_c = beta, xi, omega_c
    else:
        mask = np.asarray(reference_mask, dtype=bool)
        if mask.shape != beta.shape:
            raise ValueError("reference_mask must have the shape of beta")
        ref_beta, ref_xi = beta[mask], np.asarray(xi)[mask]
        ref_c = np.asarray(omega_c)[mask]
    if slope_reference is None:
        sref = _domain_slope_reference(_slope_extremes(ref_beta, ref_xi), theta)
    else:
        sref = np.broadcast_to(np.asarray(slope_reference, dtype=np.float64), (n,)).copy()
        if not np.all(np.isfinite(sref) & (sref > 0)):
            raise ValueError("slope_reference must be finite and > 0")
    if curvature_reference is None:
        cref = _domain_curvature_reference(ref_c)
    else:
        cref = float(curvature_reference)
        if not (math.isfinite(cref) and cref > 0):
            raise ValueError("curvature_reference must be finite and > 0")
    geom = _Geometry(beta, xi, omega_c, slope_weight, curvature_weight, cref)
    acc = np.empty((n, *beta.shape), np.float32)
    alpha = np.empty((n, *beta.shape), np.float32)
    geom.fill(theta, sref, acc, alpha, threads=threads)
    return acc, alpha, sref, cref


# --- the engine ------------------------------------------------------------------------------


def _number(value, name: str, expected: str, hint: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{option(name, value)}: expected {expected}; {hint}") from None
    return x


class MicroMetEngine(TableEngine):
    """MicroMet's terrain wind parameterisation (Liston & Elder 2006) as a table engine.

    Parameters
    ----------
    length_scale : float
        Curvature length scale ``eta`` in metres (``--length-scale``, default 500).
    slope_weight, curvature_weight : float
        ``gamma_s``, ``gamma_c`` in [0, 1] (``--slope-weight`` 0.58, ``--curvature-weight``
        0.42, SnowModel's shipped values; 0.5/0.5 weighs slope and curvature equally). The
        scaled terms are clipped to +-0.5, so the acceleration stays in
        ``[1 - (gamma_s + gamma_c)/2, 1 + (gamma_s + gamma_c)/2]`` ([0.5, 1.5] for a sum of 1).
    slope_reference : float, optional
        Fixed ``Sref`` in radians (``--slope-reference``). Default: the maximum of
        ``|Omega_s|`` over the whole DEM for each direction (SnowModel), floored at 0.001; the
        values used are given by :meth:`slope_references`.
    curvature_reference : float, optional
        Fixed ``Cref`` (``--curvature-reference``). Default: the maximum of ``|Omega_c|`` over
        the whole DEM, floored at 0.001 (recorded in the attributes after :meth:`bind`).

    Notes
    -----
    The geometry and the domain references always come from the whole DEM, so a table
    restricted to a target has the values of the full table at the same pixels. With domain
    references the values depend on the DEM's extent; fixed references make them local.
    The domain references leave out the edge band (pixels within ``inc`` of the DEM's edge,
    whose curvature uses clamped neighbours); :meth:`static_variables` flags that band as
    ``edge_influence = 1``.
    """

    name = "micromet"
    title = "MicroMet terrain parameterisation (Liston & Elder 2006)"
    citation = (
        "Liston, G. E. and Elder, K., 2006: A meteorological distribution system for "
        "high-resolution terrestrial modeling (MicroMet). J. Hydrometeorol., 7, 217-234, "
        "doi:10.1175/JHM486.1"
    )
    resume_keys = (
        "micromet_length_scale",
        "micromet_slope_weight",
        "micromet_curvature_weight",
        "micromet_slope_reference",
        "micromet_curvature_reference",
        "micromet_reference_mode",
    )

    def __init__(
        self,
        length_scale: float = 500.0,
        slope_weight: float = 0.58,
        curvature_weight: float = 0.42,
        slope_reference: float | None = None,
        curvature_reference: float | None = None,
    ):
        hint = f"give a length in metres, e.g. {option('length_scale', 500.0)} (about half "
        hint += "the wavelength of the terrain features)"
        eta = _number(length_scale, "length_scale", "a length in metres > 0", hint)
        if not (math.isfinite(eta) and eta > 0):
            raise OptionError(
                f"{option('length_scale', length_scale)}: expected a finite length in metres "
                f"> 0; {hint}"
            )
        weights = []
        for value, name, default in (
            (slope_weight, "slope_weight", 0.58),
            (curvature_weight, "curvature_weight", 0.42),
        ):
            expected = "a number between 0 and 1"
            hint = f"give e.g. {option(name, default)} (SnowModel's default)"
            w = _number(value, name, expected, hint)
            if not (math.isfinite(w) and 0.0 <= w <= 1.0):
                raise OptionError(f"{option(name, value)}: expected {expected}; {hint}")
            weights.append(w)
        refs = []
        for value, name, what in (
            (slope_reference, "slope_reference", "slope in radians"),
            (curvature_reference, "curvature_reference", "curvature"),
        ):
            if value is None:
                refs.append(None)
                continue
            expected = f"a finite {what} > 0"
            hint = f"give a positive value, or omit {option(name)} to use the domain maximum"
            r = _number(value, name, expected, hint)
            if not (math.isfinite(r) and r > 0):
                raise OptionError(f"{option(name, value)}: expected {expected}; {hint}")
            refs.append(r)
        self.length_scale = eta
        self.slope_weight, self.curvature_weight = weights
        self.slope_reference, self.curvature_reference = refs
        self._geom: _Geometry | None = None
        self._extremes: np.ndarray | None = None
        self._cref: float | None = None
        self._edge: np.ndarray | None = None
        self._inc: int | None = None

    def bind(self, dem: xr.DataArray, window: TableWindow) -> None:
        """Slope, aspect, curvature and the domain references from the whole DEM."""
        if {"y", "x"} <= set(dem.dims):
            dem = dem.transpose("y", "x")
        z = np.asarray(dem.values, dtype=np.float64)
        x = np.asarray(dem.x.values, dtype=np.float64)
        y = np.asarray(dem.y.values, dtype=np.float64)
        resolution = abs(float(x[1] - x[0]))
        # Work on a north-up, west-to-east view; flip the results back to the DEM's order.
        flip_y, flip_x = bool(y[1] > y[0]), bool(x[1] < x[0])

        def orient(arr):
            return arr[:: -1 if flip_y else 1, :: -1 if flip_x else 1]

        zn = orient(z)
        beta, xi = slope_aspect(zn, resolution)
        omega_c = curvature(zn, resolution, self.length_scale)
        beta, xi, omega_c = orient(beta), orient(xi), orient(omega_c)
        self._inc = curvature_step(resolution, self.length_scale)
        band = edge_band(beta.shape, self._inc)  # symmetric: no need to orient
        inside = ~band if not band.all() else np.ones_like(band)
        if self.slope_reference is None:
            self._extremes = _slope_extremes(beta[inside], xi[inside])
        if self.curvature_reference is None:
            self._cref = _domain_curvature_reference(omega_c[inside])
        else:
            self._cref = self.curvature_reference
        r, c = window.rows, window.cols
        self._edge = np.ascontiguousarray(band[r, c], dtype=np.uint8)
        self._geom = _Geometry(
            beta[r, c], xi[r, c], omega_c[r, c], self.slope_weight, self.curvature_weight,
            self._cref,
        )  # fmt: skip

    def static_variables(self) -> dict:
        """``edge_influence(y, x)`` of the bound window: 1 within ``inc`` pixels of the DEM's
        edge, where the curvature uses clamped neighbours (docs/method.md §7.4), else 0.

        A :class:`xarray.DataArray` (uint8) whose ``comment`` says what the flag means for
        this engine.
        """
        if self._edge is None:
            raise RuntimeError("MicroMetEngine.bind() must be called first")
        return {
            "edge_influence": xr.DataArray(
                self._edge,
                dims=("y", "x"),
                attrs={"comment": _EDGE_COMMENT.format(inc=self._inc)},
            )
        }

    def slope_references(self, angles) -> np.ndarray:
        """``Sref`` (radians) used for the directions ``angles`` (degrees); needs :meth:`bind`
        for the domain references."""
        theta = _theta_radians(angles)
        if self.slope_reference is not None:
            return np.full(len(theta), self.slope_reference)
        if self._extremes is None:
            raise RuntimeError("MicroMetEngine.bind() must be called first")
        return _domain_slope_reference(self._extremes, theta)

    def batches(self, angles: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, dict]]:
        """Yield ``(ks, {"acceleration", "alpha"})``: ``ks`` the directions (degrees) of the
        batch, arrays float32 of shape (len(ks), ny, nx) over the bound window."""
        if self._geom is None:
            raise RuntimeError("MicroMetEngine.bind() must be called first")
        angles = np.asarray(angles, dtype=np.int64).ravel()
        batch = max(1, int(batch))
        ny, nx = self._geom.shape
        for i in range(0, len(angles), batch):
            ks = angles[i : i + batch]
            acc = np.empty((len(ks), ny, nx), np.float32)
            alpha = np.empty((len(ks), ny, nx), np.float32)
            self._geom.fill(_theta_radians(ks), self.slope_references(ks), acc, alpha)
            yield ks, {"acceleration": acc, "alpha": alpha}

    def attrs(self) -> dict:
        """Engine attributes. ``micromet_curvature_reference`` is the value used: with the
        domain default it is known after :meth:`bind` (before, the text "domain maximum")."""
        if self.slope_reference is None and self.curvature_reference is None:
            mode = "domain"
        elif self.slope_reference is not None and self.curvature_reference is not None:
            mode = "fixed"
        elif self.slope_reference is None:
            mode = "domain slope, fixed curvature"
        else:
            mode = "fixed slope, domain curvature"
        if self.curvature_reference is not None:
            cref: float | str = self.curvature_reference
        else:
            cref = self._cref if self._cref is not None else "domain maximum"
        return {
            "engine": self.name,
            "engine_title": self.title,
            "engine_citation": self.citation,
            "micromet_length_scale": self.length_scale,
            "micromet_slope_weight": self.slope_weight,
            "micromet_curvature_weight": self.curvature_weight,
            "micromet_slope_reference": (
                DOMAIN_SLOPE_REFERENCE if self.slope_reference is None else self.slope_reference
            ),
            "micromet_curvature_reference": cref,
            "micromet_reference_mode": mode,
            "micromet_scaled_limit": SCALED_LIMIT,
            "micromet_edge_band": (
                "edge_influence = 1 within nint(length_scale / resolution) pixels of the DEM "
                "edge (clamped curvature neighbours); domain references are taken outside it"
            ),
        }
