"""Re-implementation of the seed scripts' downscaling algorithm: the baseline to beat (issue 4).

Written from the description in docs/method.md §5-§6 (not copied from the seed). It is kept only to
time it and measure its memory next to :func:`devine_onnx.downscaling.api.downscale`; its results
are NOT correct and nothing else may use it:

- the Delaunay coefficients are computed in a Python loop over every table pixel
  (``find_simplex`` and a barycentric solve per point); a pixel outside the hull silently
  reuses the previous pixel's triangle (extrapolation, docs/method.md §6.4);
- the wind is interpolated one time step at a time, then the whole ``(time, y, x)`` series of
  ``u`` and ``v`` is held in an xarray Dataset, in float64;
- speed and the TO direction (the 180° bug of docs/method.md §6.1, kept: it costs the same as the
  FROM direction) are computed in xarray over the whole series;
- the table is applied in 360 passes of ``xr.where`` over the whole series, one per angle,
  for acceleration and for alpha;
- the result is written with ``Dataset.to_netcdf`` (no compression).

No meridian-convergence rotation (docs/method.md §6.3). The NWP coordinates are taken as WGS 84
(the seed's EPSG:4324 mix-up of §6.2 changes nothing to the cost).

Run ``python -m tests.benchmarks.bench_downscale`` to compare it with devine-onnx.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from pyproj import Transformer
from scipy.spatial import Delaunay

__all__ = ["seed_downscale", "seed_interpolate", "seed_lookup", "seed_weights"]


def seed_weights(lon, lat, x, y, table_crs, nwp_crs="EPSG:4326"):
    """Delaunay vertices and barycentric coefficients, one table pixel at a time.

    Parameters
    ----------
    lon, lat : array_like
        1-D NWP axes (degrees).
    x, y : array_like
        1-D table axes (metres in ``table_crs``).

    Returns
    -------
    vertices : numpy.ndarray
        ``(ny * nx, 3)`` indices into the flattened ``(lat, lon)`` NWP grid.
    coefs : numpy.ndarray
        ``(ny * nx, 3)`` float64 barycentric coefficients (extrapolated outside the hull).
    """
    glon, glat = np.meshgrid(np.asarray(lon, float), np.asarray(lat, float))
    to_table = Transformer.from_crs(nwp_crs, table_crs, always_xy=True)
    px, py = to_table.transform(glon.ravel(), glat.ravel())
    tri = Delaunay(np.column_stack([px, py]))
    gx, gy = np.meshgrid(np.asarray(x, float), np.asarray(y, float))
    vertices = []
    coefs = []
    last = tri.simplices.shape[0] - 1
    for xp, yp in zip(gx.ravel(), gy.ravel(), strict=True):
        point = np.array([xp, yp])
        simplex = int(tri.find_simplex(point))
        if simplex == -1:
            simplex = last  # outside the hull: silently reuse the previous triangle
        last = simplex
        transform = tri.transform[simplex]
        b = transform[:2].dot(point - transform[2])
        coefs.append(np.array([b[0], b[1], 1.0 - b[0] - b[1]]))
        vertices.append(tri.simplices[simplex])
    return np.array(vertices), np.array(coefs)


def seed_interpolate(field: xr.DataArray, vertices, coefs, x, y) -> xr.DataArray:
    """Interpolate ``field(time, lat, lon)`` to the table grid, one time step at a time.

    Returns a float64 ``(time, y, x)`` DataArray.
    """
    ny, nx = len(y), len(x)
    steps = []
    for t in range(field.sizes["time"]):
        values = np.asarray(field.isel(time=t).values, dtype=np.float64).ravel()
        steps.append((values[vertices] * coefs).sum(axis=1).reshape(ny, nx))
    return xr.DataArray(
        np.stack(steps),
        dims=("time", "y", "x"),
        coords={"time": field["time"].values, "y": np.asarray(y), "x": np.asarray(x)},
    )


def seed_lookup(u: xr.DataArray, v: xr.DataArray, table: xr.Dataset) -> xr.Dataset:
    """Apply the table to the whole series with 360 ``xr.where`` passes per variable.

    ``u`` and ``v`` are ``(time, y, x)`` on the table's ``x``/``y``; ``table`` has
    ``acceleration`` and ``alpha`` ``(angle, y, x)`` for angles 0..359 (in memory).
    """
    ds = xr.Dataset({"u": u, "v": v})
    ds["speed"] = np.sqrt(ds.u**2 + ds.v**2)
    # The seed's direction is the TO direction (docs/method.md §6.1): wrong, but it costs the same.
    ds["direction"] = np.mod(np.degrees(np.arctan2(ds.u, ds.v)), 360)
    direction_index = np.mod(np.round(ds.direction), 360).astype(np.int64)
    acc_out = xr.full_like(ds.speed, np.nan)
    alpha_out = xr.full_like(ds.speed, np.nan)
    for k in range(table.sizes["angle"]):
        acc_out = xr.where(
            direction_index == k, table.acceleration.isel(angle=k) * ds.speed, acc_out
        )
        alpha_out = xr.where(direction_index == k, table.alpha.isel(angle=k), alpha_out)
    direction_out = np.mod(ds.direction - np.degrees(alpha_out), 360)
    rad = np.radians(direction_out)
    return xr.Dataset(
        {
            "speed": acc_out,
            "direction": direction_out,
            "u": acc_out * np.sin(rad),
            "v": acc_out * np.cos(rad),
        }
    )


def seed_downscale(nwp, table, output, *, u_var="u10", v_var="v10", table_crs="EPSG:2154"):
    """The whole seed workflow: weights, per-step interpolation, 360-pass lookup, NetCDF.

    ``nwp`` and ``table`` are Datasets or file paths (the table is loaded into memory, as the
    seed did).
    """
    if not isinstance(nwp, xr.Dataset):
        nwp = xr.open_dataset(nwp)
    if not isinstance(table, xr.Dataset):
        table = xr.open_dataset(table)
    table = table[["acceleration", "alpha"]].load()
    x = table["x"].values
    y = table["y"].values
    vertices, coefs = seed_weights(nwp["longitude"].values, nwp["latitude"].values, x, y, table_crs)
    u = seed_interpolate(nwp[u_var], vertices, coefs, x, y)
    v = seed_interpolate(nwp[v_var], vertices, coefs, x, y)
    result = seed_lookup(u, v, table)
    result.to_netcdf(output)
    return result
