"""Reading NWP 10 m wind fields (NetCDF, Zarr, GRIB or an in-memory Dataset).

:func:`open_nwp` finds the earth-relative wind components, the time axis and the horizontal
coordinates of an NWP file and returns them as :class:`NWPWinds`: ``u`` and ``v`` DataArrays
with dimensions ``(time, <y dim>, <x dim>)`` (lazy, dask-chunked along time for files), the
1-D or 2-D coordinates of the grid and its CRS.

Rules (docs/method.md §4):

- Wind variables: named by ``u_var``/``v_var``, else the first pair present among
  :data:`WIND_NAME_PAIRS`, else the unique pair with CF ``standard_name`` ``eastward_wind`` /
  ``northward_wind`` (or ``x_wind``/``y_wind``), else a speed and FROM direction (CF
  ``standard_name`` ``wind_speed``/``wind_from_direction``, or a pair of
  :data:`SPEED_DIRECTION_NAME_PAIRS`), converted to ``u = -S sin D``, ``v = -S cos D``.
- Units must be m/s (``m s-1``, ``m/s``, ``m s**-1``...); missing units are taken as m/s.
  Directions are in degrees (or radians when their units say so).
- Wind frame (docs/method.md §4): the components returned are always earth-relative. Grid-relative
  components are rotated to true north: WRF's (``COSALPHA``/``SINALPHA`` in the file) with
  its own angles, ``u_e = u cos a - v sin a``, ``v_e = v cos a + u sin a``; others with the
  meridian convergence ``gamma`` of the NWP projection at each NWP point
  (:func:`~devine_onnx.wind.grid_to_earth`; for a GRIB Lambert grid,
  the projection of its GRIB keys). The frame is ``nwp_wind_frame`` when given, else what the
  file says, in this order: a speed/direction pair (earth); cfgrib's
  ``GRIB_uvRelativeToGrid`` attribute (before standard names, which cfgrib sets to
  ``eastward_wind``/``northward_wind`` whatever the flag); standard names
  ``eastward_wind``/``northward_wind`` (earth) or ``x_wind``/``y_wind`` (grid); WRF's angles
  (grid). On a regular latitude/longitude grid both frames are the same. On any other grid
  (projected x/y, curvilinear 2-D latitude/longitude) a file that does not say is refused:
  the caller must give ``nwp_wind_frame``.
- Time: a ``time``-like dimension (datetime coordinate); a forecast ``(time, step)`` pair is
  flattened to valid times (the ``valid_time`` coordinate when present, else time + step); a
  single field with a scalar time coordinate is one time step. Size-1 extra dimensions (a
  height level) are dropped.
- Coordinates: 1-D or 2-D latitude/longitude in WGS 84 (EPSG:4326) unless the file's CRS
  (read by :func:`devine_onnx.io.cf.read_crs`, the one precedence of every reader: grid
  mapping, then a ``crs`` attribute, then rioxarray's) is another geographic CRS; or 1-D
  projected x/y with the file's CRS. ``nwp_crs``
  overrides all of this and decides which coordinates are used (lat/lon for a geographic
  CRS, x/y otherwise).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import xarray as xr
from pyproj import CRS

from devine_onnx.errors import NWPError, OptionError, option
from devine_onnx.io.cf import crs_label, dim_axis, read_crs
from devine_onnx.io.formats import open_any
from devine_onnx.wind import meridian_convergence

__all__ = [
    "SPEED_DIRECTION_NAME_PAIRS",
    "WIND_FRAMES",
    "WIND_NAME_PAIRS",
    "NWPWinds",
    "open_nwp",
    "wind_height",
]

#: Variable names tried in this order when ``u_var``/``v_var`` are not given.
WIND_NAME_PAIRS: tuple[tuple[str, str], ...] = (
    ("u10", "v10"),  # ECMWF/AROME via cfgrib, ERA5
    ("u10m", "v10m"),
    ("10u", "10v"),  # ecCodes short names
    ("U10", "V10"),  # WRF
    ("u", "v"),
    ("U", "V"),
    ("UGRD", "VGRD"),  # NCEP
    ("ugrd10m", "vgrd10m"),  # NOMADS OpenDAP
    ("UGRD_10maboveground", "VGRD_10maboveground"),  # wgrib2 -netcdf
    ("uas", "vas"),  # CMIP / CORDEX near-surface wind
    ("eastward_wind", "northward_wind"),
)
#: Speed and FROM direction variables tried when no u/v pair is found.
SPEED_DIRECTION_NAME_PAIRS: tuple[tuple[str, str], ...] = (
    ("wind_speed", "wind_from_direction"),
    ("si10", "wdir10"),  # ECMWF 10 m wind speed / direction via cfgrib
    ("ws10", "wd10"),
    ("wspd", "wdir"),
    ("ff", "dd"),
)
#: Values of ``nwp_wind_frame``.
WIND_FRAMES = ("earth", "grid")
_EARTH_SN = {"eastward_wind", "northward_wind"}
_GRID_SN = {"x_wind", "y_wind"}
_DEGREE_UNITS = {"degree", "degrees", "deg", "°", "degree_true", "degrees_true", "degrees true"}
_RADIAN_UNITS = {"rad", "radian", "radians"}

_TIME_DIMS = ("time", "valid_time", "Time", "t", "time_counter")
_STEP_DIMS = ("step", "lead_time", "forecast_period", "leadtime")
_LAT_NAMES = ("latitude", "lat", "nav_lat", "XLAT", "gridlat_0", "lat_0")
_LON_NAMES = ("longitude", "lon", "nav_lon", "XLONG", "gridlon_0", "lon_0")
_MS_UNITS = {
    "m s-1",
    "m/s",
    "m s**-1",
    "m.s-1",
    "ms-1",
    "m s^-1",
    "meter second-1",
    "meters/second",
    "metres/second",
    "m sec-1",
    "m*s-1",
    "m s -1",
    "ms**-1",
}


@dataclass(eq=False)
class NWPWinds:
    """Earth-relative NWP wind components on their native grid.

    Attributes
    ----------
    u, v : xarray.DataArray
        Eastward and northward wind in m/s, dimensions ``("time", *spatial_dims)``; lazy and
        dask-chunked along time when read from a file.
    lon_or_x, lat_or_y : numpy.ndarray
        Grid coordinates in ``crs``: 1-D axes (``len(lat_or_y), len(lon_or_x)`` =
        the spatial shape) or 2-D arrays of the spatial shape. Longitude/latitude in degrees
        for a geographic CRS.
    crs : pyproj.CRS
        CRS of ``lon_or_x``/``lat_or_y``.
    spatial_dims : tuple of str
        ``(y_dim, x_dim)`` names of the spatial dimensions of ``u`` and ``v``.
    source : str
        File name (or a description of an in-memory Dataset) used in messages and attributes.
    u_name, v_name : str
        Names of the variables read (speed and direction when the file gives those).
    wind_frame : str
        How the components became earth-relative (recorded in outputs).
    wind_note : str
        Which variables were read and at what height, and the other wind pairs of the file
        (``"nwp.nc: wind from u10/v10 (10 m); also in the file: u100/v100 ..."``): the note
        ``downscale`` prints.
    height : float or None
        Height of the wind above ground in metres, from the variables (:func:`wind_height`);
        None when the file does not say.
    """

    u: xr.DataArray
    v: xr.DataArray
    lon_or_x: np.ndarray
    lat_or_y: np.ndarray
    crs: CRS
    spatial_dims: tuple[str, str]
    source: str
    u_name: str = ""
    v_name: str = ""
    attrs: dict = field(default_factory=dict)
    wind_frame: str = ""
    wind_note: str = ""
    height: float | None = None

    @property
    def time(self) -> np.ndarray:
        """Valid times (values of the ``time`` coordinate)."""
        return self.u["time"].values

    @property
    def n_times(self) -> int:
        return int(self.u.sizes["time"])

    @property
    def source_shape(self) -> tuple[int, int]:
        """Shape of the spatial grid ``(ny, nx)``."""
        return tuple(int(self.u.sizes[d]) for d in self.spatial_dims)

    @property
    def is_lazy(self) -> bool:
        """True if ``u`` is dask-backed."""
        return self.u.chunks is not None

    def __repr__(self) -> str:
        return (
            f"NWPWinds(source={self.source!r}, vars=({self.u_name!r}, {self.v_name!r}), "
            f"times={self.n_times}, grid={dict(zip(self.spatial_dims, self.source_shape, strict=True))}, "
            f"crs={self.crs.to_string()!r})"
        )

    def window(self, start=None, end=None) -> NWPWinds:
        """The time steps from ``start`` to ``end`` (both included; None: unbounded).

        Parameters
        ----------
        start, end : numpy.datetime64 or None
            Valid times in UTC (the file's times are taken as UTC).

        Raises
        ------
        OptionError
            The window holds no time step, ``start`` is after ``end``, or the file's times
            are not dates; the message names the options and the file's time range.
        """
        index = window_index(self.time, start, end, self.source)
        if index is None:
            return self
        return replace(self, u=self.u.isel(time=index), v=self.v.isel(time=index))


# --------------------------------------------------------------------------- opening
def _open_path(p: Path) -> xr.Dataset:
    return open_any(p, what="NWP file", error=NWPError, formats=("netcdf", "grib", "zarr"))


def _var_list(ds: xr.Dataset) -> str:
    items = []
    for name, var in ds.data_vars.items():
        sn = var.attrs.get("standard_name")
        items.append(f"{name}{tuple(var.dims)}" + (f"[{sn}]" if sn else ""))
    return ", ".join(items) if items else "none"


def _pick_variables(ds: xr.Dataset, label: str, u_var, v_var) -> tuple[str, str, str]:
    """``(name_1, name_2, kind)``: ``kind`` "uv" (components) or "sd" (speed, direction)."""
    if (u_var is None) != (v_var is None):
        given = option("u_var", u_var) if u_var is not None else option("v_var", v_var)
        raise OptionError(
            f"{label}: give both {option('u_var')} and {option('v_var')} (got only {given}), or "
            "neither to detect them"
        )
    if u_var is not None:
        missing = [n for n in (u_var, v_var) if n not in ds.variables]
        if missing:
            raise NWPError(
                f"{label}: wind variable(s) {', '.join(map(repr, missing))} not found; "
                f"variables in the file: {_var_list(ds)}"
            )
        return u_var, v_var, "uv"
    for un, vn in WIND_NAME_PAIRS:
        if un in ds.data_vars and vn in ds.data_vars:
            return un, vn, "uv"
    by_sn: dict[str, list[str]] = {}
    for name, var in ds.data_vars.items():
        by_sn.setdefault(str(var.attrs.get("standard_name", "")), []).append(str(name))
    which = f"{option('u_var')}/{option('v_var')}"
    for first, second, kind in (
        ("eastward_wind", "northward_wind", "uv"),
        ("x_wind", "y_wind", "uv"),
        ("wind_speed", "wind_from_direction", "sd"),
    ):
        a, b = by_sn.get(first, []), by_sn.get(second, [])
        if len(a) == 1 and len(b) == 1:
            return a[0], b[0], kind
        if (a or b) and kind == "uv":
            raise NWPError(
                f"{label}: several {first}/{second} variables ({', '.join(a + b)}); choose the "
                f"10 m wind with {which}"
            )
    for sn, dn in SPEED_DIRECTION_NAME_PAIRS:
        if sn in ds.data_vars and dn in ds.data_vars:
            return sn, dn, "sd"
    raise NWPError(
        f"{label}: no wind variables found (looked for "
        f"{', '.join('/'.join(p) for p in WIND_NAME_PAIRS[:7])}..., standard_name "
        "eastward_wind/northward_wind, and wind_speed/wind_from_direction); variables in the "
        f"file: {_var_list(ds)}; name the components with {which}"
    )


def _wind_note(ds: xr.Dataset, label: str, un: str, vn: str, chosen: bool) -> str:
    """``label: wind from u10/v10 (10 m)``, plus the other wind pairs when it was a choice."""
    height = wind_height(ds, un, vn)
    note = f"{label}: wind from {un}/{vn}" + (f" ({height:g} m)" if height is not None else "")
    if not chosen:
        return note + f" (as given by {option('u_var')}/{option('v_var')})"
    pairs = list(WIND_NAME_PAIRS + SPEED_DIRECTION_NAME_PAIRS)
    number = re.compile(r"\d+(?:\.\d+)?")
    if number.search(un) and number.search(vn):  # u10/v10: the same names at other heights
        head, tail = number.split(un, maxsplit=1)
        other_height = re.compile(re.escape(head) + r"(\d+(?:\.\d+)?)" + re.escape(tail))
        for name in map(str, ds.data_vars):
            match = other_height.fullmatch(name)
            if match:
                pairs.append((name, number.sub(match.group(1), vn, count=1)))
    others = list(
        dict.fromkeys(
            f"{a}/{b}"
            for a, b in pairs
            if a in ds.data_vars and b in ds.data_vars and (a, b) != (un, vn)
        )
    )
    if others:
        note += (
            f"; also in the file: {', '.join(others)} (choose with {option('u_var')}/"
            f"{option('v_var')})"
        )
    return note


_LENGTH_UNITS = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0, "km": 1e3}
_HEIGHT_NAMES = ("height", "heightaboveground", "height_above_ground")
_LEVEL_IN_NAME = (
    re.compile(
        r"(?:u|v|ugrd_?|vgrd_?|si|ws|wspd|wdir|wd|ff|dd)(\d+(?:\.\d+)?)(?:m|maboveground)?",
        re.I,
    ),
    re.compile(r"(\d+(?:\.\d+)?)(?:u|v|si)", re.I),
)
_LEVEL_IN_TEXT = re.compile(
    r"(\d+(?:\.\d+)?)\s*(m|metres?|meters?)\b(?!\s*(?:s-1|s\*\*-1|/\s*s|per))", re.I
)


def _metres(value, units) -> float | None:
    """``value`` in ``units`` (a length) as metres; None when not a finite length."""
    factor = _LENGTH_UNITS.get(str(units).strip().lower())
    try:
        value = float(np.asarray(value).ravel()[0]) * factor if factor else None
    except (TypeError, ValueError, IndexError):
        return None
    return value if value is not None and np.isfinite(value) else None


def _variable_height(ds: xr.Dataset, name: str) -> float | None:
    """Height above ground (m) of the variable ``name`` (see :func:`wind_height`)."""
    da = ds[name]
    for coord_name, coord in da.coords.items():  # cfgrib's heightAboveGround, CF's height
        named = str(coord_name).lower() in _HEIGHT_NAMES
        if coord.size == 1 and (named or coord.attrs.get("standard_name") == "height"):
            value = _metres(coord.values, coord.attrs.get("units", "m" if named else ""))
            if value is not None:
                return value
    height = da.attrs.get("height")
    if height is not None:
        text = str(height).strip().split()
        value = _metres(text[0], text[1] if len(text) > 1 else "m") if text else None
        if value is not None:
            return value
    match = _LEVEL_IN_TEXT.search(str(da.attrs.get("long_name", "")))
    if match:  # ERA5: "10 metre U wind component"
        return _metres(match.group(1), match.group(2))
    for pattern in _LEVEL_IN_NAME:
        match = pattern.fullmatch(name)
        if match:
            return float(match.group(1))
    return None


def wind_height(ds: xr.Dataset, u_name: str, v_name: str) -> float | None:
    """Height above ground (m) of the wind variables ``u_name``/``v_name`` of ``ds``.

    In this order: a size-1 height coordinate (cfgrib's ``heightAboveGround``, or
    ``standard_name: height``; units m or km), a ``height`` attribute, a height in the
    ``long_name`` ("10 metre U wind component"), or the name (``u10``, ``10u``,
    ``UGRD_10maboveground``, ``si10``...). None when neither variable says, or when the two
    disagree.
    """
    found = (_variable_height(ds, u_name), _variable_height(ds, v_name))
    heights = {h for h in found if h is not None}
    return heights.pop() if len(heights) == 1 else None


def _iso(value) -> str:
    """A valid time as ISO text (minutes; seconds when there are)."""
    text = np.datetime_as_string(np.datetime64(value, "s"), unit="s")
    return text[:-3] if text.endswith(":00") else text


def window_index(times, start=None, end=None, source="the file", what="forecast"):
    """Which of ``times`` lie from ``start`` to ``end`` (both included; None: unbounded).

    Parameters
    ----------
    times : array of numpy.datetime64
        Valid times, taken as UTC.
    start, end : numpy.datetime64 or None
        The window, in UTC.
    source : str
        The file, as named in messages.
    what : str
        What the times are of ("forecast", "observations"), for messages.

    Returns
    -------
    slice, numpy.ndarray or None
        A slice when the kept steps are contiguous, else their indices; None without a window.

    Raises
    ------
    OptionError
        The window holds no time step, ``start`` is after ``end``, or the times are not
        dates; the message names the options and the file's time range.
    """
    if start is None and end is None:
        return None
    given = " and ".join(
        option(name, _iso(value))
        for name, value in (("start", start), ("end", end))
        if value is not None
    )
    times = np.asarray(times)
    if not np.issubdtype(times.dtype, np.datetime64):
        raise OptionError(
            f"{given}: the times of {source} are not dates ({times.size} steps "
            f"numbered {_time_range(times)}); leave {option('start')}/{option('end')} out"
        )
    span = f"{source} has {times.size} steps from {_time_range(times)} UTC"
    if start is not None and end is not None and start > end:
        raise OptionError(f"{given}: the start is after the end; {span}")
    keep = np.ones(times.size, dtype=bool)
    if start is not None:
        keep &= times >= start
    if end is not None:
        keep &= times <= end
    index = np.flatnonzero(keep)
    if index.size == 0:
        raise OptionError(f"{given}: no time step of the {what} in this window; {span}")
    if index[-1] - index[0] + 1 == index.size:
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _time_range(times: np.ndarray) -> str:
    if times.size == 0:
        return "(none)"
    if np.issubdtype(times.dtype, np.datetime64):
        return f"{_iso(times.min())} to {_iso(times.max())}"
    return f"{times.min()} to {times.max()}"


def _check_units(da: xr.DataArray, label: str) -> None:
    units = da.attrs.get("units")
    if units is None:
        return
    u = " ".join(str(units).strip().split())
    if u in _MS_UNITS or u.lower() in _MS_UNITS:
        return
    raise NWPError(
        f"{label}: variable {da.name!r} has units {units!r}, expected m/s (m s-1); convert "
        "the wind to m/s first"
    )


def _is_datetime(values) -> bool:
    return np.issubdtype(np.asarray(values).dtype, np.datetime64)


def _is_timedelta(values) -> bool:
    return np.issubdtype(np.asarray(values).dtype, np.timedelta64)


def _find_time_dims(da: xr.DataArray) -> tuple[str | None, str | None]:
    tdim = sdim = None
    for d in da.dims:
        coord = da.coords.get(d)
        if d in _STEP_DIMS or (coord is not None and _is_timedelta(coord.values)):
            sdim = sdim or str(d)
        elif d in _TIME_DIMS or (coord is not None and _is_datetime(coord.values)):
            tdim = tdim or str(d)
    return tdim, sdim


def _scalar_time(ds: xr.Dataset, da: xr.DataArray):
    for name in ("valid_time", "time", "Time", "t"):
        for src in (da.coords, ds.variables):
            if name in src and np.ndim(src[name]) == 0 and _is_datetime(src[name].values):
                return np.asarray(src[name].values).reshape(1)
    return None


def _other_time_values(ds: xr.Dataset, da: xr.DataArray, d: str):
    """Valid times along ``d`` from another variable: a datetime coordinate such as WRF's
    ``XTIME``, or WRF's ``Times`` strings (``2026-11-24_00:00:00``); None if there is none."""
    for var in {**dict(ds.coords), **dict(da.coords)}.values():
        if var.dims == (d,) and _is_datetime(var.values):
            return np.asarray(var.values)
    if "Times" in ds.variables and ds["Times"].dims[:1] == (d,):
        raw = ds["Times"].values
        if raw.ndim == 2:  # undecoded characters (Time, DateStrLen)
            raw = np.array([b"".join(np.atleast_1d(row).tolist()) for row in raw])
        try:
            text = [
                (r.decode() if isinstance(r, bytes) else str(r)).strip().replace("_", "T")
                for r in raw
            ]
            return np.array(text, dtype="datetime64[ns]")
        except ValueError:
            return None
    return None


def _order_times(u: xr.DataArray, v: xr.DataArray, label: str):
    """The time steps in increasing order of valid time.

    Repeated valid times are refused (which of two fields is right cannot be told); steps out
    of order are sorted, with a note in the log (``devine_onnx`` logger, INFO).

    Raises
    ------
    NWPError
        One line naming the file and the repeated times.
    """
    times = np.asarray(u["time"].values)
    if times.size < 2:
        return u, v
    try:
        order = np.argsort(times, kind="stable")
    except TypeError:  # times that cannot be compared: left as they are
        return u, v
    ordered = times[order]
    same = ordered[1:] == ordered[:-1]
    if np.any(same):
        repeated = np.unique(ordered[1:][same])

        def text(t):
            if _is_datetime(times):
                return str(np.datetime64(t, "s")).replace("T", " ")
            return str(t)

        shown = ", ".join(text(t) for t in repeated[:5]) + (", ..." if len(repeated) > 5 else "")
        raise NWPError(
            f"{label}: {len(repeated)} valid time(s) appear more than once ({shown} UTC; "
            f"{times.size} steps): keep one field per time (e.g. ds.drop_duplicates('time')) "
            "or give the forecasts one at a time"
        )
    moved = int(np.count_nonzero(order != np.arange(times.size)))
    if moved:
        import logging

        logging.getLogger("devine_onnx").info(
            "%s: its %d time steps are not in increasing order (%d out of place); sorted",
            label,
            times.size,
            moved,
        )
        u = u.isel(time=order)
        v = v.isel(time=order)
    return u, v


def _flatten_time(
    ds: xr.Dataset, da: xr.DataArray, label: str, chunk_time: int | None
) -> xr.DataArray:
    """Return ``da`` with a single leading ``time`` dimension of valid times."""
    tdim, sdim = _find_time_dims(da)
    if tdim and sdim:
        valid = None
        for name in ("valid_time",):
            if name in da.coords and set(da[name].dims) == {tdim, sdim}:
                valid = da[name].transpose(tdim, sdim).values.ravel()
        if valid is None:
            t = da[tdim].values
            s = da[sdim].values
            if not (_is_datetime(t) and _is_timedelta(s)):
                raise NWPError(
                    f"{label}: cannot compute valid times from dimensions {tdim!r} and "
                    f"{sdim!r} (need datetime and timedelta coordinates, or a valid_time "
                    "coordinate)"
                )
            valid = (t[:, None] + s[None, :]).ravel()
        others = [d for d in da.dims if d not in (tdim, sdim)]
        da = da.transpose(tdim, sdim, *others)
        if da.chunks is None and chunk_time is not None:
            da = da.chunk({tdim: 1, sdim: -1})
        drop = [c for c in da.coords if set(da[c].dims) & {tdim, sdim}]
        da = da.drop_vars(drop).stack(_valid=(tdim, sdim), create_index=False)
        da = da.transpose("_valid", *others).rename({"_valid": "time"})
        da = da.assign_coords(time=("time", valid))
    elif tdim or sdim:
        d = tdim or sdim
        coord = da.coords.get(d)
        values = None
        if "valid_time" in da.coords and da["valid_time"].dims == (d,):
            values = da["valid_time"].values
        elif coord is not None and _is_datetime(coord.values):
            values = coord.values
        elif coord is not None and _is_timedelta(coord.values):
            t0 = _scalar_time(ds, da.drop_vars("valid_time", errors="ignore"))
            if t0 is not None:
                values = t0[0] + coord.values
        if values is None:
            values = _other_time_values(ds, da, d)
        if values is None:
            values = coord.values if coord is not None else np.arange(da.sizes[d])
        drop = [c for c in da.coords if d in da[c].dims or c == "time"]
        da = da.drop_vars(drop)
        if d != "time":
            da = da.rename({d: "time"})
        da = da.assign_coords(time=("time", np.asarray(values)))
        da = da.transpose("time", ...)
    else:
        t0 = _scalar_time(ds, da)
        if t0 is None:
            raise NWPError(
                f"{label}: variable {da.name!r} has no time dimension (dims {tuple(da.dims)}) "
                "and no time coordinate; add a time dimension (e.g. ds.expand_dims(time=[...]))"
            )
        drop = [c for c in da.coords if da[c].ndim == 0]
        da = da.drop_vars(drop).expand_dims(time=t0)
    return da


def _spatial_dims(da: xr.DataArray, label: str) -> tuple[str, str]:
    others = [str(d) for d in da.dims if d != "time"]
    extra = [d for d in others if da.sizes[d] == 1 and dim_axis(da, d) is None]
    if len(others) - len(extra) != 2:
        raise NWPError(
            f"{label}: variable {da.name!r} has dimensions {dict(da.sizes)}; expected "
            "(time, [step,] y/latitude, x/longitude) with at most size-1 extra dimensions"
        )
    spatial = [d for d in others if d not in extra]

    def role(d):
        return {"X": "x", "Y": "y"}.get(dim_axis(da, d))

    a, b = spatial
    if role(a) == "x" or role(b) == "y":
        a, b = b, a
    return a, b


def _lat_lon_like(coord: xr.DataArray, name: str, axis: str) -> bool:
    sn = str(coord.attrs.get("standard_name", ""))
    units = str(coord.attrs.get("units", "")).lower()
    if axis == "y":
        return sn == "latitude" or name in _LAT_NAMES or units.startswith("degrees_n")
    return sn == "longitude" or name in _LON_NAMES or units.startswith("degrees_e")


def _crs_from_file(ds: xr.Dataset, da: xr.DataArray, label: str) -> CRS | None:
    """The file's CRS by the one precedence of :func:`devine_onnx.io.cf.read_crs`."""
    gm = da.attrs.get("grid_mapping") or da.encoding.get("grid_mapping")
    name = da.name if da.name in ds.variables else None
    if name is None and gm:  # the flattened DataArray lost its place in ds: look at ds's own
        name = next((n for n, v in ds.data_vars.items() if v.attrs.get("grid_mapping") == gm), None)
    return read_crs(
        ds,
        name,
        label=label,
        error=NWPError,
        remedy=f"give the CRS with {option('nwp_crs')}",
    )


def _plain_geographic(crs: CRS | None) -> bool:
    return crs is not None and crs.is_geographic and not crs.is_derived


def _coordinates(ds, da, ydim, xdim, label, nwp_crs):
    """(lon_or_x, lat_or_y, crs) following the rules of the module docstring."""
    file_crs = _crs_from_file(ds, da, label) if nwp_crs is None else None
    cy = ds.coords.get(ydim) if ydim in ds.coords else da.coords.get(ydim)
    cx = ds.coords.get(xdim) if xdim in ds.coords else da.coords.get(xdim)
    have_1d = cy is not None and cx is not None and cy.ndim == 1 and cx.ndim == 1
    ll1d = have_1d and _lat_lon_like(cy, ydim, "y") and _lat_lon_like(cx, xdim, "x")
    xy1d = have_1d and not ll1d
    ll2d = None
    pool = {**{k: v for k, v in ds.coords.items()}, **{k: v for k, v in ds.data_vars.items()}}
    pool.update({k: v for k, v in da.coords.items()})
    lat = lon = None
    for name, var in pool.items():
        if not {ydim, xdim} <= set(var.dims):
            continue
        if var.ndim > 2:  # e.g. WRF's XLAT(Time, south_north, west_east): the first one
            var = var.isel({d: 0 for d in var.dims if d not in (ydim, xdim)})
        if var.ndim != 2:
            continue
        if lat is None and (var.attrs.get("standard_name") == "latitude" or name in _LAT_NAMES):
            lat = var
        elif lon is None and (var.attrs.get("standard_name") == "longitude" or name in _LON_NAMES):
            lon = var
    if lat is not None and lon is not None:
        ll2d = (
            np.asarray(lon.transpose(ydim, xdim).values, dtype=np.float64),
            np.asarray(lat.transpose(ydim, xdim).values, dtype=np.float64),
        )

    def axes_1d():
        x = np.asarray(cx.values, dtype=np.float64)
        y = np.asarray(cy.values, dtype=np.float64)
        return x, y

    def geographic(crs):
        if ll1d:
            return (*axes_1d(), crs)
        if ll2d is not None:
            return (*ll2d, crs)
        if xy1d and crs.is_geographic:  # 1-D axes not recognisable as lat/lon
            return (*axes_1d(), crs)
        raise NWPError(
            f"{label}: no latitude/longitude coordinates for the geographic CRS "
            f"{crs_label(crs)!r} (dims {ydim!r}, {xdim!r}); variables in the file: {_var_list(ds)}"
        )

    def projected(crs):
        if not xy1d:
            raise NWPError(
                f"{label}: no 1-D projected coordinates on dimensions {ydim!r}/{xdim!r} for "
                f"the CRS {crs_label(crs)!r}; give a geographic {option('nwp_crs')} (e.g. EPSG:4326) to "
                "use latitude/longitude"
            )
        x, y = axes_1d()
        unit = str(cx.attrs.get("units", "")).lower()
        if unit in ("km", "kilometre", "kilometer", "kilometres", "kilometers"):
            x, y = x * 1000.0, y * 1000.0
        return x, y, crs

    if nwp_crs is not None:
        try:
            crs = CRS.from_user_input(nwp_crs)
        except Exception as exc:  # noqa: BLE001
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OptionError(
                f"{option('nwp_crs', nwp_crs)}: not a CRS pyproj understands ({first}); give "
                "e.g. EPSG:4326"
            ) from None
        return geographic(crs) if _plain_geographic(crs) else projected(crs)
    if xy1d and file_crs is not None and not _plain_geographic(file_crs):
        return projected(file_crs)
    geo = file_crs if _plain_geographic(file_crs) else CRS.from_epsg(4326)
    if ll1d or ll2d is not None:
        return geographic(geo)
    if xy1d:
        raise NWPError(
            f"{label}: coordinates {ydim!r}/{xdim!r} look projected but the file gives no CRS "
            f"(no grid_mapping); give it with {option('nwp_crs')}, e.g. EPSG:2154"
        )
    raise NWPError(
        f"{label}: no coordinates for dimensions {ydim!r}/{xdim!r} (need 1-D or 2-D "
        f"latitude/longitude, or x/y with a CRS); variables in the file: {_var_list(ds)}"
    )


# --------------------------------------------------------------------------- wind frame
def _sn(ds: xr.Dataset, names) -> set[str]:
    return {str(ds[n].attrs.get("standard_name", "")) for n in names}


def _regular_latlon(crs: CRS, lon_or_x: np.ndarray, lat_or_y: np.ndarray) -> bool:
    """True on a latitude/longitude grid whose rows are parallels and columns meridians."""
    if not _plain_geographic(crs):
        return False
    if lon_or_x.ndim == 1:
        return True
    return bool(
        np.allclose(lat_or_y, lat_or_y[:, :1], rtol=0, atol=1e-6, equal_nan=True)
        and np.allclose(lon_or_x, lon_or_x[:1, :], rtol=0, atol=1e-6, equal_nan=True)
    )


def _grib_flag(ds: xr.Dataset, names) -> int | None:
    flags = {ds[n].attrs.get("GRIB_uvRelativeToGrid") for n in names} - {None}
    if len(flags) != 1:
        return None
    try:
        return int(flags.pop())
    except (TypeError, ValueError):
        return None


def _resolve_frame(ds, names, kind, frame, regular, label) -> tuple[str, str]:
    """``(frame, why)``: "earth" or "grid", and where that comes from."""
    if frame is not None:
        if frame not in WIND_FRAMES:
            raise OptionError(
                f"{option('nwp_wind_frame', frame)}: expected 'earth' (components relative to "
                "true north) or 'grid' (relative to the NWP grid)"
            )
        return frame, f"{option('nwp_wind_frame', frame)}"
    if kind == "sd":
        return "earth", "speed and direction from true north"
    # cfgrib names 10u/10v eastward_wind/northward_wind whatever the GRIB flag: flag first.
    flag = _grib_flag(ds, names)
    if flag is not None:
        return ("grid" if flag else "earth"), f"GRIB uvRelativeToGrid={flag}"
    sn = _sn(ds, names)
    if sn == _EARTH_SN:
        return "earth", "standard names eastward_wind/northward_wind"
    if sn & _GRID_SN:
        return "grid", "standard names x_wind/y_wind"
    if "COSALPHA" in ds.variables and "SINALPHA" in ds.variables:
        return "grid", "WRF output (COSALPHA/SINALPHA)"
    if regular:
        return "earth", "latitude/longitude grid: grid north is true north"
    raise NWPError(
        f"{label}: {names[0]!r}/{names[1]!r} may be relative to the NWP grid or to true north, "
        "and the file does not say which (no standard_name eastward_wind/northward_wind, no "
        "WRF COSALPHA/SINALPHA, no GRIB uvRelativeToGrid) on a grid whose north is not true "
        f"north; say which with {option('nwp_wind_frame', 'earth')} or "
        f"{option('nwp_wind_frame', 'grid')}"
    )


def _spatial_field(ds, name, ydim, xdim, label) -> xr.DataArray:
    da = ds[name]
    if not {ydim, xdim} <= set(da.dims):
        raise NWPError(
            f"{label}: {name} has dimensions {tuple(da.dims)}, expected ({ydim}, {xdim}) like "
            "the wind; check the file"
        )
    da = da.isel({d: 0 for d in da.dims if d not in (ydim, xdim)})
    return da.transpose(ydim, xdim).drop_vars(list(da.coords))


def _grib_lambert_crs(attrs: dict) -> CRS | None:
    """The Lambert conformal CRS of a cfgrib variable (``GRIB_gridType`` "lambert")."""
    if attrs.get("GRIB_gridType") != "lambert":
        return None
    try:
        return CRS.from_dict(
            {
                "proj": "lcc",
                "lat_1": float(attrs["GRIB_Latin1InDegrees"]),
                "lat_2": float(attrs["GRIB_Latin2InDegrees"]),
                "lat_0": float(attrs["GRIB_LaDInDegrees"]),
                "lon_0": float(attrs["GRIB_LoVInDegrees"]),
                "R": 6371229.0,
            }
        )
    except (KeyError, TypeError, ValueError):
        return None


def _to_earth(ds, u, v, names, ydim, xdim, lon_or_x, lat_or_y, crs, label):
    """Rotate grid-relative components to earth-relative ones; ``(u, v, how)``."""
    if "COSALPHA" in ds.variables and "SINALPHA" in ds.variables:
        # WRF: u_earth = u cos(a) - v sin(a), v_earth = v cos(a) + u sin(a).
        cos_a = _spatial_field(ds, "COSALPHA", ydim, xdim, label)
        sin_a = _spatial_field(ds, "SINALPHA", ydim, xdim, label)
        how = "grid-relative, rotated to true north with WRF's COSALPHA/SINALPHA"
    elif _regular_latlon(crs, lon_or_x, lat_or_y):
        return u, v, "grid-relative on a latitude/longitude grid (grid north is true north)"
    else:
        gcrs = _grib_lambert_crs(dict(ds[names[0]].attrs)) if lon_or_x.ndim == 2 else None
        if gcrs is not None:
            from pyproj import Proj

            x, y = Proj(gcrs)(lon_or_x, lat_or_y, errcheck=False)
            gamma = meridian_convergence(x, y, gcrs)
            lov = ds[names[0]].attrs.get("GRIB_LoVInDegrees")
            name = f"the GRIB Lambert projection (LoV {lov}°)"
        elif lon_or_x.ndim == 1 and not crs.is_geographic:
            gamma = meridian_convergence(lon_or_x[None, :], lat_or_y[:, None], crs)
            name = crs_label(crs, "the NWP grid's projection")
        else:
            raise NWPError(
                f"{label}: {names[0]!r}/{names[1]!r} are relative to the NWP grid, whose "
                f"projection is unknown ({'rotated pole' if crs.is_derived else 'only 2-D latitude/longitude'}"
                "); rotate them to eastward/northward wind first"
            )
        # grid -> earth by the meridian convergence (docs/method.md §4): a = -gamma in WRF's form.
        rad = np.radians(np.asarray(gamma, dtype=np.float64))
        cos_a = xr.DataArray(np.cos(rad), dims=(ydim, xdim))
        sin_a = xr.DataArray(-np.sin(rad), dims=(ydim, xdim))
        how = f"grid-relative, rotated to true north by the meridian convergence of {name}"
    dtype = u.dtype if np.issubdtype(u.dtype, np.floating) else np.float64
    cos_a = cos_a.astype(dtype)
    sin_a = sin_a.astype(dtype)
    u_e = u * cos_a - v * sin_a
    v_e = v * cos_a + u * sin_a
    return u_e.transpose(*u.dims), v_e.transpose(*v.dims), how


def _speed_direction_to_uv(s: xr.DataArray, d: xr.DataArray, label: str):
    """``u = -S sin D``, ``v = -S cos D`` (docs/method.md §4); calm wind (S = 0) gives 0, 0."""
    units = " ".join(str(d.attrs.get("units", "degree")).strip().split()).lower()
    if units in _DEGREE_UNITS:
        rad = np.deg2rad(d)
    elif units in _RADIAN_UNITS:
        rad = d
    else:
        raise NWPError(
            f"{label}: direction variable {d.name!r} has units {d.attrs.get('units')!r}, "
            "expected degrees (clockwise from north, FROM direction); convert it first"
        )
    u = xr.where(s == 0, 0, -s * np.sin(rad))
    v = xr.where(s == 0, 0, -s * np.cos(rad))
    return u.astype(s.dtype), v.astype(s.dtype)


# --------------------------------------------------------------------------- public
def open_nwp(
    source,
    *,
    u_var: str | None = None,
    v_var: str | None = None,
    nwp_crs=None,
    nwp_wind_frame: str | None = None,
    chunk_time: int | None = None,
) -> NWPWinds:
    """Open the 10 m wind of an NWP file (see the module docstring for the rules).

    Parameters
    ----------
    source : str, os.PathLike or xarray.Dataset
        NetCDF file, Zarr store, GRIB file (needs ``cfgrib``: ``pip install
        "devine-onnx[grib]"``) or an in-memory Dataset. The format of a file is recognised by
        its content, not its suffix.
    u_var, v_var : str, optional
        Names of the eastward and northward wind variables (both or neither); detected
        automatically when omitted.
    nwp_crs : pyproj.CRS or str or int, optional
        CRS of the NWP coordinates, overriding what the file says; geographic → the
        latitude/longitude coordinates are used, projected → the 1-D x/y coordinates.
    nwp_wind_frame : {"earth", "grid"}, optional
        Frame of the components, overriding what the file says: "earth" (relative to true
        north) or "grid" (relative to the NWP grid, rotated to true north here). Required
        on a grid whose north is not true north when the file does not say.
    chunk_time : int, optional
        Time steps per dask chunk. Files are always opened lazily, with 24 steps per chunk
        by default; an in-memory Dataset is left as it is unless ``chunk_time`` is given.

    Returns
    -------
    NWPWinds
        Earth-relative components.

    Raises
    ------
    NWPError
        Missing file, unrecognised format, no wind variables (the message lists the variables
        found), no usable time or coordinates, units other than m/s, an unknown wind frame on
        a projected or curvilinear grid, or grid-relative wind whose projection is unknown.
    MissingDependencyError
        A GRIB file without cfgrib installed.
    OptionError
        Only one of ``u_var``/``v_var``, an unknown ``nwp_crs`` or ``nwp_wind_frame``, or a
        bad ``chunk_time``.
    """
    return _open_nwp(
        source,
        u_var=u_var,
        v_var=v_var,
        nwp_crs=nwp_crs,
        nwp_wind_frame=nwp_wind_frame,
        chunk_time=chunk_time,
        rotate=True,
    )


def _open_nwp(source, *, u_var, v_var, nwp_crs, nwp_wind_frame, chunk_time, rotate) -> NWPWinds:
    """:func:`open_nwp`; ``rotate=False`` returns the components as read (frame unchecked)."""
    if chunk_time is not None and (
        isinstance(chunk_time, bool) or int(chunk_time) != chunk_time or chunk_time < 1
    ):
        raise OptionError(f"{option('chunk_time', chunk_time)}: expected a positive integer")
    if isinstance(source, xr.Dataset):
        ds = source
        src = ds.encoding.get("source")
        label = str(src) if src else "NWP Dataset (in memory)"
        name = Path(src).name if src else "in-memory Dataset"
    elif isinstance(source, str | os.PathLike):
        p = Path(source)
        ds = _open_path(p)
        label, name = str(p), p.name
        if chunk_time is None:
            chunk_time = 24
    else:
        raise OptionError(
            f"NWP source of type {type(source).__name__}: expected a file path or an xarray.Dataset"
        )

    un, vn, kind = _pick_variables(ds, label, u_var, v_var)
    wind_note = _wind_note(ds, label, un, vn, chosen=u_var is None)
    u, v = ds[un], ds[vn]
    _check_units(u, label)
    if kind == "uv":
        _check_units(v, label)
    if u.dims != v.dims or u.shape != v.shape:
        raise NWPError(
            f"{label}: wind variables {un!r}{dict(u.sizes)} and {vn!r}{dict(v.sizes)} have "
            f"different dimensions; name matching components with {option('u_var')}/"
            f"{option('v_var')}"
        )

    u = _flatten_time(ds, u, label, chunk_time)
    v = _flatten_time(ds, v, label, chunk_time)
    u, v = _order_times(u, v, label)
    ydim, xdim = _spatial_dims(u, label)
    extra = [d for d in u.dims if d not in ("time", ydim, xdim)]
    if extra:
        u = u.isel({d: 0 for d in extra}, drop=True)
        v = v.isel({d: 0 for d in extra}, drop=True)
    u = u.transpose("time", ydim, xdim)
    v = v.transpose("time", ydim, xdim)

    lon_or_x, lat_or_y, crs = _coordinates(ds, u, ydim, xdim, label, nwp_crs)

    # Keep only the time coordinate: 2-D lat/lon and scalar coords are carried separately.
    keep = {"time", ydim, xdim}
    u = u.drop_vars([c for c in u.coords if c not in keep])
    v = v.drop_vars([c for c in v.coords if c not in keep])
    if kind == "sd":
        u, v = _speed_direction_to_uv(u, v, label)
    frame_note = "as read (frame not checked)"
    if rotate:
        regular = _regular_latlon(crs, lon_or_x, lat_or_y)
        frame, why = _resolve_frame(ds, (un, vn), kind, nwp_wind_frame, regular, label)
        if frame == "grid":
            u, v, how = _to_earth(ds, u, v, (un, vn), ydim, xdim, lon_or_x, lat_or_y, crs, label)
            frame_note = f"{how} ({why})"
        else:
            frame_note = f"earth-relative ({why})"
    if chunk_time is not None:
        chunks = {"time": int(chunk_time), ydim: -1, xdim: -1}
        u = u.chunk(chunks)
        v = v.chunk(chunks)
    return NWPWinds(
        u=u,
        v=v,
        lon_or_x=lon_or_x,
        lat_or_y=lat_or_y,
        crs=crs,
        spatial_dims=(ydim, xdim),
        source=name,
        u_name=un,
        v_name=vn,
        attrs=dict(ds.attrs),
        wind_frame=frame_note,
        wind_note=wind_note,
        height=wind_height(ds, un, vn),
    )
