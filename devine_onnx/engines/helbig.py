"""The ``helbig`` engine: the Helbig et al. (2017) terrain speed factor (docs/method.md §14).

Helbig, Mott, van Herwijnen, Winstral and Jonas (2017) fitted closed-form expressions to
ARPS simulations of neutral flow over Gaussian random terrain. The fine-scale downscaling
factor depends on the local Laplacian of the terrain and on the local mean squared slope; an
optional subgrid factor accounts for a coarse forcing that is the mean over a grid cell of
size ``L`` (an NWP cell). Neither depends on the wind direction, so the table has the same
``acceleration`` for every direction and ``alpha = 0`` (the parameterisation gives no
deflection); there is no ``vertical`` variable.

Conventions
-----------
- The DEM is north-up: row 0 is the northern edge; pixels are square, ``dx`` metres.
- ``acceleration`` is the speed ratio (1): downscaled speed / inflow speed.

Equations (symbols of docs/method.md §14)::

    lap  = (zN + zS + zE + zW - 4 z) / dx**2 * (dx / 4)     (dimensionless "Laplacian" term)
    mu   = sqrt(((dz/dx)**2 + (dz/dy)**2) / 2)             (dimensionless mean squared slope)
    x_dsc = [1 - a lap / (1 + a |lap|**b)] * [c / (1 + d mu**e)]
            a = 17.0393, b = 0.737, c = 1.0234, d = 0.3794, e = 1.9821
    with --coarse-cell L (window of about L x L metres around each pixel):
    mu_L = mean of mu over the window, sigma_L = standard deviation of z over the window,
    xi   = sqrt(2) sigma_L / mu_L                                (m; terrain length scale)
    x_sgp = 1 - [1 - (1 + a' mu_L**b')**(-c')] * exp(-d' (L / xi)**(-2))
            a' = 3.354688, b' = 1.998767, c' = 0.20286, d' = 5.951
    acceleration = x_dsc            (or x_sgp * x_dsc with L)

Edges: the Laplacian at the outermost pixels uses the edge pixel for the missing neighbour
(clamped, like the reference implementation's edge padding) and the coarse-cell window is cut
by the DEM's edge; both are flagged in ``edge_influence``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import xarray as xr

from devine_onnx.engines.base import TableEngine, TableWindow
from devine_onnx.errors import OptionError, option

__all__ = [
    "DSC_COEFFICIENTS",
    "SGP_COEFFICIENTS",
    "HelbigEngine",
    "coarse_window",
    "helbig_laplacian",
    "mean_squared_slope",
    "x_dsc",
    "x_sgp",
]

#: Coefficients a, b, c, d, e of the fine-scale factor x_dsc (Helbig et al. 2017).
DSC_COEFFICIENTS = (17.0393, 0.737, 1.0234, 0.3794, 1.9821)
#: Coefficients a', b', c', d' of the subgrid factor x_sgp (Helbig et al. 2017).
SGP_COEFFICIENTS = (3.354688, 1.998767, 0.20286, 5.951)

_DIRECTION_NOTE = (
    "direction-independent: acceleration is the same for every direction, alpha = 0 (the "
    "parameterisation gives a speed factor only, no deflection), no vertical ratio"
)


def helbig_laplacian(z: np.ndarray, dx: float) -> np.ndarray:
    """The Laplacian term of x_dsc, ``(zN + zS + zE + zW - 4 z) / dx**2 * (dx / 4)``.

    Parameters
    ----------
    z : numpy.ndarray, shape (ny, nx)
        Elevations in metres.
    dx : float
        Pixel size in metres.

    Returns
    -------
    numpy.ndarray of float64, shape (ny, nx)
        In 1/m * m = dimensionless (the ``dx / 4`` factor of Helbig et al.); > 0 in hollows
        and valleys (concave), < 0 on ridges and summits (convex). Missing neighbours at the
        DEM's edge are replaced by the edge pixel.
    """
    z = np.asarray(z, dtype=np.float64)
    p = np.pad(z, 1, mode="edge")
    total = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * z
    return total / (dx * dx) * (dx / 4.0)


def mean_squared_slope(z: np.ndarray, dx: float) -> np.ndarray:
    """``mu = sqrt(((dz/dx)**2 + (dz/dy)**2) / 2)`` (dimensionless).

    Centred differences inside the grid, one-sided on its edges (:func:`numpy.gradient`).
    """
    dz_drow, dz_dcol = np.gradient(np.asarray(z, dtype=np.float64), float(dx))
    return np.sqrt((dz_dcol**2 + dz_drow**2) / 2.0)


def x_dsc(lap: np.ndarray, mu: np.ndarray, coefficients=DSC_COEFFICIENTS) -> np.ndarray:
    """Fine-scale factor ``[1 - a lap / (1 + a |lap|**b)] * [c / (1 + d mu**e)]``.

    Flat ground (``lap = mu = 0``) gives ``c`` = 1.0234.
    """
    a, b, c, d, e = coefficients
    lap = np.asarray(lap, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    return (1.0 - a * lap / (1.0 + a * np.abs(lap) ** b)) * (c / (1.0 + d * mu**e))


def x_sgp(mu_l: np.ndarray, xi: np.ndarray, cell: float, coefficients=SGP_COEFFICIENTS):
    """Subgrid factor ``1 - [1 - (1 + a' mu_L**b')**(-c')] * exp(-d' (L / xi)**(-2))``.

    Parameters
    ----------
    mu_l : numpy.ndarray
        Mean of the mean squared slope over the coarse cell (dimensionless).
    xi : numpy.ndarray
        ``sqrt(2) sigma_z / mu_L`` in metres; ``inf`` or NaN where ``mu_L = 0``.
    cell : float
        Coarse cell size ``L`` in metres.

    Returns
    -------
    numpy.ndarray of float64
        1 where ``mu_L = 0`` (flat cell: no subgrid reduction), < 1 elsewhere.
    """
    a, b, c, d = coefficients
    mu_l = np.asarray(mu_l, dtype=np.float64)
    xi = np.asarray(xi, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (xi / float(cell)) ** 2  # (L / xi)**(-2)
        out = 1.0 - (1.0 - (1.0 + a * mu_l**b) ** (-c)) * np.exp(-d * ratio)
    return np.where(mu_l > 0, out, 1.0)


def coarse_window(cell: float, dx: float) -> int:
    """Half-width ``h`` in pixels of the coarse-cell window (``2 h + 1`` pixels wide).

    ``h = max(1, round(L / (2 dx)))``, halves rounded up: the window is the odd number of
    pixels closest to ``L / dx``.
    """
    return max(1, int(math.floor(float(cell) / (2.0 * float(dx)) + 0.5)))


def _box_mean(a: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``a`` over the ``(2h+1)^2`` window around each pixel, cut by the edges (the
    mean of the pixels inside the DEM), and the number of pixels used."""
    ny, nx = a.shape
    s = np.zeros((ny + 1, nx + 1))
    s[1:, 1:] = np.cumsum(np.cumsum(a, axis=0), axis=1)
    r0 = np.clip(np.arange(ny) - h, 0, ny)
    r1 = np.clip(np.arange(ny) + h + 1, 0, ny)
    c0 = np.clip(np.arange(nx) - h, 0, nx)
    c1 = np.clip(np.arange(nx) + h + 1, 0, nx)
    total = s[r1][:, c1] - s[r0][:, c1] - s[r1][:, c0] + s[r0][:, c0]
    count = np.outer(r1 - r0, c1 - c0).astype(np.float64)
    return total / count, count


def coarse_statistics(z: np.ndarray, dx: float, cell: float):
    """``(mu_L, sigma_L, truncated)`` over the coarse-cell window of each pixel.

    ``mu_L``: mean of :func:`mean_squared_slope`; ``sigma_L``: population standard deviation
    of ``z`` (m); ``truncated``: True where the window is cut by the DEM's edge.
    """
    z = np.asarray(z, dtype=np.float64)
    h = coarse_window(cell, dx)
    mu_l, count = _box_mean(mean_squared_slope(z, dx), h)
    zc = z - float(np.mean(z))  # centred: the variance by E[z^2] - E[z]^2 stays accurate
    mean_z, _ = _box_mean(zc, h)
    mean_z2, _ = _box_mean(zc * zc, h)
    sigma = np.sqrt(np.maximum(mean_z2 - mean_z**2, 0.0))
    return mu_l, sigma, count < (2 * h + 1) ** 2


def helbig_factor(z: np.ndarray, dx: float, coarse_cell: float | None = None) -> np.ndarray:
    """``x_dsc`` (or ``x_sgp * x_dsc`` with ``coarse_cell`` L in metres) of a DEM, float64."""
    z = np.asarray(z, dtype=np.float64)
    factor = x_dsc(helbig_laplacian(z, dx), mean_squared_slope(z, dx))
    if coarse_cell is not None:
        mu_l, sigma, _ = coarse_statistics(z, dx, coarse_cell)
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = math.sqrt(2.0) * sigma / mu_l
        factor = factor * x_sgp(mu_l, xi, coarse_cell)
    return factor


class HelbigEngine(TableEngine):
    """Helbig et al. (2017) terrain speed factor as a (direction-independent) table engine.

    Parameters
    ----------
    coarse_cell : float, optional
        ``L`` in metres (``--coarse-cell``): also apply the subgrid factor ``x_sgp`` for a
        forcing that is the mean over a cell of that size (an NWP cell). Default: off, the
        table is ``x_dsc`` alone (the forcing is taken as the wind over flat ground).

    Notes
    -----
    ``acceleration`` is the same for all directions and ``alpha`` is 0 everywhere;
    ``edge_influence`` flags the outermost pixel ring (clamped Laplacian) and, with
    ``coarse_cell``, the pixels whose window is cut by the DEM's edge.
    """

    name = "helbig"
    title = "Helbig et al. (2017) terrain speed-up parameterisation (direction-independent)"
    citation = (
        "Helbig, N., Mott, R., van Herwijnen, A., Winstral, A. and Jonas, T., 2017: "
        "Parameterizing surface wind speed over complex topography. J. Geophys. Res. Atmos., "
        "122, 651-667, doi:10.1002/2016JD025593"
    )
    resume_keys = ("helbig_coarse_cell",)
    direction_independent = True

    def __init__(self, coarse_cell: float | None = None):
        if coarse_cell is not None:
            hint = (
                f"give the NWP cell size in metres, e.g. {option('coarse_cell', 2500)}, or "
                f"omit {option('coarse_cell')} for the fine-scale factor alone"
            )
            try:
                cell = float(coarse_cell)
            except (TypeError, ValueError):
                raise OptionError(
                    f"{option('coarse_cell', coarse_cell)}: expected a length in metres; {hint}"
                ) from None
            if not (math.isfinite(cell) and cell > 0):
                raise OptionError(
                    f"{option('coarse_cell', coarse_cell)}: expected a finite length in "
                    f"metres > 0; {hint}"
                )
            coarse_cell = cell
        self.coarse_cell = coarse_cell
        self._factor: np.ndarray | None = None
        self._edge: np.ndarray | None = None

    def bind(self, dem: xr.DataArray, window: TableWindow) -> None:
        """The speed factor of the whole DEM, kept for the window."""
        if {"y", "x"} <= set(dem.dims):
            dem = dem.transpose("y", "x")
        z = np.asarray(dem.values, dtype=np.float64)
        dx = abs(float(dem.x.values[1] - dem.x.values[0]))
        if self.coarse_cell is not None and self.coarse_cell < 2 * dx:
            raise OptionError(
                f"{option('coarse_cell', self.coarse_cell)}: the coarse cell must span at "
                f"least 2 DEM pixels ({2 * dx:g} m); give the NWP cell size in metres"
            )
        # The equations are symmetric under flips of the axes: no need to orient the DEM.
        factor = helbig_factor(z, dx, self.coarse_cell)
        edge = np.zeros(z.shape, dtype=bool)
        edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
        if self.coarse_cell is not None:
            edge |= coarse_statistics(z, dx, self.coarse_cell)[2]
        r, c = window.rows, window.cols
        self._factor = np.ascontiguousarray(factor[r, c], dtype=np.float32)
        self._edge = np.ascontiguousarray(edge[r, c], dtype=np.uint8)

    def static_variables(self) -> dict:
        """``edge_influence(y, x)``: 1 on the outermost pixel ring (clamped Laplacian) and,
        with a coarse cell, where its window is cut by the DEM's edge; else 0."""
        if self._edge is None:
            raise RuntimeError("HelbigEngine.bind() must be called first")
        comment = (
            "helbig engine: 1 on the DEM's outermost pixels, whose Laplacian uses the edge "
            "pixel for the missing neighbour"
        )
        if self.coarse_cell is not None:
            comment += ", and where the coarse-cell window is cut by the DEM's edge"
        return {
            "edge_influence": xr.DataArray(
                self._edge, dims=("y", "x"), attrs={"comment": comment + "; 0 elsewhere"}
            )
        }

    def batches(self, angles: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, dict]]:
        """Yield ``(ks, {"acceleration", "alpha"})``: the same factor for every direction,
        alpha 0; float32 arrays of shape (len(ks), ny, nx)."""
        if self._factor is None:
            raise RuntimeError("HelbigEngine.bind() must be called first")
        angles = np.asarray(angles, dtype=np.int64).ravel()
        batch = max(1, int(batch))
        for i in range(0, len(angles), batch):
            ks = angles[i : i + batch]
            acc = np.empty((len(ks), *self._factor.shape), np.float32)
            acc[...] = self._factor
            yield ks, {"acceleration": acc, "alpha": np.zeros_like(acc)}

    def attrs(self) -> dict:
        """Engine attributes (coefficients, coarse cell, direction independence)."""
        return {
            "engine": self.name,
            "engine_title": self.title,
            "engine_citation": self.citation,
            "helbig_coarse_cell": (
                "none (x_dsc only)" if self.coarse_cell is None else float(self.coarse_cell)
            ),
            "helbig_dsc_coefficients": "a, b, c, d, e = "
            + ", ".join(f"{v:g}" for v in DSC_COEFFICIENTS),
            "helbig_sgp_coefficients": "a', b', c', d' = "
            + ", ".join(f"{v:g}" for v in SGP_COEFFICIENTS),
            "helbig_direction_dependence": _DIRECTION_NOTE,
        }
