"""The maps that are plotted and exported: a downscaled output or a correction table.

:func:`open_source` opens either kind once and answers what maps and plots need: the map
variables, their values for one time step (or one table direction) as **north-up** arrays
(row 0 = northernmost, x increasing), the CRS, the affine transform of the pixel edges, the
time axis (naive datetimes are UTC, as devine-onnx writes them) and one value range per variable
over the whole file, so that every frame of a series is drawn with the same colours.

Tables are read through :class:`devine_onnx.tables.table.CorrectionTable`; ``alpha`` is given in
degrees here (> 0 = flow turned to the left), the unit people read on a map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from devine_onnx.errors import InputFileError, OptionError

__all__ = ["MapSource", "open_source", "utc_label", "time_steps", "nice_step"]

#: Variables of a correction table that can be drawn or exported for one direction.
TABLE_VARIABLES = ("acceleration", "alpha", "vertical")
#: Values sampled at most to find a variable's range over the whole file, from at most this
#: many time steps (or table directions) spread evenly over the file.
_RANGE_SAMPLE = 4_000_000
_RANGE_STEPS = 48


def nice_step(value: float) -> float:
    """1, 2 or 5 times a power of ten, not above ``value`` (1 for a non-positive value)."""
    if not np.isfinite(value) or value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for m in (5, 2, 1):
        if m * 10.0**exp <= value:
            return float(m * 10.0**exp)
    return float(10.0**exp)


def utc_label(stamp) -> str:
    """``2026-01-15 12:00 UTC`` (seconds only when not zero) of a naive-UTC timestamp."""
    import pandas as pd

    ts = pd.Timestamp(stamp)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    fmt = "%Y-%m-%d %H:%M:%S" if ts.second or ts.microsecond else "%Y-%m-%d %H:%M"
    return f"{ts.strftime(fmt)} UTC"


def _fmt_step(step) -> str:
    """A time step as '1 h', '15 min', '3 d' or pandas' text."""
    import pandas as pd

    seconds = pd.Timedelta(step).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return str(step)


def _open_dataset(path_or_ds, what: str) -> tuple[xr.Dataset, str, Path | None]:
    if isinstance(path_or_ds, xr.Dataset):
        return path_or_ds, str(path_or_ds.encoding.get("source") or "dataset"), None
    from devine_onnx.io.formats import open_any

    p = Path(path_or_ds)
    ds = open_any(p, what=what, error=InputFileError, formats=("netcdf", "zarr"))
    return ds, str(p), p


def _xy_dims(da: xr.DataArray, label: str) -> tuple[str, str]:
    """Names of the (y, x) dimensions of a map variable, which need 1-D coordinates."""
    from devine_onnx.io.cf import find_xy_dims

    ydim, xdim = find_xy_dims(da)
    if ydim is None or xdim is None:
        raise InputFileError(
            f"{label}: variable {da.name!r} is not a map (dims {da.dims}); expected a "
            "devine-onnx output on a regular (y, x) grid"
        )
    for dim in (ydim, xdim):
        if dim not in da.coords or da[dim].ndim != 1 or da[dim].size < 2:
            raise InputFileError(
                f"{label}: variable {da.name!r} has no 1-D coordinate {dim!r}; expected a "
                "devine-onnx output on a regular (y, x) grid"
            )
    return str(ydim), str(xdim)


@dataclass
class MapSource:
    """A downscaled output (``kind="wind"``) or a correction table (``kind="table"``).

    Attributes
    ----------
    dataset : xarray.Dataset
        The lazy dataset (for a table: the CorrectionTable's).
    label : str
        How messages name the input.
    kind : {"wind", "table"}
    crs : pyproj.CRS or None
        CRS of the grid (x/y in its units, metres for projected CRSs).
    ydim, xdim : str
        Spatial dimension names.
    table : CorrectionTable or None
        The opened table when ``kind == "table"``.
    """

    dataset: xr.Dataset
    label: str
    kind: str
    crs: object
    ydim: str
    xdim: str
    table: object = None
    path: Path | None = None
    _ranges: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ grid
    @property
    def x(self) -> np.ndarray:
        """x of the north-up grid (increasing), CRS units."""
        return np.sort(np.asarray(self.dataset[self.xdim].values, dtype=np.float64))

    @property
    def y(self) -> np.ndarray:
        """y of the north-up grid (decreasing: row 0 is the northernmost), CRS units."""
        return np.sort(np.asarray(self.dataset[self.ydim].values, dtype=np.float64))[::-1]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.dataset.sizes[self.ydim]), int(self.dataset.sizes[self.xdim])

    @property
    def spacing(self) -> tuple[float, float]:
        """(dx, dy) > 0, CRS units."""
        x, y = self.x, self.y
        return float(abs(x[1] - x[0])), float(abs(y[0] - y[1]))

    @property
    def transform(self):
        """rasterio ``Affine`` of the north-up grid (pixel edges, CRS units)."""
        from affine import Affine

        dx, dy = self.spacing
        return Affine(dx, 0.0, self.x[0] - dx / 2, 0.0, -dy, self.y[0] + dy / 2)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) of the pixel edges, CRS units."""
        dx, dy = self.spacing
        x, y = self.x, self.y
        return x[0] - dx / 2, x[-1] + dx / 2, y[-1] - dy / 2, y[0] + dy / 2

    def _north_up(self, da: xr.DataArray) -> np.ndarray:
        da = da.transpose(..., self.ydim, self.xdim)
        while da.ndim > 2:
            da = da.isel({da.dims[0]: 0})
        a = np.asarray(da.values, dtype=np.float64)
        yv = np.asarray(self.dataset[self.ydim].values)
        xv = np.asarray(self.dataset[self.xdim].values)
        if yv[0] < yv[-1]:
            a = a[::-1]
        if xv[0] > xv[-1]:
            a = a[:, ::-1]
        return np.ascontiguousarray(a)

    # ------------------------------------------------------------------ metadata
    @property
    def synthetic(self) -> bool:
        """Computed with synthetic (untrained) model weights."""
        if self.table is not None:
            return bool(self.table.synthetic)
        from devine_onnx.tables.table import synthetic_note

        return synthetic_note(self.dataset.attrs) is not None

    def warn_if_synthetic(self, made: str, *, stacklevel: int = 2) -> None:
        """Warn (:class:`~devine_onnx.synthetic.SyntheticWeightsWarning`) when the input was
        computed with synthetic weights; ``made`` is what the caller makes of it."""
        if not self.synthetic:
            return
        from devine_onnx.synthetic import warn_synthetic

        if self.table is not None:
            engine = self.table.engine
        else:
            engine = self.dataset.attrs.get("table_engine", self.dataset.attrs.get("engine"))
        warn_synthetic(self.label, made=made, engine=engine, stacklevel=stacklevel + 1)

    @property
    def engine_title(self) -> str:
        if self.table is not None:
            return self.table.engine_title
        return str(self.dataset.attrs.get("table_engine_title", ""))

    @property
    def stem(self) -> str:
        return self.path.stem if self.path is not None else self.kind

    # ------------------------------------------------------------------ variables
    def variables(self) -> list[str]:
        """Names of the map variables that can be drawn or exported."""
        if self.table is not None:
            return list(self.table.variables)
        out = []
        for name, da in self.dataset.data_vars.items():
            if self.ydim in da.dims and self.xdim in da.dims:
                out.append(str(name))
        return out

    def check_variable(self, var: str) -> str:
        """``var`` if the source has it, else an :class:`OptionError` listing what it has."""
        names = self.variables()
        if var not in names:
            what = "correction table" if self.kind == "table" else "downscaled output"
            raise OptionError(
                f"--var {var}: not a map variable of {self.label} ({what}); it has "
                f"{', '.join(names) or 'none'}"
            )
        return var

    def units(self, var: str) -> str:
        if self.kind == "table" and var == "alpha":
            return "degree"
        return str(self.dataset[var].attrs.get("units", ""))

    def has_time(self, var: str) -> bool:
        return self.kind == "wind" and "time" in self.dataset[var].dims

    @property
    def times(self):
        """``pandas.DatetimeIndex`` (naive = UTC) of the file, or None."""
        import pandas as pd

        if "time" not in self.dataset.coords:
            return None
        values = self.dataset["time"].values
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.datetime64):
            return None
        return pd.DatetimeIndex(values)

    def field(self, var: str, index: int | None = None, angle=None) -> np.ndarray:
        """North-up float64 ``(ny, nx)`` values of ``var`` at time step ``index`` (wind) or for
        the FROM direction ``angle`` (table; ``alpha`` in degrees)."""
        if self.table is not None:
            one = self.table.at_angle(angle)
            a = self._north_up(one[var])
            return np.degrees(a) if var == "alpha" else a
        da = self.dataset[var]
        if index is not None and "time" in da.dims:
            da = da.isel(time=index)
        return self._north_up(da)

    def static(self, name: str) -> np.ndarray | None:
        """North-up ``elevation`` or ``edge_influence`` (y, x), or None."""
        if self.table is not None:
            da = getattr(self.table, name)
        else:
            da = self.dataset[name] if name in self.dataset.variables else None
            if da is not None and not {self.ydim, self.xdim} <= set(da.dims):
                da = None
        return None if da is None else self._north_up(da)

    def value_range(self, var: str) -> tuple[float, float]:
        """(0.5th, 99.5th) percentile of ``var`` over the whole file; NaN ignored.

        Computed from a sample: at most 48 time steps (or table directions) spread evenly over
        the file, and every k-th row and column so that at most a few million values are read.
        """
        if var in self._ranges:
            return self._ranges[var]
        da = self.dataset[var]
        for dim in ("time", "angle"):
            if dim in da.dims and da.sizes[dim] > _RANGE_STEPS:
                pick = np.unique(np.linspace(0, da.sizes[dim] - 1, _RANGE_STEPS).round())
                da = da.isel({dim: pick.astype(int)})
        stride = max(1, math.ceil(math.sqrt(da.size / _RANGE_SAMPLE)))
        sample = np.asarray(
            da.isel({self.ydim: slice(None, None, stride), self.xdim: slice(None, None, stride)})
            .astype(np.float64)
            .values
        )
        alpha_units = str(da.attrs.get("units", "radian")).strip().lower()
        if self.kind == "table" and var == "alpha" and not alpha_units.startswith("deg"):
            sample = np.degrees(sample)
        finite = sample[np.isfinite(sample)]
        if finite.size == 0:
            out = (0.0, 1.0)
        else:
            lo, hi = np.percentile(finite, [0.5, 99.5])
            out = (float(lo), float(hi))
        self._ranges[var] = out
        return out

    def grid_wind(self, index) -> tuple[np.ndarray, np.ndarray] | None:
        """Grid-relative ``(u, v)`` (m/s, north-up) of time step ``index``, or None.

        Earth-relative components (``eastward_wind``/``northward_wind``, or speed and FROM
        direction from true north) are rotated by the meridian convergence of :attr:`crs`
        (docs/method.md §4), so that they point along the wind on the projected grid;
        ``x_wind``/``y_wind`` are used as they are.
        """
        names = set(self.variables())
        if {"x_wind", "y_wind"} <= names:
            return self.field("x_wind", index), self.field("y_wind", index)
        if {"eastward_wind", "northward_wind"} <= names:
            u, v = self.field("eastward_wind", index), self.field("northward_wind", index)
        elif {"wind_speed", "wind_from_direction"} <= names:
            from devine_onnx.wind import speed_dir_to_uv

            u, v = speed_dir_to_uv(
                self.field("wind_speed", index), self.field("wind_from_direction", index)
            )
        else:
            return None
        if self.crs is not None and not self.crs.is_geographic:
            from devine_onnx.wind import earth_to_grid, meridian_convergence

            gamma = meridian_convergence(self.x[None, :], self.y[:, None], self.crs)
            u, v = earth_to_grid(u, v, np.nan_to_num(gamma))
        return np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)

    # ------------------------------------------------------------------ time steps
    def time_indices(self, times, option: str = "--time") -> list[int]:
        """Indices of the requested time steps (see :func:`time_steps`)."""
        return time_steps(self.dataset, times, self.label, option)

    def close(self) -> None:
        if self.table is not None:
            self.table.close()
        self.dataset.close()


def open_source(path_or_ds, what: str = "downscaled wind or correction table") -> MapSource:
    """Open a downscaled output or a correction table (kind found from its variables).

    Parameters
    ----------
    path_or_ds : str, os.PathLike, xarray.Dataset, CorrectionTable or MapSource
        NetCDF file or Zarr folder, an opened Dataset or table (returned wrapped, not copied).
    what : str
        What the caller expects, for the error messages.

    Raises
    ------
    InputFileError
        Missing or unreadable file, no map variable on a regular (y, x) grid.
    TableError
        A file with ``acceleration``/``alpha`` that is not a valid table.
    """
    from devine_onnx.io.cf import read_crs
    from devine_onnx.tables.table import CorrectionTable

    if isinstance(path_or_ds, MapSource):
        return path_or_ds
    if isinstance(path_or_ds, CorrectionTable):
        t = path_or_ds
        return MapSource(t.dataset, t.label, "table", t.crs, "y", "x", t, t.path)
    ds, label, path = _open_dataset(path_or_ds, what)
    if {"acceleration", "alpha"} <= set(ds.data_vars):
        from devine_onnx.tables.table import CorrectionTable

        table = CorrectionTable.open(ds, label=label)
        return MapSource(table.dataset, label, "table", table.crs, "y", "x", table, path)
    maps = [n for n, da in ds.data_vars.items() if da.ndim >= 2]
    if not maps:
        found = ", ".join(sorted(map(str, ds.data_vars))) or "none"
        raise InputFileError(
            f"{label}: neither a downscaled output (wind_speed) nor a correction table "
            f"(acceleration, alpha); found variables {found}"
        )
    first = "wind_speed" if "wind_speed" in ds.data_vars else maps[0]
    ydim, xdim = _xy_dims(ds[first], label)
    crs = read_crs(ds, first, label=label, remedy="give a file written by devine-onnx")
    return MapSource(ds, label, "wind", crs, ydim, xdim, None, path)


def time_steps(ds: xr.Dataset, times, label: str, option: str = "--time") -> list[int]:
    """Indices of requested time steps, in the order asked, without repeats.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset with a 1-D ``time`` coordinate.
    times : None, int, str, timestamp or a sequence of them
        None = every step. An integer is an index (negative from the end); text or a
        timestamp must be a time of the file (a time-zone-aware time is converted to UTC,
        naive times are UTC); ``"START/END"`` (ISO 8601 interval) selects every step from
        START to END inclusive.
    label, option : str
        For the messages.

    Raises
    ------
    OptionError
        A time not in the file, an index out of range, an empty interval, text that is not a
        time; the one-line message gives the file's time range.
    """
    import pandas as pd

    if "time" not in ds.coords or ds["time"].ndim != 1:
        if times is None:
            return []
        raise OptionError(f"{option} {times}: {label} has no time dimension; omit {option}")
    values = ds["time"].values
    n = values.size
    if n == 0:
        raise InputFileError(f"{label}: the time dimension is empty")
    is_dt = np.issubdtype(values.dtype, np.datetime64)
    stamps = pd.DatetimeIndex(values) if is_dt else None

    def describe() -> str:
        if not is_dt:
            return f"{n} time steps, index 0 to {n - 1}"
        first, last = stamps[0].isoformat(), stamps[-1].isoformat()
        if n == 1:
            return f"1 time step: {first}"
        steps = np.unique(np.diff(stamps.values))
        every = f"every {_fmt_step(steps[0])}" if steps.size == 1 else "irregular steps"
        return f"{n} time steps from {first} to {last}, {every}"

    def stamp(text) -> pd.Timestamp:
        try:
            ts = pd.Timestamp(text)
        except (ValueError, TypeError):
            ts = None
        if ts is None or ts is pd.NaT:
            first = stamps[0].isoformat() if is_dt else "2026-01-15T12:00"
            raise OptionError(
                f"{option} {text!r}: not a date/time; use ISO 8601 such as {first} ({label} "
                f"has {describe()})"
            ) from None
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return ts

    if times is None:
        return list(range(n))
    items = (
        [times] if isinstance(times, (str, int, np.integer)) or not np.iterable(times) else times
    )
    out: list[int] = []
    for item in items:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not -n <= int(item) < n:
                raise OptionError(f"{option} {item}: index out of range for {label} ({describe()})")
            found = [int(item) % n]
        elif not is_dt:
            raise OptionError(f"{option} {item}: {label} has no date/time axis ({describe()})")
        elif isinstance(item, str) and "/" in item:
            start, _, end = item.partition("/")
            t0, t1 = stamp(start.strip()), stamp(end.strip())
            found = [int(i) for i in np.nonzero((stamps >= t0) & (stamps <= t1))[0]]
            if not found:
                raise OptionError(
                    f"{option} {item}: no time step in this interval; {label} has {describe()}"
                )
        else:
            hits = np.nonzero(stamps == stamp(item))[0]
            if hits.size == 0:
                raise OptionError(f"{option} {item}: not in {label}; it has {describe()}")
            found = [int(hits[0])]
        out += [i for i in found if i not in out]
    return out
