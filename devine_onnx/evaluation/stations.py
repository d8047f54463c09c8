"""Model values at the stations: downscaled wind files and the raw NWP baseline.

- **Model value at a station**: the station's longitude/latitude are transformed (pyproj)
  into the output's CRS (its ``grid_mapping`` ``crs_wkt``); the value is that of the pixel
  containing the station (pixel edges half-way between centres), or with ``bilinear`` the
  bilinear interpolation of the four surrounding pixel centres (speed interpolated directly;
  direction from the interpolated wind vector; NaN if one of the corners is NaN).
  Grid-relative outputs (``--grid-relative``) are turned to true north with the meridian
  convergence at the station. Only the station pixels are read, in blocks of time steps of
  bounded memory.
- **NWP baseline**: the forecast's ``u``/``v`` are interpolated to the stations with the
  Delaunay (barycentric) interpolation of ``downscale`` (:class:`RegridWeights`); speed and
  direction come from the interpolated components.
- **Times**: a model file whose time axis repeats a time is refused (the pairing would take
  one of the two maps at random).

Each source is a :class:`ModelSource`: its times, which stations it covers and a reader of
the values at the stations for a set of time indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from pyproj import CRS, Transformer

from devine_onnx.errors import InputFileError, NWPError, first_line

__all__ = [
    "NWP_SOURCE",
    "READ_BLOCK_BYTES",
    "ModelSource",
    "nwp_source",
    "source_label",
    "source_stem",
    "unique_name",
    "wind_source",
]

#: Name of the NWP baseline source.
NWP_SOURCE = "nwp"
#: Bytes read at once from a wind file (a block of time steps of the stations' bounding box).
READ_BLOCK_BYTES = 64 << 20
_WIND_VARS = ("wind_speed", "wind_from_direction")
_ZARR_SUFFIXES = (".zarr",)


def _open_wind(source, label: str) -> tuple[xr.Dataset, bool]:
    """(dataset, read_by_slabs): NetCDF files are read by bounding-box slabs."""
    if isinstance(source, xr.Dataset):
        return source, False
    p = Path(source)
    if not p.exists():
        raise InputFileError(
            f"{label}: file not found; give a wind file written by 'devine-onnx downscale'"
        )
    is_zarr = p.is_dir() or p.suffix.lower() in _ZARR_SUFFIXES
    try:
        if is_zarr:
            ds = xr.open_dataset(p, engine="zarr", chunks=None)
        else:
            ds = xr.open_dataset(p, chunks=None)
    except Exception as exc:  # noqa: BLE001 - any reader failure means "not a wind file"
        raise InputFileError(
            f"{label}: cannot be read as NetCDF or Zarr ({type(exc).__name__}: "
            f"{first_line(exc)}); give a wind file written by 'devine-onnx downscale'"
        ) from None
    return ds, not is_zarr


def _wind_crs(ds: xr.Dataset, label: str) -> CRS:
    from devine_onnx.io.cf import grid_mapping_crs

    crs = grid_mapping_crs(ds, "wind_speed")
    if crs is not None:
        return crs
    raise InputFileError(
        f"{label}: no CRS (expected a grid_mapping variable 'spatial_ref' with crs_wkt, as "
        "'devine-onnx downscale' writes); give a downscaled output"
    )


def _check_unique_times(times: np.ndarray, label: str, error: type[Exception]) -> None:
    """Refuse a time axis that repeats a time (which of the two maps to pair is undefined)."""
    t = np.asarray(times).astype("datetime64[ns]")
    t = t[~np.isnat(t)]
    values, counts = np.unique(t, return_counts=True)
    repeated = values[counts > 1]
    if repeated.size:
        shown = ", ".join(str(np.datetime64(v, "s")).replace("T", " ") for v in repeated[:5])
        more = f" and {repeated.size - 5} more" if repeated.size > 5 else ""
        raise error(
            f"{label}: coordinate 'time' repeats {shown}{more} (UTC); each time must appear "
            "once: remove the duplicated time steps (e.g. ds.drop_duplicates('time'))"
        )


def _axis_positions(axis: np.ndarray, p: np.ndarray):
    """Fractional index of ``p`` along pixel centres ``axis`` and an inside-the-grid mask."""
    axis = np.asarray(axis, dtype=np.float64)
    n = axis.size
    reverse = axis[0] > axis[-1]
    a = axis[::-1] if reverse else axis
    lo = a[0] - 0.5 * (a[1] - a[0])
    hi = a[-1] + 0.5 * (a[-1] - a[-2])
    inside = np.isfinite(p) & (p >= lo) & (p <= hi)
    f = np.interp(np.where(np.isfinite(p), p, a[0]), a, np.arange(n, dtype=np.float64))
    return f, inside, reverse


def _corners(f: np.ndarray, n: int, reverse: bool, bilinear: bool):
    """Indices (original order) and weights of the 1 or 2 pixels used along one axis."""
    if not bilinear:
        k = np.floor(f + 0.5).astype(np.int64)
        k = np.minimum(k, n - 1)
        idx = (n - 1 - k) if reverse else k
        return idx[:, None], np.ones((f.size, 1))
    k0 = np.minimum(np.floor(f).astype(np.int64), n - 2)
    w1 = f - k0
    ks = np.stack([k0, k0 + 1], axis=1)
    idx = (n - 1 - ks) if reverse else ks
    return idx, np.stack([1.0 - w1, w1], axis=1)


@dataclass
class _Placement:
    """Pixels used for each station (``K`` = 1 containing pixel or 4 bilinear corners)."""

    inside: np.ndarray  # (n_station,) bool
    iy: np.ndarray  # (n_station, K) int
    ix: np.ndarray  # (n_station, K) int
    w: np.ndarray  # (n_station, K) float
    nearest_iy: np.ndarray  # (n_station,) containing pixel (altitude check)
    nearest_ix: np.ndarray
    gamma: np.ndarray | None = None  # grid-relative outputs: meridian convergence (degrees)


def _place(x_axis, y_axis, sx, sy, bilinear: bool) -> _Placement:
    fx, in_x, rev_x = _axis_positions(x_axis, sx)
    fy, in_y, rev_y = _axis_positions(y_axis, sy)
    cix, cwx = _corners(fx, len(x_axis), rev_x, bilinear)
    ciy, cwy = _corners(fy, len(y_axis), rev_y, bilinear)
    k = cix.shape[1]
    iy = np.repeat(ciy, k, axis=1)
    wy = np.repeat(cwy, k, axis=1)
    ix = np.tile(cix, (1, ciy.shape[1]))
    wx = np.tile(cwx, (1, cwy.shape[1]))
    nx_, _ = _corners(fx, len(x_axis), rev_x, False)
    ny_, _ = _corners(fy, len(y_axis), rev_y, False)
    return _Placement(in_x & in_y, iy, ix, wy * wx, ny_[:, 0], nx_[:, 0])


def _combine(speed: np.ndarray, direction: np.ndarray, w: np.ndarray):
    """Weighted speed and direction of K corners: arrays (T, n, K), weights (n, K)."""
    if w.shape[1] == 1:
        return speed[..., 0], direction[..., 0]
    from devine_onnx.wind import speed_dir_to_uv, uv_to_speed_dir

    used = w > 0
    missing = np.any(used & ~np.isfinite(speed), axis=-1)
    s = np.where(used, speed, 0.0)
    out_speed = np.where(missing, np.nan, (s * w).sum(axis=-1))
    u, v = speed_dir_to_uv(s, np.where(used, direction, 0.0))
    bad_dir = np.any(used & (speed > 0) & ~np.isfinite(direction), axis=-1)
    u = np.where(used, u, 0.0)
    v = np.where(used, v, 0.0)
    _, out_dir = uv_to_speed_dir((u * w).sum(axis=-1), (v * w).sum(axis=-1))
    out_dir = np.where(missing | bad_dir, np.nan, out_dir)
    return out_speed, out_dir


@dataclass
class ModelSource:
    """One source of model values at the stations (a wind file or the NWP)."""

    name: str
    label: str
    times: np.ndarray
    inside: np.ndarray  # stations with a model value location
    outside_reason: str
    reader: object  # callable(t_idx_block) -> (speed (T, n), direction (T, n))
    block: int
    elevation: np.ndarray | None = None  # (n_station,) model elevation at the stations
    kind: str = "wind"  # "wind" (a downscaled output) or "nwp" (the raw forecast)
    crs: CRS | None = None
    dataset: xr.Dataset | None = None  # opened here from a path: closed at the end

    def n_blocks(self, t_idx: np.ndarray) -> int:
        """Number of reads (blocks of at most :attr:`block` time steps) for these times."""
        return max(1, math.ceil(np.unique(t_idx).size / self.block))

    def values_at(self, idx, use, station_pos, advance=None) -> tuple[np.ndarray, np.ndarray]:
        """Model speed (m/s) and FROM direction (degrees) for each observation row.

        Parameters
        ----------
        idx : numpy.ndarray of int
            Per observation row, the index of its model time (−1: none).
        use : numpy.ndarray of bool
            Rows to read (time matched and station covered).
        station_pos : numpy.ndarray of int
            Per row, the index of its station in the station table.
        advance : callable, optional
            Called with 1 after each block read (progress bar).

        Returns
        -------
        speed, direction : numpy.ndarray
            One value per observation row, NaN for the rows not read or without a value.
        """
        need = np.unique(idx[use])
        model_s = np.full(idx.size, np.nan)
        model_d = np.full(idx.size, np.nan)
        pos = np.searchsorted(need, idx)
        rows = np.flatnonzero(use)
        for a in range(0, max(need.size, 1), self.block):
            b = min(a + self.block, need.size)
            if b > a:
                speed, direction = self.reader(need[a:b])
                r = rows[(pos[rows] >= a) & (pos[rows] < b)]
                model_s[r] = speed[pos[r] - a, station_pos[r]]
                model_d[r] = direction[pos[r] - a, station_pos[r]]
            if advance is not None:
                advance(1)
        return model_s, model_d


def unique_name(stem: str, taken: set[str]) -> str:
    name, k = stem, 2
    while name in taken:
        name = f"{stem}-{k}"
        k += 1
    taken.add(name)
    return name


def _warn_if_synthetic(ds: xr.Dataset, label: str) -> None:
    """Warn before reading when the output was computed with synthetic model weights."""
    from devine_onnx.synthetic import warn_synthetic
    from devine_onnx.tables.table import synthetic_note

    if synthetic_note(ds.attrs) is not None:
        engine = ds.attrs.get("table_engine", ds.attrs.get("engine"))
        warn_synthetic(
            label, made="the winds scored against the stations", engine=engine, stacklevel=4
        )


def wind_source(source, name, lon, lat, bilinear, label) -> ModelSource:
    ds, by_slab = _open_wind(source, label)
    for var in _WIND_VARS:
        if var not in ds.variables:
            raise InputFileError(
                f"{label}: no variable {var!r} (expected a 'devine-onnx downscale' output with "
                f"wind_speed and wind_from_direction on (time, y, x)); variables in the file: "
                f"{', '.join(map(str, ds.data_vars)) or 'none'}"
            )
        dims = set(ds[var].dims)
        if dims != {"time", "y", "x"}:
            raise InputFileError(
                f"{label}: variable {var!r} has dimensions {ds[var].dims}; expected "
                "(time, y, x) as written by 'devine-onnx downscale'"
            )
    times = np.asarray(ds["time"].values)
    if not np.issubdtype(times.dtype, np.datetime64):
        raise InputFileError(
            f"{label}: coordinate 'time' is not a date-time axis (found {times.dtype}); the "
            "observations can only be matched with CF times"
        )
    _check_unique_times(times, label, InputFileError)
    _warn_if_synthetic(ds, label)
    x = np.asarray(ds["x"].values, dtype=np.float64)
    y = np.asarray(ds["y"].values, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        raise InputFileError(f"{label}: grid of {y.size} x {x.size} pixels; at least 2 x 2 needed")
    crs = _wind_crs(ds, label)
    sx, sy = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(
        lon, lat, errcheck=False
    )
    sx, sy = np.asarray(sx, dtype=np.float64), np.asarray(sy, dtype=np.float64)
    place = _place(x, y, sx, sy, bilinear)
    frame = str(ds.attrs.get("wind_frame", ""))
    grid_relative = frame.startswith("grid-relative") or (
        "x_wind" in ds.variables and "eastward_wind" not in ds.variables
    )
    if grid_relative:
        from devine_onnx.wind import meridian_convergence

        place.gamma = meridian_convergence(sx, sy, crs)
    elevation = None
    if "elevation" in ds.variables and set(ds["elevation"].dims) == {"y", "x"}:
        elevation = np.full(lon.size, np.nan)
        inside = place.inside
        if inside.any():
            el = ds["elevation"].transpose("y", "x")
            elevation[inside] = el.isel(
                y=xr.DataArray(place.nearest_iy[inside], dims="station"),
                x=xr.DataArray(place.nearest_ix[inside], dims="station"),
            ).values

    speed_da = ds["wind_speed"].transpose("time", "y", "x")
    dir_da = ds["wind_from_direction"].transpose("time", "y", "x")
    sel = np.flatnonzero(place.inside)
    iy = place.iy[sel].ravel()
    ix = place.ix[sel].ravel()
    w = place.w[sel]
    n_in, k = w.shape if w.size else (0, place.w.shape[1])
    if iy.size:
        y0, y1, x0, x1 = int(iy.min()), int(iy.max()) + 1, int(ix.min()), int(ix.max()) + 1
    else:
        y0 = y1 = x0 = x1 = 0
    per_step = max(1, (y1 - y0) * (x1 - x0) if by_slab else iy.size) * 4 * 2
    block = max(1, READ_BLOCK_BYTES // per_step)
    gamma = place.gamma[sel] if place.gamma is not None else None

    def reader(t_idx: np.ndarray):
        t_idx = np.asarray(t_idx, dtype=np.int64)
        out = []
        for da in (speed_da, dir_da):
            if by_slab:
                # Read the stations' bounding box as slices, then pick the pixels in memory:
                # NetCDF/HDF5 chunks hold whole maps, and slices read each chunk once.
                sub = da.isel(time=t_idx, y=slice(y0, y1), x=slice(x0, x1)).load()
                vals = sub.isel(
                    y=xr.DataArray(iy - y0, dims="point"), x=xr.DataArray(ix - x0, dims="point")
                ).values
            else:
                vals = da.isel(
                    time=t_idx, y=xr.DataArray(iy, dims="point"), x=xr.DataArray(ix, dims="point")
                ).values
            out.append(np.asarray(vals, dtype=np.float64).reshape(t_idx.size, n_in, k))
        speed, direction = _combine(out[0], out[1], w)
        if gamma is not None:
            from devine_onnx.wind import wrap360

            direction = wrap360(direction + gamma[None, :])
        full_s = np.full((t_idx.size, lon.size), np.nan)
        full_d = np.full((t_idx.size, lon.size), np.nan)
        full_s[:, sel] = speed
        full_d[:, sel] = direction
        return full_s, full_d

    x_range = f"x {x.min():.0f}..{x.max():.0f}, y {y.min():.0f}..{y.max():.0f}"
    return ModelSource(
        name=name,
        label=label,
        times=times,
        inside=place.inside,
        outside_reason=f"outside the grid of {label} ({x_range} in {crs.name})",
        reader=reader,
        block=block,
        elevation=elevation,
        crs=crs,
        dataset=None if isinstance(source, xr.Dataset) else ds,
    )


def nwp_source(nwp, lon, lat, tri_crs, nwp_crs, label) -> ModelSource:
    from devine_onnx.io.nwp import open_nwp
    from devine_onnx.regrid.weights import RegridWeights
    from devine_onnx.wind import uv_to_speed_dir

    winds = open_nwp(nwp, nwp_crs=nwp_crs)
    if not np.issubdtype(np.asarray(winds.time).dtype, np.datetime64):
        raise NWPError(f"{label}: the time axis is not made of dates; cannot match observations")
    _check_unique_times(np.asarray(winds.time), label, NWPError)
    tri_crs = CRS.from_user_input(tri_crs) if tri_crs is not None else winds.crs
    gx, gy = np.asarray(winds.lon_or_x, np.float64), np.asarray(winds.lat_or_y, np.float64)
    if gx.ndim == 1 and gy.ndim == 1:
        gx, gy = np.meshgrid(gx, gy)
    px, py = Transformer.from_crs(winds.crs, tri_crs, always_xy=True).transform(
        gx.ravel(), gy.ravel(), errcheck=False
    )
    tx, ty = Transformer.from_crs("EPSG:4326", tri_crs, always_xy=True).transform(
        lon, lat, errcheck=False
    )
    try:
        weights = RegridWeights.build(
            np.asarray(px),
            np.asarray(py),
            np.asarray(tx, dtype=np.float64),
            np.asarray(ty, dtype=np.float64),
            source_shape=winds.source_shape,
            target_shape=(lon.size,),
            warn=False,
        )
    except NWPError as exc:
        if "does not cover" in str(exc):
            raise NWPError(
                f"{label}: none of the {lon.size} stations lies inside the NWP grid; check the "
                "station coordinates or the NWP domain"
            ) from None
        raise NWPError(f"{label}: {exc}") from None
    ny, nx = winds.source_shape
    block = max(1, READ_BLOCK_BYTES // (ny * nx * 4 * 2))

    def reader(t_idx: np.ndarray):
        t_idx = np.asarray(t_idx, dtype=np.int64)
        u = weights.apply(np.asarray(winds.u.isel(time=t_idx).values))
        v = weights.apply(np.asarray(winds.v.isel(time=t_idx).values))
        speed, direction = uv_to_speed_dir(u.astype(np.float64), v.astype(np.float64))
        return speed, direction

    return ModelSource(
        name=NWP_SOURCE,
        label=label,
        times=np.asarray(winds.time),
        inside=weights.valid.copy(),
        outside_reason=f"outside the NWP grid of {label}",
        reader=reader,
        block=block,
        kind="nwp",
    )


def source_stem(source, label: str) -> str:
    """Source name: the file name without its suffixes (``wind_30m.nc`` -> ``wind_30m``)."""
    if isinstance(source, xr.Dataset) and not source.encoding.get("source"):
        return "wind"
    name = Path(label).name
    for suffix in (".zarr", ".nc", ".nc4", ".netcdf"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or "wind"


def source_label(source, default: str) -> str:
    if isinstance(source, xr.Dataset):
        src = source.encoding.get("source")
        return str(src) if src else default
    return str(source)
