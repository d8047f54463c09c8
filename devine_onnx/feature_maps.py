"""The devine-torch input features of a DEM, as a georeferenced dataset (``devine-onnx features``).

Application layer: reads the DEM (:func:`devine_onnx.io.dem.load_dem`), computes the terrain
features with the engine's kernels (:mod:`devine_onnx.engines.terrain_features`) and writes a
CF NetCDF file that GIS software (QGIS, GDAL) opens with the DEM's projection. Engines never
read or write files; this module does it for them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from devine_onnx.engines.features import (
    FeatureNetwork,
    check_dem_size,
    interior_and_orientation,
)
from devine_onnx.engines.terrain_features import (
    COARSE_CELL,
    FRAME,
    NetworkInput,
    direction_features,
    terrain_geometry,
)
from devine_onnx.errors import OptionError, OutputError, option

__all__ = ["compute_features"]

#: NetCDF suffixes the features are written to.
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")


def compute_features(
    dem,
    angles,
    *,
    output=None,
    coarse_cell: float | None = None,
    model=None,
    normalised: bool = False,
    fill_nodata: bool = False,
    dem_crs=None,
) -> xr.Dataset:
    """The features of a DEM for uniform inflow directions, in devine-torch's channel order.

    Parameters
    ----------
    dem
        DEM file or DataArray (see :func:`devine_onnx.load_dem`), with its 2-cell frame.
    angles
        Inflow FROM directions in degrees clockwise from grid north.
    output
        NetCDF file to write (optional, ``.nc``): CF conventions, the DEM's grid mapping
        (``spatial_ref``) and projected ``y``/``x`` coordinates in metres, so that QGIS or GDAL
        place it on the map (one band per direction).
    coarse_cell
        Coarse cell of reldem in metres (default: the model's, else 1000).
    model
        Optional feature-network model: its coarse cell default, training resolution
        (warning) and normalisation.
    normalised
        Write the normalised network input (float32) instead of the raw features: exactly
        what the table engine and per-step downscaling give the network
        (:class:`~devine_onnx.engines.terrain_features.NetworkInput`, equal to normalising
        the raw features within float32 rounding).
    fill_nodata, dem_crs
        As for :func:`devine_onnx.load_dem` (``dem_crs``: CRS of a DEM file without one).

    Returns
    -------
    xarray.Dataset
        ``deflLis`` (1), ``reldem`` (m) and ``ydsc`` (1) on ``(n, y, x)`` (variables in
        devine-torch's channel order, reldem repeated for each n), float64 (float32 if
        ``normalised``), with ``angle(n)`` (degrees), the ``x``/``y`` coordinates of the DEM
        without its frame and the DEM's CRS (``spatial_ref`` grid mapping).
    """
    from devine_onnx.io.cf import write_grid_mapping
    from devine_onnx.io.dem import load_dem

    if output is not None and Path(output).suffix.lower() not in NETCDF_SUFFIXES:
        raise OutputError(f"{Path(output)}: features are written as NetCDF; use a .nc path")
    net = None
    if model is not None:
        net = model if isinstance(model, FeatureNetwork) else FeatureNetwork(model, "cpu", 1)
    if normalised and net is None:
        raise OptionError(
            f"{option('normalised')}: normalised features need the model "
            f"({option('model')}) for mean and std"
        )
    ang = np.atleast_1d(np.asarray(angles, dtype=np.float64))
    if ang.ndim != 1 or ang.size == 0 or not np.all(np.isfinite(ang)):
        raise OptionError(f"angles {angles!r}: expected one or more directions in degrees")
    da, notes = load_dem(dem, fill_nodata=fill_nodata, dem_crs=dem_crs)
    label = str(da.attrs.get("source", "DEM"))
    check_dem_size(da.shape, label)
    cc = coarse_cell if coarse_cell is not None else (net.coarse_cell if net else COARSE_CELL)
    z, cell, flip_y, flip_x = interior_and_orientation(da)
    if net is not None:
        net.check_resolution(cell, label)
    try:
        geom = terrain_geometry(z, cell, cc)
    except ValueError as exc:
        raise OptionError(f"{option('coarse_cell', cc)}: {exc}") from None
    if normalised:
        # exactly the input the table engine and per-step mode give the network
        x = NetworkInput(geom, net.mean, net.std).from_angles(ang)
        defl, rel, ydsc = x[:, 0], x[:, 1], x[:, 2]
    else:
        defl, ydsc = direction_features(geom, ang.reshape(-1, 1, 1))
        rel = np.broadcast_to(geom.reldem, defl.shape)

    def orient(a):
        return a[..., :: -1 if flip_y else 1, :: -1 if flip_x else 1]

    dims = ("n", "y", "x")
    kind = "normalised network input" if normalised else "terrain feature"
    x_attrs = {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}
    y_attrs = {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}
    ds = xr.Dataset(
        {
            "deflLis": (dims, orient(defl), {"long_name": f"diverting factor ({kind})"}),
            "reldem": (dims, orient(np.array(rel)), {"long_name": f"relative DEM ({kind})"}),
            "ydsc": (dims, orient(ydsc), {"long_name": f"vertical wind factor ({kind})"}),
        },
        coords={
            "n": ("n", np.arange(ang.size)),
            "angle": (
                "n",
                ang,
                {
                    "units": "degree",
                    "long_name": "inflow FROM direction, clockwise from grid north",
                },
            ),
            "x": ("x", np.asarray(da.x.values[FRAME:-FRAME], dtype=np.float64), x_attrs),
            "y": ("y", np.asarray(da.y.values[FRAME:-FRAME], dtype=np.float64), y_attrs),
        },
        attrs={
            "title": "devine-torch input features computed by devine-onnx",
            "Conventions": "CF-1.8",
            "source": label,
            "cell_size": cell,
            "coarse_cell": float(cc),
            "coarse_block_cells": geom.numb,
            "frame": f"{FRAME} cells removed around the DEM",
            "normalised": "true" if normalised else "false",
            "notes": "; ".join(notes),
        },
    )
    if not normalised:
        ds["reldem"].attrs["units"] = "m"
        ds["deflLis"].attrs["units"] = "1"
        ds["ydsc"].attrs["units"] = "1"
    crs = da.rio.crs
    if crs is not None:
        ds = write_grid_mapping(ds, crs)
    if output is not None:
        from devine_onnx.io._dask_probe import no_distributed_probe
        from devine_onnx.io.atomic import atomic_output

        with atomic_output(Path(output)) as tmp, no_distributed_probe():
            ds.to_netcdf(tmp, engine="netcdf4")  # no dask.distributed import (start-up)
    return ds
