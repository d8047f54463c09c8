"""The correction table: its variables, attributes, reading it back, and the rules to resume.

One format for every engine (docs/method.md §8):

- ``acceleration(angle, y, x)``: speed ratio (1), downscaled speed = acceleration x inflow speed;
- ``alpha(angle, y, x)``: deflection in radians, > 0 = flow turned to the left
  (downscaled FROM direction = inflow FROM direction - degrees(alpha));
- ``vertical(angle, y, x)`` (engines that give it): vertical wind / inflow speed (1);
- ``elevation(y, x)``: the DEM on the table grid (m);
- ``angle``: FROM direction of the uniform inflow, whole degrees clockwise from the DEM's
  **grid** north; ``x``/``y`` and a CF grid mapping ``spatial_ref`` for the DEM's CRS.

NaN is the only "no data" marker. Global attributes record the engine (``engine``,
``engine_title``, ``engine_citation`` and one attribute per parameter), the DEM
(``dem_source``, ``dem_fingerprint``, ``resolution``), ``software`` and ``history``.
"""

from __future__ import annotations

import datetime as _dt
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr
from pyproj import CRS

from devine_onnx._version import __version__
from devine_onnx.errors import OptionError, TableError, first_line
from devine_onnx.io.cf import grid_mapping_crs
from devine_onnx.io.dem import dem_fingerprint

__all__ = [
    "VARIABLE_ATTRS",
    "alpha_in_degrees",
    "mismatches",
    "open_table",
    "synthetic_note",
    "table_crs",
    "table_template",
]

#: CF attributes of the table variables.
VARIABLE_ATTRS = {
    "acceleration": {
        "long_name": "wind speed ratio (downscaled speed / uniform inflow speed)",
        "units": "1",
        "comment": "downscaled speed = acceleration[k] * NWP wind speed, k = round(from-direction)",
        "grid_mapping": "spatial_ref",
    },
    "alpha": {
        "long_name": "wind direction deviation",
        "units": "radian",
        "comment": (
            "angle between the downscaled wind and the inflow; positive = flow turned to the "
            "left (counter-clockwise): downscaled from-direction = from-direction - "
            "degrees(alpha)"
        ),
        "grid_mapping": "spatial_ref",
    },
    "vertical": {
        "long_name": "vertical wind ratio (upward wind / uniform inflow speed)",
        "units": "1",
        "comment": "downscaled upward_air_velocity = vertical[k] * NWP wind speed",
        "grid_mapping": "spatial_ref",
    },
    # Direction-independent quality flag of the devine engine (docs/method.md §9.1).
    "edge_influence": {
        "long_name": "value influenced by the edge of the DEM or of the computed window",
        "units": "1",
        "flag_values": [0, 1],
        "flag_meanings": "clean edge_influenced",
        "comment": (
            "1 where, for at least one of the 360 directions, the value depended on terrain "
            "outside the DEM (the rotation fill, within the sliding-mean box and the UNet's "
            "receptive field) or on the zero padding at the edge of the crop, and where the "
            "table has no value; 0 where every direction's value depends on the DEM alone"
        ),
        "grid_mapping": "spatial_ref",
    },
}
_ANGLE_ATTRS = {
    "long_name": "inflow wind from-direction (table index k)",
    "units": "degree",
    "comment": (
        "meteorological FROM direction of the uniform inflow, in degrees clockwise from the "
        "DEM's grid north (+y axis); 270 = wind from the west (DEM not rotated). Grid north "
        "differs from true north by the meridian convergence of the projection"
    ),
}
#: Attributes (besides the engine's own) that must match to resume a partial table.
_RESUME_KEYS = ("engine", "dem_fingerprint", "value_precision", "target_bounds", "software")


def table_template(
    dem: xr.DataArray,
    window,
    angles: np.ndarray,
    engine_attrs: dict,
    *,
    dtype: str,
    notes: list[str],
    bounds=None,
    target=None,
    static: dict | None = None,
) -> xr.Dataset:
    """Everything of a table but its per-direction variables (see :mod:`.writers`).

    Parameters
    ----------
    dem : xarray.DataArray
        The prepared DEM (see :func:`devine_onnx.io.dem.load_dem`).
    window : devine_onnx.engines.base.TableWindow
        The DEM rows/columns the table covers.
    angles : numpy.ndarray
        Table directions (degrees).
    engine_attrs : dict
        :meth:`~devine_onnx.engines.base.TableEngine.attrs` of the engine.
    dtype : {"float32", "float16"}
        Value precision recorded in ``value_precision``.
    notes : list of str
        What was changed on the way (stored in ``notes``).
    bounds, target
        The target bounds and what the user gave for them, when given.
    static : dict, optional
        Direction-independent ``(y, x)`` arrays of the engine
        (:meth:`~devine_onnx.engines.base.TableEngine.static_variables`), written like
        ``elevation`` with the attributes of :data:`VARIABLE_ATTRS`.
    """
    crop = dem.isel(y=window.rows, x=window.cols)
    ds = xr.Dataset(
        {"elevation": crop.drop_vars("spatial_ref", errors="ignore")},
        coords={"angle": ("angle", np.asarray(angles).astype(np.int32), dict(_ANGLE_ATTRS))},
    )
    ds["elevation"].attrs = {
        "long_name": "terrain elevation (the DEM on the table grid)",
        "standard_name": "surface_altitude",
        "units": "m",
        "grid_mapping": "spatial_ref",
    }
    ds.x.attrs = {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}
    ds.y.attrs = {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}
    ds = ds.rio.write_crs(dem.rio.crs, grid_mapping_name="spatial_ref")
    # rioxarray puts grid_mapping in the encoding, which an explicit encoding at writing
    # time replaces: keep it as a plain attribute instead.
    ds["elevation"].encoding.pop("grid_mapping", None)
    ds["elevation"].attrs["grid_mapping"] = "spatial_ref"
    for name, values in (static or {}).items():
        ds[name] = (("y", "x"), np.asarray(values), dict(VARIABLE_ATTRS.get(name, {})))
    res = abs(float(dem.x.values[1] - dem.x.values[0]))
    attrs = {
        "title": f"Wind correction table ({engine_attrs.get('engine_title', '')})",
        "Conventions": "CF-1.8",
        "software": f"devine-onnx {__version__}",
        **engine_attrs,
        "dem_source": str(dem.attrs.get("source", "")),
        "dem_fingerprint": dem_fingerprint(dem),
        "dem_shape": [int(n) for n in dem.shape],
        "resolution": float(res),
        "value_precision": (
            "float16 (values rounded to float16 precision as the original, stored as float32)"
            if dtype == "float16"
            else "float32"
        ),
    }
    if bounds is not None:
        attrs["target_bounds"] = [float(b) for b in bounds]
        if target is not None and not isinstance(target, xr.DataArray | xr.Dataset):
            if isinstance(target, str) or hasattr(target, "__fspath__"):
                attrs["target_source"] = str(target)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs["history"] = (
        f"{now}: devine-onnx {__version__} compute_corrections "
        f"(engine={engine_attrs.get('engine')}, dem={attrs['dem_source'] or 'in memory'}, "
        f"{len(angles)} directions)"
    )
    attrs["notes"] = "\n".join(notes)
    ds.attrs = attrs
    return ds


def mismatches(state: dict, template: xr.Dataset, engine_keys=()) -> list[str]:
    """What differs between a partial table (``state``) and the table about to be written.

    Returns
    -------
    list of str
        One short phrase per difference (empty: the partial table can be resumed).
    """
    attrs = state["attrs"]
    out = []
    for key in (*_RESUME_KEYS, *engine_keys):
        a, b = attrs.get(key), template.attrs.get(key)
        if a is None and b is None:
            continue
        if a is None or b is None or not _equal(a, b):
            out.append(f"{key} ({_short(a)} there, {_short(b)} now)")
    if not np.array_equal(np.asarray(state["records"]), template.angle.values):
        out.append(
            f"angles ({len(state['records'])} there, {template.sizes['angle']} now)"
            if len(state["records"]) != template.sizes["angle"]
            else "angles (other directions)"
        )
    shape = (template.sizes["y"], template.sizes["x"])
    if tuple(state["shape"]) != shape:
        out.append(f"table shape ({state['shape']} there, {shape} now)")
    done = attrs.get("directions_done")
    if done is None or not 0 <= int(done) <= template.sizes["angle"]:
        out.append("no progress marker (not a partial table)")
    return out


def _equal(a, b) -> bool:
    if isinstance(b, list | tuple) or isinstance(a, list | tuple | np.ndarray):
        try:
            return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
        except (TypeError, ValueError):
            return False
    if isinstance(b, float):
        try:
            return float(a) == b
        except (TypeError, ValueError):
            return False
    return str(a) == str(b)


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:12] + "..." + text[-8:]


# --- reading a table -----------------------------------------------------------------------


def table_crs(table: xr.Dataset, label: str = "correction table") -> CRS:
    """CRS of a correction table (rioxarray grid mapping, ``spatial_ref``/``crs_wkt``).

    Raises
    ------
    TableError
        If the table has no readable CRS.
    """
    crs = grid_mapping_crs(table, "acceleration")
    if crs is None:
        raise TableError(
            f"{label}: no CRS (expected a spatial_ref grid mapping variable with crs_wkt); "
            "write it with ds.rio.write_crs(...) or recompute the table"
        )
    return crs


@contextmanager
def small_hdf5_chunk_cache(size: int = 1 << 20):
    """Open NetCDF files with a small HDF5 chunk cache (default: 64 MB per variable).

    The table is read once, chunk by chunk, so a cache only costs memory. The setting is
    process-wide in netCDF-C: it is restored on exit.
    """
    try:
        import netCDF4

        old = netCDF4.get_chunk_cache()
        netCDF4.set_chunk_cache(size, 31, 1.0)
    except Exception:  # noqa: BLE001 - optional optimisation
        yield
        return
    try:
        yield
    finally:
        netCDF4.set_chunk_cache(*old)


def open_table(source) -> xr.Dataset:
    """Open and validate a correction table.

    Parameters
    ----------
    source : str, os.PathLike or xarray.Dataset
        NetCDF file, Zarr store or Dataset with ``acceleration(angle, y, x)``,
        ``alpha(angle, y, x)`` (radians; ``units`` "degree" is converted), 1-D ``angle``
        (FROM direction, degrees clockwise from grid north, strictly ascending in [0, 360)),
        ``x``/``y`` coordinates in CRS units and a CRS (rioxarray ``spatial_ref``).

    Returns
    -------
    xarray.Dataset
        The table, lazily opened for files, with ``acceleration`` and ``alpha`` transposed to
        ``(angle, y, x)``. ``encoding["source"]`` names the file.

    Raises
    ------
    TableError
        Missing file, unreadable file, missing variables/coordinates or CRS; the message
        names the file.
    """
    if isinstance(source, xr.Dataset):
        ds = source
        label = str(ds.encoding.get("source") or "correction table (in memory)")
    elif isinstance(source, str | os.PathLike):
        p = Path(source)
        label = str(p)
        if not p.exists():
            raise TableError(f"{p}: correction table not found; check the path")
        is_zarr = p.is_dir() or p.suffix.lower() == ".zarr"
        try:
            if is_zarr:
                ds = xr.open_dataset(p, engine="zarr", chunks=None)
            else:
                with small_hdf5_chunk_cache():
                    ds = xr.open_dataset(p, engine="netcdf4", chunks=None)
        except Exception as exc:  # noqa: BLE001 - any reader failure: not a table
            raise TableError(
                f"{p}: cannot be read as a {'Zarr' if is_zarr else 'NetCDF'} correction table "
                f"({type(exc).__name__}: {first_line(exc)}); give a table written by "
                "devine-onnx"
            ) from None
        ds.encoding.setdefault("source", str(p))
    else:
        raise OptionError(
            f"table of type {type(source).__name__}: expected a file path or an xarray.Dataset"
        )
    missing = [n for n in ("acceleration", "alpha") if n not in ds.data_vars]
    missing += [n for n in ("angle", "y", "x") if n not in ds.coords]
    if missing:
        raise TableError(
            f"{label}: not a correction table, missing {', '.join(missing)} (variables: "
            f"{', '.join(map(str, ds.variables)) or 'none'}); give a table written by devine-onnx"
        )
    for name in ("acceleration", "alpha"):
        if set(ds[name].dims) != {"angle", "y", "x"}:
            raise TableError(
                f"{label}: {name} has dimensions {tuple(ds[name].dims)}, expected "
                "(angle, y, x); give a table written by devine-onnx"
            )
    for name in ("angle", "y", "x"):
        if ds[name].ndim != 1:
            raise TableError(f"{label}: coordinate {name} must be 1-D")
    angles = np.asarray(ds["angle"].values, dtype=np.float64)
    if (
        not np.all(np.isfinite(angles))
        or angles.min() < 0
        or angles.max() >= 360
        or (angles.size > 1 and not np.all(np.diff(angles) > 0))
    ):
        raise TableError(
            f"{label}: angle coordinate must be strictly ascending in [0, 360) degrees "
            f"(found {angles.min():g}..{angles.max():g}, {angles.size} values)"
        )
    table_crs(ds, label)
    ds = ds.assign(
        acceleration=ds["acceleration"].transpose("angle", "y", "x"),
        alpha=ds["alpha"].transpose("angle", "y", "x"),
    )
    return ds


def alpha_in_degrees(table: xr.Dataset) -> bool:
    return str(table["alpha"].attrs.get("units", "")).lower().startswith("deg")


def synthetic_note(attrs: dict) -> str | None:
    """The table's comment when it says the model weights are synthetic."""
    comment = str(attrs.get("comment", ""))
    flagged = any(
        "synthetic" in str(k).lower() and str(v).lower() not in ("0", "false", "no", "")
        for k, v in attrs.items()
    )
    if "synthetic" in comment.lower():
        return comment
    if flagged:
        return comment or "the correction table was computed with synthetic model weights"
    return None
