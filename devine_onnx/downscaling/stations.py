"""Station-driven downscaling: weather-station winds -> Barnes analysis -> the correction table.

MicroMet's own use (Liston and Elder 2006, SnowModel's ``micromet_code``): at each time step
the station winds are turned into components, interpolated to the grid by a two-pass Barnes
objective analysis (:mod:`devine_onnx.regrid.barnes`), and the terrain correction is applied.
Here the grid is the correction table's, the analysis is made in the table's projected CRS on
the earth-relative components ``u = -S sin(dir)``, ``v = -S cos(dir)``, and the table is
applied by :meth:`~devine_onnx.downscaling.downscaler.TableDownscaler.correct` (which rotates
into the grid's frame by the meridian convergence, looks up the FROM direction and rotates
back). The output has the layout of an NWP-driven run, plus ``station_count(time)``,
``station_used(time, station)`` and the station positions.

Used by :func:`devine_onnx.downscaling.api.downscale` when its input is an observation file
(docs/method.md, "Winds from weather stations").
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import xarray as xr

from devine_onnx.errors import DevineWarning, ObservationError, OptionError, number_option, option
from devine_onnx.io.atomic import check_writable
from devine_onnx.io.cf import lonlat_extent
from devine_onnx.io.formats import sniff_format
from devine_onnx.io.nwp import window_index
from devine_onnx.io.observations import names_text, read_observations, time_text
from devine_onnx.regrid.barnes import GAMMA, KAPPA_STAR, barnes
from devine_onnx.tables.table import CorrectionTable
from devine_onnx.wind import speed_dir_to_uv

from .downscaler import TableDownscaler
from .kernel import DEFAULT_MAX_SPEED, ImplausibleSpeedWarning
from .options import DownscaleOptions
from .output import global_attributes, write_output
from .timeloop import stream

__all__ = [
    "MIN_SPEED",
    "StationCountWarning",
    "downscale_stations",
    "is_observation_input",
]

LOGGER = logging.getLogger("devine_onnx")

#: SnowModel's minimum wind speed (``windspd_min``, m/s): the floor of station and output speeds.
MIN_SPEED = 0.1
#: Suffixes always read as observation CSV files.
_CSV_SUFFIXES = (".csv", ".txt")
#: Times listed at most in a warning.
_MAX_TIMES = 5


class StationCountWarning(DevineWarning):
    """Time steps with fewer valid stations than ``min_stations``: their output is NaN."""


# --------------------------------------------------------------------------- input type
def is_observation_input(source) -> bool:
    """Whether ``source`` is station observations rather than an NWP forecast.

    True for a pandas DataFrame, a ``.csv``/``.txt`` path, and a NetCDF file whose global
    attribute ``featureType`` is ``timeSeries`` (CF discrete sampling geometry).
    """
    if isinstance(source, pd.DataFrame):
        return True
    if not isinstance(source, str | os.PathLike):
        return False
    p = Path(source)
    if p.suffix.lower() in _CSV_SUFFIXES:
        return True
    if sniff_format(p) != "netcdf":
        return False
    try:
        import netCDF4

        with netCDF4.Dataset(str(p)) as nc:
            feature = str(getattr(nc, "featureType", ""))
    except Exception:  # noqa: BLE001 - unreadable here: the NWP reader will say why
        return False
    return feature.lower() == "timeseries"


# --------------------------------------------------------------------------- options
def _check_options(barnes_spacing, min_stations, min_speed) -> tuple[float | None, int, float]:
    if barnes_spacing is not None:
        barnes_spacing = number_option(
            "barnes_spacing", barnes_spacing, "expected a positive station spacing in metres"
        )
    if min_stations is None:
        min_stations = 1
    if (
        not isinstance(min_stations, int | np.integer)
        or isinstance(min_stations, bool)
        or min_stations < 1
    ):
        raise OptionError(
            f"{option('min_stations', min_stations)}: expected an integer of 1 or more"
        )
    if min_speed is None:
        min_speed = MIN_SPEED
    floor = number_option(
        "min_speed", min_speed, "expected a speed of 0 m/s or more (0: no floor)", inclusive=True
    )
    return barnes_spacing, int(min_stations), floor


def _refuse_nwp_options(given: dict) -> None:
    names = [name for name, value in given.items() if value not in (None, False)]
    if names:
        listed = ", ".join(option(n) for n in names)
        raise OptionError(
            f"{listed} {'applies' if len(names) == 1 else 'apply'} to NWP input, not to station "
            "observations (their winds are interpolated to the table grid by Barnes analysis, "
            "earth-relative); leave "
            f"{'it' if len(names) == 1 else 'them'} out"
        )


# --------------------------------------------------------------------------- observations
def _where(label_is_csv: bool, i: int) -> str:
    return f"line {i + 2}" if label_is_csv else f"observation {i + 1}"


def _check_time_order(obs: pd.DataFrame, label: str, is_csv: bool) -> None:
    """Each station's rows must come in increasing time (duplicates are refused by the reader)."""
    step = obs.groupby("station", sort=False)["time"].diff()
    bad = step.notna() & (step <= pd.Timedelta(0))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        row = obs.iloc[i]
        same = obs["station"].to_numpy()[:i] == row["station"]
        prev = obs["time"].to_numpy()[:i][same][-1]
        where = _where(is_csv, int(obs.index[i]))
        raise ObservationError(
            f"{label}: the times of station {row['station']!r} are not in increasing order "
            f"({time_text(row['time'])} on {where} comes after {time_text(prev)}); sort each station's "
            "rows by time"
        )


def _label(observations) -> tuple[str, bool]:
    if isinstance(observations, pd.DataFrame):
        return "observations (DataFrame)", False
    p = Path(observations)
    return str(p), sniff_format(p) != "netcdf"


def _display(label: str) -> str:
    """File name of a path label; the label itself for a DataFrame."""
    return label if label.startswith("observations (") else Path(label).name


def _station_arrays(obs: pd.DataFrame, names: list[str]):
    """``times (nt,)`` and speed/direction ``(nt, n)`` (NaN where a station has no row)."""
    times = np.unique(obs["time"].to_numpy())
    ti = np.searchsorted(times, obs["time"].to_numpy())
    si = pd.Categorical(obs["station"], categories=names).codes
    speed = np.full((times.size, len(names)), np.nan)
    direction = np.full_like(speed, np.nan)
    speed[ti, si] = obs["wind_speed"].to_numpy(dtype=np.float64)
    direction[ti, si] = obs["wind_direction"].to_numpy(dtype=np.float64)
    return times, speed, direction


def _warn_fast(speed: np.ndarray, max_speed: float, label: str) -> None:
    """One :class:`ImplausibleSpeedWarning` counting station speeds above ``max_speed``."""
    with np.errstate(invalid="ignore"):
        fast = speed > max_speed
    if fast.any():
        warnings.warn(
            f"{label}: {int(fast.sum())} of {int(np.isfinite(speed).sum())} station speeds are "
            f"above {option('max_speed', max_speed)} m/s (up to {float(speed[fast].max()):.4g} "
            "m/s): check that the observations are in m/s, or raise "
            f"{option('max_speed')} if such speeds are real",
            ImplausibleSpeedWarning,
            stacklevel=4,
        )


def _components(speed, direction, floor):
    """Earth-relative u/v (m/s) of the stations; NaN where a station has no valid value.

    A speed with a direction is raised to ``floor`` first (SnowModel); a calm (speed 0)
    without a direction counts as u = v = 0.
    """
    with np.errstate(invalid="ignore"):
        has_dir = np.isfinite(speed) & np.isfinite(direction)
        calm = (speed == 0) & ~np.isfinite(direction)
    s = np.where(has_dir, np.maximum(speed, floor), np.nan)
    u, v = speed_dir_to_uv(s, np.where(has_dir, direction, np.nan))
    u = np.where(calm, 0.0, u)
    v = np.where(calm, 0.0, v)
    return u, v, has_dir | calm


def _floor_outputs(outs, floor: float):
    """Raise output speeds below ``floor`` to it, keeping their direction (SnowModel)."""
    if floor <= 0:
        return outs
    speed, dirs, u, v = outs[:4]
    with np.errstate(invalid="ignore"):
        low = (speed < floor) & np.isfinite(dirs)
    if low.any():
        speed[low] = floor
        uf, vf = speed_dir_to_uv(np.float32(floor), dirs[low])
        u[low] = uf
        v[low] = vf
    return outs


def _times_text(times, steps) -> str:
    return names_text([time_text(times[i]) for i in steps], _MAX_TIMES)


# --------------------------------------------------------------------------- driver
def downscale_stations(
    observations,
    table,
    *,
    output=None,
    stations=None,
    barnes_spacing: float | None = None,
    min_stations: int | None = None,
    min_speed: float | None = None,
    chunk_time: int = 24,
    coarsen: int | None = None,
    angular_interpolation: str = "nearest",
    complevel: int = 1,
    quiet: bool = False,
    nwp_options: dict | None = None,
    max_speed: float = DEFAULT_MAX_SPEED,
    start=None,
    end=None,
) -> xr.Dataset:
    """Downscale weather-station winds with a correction table (see the module docstring).

    Parameters
    ----------
    observations : str, os.PathLike or pandas.DataFrame
        Station observations in the format of ``devine-onnx evaluate``
        (:func:`devine_onnx.io.observations.read_observations`): long CSV or CF timeSeries
        NetCDF; speeds in m/s, FROM directions in degrees clockwise from true north.
    table : str, os.PathLike, xarray.Dataset or CorrectionTable
        The correction table; its grid and CRS are the output's.
    output : str or os.PathLike, optional
        ``.nc`` or ``.zarr`` output, written under a private temporary name and renamed
        when complete (locked while the run lasts); None: an in-memory result.
    stations : str, os.PathLike or pandas.DataFrame, optional
        Station list (``station``, ``latitude``, ``longitude``): positions, and the selection
        of stations: rows of stations it does not list are left out (a note says which), so
        that a list without one station makes a leave-one-out run.
    barnes_spacing : float, optional
        Mean station spacing ``dn`` (m) of the Barnes filter; default: per time step from the
        table's area and the number of stations with values
        (:func:`devine_onnx.regrid.barnes.station_spacing`).
    min_stations : int, optional
        Time steps with fewer stations with values are NaN (one
        :class:`StationCountWarning` counts them); default 1. Fewer stations with values in
        the whole file, or no step with enough, is an error.
    min_speed : float, optional
        SnowModel's minimum wind speed (m/s, default :data:`MIN_SPEED` = 0.1): station speeds
        and output speeds below it are raised to it, keeping their direction. 0: no floor.
    chunk_time, coarsen, angular_interpolation, complevel, quiet
        As for :func:`~devine_onnx.downscaling.api.downscale`.
    nwp_options : dict, optional
        Options of NWP input given by the caller: any set one is refused.
    max_speed : float
        Station speeds above it (m/s) are counted in one
        :class:`~devine_onnx.downscaling.kernel.ImplausibleSpeedWarning` (speeds in km/h or
        knots?); they are used as given. ``inf``: no check.
    start, end : str or numpy.datetime64, optional
        Downscale only the observation times from ``start`` to ``end`` (both included, UTC),
        as for NWP input.

    Returns
    -------
    xarray.Dataset
        The CF output of :func:`~devine_onnx.downscaling.api.downscale` on the table grid at
        the distinct observation times, plus ``station_count(time)`` (stations used per step),
        ``station_used(time, station)`` (1 used, 0 missing) and ``station_latitude`` /
        ``station_longitude``; the global attribute ``stations`` lists the station names.

    Raises
    ------
    ObservationError, TableError, OptionError, OutputError
        One line naming the file or option. Nothing is written before the inputs are checked.
    """
    _refuse_nwp_options(nwp_options or {})
    if table is None:
        raise OptionError(
            "no correction table: station winds are downscaled with one (give --table)"
        )
    spacing, min_stations, floor = _check_options(barnes_spacing, min_stations, min_speed)
    options = DownscaleOptions(
        chunk_time=chunk_time, coarsen=coarsen, angular_interpolation=angular_interpolation,
        complevel=complevel, quiet=quiet, max_speed=max_speed, start=start, end=end,
    )  # fmt: skip
    if output is not None:
        check_writable(output)
    label, is_csv = _label(observations)
    obs, table_st = read_observations(observations, stations, drop_unlisted=stations is not None)
    unlisted = obs.attrs.get("unlisted_stations") or []
    if unlisted:
        LOGGER.info(
            "%s: %d station(s) not in the station list left out: %s",
            label, len(unlisted), ", ".join(map(str, unlisted[:10])),
        )  # fmt: skip
    if len(obs) == 0:
        raise ObservationError(
            f"{label}: none of its stations is in the station list {stations}; give a list "
            "naming the stations to use"
        )
    _check_time_order(obs, label, is_csv)
    names = [str(s) for s in table_st.index]
    times, speed, direction = _station_arrays(obs, names)
    window = window_index(times, options.start, options.end, label, "observations")
    if window is not None:
        times, speed, direction = times[window], speed[window], direction[window]
    _warn_fast(speed, options.max_speed, label)
    u_st, v_st, valid = _components(speed, direction, floor)

    n_with_values = int(valid.any(axis=0).sum())
    if n_with_values < min_stations:
        raise ObservationError(
            f"{label}: {n_with_values} station(s) have wind values (speed and direction) but "
            f"{option('min_stations', min_stations)} asks for at least {min_stations} per "
            "time step; add stations or lower it"
        )

    tbl = CorrectionTable.open(table)
    try:
        if not tbl.crs.is_projected:
            raise OptionError(
                f"{tbl.label}: the table's CRS is not projected; the Barnes analysis needs "
                "distances in metres (use a table built on a projected DEM)"
            )
        from pyproj import Transformer

        to_grid = Transformer.from_crs("EPSG:4326", tbl.crs, always_xy=True)
        sx, sy = to_grid.transform(
            table_st["longitude"].to_numpy(np.float64), table_st["latitude"].to_numpy(np.float64)
        )
        sx, sy = np.asarray(sx, np.float64), np.asarray(sy, np.float64)
        xmin, ymin, xmax, ymax = tbl.bounds
        with np.errstate(invalid="ignore"):
            inside = (sx >= xmin) & (sx <= xmax) & (sy >= ymin) & (sy <= ymax)
        if not inside.any():
            extent = lonlat_extent(tbl.x, tbl.y, tbl.crs) or f"x {xmin:g} to {xmax:g} m"
            lon, lat = table_st["longitude"].to_numpy(), table_st["latitude"].to_numpy()
            raise ObservationError(
                f"{label}: all {len(names)} stations lie outside the table grid ({extent}; "
                f"stations at lon {lon.min():.2f} to {lon.max():.2f}, lat {lat.min():.2f} to "
                f"{lat.max():.2f}); give stations within the table's area or a table covering "
                "them"
            )
        if not np.isfinite(sx).all() or not np.isfinite(sy).all():
            raise ObservationError(
                f"{label}: some station positions cannot be projected to the table's CRS; "
                "check their latitude/longitude"
            )
        if not inside.all():
            LOGGER.info(
                "%s: %d of %d stations lie outside the table grid; they take part in the "
                "analysis near the edges", label, int((~inside).sum()), len(names),
            )  # fmt: skip

        counts = valid.sum(axis=1).astype(np.int32)
        short = np.flatnonzero(counts < min_stations)
        if short.size == times.size:
            raise ObservationError(
                f"{label}: no time step has {min_stations} stations with values at once "
                f"({option('min_stations', min_stations)}; at most {int(counts.max())}); lower it"
            )
        if short.size:
            warnings.warn(
                f"{label}: {short.size} of {times.size} time steps have fewer than "
                f"{min_stations} stations with wind values ({_times_text(times, short)}): their "
                f"output is NaN ({option('min_stations', min_stations)})",
                StationCountWarning,
                stacklevel=3,
            )
        used = valid.copy()
        used[short] = False
        u_st = np.where(used, u_st, np.nan)
        v_st = np.where(used, v_st, np.nan)
        counts[short] = 0

        ds = TableDownscaler.on_table_grid(tbl, options, _stacklevel=3)
        area = (xmax - xmin) * (ymax - ymin)
        layout = _layout(
            ds, label, times, names, table_st, counts, used, spacing, floor, min_stations
        )
        src = SimpleNamespace(n_times=int(times.size), source=label)
        tx, ty = tbl.x, tbl.y

        def read(a, b):
            return u_st[a:b], v_st[a:b]

        def compute(u, v):
            uv = barnes(sx, sy, np.stack([u, v]), tx, ty, area=area, spacing=spacing)
            return _floor_outputs(ds.correct(uv[0], uv[1]), floor)

        def run(writer):
            ds.load()
            tbl.close()  # read: release the file
            try:
                stream(src, compute, writer, options.chunk_time, options.quiet, read=read)
            finally:
                ds.release()

        return write_output(output, layout, run, options.complevel)
    finally:
        tbl.close()


def _layout(ds, label, times, names, table_st, counts, used, spacing, floor, min_stations):
    """The output layout of an NWP run, with station attributes and variables."""
    t = ds.table
    base = ds.layout(
        SimpleNamespace(
            source=label, u_name="wind_speed", v_name="wind_direction", wind_frame=None, time=times
        )  # fmt: skip
    )
    src = t.dataset.encoding.get("source")
    table_name = Path(src).name if src else "in-memory Dataset"
    filt = (
        f"station spacing {spacing:g} m"
        if spacing is not None
        else "station spacing from the table area and the station count of each step"
    )
    method = (
        f"from {len(names)} weather stations by two-pass Barnes objective analysis ({filt}, "
        f"kappa* {KAPPA_STAR}, gamma {GAMMA}, minimum speed {floor:g} m/s), then with table "
        f"{table_name}"
    )
    attrs = global_attributes(
        source=label, u_name="wind_speed", v_name="wind_direction", nwp_wind_frame=None,
        table_attrs=t.attrs, table_name=table_name, grid_relative=False,
        options=ds.options.history(), synthetic_note=t.synthetic_note, method=method,
    )  # fmt: skip
    attrs["source"] = (
        f"weather-station observations {_display(label)}: "
        f"{len(names)} stations, interpolated to the table grid by Barnes objective analysis "
        "(Koch et al. 1983, as in SnowModel's MicroMet)"
    )
    attrs["station_source"] = str(label)
    attrs["stations"] = ", ".join(names)
    attrs["barnes_station_spacing"] = "per time step" if spacing is None else float(spacing)
    attrs["barnes_kappa_star"] = KAPPA_STAR
    attrs["barnes_gamma"] = GAMMA
    attrs["min_speed"] = float(floor)
    attrs["min_stations"] = int(min_stations)
    static = dict(base.static)
    static["station_count"] = xr.Variable(
        ("time",),
        counts.astype(np.int32),
        {
            "long_name": "number of weather stations used by the analysis at this time step",
            "units": "1",
            "comment": f"0: fewer than min_stations = {min_stations} stations had values; "
            "the wind is NaN at that step",
        },
    )
    static["station_used"] = xr.Variable(
        ("time", "station"),
        used.astype(np.int8),
        {
            "long_name": "1 where the station's wind was used at this time step",
            "flag_values": [0, 1],
            "flag_meanings": "not_used used",
            "comment": "stations in the order of the global attribute 'stations'",
        },
    )
    static["station_latitude"] = xr.Variable(
        ("station",),
        table_st["latitude"].to_numpy(np.float64),
        {"standard_name": "latitude", "units": "degrees_north"},
    )
    static["station_longitude"] = xr.Variable(
        ("station",),
        table_st["longitude"].to_numpy(np.float64),
        {"standard_name": "longitude", "units": "degrees_east"},
    )
    return base.replace(global_attrs=attrs, static=static)
