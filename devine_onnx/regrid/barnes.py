"""Barnes objective analysis: scattered station values to a regular grid (arrays in, arrays out).

The two-pass scheme of Koch, desJardins and Kocin (1983), as MicroMet uses it in SnowModel
(docs/method.md, "Winds from weather stations"):

1. First pass: at every grid point, a Gaussian-weighted mean of the station values,
   ``g0 = sum(w_k f_k) / sum(w_k)`` with ``w_k = exp(-d_k² / kappa)`` (``d_k``: distance to
   station ``k``). The weight parameter follows from the mean station spacing ``dn``:
   ``kappa = KAPPA_STAR (2 dn / pi)²`` with ``KAPPA_STAR = 5.052``.
2. The first pass is evaluated at the stations too (same weights, station to station); its
   misfits ``f_k - g0(station k)`` are then analysed with the narrower weight parameter
   ``gamma kappa`` (``gamma = 0.2``, SnowModel's value) and added:
   ``g = g0 + sum(w'_k r_k) / sum(w'_k)``.

``dn`` is SnowModel's: the mean of the spacing of ``N`` stations spread evenly over the grid
area ``A`` (``sqrt(A / N)``) and Koch et al.'s spacing for randomly placed stations
(``sqrt(A) (1 + sqrt(N)) / (N - 1)``); it can be given instead (:func:`station_spacing`).

Each pixel's weights are normalised after subtracting the smallest ``d²`` of that pixel, which
leaves the weighted mean unchanged and keeps it defined however far the pixel lies from every
station (far away, the nearest stations dominate). SnowModel instead switches to ``1/d²``
weights beyond the distance where the Gaussian weight falls below 1e-30, about 12 station
spacings (first pass) and 5 (second pass): the two differ only on pixels that far from every
station.

Everything is numpy: the grid is processed in blocks of pixels (bounded memory for grids of
millions of pixels), and the time steps that share the weight parameter (the same number of
valid stations, or a given spacing) share the Gaussian weights, missing stations being
masked in the sums (one matrix product per block for all those steps). Distances are
Euclidean in the coordinates given (a projected CRS, metres).
"""

from __future__ import annotations

import math

import numpy as np

from devine_onnx.errors import OptionError, number_option, option

__all__ = [
    "GAMMA",
    "KAPPA_STAR",
    "MAX_BLOCK_ELEMENTS",
    "barnes",
    "station_spacing",
    "weight_parameter",
]

#: Non-dimensional weight parameter of the first pass (Koch et al. 1983; SnowModel).
KAPPA_STAR = 5.052
#: Convergence parameter: second-pass weight parameter / first-pass one (SnowModel: 0.2).
GAMMA = 0.2
#: Pixel x station weights held at once (float64: ~8 MB per weight matrix).
MAX_BLOCK_ELEMENTS = 1_000_000


def station_spacing(area: float, n_stations: int) -> float:
    """Mean station spacing (m) that sets the filter, as SnowModel computes it.

    Parameters
    ----------
    area : float
        Area of the analysis grid in m² (the table's extent).
    n_stations : int
        Stations with a value (>= 2).

    Returns
    -------
    float
        ``0.5 * (sqrt(A / N) + sqrt(A) (1 + sqrt(N)) / (N - 1))``: the mean of the spacing of
        ``N`` evenly spread stations and Koch et al.'s (1983) spacing of ``N`` randomly placed
        ones.
    """
    n = int(n_stations)
    if n < 2:
        raise ValueError("the station spacing needs at least two stations")
    uniform = math.sqrt(area / n)
    random = math.sqrt(area) * (1.0 + math.sqrt(n)) / (n - 1)
    return 0.5 * (uniform + random)


def weight_parameter(spacing: float, kappa_star: float = KAPPA_STAR) -> float:
    """First-pass weight parameter ``kappa = kappa_star (2 dn / pi)²`` in m² (``dn`` in m)."""
    return float(kappa_star) * (2.0 * float(spacing) / math.pi) ** 2


def _check_positive(name: str, value) -> float:
    return number_option(name, value, "expected a positive number")


#: Sums of weights below this are recomputed with the weights of the row's own stations.
_TINY = 1e-250


def barnes(
    x_obs,
    y_obs,
    values,
    x,
    y,
    *,
    area: float | None = None,
    spacing: float | None = None,
    gamma: float = GAMMA,
    kappa_star: float = KAPPA_STAR,
    dtype=np.float32,
    max_elements: int = MAX_BLOCK_ELEMENTS,
) -> np.ndarray:
    """Two-pass Barnes analysis of station values on the grid ``y x x``.

    Parameters
    ----------
    x_obs, y_obs : array_like
        ``(n,)`` station coordinates (m, in the grid's projected CRS).
    values : array_like
        ``(..., n)`` station values, e.g. ``(time, n)`` wind components in m/s; NaN marks a
        missing value: that station drops out of that row only.
    x, y : array_like
        1-D grid coordinates ``(nx,)`` and ``(ny,)`` (m).
    area : float, optional
        Grid area in m² for the station spacing (:func:`station_spacing`), computed for each
        row from its number of valid stations. Required unless ``spacing`` is given.
    spacing : float, optional
        Mean station spacing ``dn`` in m (overrides the one from ``area``).
    gamma : float
        Convergence parameter of the second pass, in (0, 1] (default 0.2).
    kappa_star : float
        Non-dimensional first-pass weight parameter (default 5.052).
    dtype
        Output dtype (the analysis is computed in float64).
    max_elements : int
        Pixel x station weights computed at once (memory bound).

    Returns
    -------
    numpy.ndarray
        ``(..., ny, nx)``: the analysis; a row with one valid station is that value
        everywhere, a row without any is NaN.

    Notes
    -----
    Rows that share the weight parameter (the same number of valid stations, or a given
    ``spacing``) share the Gaussian weights of every pixel: missing stations are masked in
    the weighted sums (one matrix product per block of pixels for all those rows).
    """
    xs = np.asarray(x_obs, dtype=np.float64).ravel()
    ys = np.asarray(y_obs, dtype=np.float64).ravel()
    vals = np.asarray(values, dtype=np.float64)
    if vals.shape[-1:] != xs.shape or ys.shape != xs.shape:
        raise ValueError(
            f"values {vals.shape} must end with the number of stations ({xs.size}, {ys.size})"
        )
    gx = np.asarray(x, dtype=np.float64).ravel()
    gy = np.asarray(y, dtype=np.float64).ravel()
    gamma = _check_positive("gamma", gamma)
    if gamma > 1:
        raise OptionError(f"{option('gamma', gamma)}: expected a value in (0, 1]")
    if spacing is not None:
        spacing = _check_positive("barnes_spacing", spacing)
    elif area is None:
        raise ValueError("give the grid area or the station spacing")
    lead = vals.shape[:-1]
    rows = vals.reshape(-1, xs.size)
    out = np.full((rows.shape[0], gy.size * gx.size), np.nan, dtype=dtype)
    valid = np.isfinite(rows)
    count = valid.sum(axis=1)
    one = np.flatnonzero(count == 1)
    if one.size:
        out[one] = rows[one, np.argmax(valid[one], axis=1)][:, None].astype(dtype)
    several = count >= 2
    keys = np.where(several, 0 if spacing is not None else count, -1)
    for key in np.unique(keys[several]):
        sel = np.flatnonzero(keys == key)
        dn = spacing if spacing is not None else station_spacing(area, int(key))
        kappa1 = weight_parameter(dn, kappa_star)
        _analyse(out, sel, rows, valid, xs, ys, gx, gy, kappa1, gamma * kappa1, max_elements)
    return out.reshape(lead + (gy.size, gx.size))


def _two_pass(px, py, sx, sy, v, m, kappa1, kappa2):
    """First-pass estimate and second-pass weights at points ``(px, py)``.

    ``v`` ``(g, k)``: values, 0 where the mask ``m`` is 0. The weights are shifted by each
    point's nearest of the ``k`` stations. Returns ``(first, den2, e2, ok)``: the first pass
    ``(g, P)``, the sums of second-pass weights ``(g, P)``, those weights ``(P, k)``, and
    ``ok`` False where a sum of weights is too small to trust (the nearest stations missing
    in that row).
    """
    d2 = (px[:, None] - sx[None, :]) ** 2 + (py[:, None] - sy[None, :]) ** 2  # (P, k)
    d2 -= d2.min(axis=1, keepdims=True)
    e = np.exp(-d2 / kappa1)
    den1 = m @ e.T
    first = v @ e.T
    e = np.exp(-d2 / kappa2, out=e)  # second-pass weights, in the same memory
    den2 = m @ e.T
    ok = (den1 > _TINY) & (den2 > _TINY)
    with np.errstate(invalid="ignore", divide="ignore"):
        return first / den1, den2, e, ok


def _analyse(out, sel, rows, valid, xs, ys, gx, gy, kappa1, kappa2, max_elements):
    """Both passes on the grid for the rows ``sel`` of ``out`` ``(rows, ny * nx)``, which
    share the weight parameters."""
    union = valid[sel].any(axis=0)
    idx = np.flatnonzero(union)
    sx, sy = xs[idx], ys[idx]
    m = valid[np.ix_(sel, idx)].astype(np.float64)  # (g, k)
    v = np.where(m > 0, rows[np.ix_(sel, idx)], 0.0)
    # Misfit of the first pass at the stations (a valid station weighs itself by 1).
    d2s = (sx[:, None] - sx[None, :]) ** 2 + (sy[:, None] - sy[None, :]) ** 2
    es = np.exp(-d2s / kappa1)
    with np.errstate(invalid="ignore", divide="ignore"):
        at_stations = (v @ es.T) / (m @ es.T)
    residual = np.where(m > 0, v - at_stations, 0.0)
    nx = gx.size
    n_pix = gy.size * nx
    step = max(1, int(max_elements) // max(1, idx.size))
    for p0 in range(0, n_pix, step):
        p1 = min(n_pix, p0 + step)
        flat = np.arange(p0, p1)
        px, py = gx[flat % nx], gy[flat // nx]
        first, den2, e2, ok = _two_pass(px, py, sx, sy, v, m, kappa1, kappa2)
        with np.errstate(invalid="ignore", divide="ignore"):
            block = first + (residual @ e2.T) / den2
        if not ok.all():
            # Far from the stations of a row but near one missing in it: recompute with
            # the weights shifted by that row's own nearest station.
            for r in np.flatnonzero(~ok.all(axis=1)):
                bad = np.flatnonzero(~ok[r])
                c = np.flatnonzero(m[r])
                f, d2r, e2r, _ = _two_pass(
                    px[bad], py[bad], sx[c], sy[c], v[r : r + 1, c], m[r : r + 1, c],
                    kappa1, kappa2,
                )  # fmt: skip
                block[r, bad] = (f + (residual[r : r + 1, c] @ e2r.T) / d2r)[0]
        out[sel, p0:p1] = block
