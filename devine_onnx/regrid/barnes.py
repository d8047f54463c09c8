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
millions of pixels), and the time steps that share the same set of valid stations share
their weights (one matrix product per block). Distances are Euclidean in the coordinates
given (a projected CRS, metres).
"""

from __future__ import annotations

import math

import numpy as np

from devine_onnx.errors import OptionError, option

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
#: Pixel x station weights held at once (float64: ~32 MB per weight matrix).
MAX_BLOCK_ELEMENTS = 4_000_000


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
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise OptionError(f"{option(name, value)}: expected a positive number")
    return v


def _normalised(d2: np.ndarray, kappa: float) -> np.ndarray:
    """Gaussian weights ``exp(-d² / kappa)`` normalised along the last axis (no underflow)."""
    w = np.exp(-(d2 - d2.min(axis=-1, keepdims=True)) / kappa)
    w /= w.sum(axis=-1, keepdims=True)
    return w


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
    out = np.full((rows.shape[0], gy.size, gx.size), np.nan, dtype=dtype)
    valid = np.isfinite(rows)
    masks, group = np.unique(valid, axis=0, return_inverse=True)
    group = np.asarray(group).ravel()
    for g, mask in enumerate(masks):
        sel = np.flatnonzero(group == g)
        n = int(mask.sum())
        if n == 0:
            continue
        v = rows[np.ix_(sel, np.flatnonzero(mask))]  # (steps, n)
        if n == 1:
            out[sel] = v[:, :1, None].astype(dtype)
            continue
        dn = spacing if spacing is not None else station_spacing(area, n)
        kappa1 = weight_parameter(dn, kappa_star)
        kappa2 = gamma * kappa1
        sx, sy = xs[mask], ys[mask]
        d2s = (sx[:, None] - sx[None, :]) ** 2 + (sy[:, None] - sy[None, :]) ** 2
        residual = v - v @ _normalised(d2s, kappa1).T  # misfit of the first pass at stations
        _analyse_grid(out, sel, v, residual, sx, sy, gx, gy, kappa1, kappa2, max_elements)
    return out.reshape(lead + (gy.size, gx.size))


def _analyse_grid(out, sel, v, residual, sx, sy, gx, gy, kappa1, kappa2, max_elements):
    """Both passes on the grid, by blocks of rows, for the steps ``sel`` of ``out``."""
    n = sx.size
    nx = gx.size
    rows_per_block = max(1, int(max_elements) // max(1, nx * n))
    dx2 = (gx[:, None] - sx[None, :]) ** 2  # (nx, n)
    for r0 in range(0, gy.size, rows_per_block):
        r1 = min(gy.size, r0 + rows_per_block)
        d2 = (dx2[None, :, :] + ((gy[r0:r1, None] - sy[None, :]) ** 2)[:, None, :]).reshape(-1, n)
        first = v @ _normalised(d2, kappa1).T  # (steps, pixels)
        first += residual @ _normalised(d2, kappa2).T
        out[sel, r0:r1, :] = first.reshape(len(sel), r1 - r0, nx)
