"""Terrain features of the devine-torch networks (deflLis, reldem, ydsc), numpy only.

Written from docs/method.md §11 (the published pre-processing of devine-torch,
F. Hammer & N. Helbig; features after Helbig et al. 2024). The symbols follow it.

Conventions
-----------
- ``z`` is a north-up DEM: row 0 is the northern edge, rows run south, columns run east.
  Cell size ``cell`` in metres (square cells).
- The DEM carries a 2-cell *frame*: the terrain derivatives use the neighbours north
  (``i - 1``) and east (``j + 1``) of each cell, and the frame is removed afterwards. Features
  and network outputs live on ``z[2:-2, 2:-2]`` (the *interior*).
- Directions ``theta`` are inflow FROM directions in degrees clockwise from grid north; a
  scalar (table mode) or a field broadcast against the interior (per time step).

Equations (per cell of the interior)::

    dn = (z[i-1, j] - z[i, j]) / cell          de = (z[i, j+1] - z[i, j]) / cell
    q  = de**2 + dn**2                          (mean square slope)
    sx = 1/2 cell (z[i,j] - z[i,j+1] + z[i-1,j] - z[i-1,j+1]) / cell**2
    sy = 1/2 cell (z[i,j] + z[i,j+1] - z[i-1,j] - z[i-1,j+1]) / cell**2
    n  = sqrt(sx**2 + sy**2 + 1),  slope = arccos(1 / n)            (Corripio 2003)
    azi = pi/2 + atan(-(sy/n) / (sx/n))     where sx > 0
        = 3 pi/2 + atan(-(sy/n) / (sx/n))   where sx < 0
        = pi where sx = 0 and sy < 0,  0 where sx = 0 and sy >= 0
        = pi wherever round(degrees(slope)) == 0                  (then in degrees)
    reldem = z - zc    (zc: coarse mean elevation, see coarse_elevation)
    d      = theta - azi if azi <= theta else theta - azi + 360;  d = 360 - d if d >= 180
    dpsi   = (90 - d) pi / 180                 (+pi/2 windward, -pi/2 lee)
    ydsc   = (-0.087122 - 0.4788 dpsi + 2.068 erf(0.6298 dpsi)) (-0.046577 + sqrt(q/2)**0.72451)
    sigma_s = atan(sqrt(q)) cos(theta - azi),  deflLis = -0.5 sigma_s sign(sigma_s) sin(2 (azi - theta))

All computations are float64; :func:`normalise` returns the network input in float32.

:func:`direction_features` transcribes these equations; :class:`NetworkInput` computes the
same network input faster for many directions (the direction-independent terms once, no
trigonometric function of the direction per pixel), equal to it within float32 rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

__all__ = [
    "CHANNELS",
    "FRAME",
    "NetworkInput",
    "TerrainGeometry",
    "block_size",
    "coarse_elevation",
    "corripio_aspect",
    "direction_features",
    "normalise",
    "terrain_geometry",
]

#: Feature channels in the networks' order.
CHANNELS = ("deflLis", "reldem", "ydsc")
#: Cells removed around the DEM after the terrain derivatives.
FRAME = 2
#: Default coarse cell of the relative DEM, metres (the NWP's resolution in devine-torch).
COARSE_CELL = 1000.0


def block_size(coarse_cell: float, cell: float) -> int:
    """Fine cells per coarse cell, ``numb = coarse_cell // cell`` (floor, as devine-torch).

    A relative tolerance of 1e-6 absorbs round-off in the cell size (1000 / 25.0000001 -> 40).
    """
    coarse_cell, cell = float(coarse_cell), float(cell)
    if not (np.isfinite(coarse_cell) and np.isfinite(cell) and cell > 0 and coarse_cell > 0):
        raise ValueError(f"coarse cell {coarse_cell} and cell {cell} must be finite and > 0")
    numb = int(np.floor(coarse_cell / cell * (1.0 + 1e-6)))
    if numb < 1:
        raise ValueError(
            f"coarse cell {coarse_cell:g} m is smaller than the DEM cell {cell:g} m; give a "
            "coarse cell of at least one DEM cell"
        )
    return numb


def corripio_aspect(
    z00: np.ndarray, z01: np.ndarray, z10: np.ndarray, z11: np.ndarray, cell: float
) -> np.ndarray:
    """Aspect (degrees, downslope, clockwise from north) of 2x2 cells, after Corripio (2003).

    ``z00 = z[i, j]``, ``z01 = z[i, j+1]``, ``z10 = z[i-1, j]`` (north), ``z11 = z[i-1, j+1]``.
    Flat cells (slope rounding to 0 degrees) get 180 (pi), as in devine-torch.
    """
    cell = float(cell)
    sx = 0.5 * cell * (z00 - z01 + z10 - z11) / cell**2
    sy = 0.5 * cell * (z00 + z01 - z10 - z11) / cell**2
    n = np.sqrt(sx**2 + sy**2 + 1.0)
    slope = np.arccos(1.0 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.arctan(-(sy / n) / (sx / n))
    azi = np.where(
        sx > 0,
        np.pi / 2 + ratio,
        np.where(sx < 0, 1.5 * np.pi + ratio, np.where(sy < 0, np.pi, 0.0)),
    )
    # np.round rounds half to even, as numpy does in devine-torch's pre-processing.
    azi = np.where(np.round(np.degrees(slope)) == 0, np.pi, azi)
    return np.degrees(azi)


def _window_sums(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Sums of ``a`` over the centred window [i - size//2, i - size//2 + size - 1] along
    ``axis``, clipped to the array (xarray's ``rolling(center=True)`` window)."""
    a = np.moveaxis(a, axis, -1)
    n = a.shape[-1]
    c = np.concatenate([np.zeros(a.shape[:-1] + (1,)), np.cumsum(a, axis=-1)], axis=-1)
    i = np.arange(n)
    lo = np.clip(i - size // 2, 0, n)
    hi = np.clip(i - size // 2 + size, 0, n)
    return np.moveaxis(c[..., hi] - c[..., lo], -1, axis)


def coarse_elevation(z: np.ndarray, numb: int) -> np.ndarray:
    """Coarse mean elevation ``zc`` on the fine grid (float64, same shape as ``z``).

    Block means over ``numb x numb`` cells from the array's first row and column (partial
    blocks at the south/east edges average their valid cells), each expanded back to the
    fine cells of its block, then a centred ``numb x numb`` moving mean over the cells
    available (xarray ``rolling(x=numb, y=numb, center=True, min_periods=1).mean()``;
    for even ``numb`` the window spans ``numb // 2`` cells before and ``numb // 2 - 1``
    after). NaN cells are ignored; NaN where a window holds no valid cell.
    """
    z = np.asarray(z, dtype=np.float64)
    ny, nx = z.shape
    numb = int(numb)
    by, bx = -(-ny // numb), -(-nx // numb)
    padded = np.full((by * numb, bx * numb), np.nan)
    padded[:ny, :nx] = z
    blocks = padded.reshape(by, numb, bx, numb)
    valid = np.isfinite(blocks)
    total = np.where(valid, blocks, 0.0).sum(axis=(1, 3))
    count = valid.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = total / count
    expanded = np.repeat(np.repeat(means, numb, axis=0), numb, axis=1)[:ny, :nx]
    ok = np.isfinite(expanded)
    values = np.where(ok, expanded, 0.0)
    sums = _window_sums(_window_sums(values, numb, 0), numb, 1)
    counts = _window_sums(_window_sums(ok.astype(np.float64), numb, 0), numb, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts
    return np.where(counts > 0.5, out, np.nan)


@dataclass
class TerrainGeometry:
    """Direction-independent fields of the interior (float64, shape ``(ny - 4, nx - 4)``)."""

    q: np.ndarray  # mean square slope (1)
    azi: np.ndarray  # aspect, degrees clockwise from north (downslope)
    reldem: np.ndarray  # z - zc, metres
    cell: float
    numb: int

    def __post_init__(self):
        # Parts of ydsc and deflLis that do not depend on the direction.
        self.slope_term = -0.046577 + np.sqrt(self.q / 2.0) ** 0.72451
        self.atan_sqrt_q = np.arctan(np.sqrt(self.q))

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape


def terrain_geometry(
    z: np.ndarray, cell: float, coarse_cell: float = COARSE_CELL
) -> TerrainGeometry:
    """Slope, aspect and relative DEM of a north-up DEM with its 2-cell frame.

    Parameters
    ----------
    z : numpy.ndarray, shape (ny, nx)
        Elevations in metres, row 0 = north, frame included; ny, nx >= 5.
    cell : float
        Cell size in metres.
    coarse_cell : float
        Coarse cell of the relative DEM in metres (default 1000, the NWP resolution).

    Returns
    -------
    TerrainGeometry
        On the interior ``z[2:-2, 2:-2]``. ``reldem`` uses the coarse blocks of the interior
        (aligned with its north-west corner), as devine-torch, which averages the DEM
        without its frame.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 2 * FRAME + 1:
        raise ValueError(f"the DEM must be 2-D with at least 5 cells per side, got {z.shape}")
    cell = float(cell)
    f = FRAME
    zc = z[f:-f, f:-f]
    zn = z[f - 1 : -f - 1, f:-f]  # z[i-1, j]
    ze = z[f:-f, f + 1 : z.shape[1] - f + 1]  # z[i, j+1]
    zne = z[f - 1 : -f - 1, f + 1 : z.shape[1] - f + 1]  # z[i-1, j+1]
    dn = (zn - zc) / cell
    de = (ze - zc) / cell
    q = de**2 + dn**2
    azi = corripio_aspect(zc, ze, zn, zne, cell)
    numb = block_size(coarse_cell, cell)
    reldem = zc - coarse_elevation(zc, numb)
    return TerrainGeometry(q=q, azi=azi, reldem=reldem, cell=cell, numb=numb)


def direction_features(geom: TerrainGeometry, theta) -> tuple[np.ndarray, np.ndarray]:
    """``deflLis`` and ``ydsc`` (float64) for inflow FROM directions ``theta`` (degrees).

    ``theta`` is a scalar, or an array broadcast against the interior (e.g. ``(N, ny, nx)``
    per time step, or ``(N, 1, 1)`` for N uniform directions); results have the broadcast
    shape. Directions are taken modulo 360 (-100 is 260).
    """
    theta = np.mod(np.asarray(theta, dtype=np.float64), 360.0)
    azi = geom.azi
    d = np.where(azi <= theta, theta - azi, theta - azi + 360.0)
    d = np.where(d >= 180.0, 360.0 - d, d)
    dpsi = (90.0 - d) * np.pi / 180.0
    ydsc = (-0.087122 - 0.4788 * dpsi + 2.068 * erf(0.6298 * dpsi)) * geom.slope_term
    sigma_s = geom.atan_sqrt_q * np.cos((theta - azi) * np.pi / 180.0)
    defl = -0.5 * sigma_s * np.sign(sigma_s) * np.sin(2.0 * (azi - theta) * np.pi / 180.0)
    return defl, ydsc


def normalise(
    defl: np.ndarray, reldem: np.ndarray, ydsc: np.ndarray, mean, std, out=None
) -> np.ndarray:
    """Network input ``((deflLis, reldem, ydsc) - mean) / std`` as float32 ``(N, 3, ny, nx)``.

    ``defl`` and ``ydsc`` are ``(N, ny, nx)`` (or broadcastable), ``reldem`` ``(ny, nx)``.
    """
    defl = np.asarray(defl)
    ydsc = np.asarray(ydsc)
    shape = np.broadcast_shapes(defl.shape, ydsc.shape, np.shape(reldem))
    if len(shape) == 2:
        shape = (1,) + shape
    if out is None:
        out = np.empty((shape[0], 3) + shape[1:], dtype=np.float32)
    for c, values in enumerate((defl, reldem, ydsc)):
        out[:, c] = (values - float(mean[c])) / float(std[c])
    return out


class NetworkInput:
    """The normalised network input of a terrain for many directions, fast.

    The direction-independent terms (``cos azi``, ``sin azi``, ``atan sqrt q``, the slope
    term of ydsc and the normalised reldem channel) are computed once. For a FROM direction
    ``theta`` and ``delta = theta - azi``, with ``c = cos delta`` and ``s = sin delta`` from
    the angle-addition formulas, the equations of the module become::

        dpsi    = (90 - d) pi / 180 = arcsin(c) = atan2(c, |s|)       (d = folded |delta|)
        deflLis = -0.5 |sigma_s| sin(2 (azi - theta)) = atan(sqrt q) |c| s c

    so that a direction costs a few multiplications, one ``atan2`` and one ``erf`` per pixel
    (float64), instead of the trigonometric functions and branches of
    :func:`direction_features`. Results equal ``normalise(*direction_features(...))`` within
    float32 rounding (float64 differences of order 1e-15).

    Parameters
    ----------
    geom : TerrainGeometry
        Geometry of the interior (north-up working view).
    mean, std : sequence of 3 float
        Normalisation of the channels (deflLis, reldem, ydsc).
    """

    def __init__(self, geom: TerrainGeometry, mean, std):
        self.shape = geom.shape
        rad = np.radians(geom.azi)
        self.cos_azi = np.cos(rad)
        self.sin_azi = np.sin(rad)
        self.atan_sqrt_q = geom.atan_sqrt_q
        self.slope_term = geom.slope_term
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.reldem = ((geom.reldem - self.mean[1]) / self.std[1]).astype(np.float32)

    def empty(self, n: int) -> np.ndarray:
        """An uninitialised input buffer ``(n, 3, ny, nx)`` float32."""
        return np.empty((int(n), 3) + tuple(self.shape), dtype=np.float32)

    def _fill(self, out: np.ndarray, cos_t, sin_t) -> np.ndarray:
        """Fill ``out[k]`` for directions given by ``cos theta``, ``sin theta`` (each a scalar
        or an ``(ny, nx)`` field per k, broadcast over the interior)."""
        for k in range(out.shape[0]):
            ct, st = cos_t[k], sin_t[k]
            c = ct * self.cos_azi
            c += st * self.sin_azi  # cos(theta - azi)
            s = st * self.cos_azi
            s -= ct * self.sin_azi  # sin(theta - azi)
            # deflLis = atan(sqrt q) |c| s c
            defl = np.abs(c)
            defl *= s
            defl *= c
            defl *= self.atan_sqrt_q
            # dpsi = arcsin(c), well conditioned as atan2(c, |s|)
            np.abs(s, out=s)
            dpsi = np.arctan2(c, s, out=c)
            e = erf(0.6298 * dpsi)
            e *= 2.068
            dpsi *= -0.4788
            e += dpsi
            e += -0.087122
            e *= self.slope_term  # ydsc
            defl -= self.mean[0]
            defl /= self.std[0]
            e -= self.mean[2]
            e /= self.std[2]
            out[k, 0] = defl
            out[k, 1] = self.reldem
            out[k, 2] = e
        return out

    def from_angles(self, theta, out: np.ndarray | None = None) -> np.ndarray:
        """Network input ``(n, 3, ny, nx)`` float32 for uniform FROM directions ``theta``
        (degrees, shape ``(n,)``; any value, taken modulo 360 by the trigonometry)."""
        t = np.radians(np.atleast_1d(np.asarray(theta, dtype=np.float64)).ravel())
        if out is None:
            out = self.empty(t.size)
        return self._fill(out, np.cos(t), np.sin(t))

    def from_components(
        self, u: np.ndarray, v: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Network input for the direction field of grid wind components ``u, v``
        ``(n, ny, nx)`` (m/s, toward +x and +y, north-up working view).

        The FROM direction ``theta`` has ``sin theta = -u / S`` and ``cos theta = -v / S``
        (``S = sqrt(u**2 + v**2)``). Where it is undefined (calm wind, NaN) the features use
        the circular mean direction of the step's defined pixels (270 where a step has none).
        """
        u = np.asarray(u)
        v = np.asarray(v)
        n = u.shape[0]
        if out is None:
            out = self.empty(n)
        cos_t = np.empty((n,) + tuple(self.shape))
        sin_t = np.empty_like(cos_t)
        for k in range(n):
            uk = u[k].astype(np.float64)
            vk = v[k].astype(np.float64)
            speed = np.sqrt(uk * uk + vk * vk)
            ok = speed > 0  # False for calm wind and NaN
            with np.errstate(invalid="ignore", divide="ignore"):
                np.divide(-uk, speed, out=sin_t[k])
                np.divide(-vk, speed, out=cos_t[k])
            if not ok.all():
                if ok.any():
                    ms, mc = sin_t[k][ok].sum(), cos_t[k][ok].sum()
                else:
                    ms, mc = 0.0, 0.0
                if ms == 0 and mc == 0:
                    ms, mc = -1.0, 0.0  # FROM 270
                else:
                    norm = math.hypot(ms, mc)
                    ms, mc = ms / norm, mc / norm
                sin_t[k][~ok] = ms
                cos_t[k][~ok] = mc
        return self._fill(out, cos_t, sin_t)
