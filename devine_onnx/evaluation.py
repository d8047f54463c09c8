"""Evaluation of downscaled winds (and the raw forecast) against weather stations.

:func:`evaluate` reads station observations, extracts the model values at the stations from
each downscaled output (``devine-onnx downscale``) and, optionally, from the raw NWP forecast,
pairs them in time and computes speed and direction scores per source and station and over
all stations. The CLI command ``devine-onnx evaluate`` calls it.

Rules (also in README.md and docs/method.md, "Station evaluation"):

- **Observations**: a CSV in long format (one row per station and time) with the columns
  ``station``, ``time`` (ISO 8601; UTC unless the text gives a zone), ``wind_speed`` (m s-1),
  ``wind_direction`` (degrees FROM, clockwise from true north), and ``latitude``/``longitude``
  (WGS 84 degrees; optional ``altitude`` in m) either in the same file (constant per station)
  or in a separate station list (``stations``: columns ``station``, ``latitude``,
  ``longitude``, optional ``altitude``), which then takes precedence. Or a CF
  discrete-sampling-geometry NetCDF (``featureType = "timeSeries"``: orthogonal or incomplete
  multidimensional arrays, contiguous or indexed ragged arrays). Missing values are empty
  cells or NaN. Two rows for the same station and time are refused.
- **Model value at a station**: the station's longitude/latitude are transformed (pyproj)
  into the output's CRS (its ``grid_mapping`` ``crs_wkt``); the value is that of the pixel
  containing the station (pixel edges half-way between centres), or with ``bilinear`` the
  bilinear interpolation of the four surrounding pixel centres (speed interpolated directly;
  direction from the interpolated wind vector; NaN if one of the corners is NaN). Grid-relative
  outputs (``--grid-relative``) are turned to true north with the meridian convergence at the
  station. Stations outside the grid, or whose pixel has no value at any matched time, are
  reported (:class:`StationWarning`) and skipped. Only the station pixels are read, in
  blocks of time steps of bounded memory.
- **NWP baseline** (``nwp``): the forecast's ``u``/``v`` are interpolated to the stations with
  the Delaunay (barycentric) interpolation of ``downscale`` (:class:`RegridWeights`; the NWP
  points are projected into the CRS of the first wind file, as ``downscale`` projects them
  into the table's CRS); speed and direction come from the interpolated components. The
  source is named ``nwp``.
- **Altitude**: when a station's altitude is known and the wind file carries an
  ``elevation(y, x)`` variable, stations whose altitude differs from the elevation of their
  pixel by more than ``altitude_threshold`` metres are reported (they are still evaluated).
  ``downscale`` outputs carry the table's elevation; for wind files without it the check
  is skipped (a note says so). The NWP source is never checked.
- **Times**: all times are UTC. By default an observation is paired with the model time equal
  to its own; with ``time_tolerance`` with the nearest model time at most that far away (ties
  go to the earlier model time; several observations can share one model time).
- **Metrics** over the pairs where both speeds are finite: ``n``, ``bias`` = mean(model −
  observed), ``mae``, ``rmse``, ``r`` (Pearson; NaN with fewer than 2 pairs or a constant
  series), ``relative_bias`` = bias / mean(observed). Over the pairs whose observed speed is
  at least ``min_speed`` and whose two directions are finite: ``direction_n``,
  ``direction_bias`` and ``direction_mae``, the mean and mean absolute value of the circular
  difference model − observed wrapped into (−180, 180] (:func:`circular_difference`). The row
  ``station = "all"`` pools the pairs of all stations of a source.
- **Source names**: the file stem of each wind file (``wind_30m.nc`` → ``wind_30m``), made
  unique by appending ``-2``, ``-3``... (``nwp`` is reserved for the NWP baseline).
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS, Transformer

from devine_onnx.errors import (
    InputFileError,
    NWPError,
    ObservationError,
    OptionError,
    OutputError,
    first_line,
)
from devine_onnx.io.atomic import atomic_output, check_writable
from devine_onnx.progress import progress_bar

__all__ = [
    "ALL_STATIONS",
    "MAX_STATION_PLOTS",
    "METRIC_COLUMNS",
    "EvaluationResult",
    "StationWarning",
    "circular_difference",
    "evaluate",
    "match_times",
    "pair_metrics",
    "read_observations",
]

LOGGER = logging.getLogger("devine_onnx")

#: Columns of the metrics table, in order (``altitude`` follows when any altitude is known).
METRIC_COLUMNS = [
    "source",
    "station",
    "n",
    "bias",
    "mae",
    "rmse",
    "r",
    "relative_bias",
    "direction_n",
    "direction_bias",
    "direction_mae",
    "latitude",
    "longitude",
]
#: Station name of the rows pooling all stations of a source.
ALL_STATIONS = "all"
#: Time-series plots are drawn for at most this many stations (the first ones, in order of
#: first appearance in the observations).
MAX_STATION_PLOTS = 20
#: Name of the NWP baseline source.
NWP_SOURCE = "nwp"
#: Bytes read at once from a wind file (a block of time steps of the stations' bounding box).
READ_BLOCK_BYTES = 64 << 20
#: Station names listed at most in one warning line.
_MAX_NAMES = 10

_OBS_COLUMNS = ("station", "time", "wind_speed", "wind_direction")
_STATION_COLUMNS = ("station", "latitude", "longitude")
_WIND_VARS = ("wind_speed", "wind_from_direction")
_ZARR_SUFFIXES = (".zarr",)


class StationWarning(UserWarning):
    """Stations skipped (outside the grid, no model value) or far from the model elevation."""


# --------------------------------------------------------------------------- small helpers
def circular_difference(a, b):
    """Circular difference ``a − b`` of directions in degrees, wrapped into ``(−180, 180]``.

    Parameters
    ----------
    a, b : array_like
        Directions in degrees (any range); broadcast together. NaN gives NaN.

    Returns
    -------
    numpy.ndarray
        ``d`` with ``−180 < d ≤ 180`` and ``d ≡ a − b (mod 360)``: 350 − 10 gives −20,
        10 − 350 gives 20, and an exact opposition gives +180.
    """
    d = np.mod(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), 360.0)
    return np.where(d > 180.0, d - 360.0, d)


def _parse_tolerance(value) -> np.int64:
    """Time tolerance in nanoseconds (0: exact matches)."""
    if value is None:
        return np.int64(0)
    try:
        td = pd.Timedelta(value)
    except (ValueError, TypeError):
        raise OptionError(
            f"--time-tolerance {value!r}: expected a duration such as 30min, 1h or PT30M"
        ) from None
    if pd.isna(td) or td < pd.Timedelta(0):
        raise OptionError(
            f"--time-tolerance {value!r}: expected a duration of 0 or more, such as 30min"
        )
    return np.int64(td.value)


def _ns(times) -> np.ndarray:
    """Times as int64 nanoseconds since 1970 (naive UTC)."""
    return np.asarray(times).astype("datetime64[ns]").view(np.int64)


def match_times(obs_times, model_times, tolerance=None) -> np.ndarray:
    """Index of the model time paired with each observation time, −1 when none.

    Parameters
    ----------
    obs_times, model_times : array_like of datetime64
        Naive UTC times; ``model_times`` need not be sorted.
    tolerance : str or pandas.Timedelta or datetime.timedelta, optional
        ``None`` (or 0): exact matches only. Else the nearest model time at most that far
        from the observation (ties go to the earlier model time).

    Returns
    -------
    numpy.ndarray
        int64 indices into ``model_times``, −1 for unmatched observations.
    """
    tol = _parse_tolerance(tolerance)
    obs = _ns(obs_times)
    model = _ns(model_times)
    out = np.full(obs.shape, -1, dtype=np.int64)
    if model.size == 0 or obs.size == 0:
        return out
    order = np.argsort(model, kind="stable")
    sorted_t = model[order]
    pos = np.searchsorted(sorted_t, obs, side="left")
    if tol == 0:
        p = np.minimum(pos, sorted_t.size - 1)
        hit = (pos < sorted_t.size) & (sorted_t[p] == obs)
        out[hit] = order[p[hit]]
        return out
    before = np.clip(pos - 1, 0, sorted_t.size - 1)
    after = np.clip(pos, 0, sorted_t.size - 1)
    d_before = np.where(pos > 0, obs - sorted_t[before], np.iinfo(np.int64).max)
    d_after = np.where(pos < sorted_t.size, sorted_t[after] - obs, np.iinfo(np.int64).max)
    take_after = d_after < d_before
    best = np.where(take_after, after, before)
    dist = np.where(take_after, d_after, d_before)
    hit = dist <= tol
    out[hit] = order[best[hit]]
    return out


def pair_metrics(model_speed, obs_speed, model_dir, obs_dir, min_speed: float = 1.0) -> dict:
    """Scores of one set of model/observation pairs (see the module docstring).

    Parameters
    ----------
    model_speed, obs_speed : array_like
        Speeds in m/s; pairs where either is NaN are left out of the speed scores.
    model_dir, obs_dir : array_like
        FROM directions in degrees; direction scores use the pairs with
        ``obs_speed >= min_speed`` and both directions finite.
    min_speed : float
        Smallest observed speed (m/s) whose direction is scored.

    Returns
    -------
    dict
        ``n``, ``bias``, ``mae``, ``rmse``, ``r``, ``relative_bias``, ``direction_n``,
        ``direction_bias``, ``direction_mae`` (NaN where undefined, counts as int).
    """
    ms = np.asarray(model_speed, dtype=np.float64)
    os_ = np.asarray(obs_speed, dtype=np.float64)
    md = np.asarray(model_dir, dtype=np.float64)
    od = np.asarray(obs_dir, dtype=np.float64)
    ok = np.isfinite(ms) & np.isfinite(os_)
    m, o = ms[ok], os_[ok]
    n = int(m.size)
    nan = float("nan")
    out = {"n": n, "bias": nan, "mae": nan, "rmse": nan, "r": nan, "relative_bias": nan}
    if n:
        err = m - o
        out["bias"] = float(err.mean())
        out["mae"] = float(np.abs(err).mean())
        out["rmse"] = float(np.sqrt((err * err).mean()))
        mean_o = float(o.mean())
        out["relative_bias"] = out["bias"] / mean_o if mean_o != 0 else nan
        if n >= 2:
            dm, do = m - m.mean(), o - mean_o
            den = math.sqrt(float((dm * dm).sum()) * float((do * do).sum()))
            out["r"] = float((dm * do).sum()) / den if den > 0 else nan
    with np.errstate(invalid="ignore"):
        dok = np.isfinite(os_) & (os_ >= min_speed) & np.isfinite(md) & np.isfinite(od)
    d = circular_difference(md[dok], od[dok])
    out["direction_n"] = int(d.size)
    out["direction_bias"] = float(d.mean()) if d.size else nan
    out["direction_mae"] = float(np.abs(d).mean()) if d.size else nan
    return out


def _names(items, limit: int = _MAX_NAMES) -> str:
    items = [str(i) for i in items]
    text = ", ".join(items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _fmt_time(t) -> str:
    return str(np.datetime64(t, "s")).replace("T", " ")


def _time_range(times) -> str:
    t = np.asarray(times)
    if t.size == 0:
        return "none"
    return f"{_fmt_time(t.min())} .. {_fmt_time(t.max())}"


# --------------------------------------------------------------------------- observations
def _line_of(label_kind: str, i: int) -> str:
    """Human position of row ``i``: a CSV line (header is line 1) or an observation number."""
    return f"line {i + 2}" if label_kind == "csv" else f"observation {i + 1}"


def _numeric(df: pd.DataFrame, col: str, label: str, kind: str, what: str) -> np.ndarray:
    s = df[col]
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    values = pd.to_numeric(s, errors="coerce")
    bad = values.isna() & s.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ObservationError(
            f"{label}: column {col!r} has the non-numeric value {str(s.iloc[i])!r} on "
            f"{_line_of(kind, i)}; expected {what} (empty or NaN for a missing value)"
        )
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _missing_columns(df, required, label, hint: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        found = ", ".join(map(str, df.columns)) or "none"
        raise ObservationError(
            f"{label}: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} ({hint}); columns found: {found}"
        )


def _read_csv(path: Path, label: str, dtype=None) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=dtype, skipinitialspace=True)
    except FileNotFoundError:
        raise ObservationError(f"{label}: file not found; give a CSV or NetCDF file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise ObservationError(
            f"{label}: cannot be read as CSV ({first_line(e)}); expected a header line and "
            "comma-separated values"
        ) from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _is_netcdf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
    except OSError:
        return False
    return magic[:3] == b"CDF" or magic == b"\x89HDF\r\n\x1a\n"


def _station_names(values, label: str, kind: str, column: str = "station") -> np.ndarray:
    s = pd.Series(values, dtype=object)
    empty = s.isna() | (s.astype(str).str.strip() == "")
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise ObservationError(
            f"{label}: column {column!r} is empty on {_line_of(kind, i)}; every row needs a "
            "station name"
        )
    names = s.astype(str).str.strip()
    if (names == ALL_STATIONS).any():
        raise ObservationError(
            f"{label}: column {column!r} names a station {ALL_STATIONS!r}, which is reserved "
            "for the rows over all stations; rename it"
        )
    return names.to_numpy(dtype=object)


def _parse_times(values, label: str, kind: str) -> np.ndarray:
    """ISO 8601 texts (or datetimes) -> naive UTC datetime64[ns]."""
    s = pd.Series(values)
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = s.cat.categories
        codes = s.cat.codes.to_numpy()
        parsed = pd.to_datetime(
            pd.Series(cats.astype(str)), utc=True, format="ISO8601", errors="coerce"
        )
        bad_cat = parsed.isna().to_numpy()
        bad = (codes < 0) | bad_cat[np.maximum(codes, 0)]
        text = np.where(
            codes >= 0, np.asarray(cats.astype(str), dtype=object)[np.maximum(codes, 0)], ""
        )
        t = parsed.dt.tz_convert(None).to_numpy().astype("datetime64[ns]")[np.maximum(codes, 0)]
    elif pd.api.types.is_datetime64_any_dtype(s):
        bad = s.isna().to_numpy()
        text = np.full(s.size, "", dtype=object)
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert(None)
        t = s.to_numpy().astype("datetime64[ns]")
    else:
        parsed = pd.to_datetime(s.astype("string"), utc=True, format="ISO8601", errors="coerce")
        bad = parsed.isna().to_numpy()
        text = s.to_numpy(dtype=object)
        t = parsed.dt.tz_convert(None).to_numpy().astype("datetime64[ns]")
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = text[i]
        shown = (
            "an empty value"
            if value is None or str(value) in ("", "nan", "<NA>")
            else (f"{str(value)!r}")
        )
        raise ObservationError(
            f"{label}: column 'time' has {shown} on {_line_of(kind, i)}; expected ISO 8601 "
            "times such as 2026-01-15T12:00 (UTC) or 2026-01-15T13:00+01:00"
        )
    return t


def _station_table(df: pd.DataFrame, label: str, kind: str, unique: bool = False) -> pd.DataFrame:
    """Validated station list: index = name; latitude, longitude, altitude (NaN if unknown).

    ``unique``: a station list (one row per station); else observation rows, where the
    coordinates repeated on every row of a station must agree.
    """
    names = _station_names(df["station"].to_numpy(), label, kind)
    lat = _numeric(df, "latitude", label, kind, "degrees north (WGS 84)")
    lon = _numeric(df, "longitude", label, kind, "degrees east (WGS 84)")
    alt = (
        _numeric(df, "altitude", label, kind, "metres above sea level")
        if "altitude" in df.columns
        else np.full(len(df), np.nan)
    )
    for col, v, lo, hi in (("latitude", lat, -90, 90), ("longitude", lon, -180, 360)):
        bad = ~np.isfinite(v) | (v < lo) | (v > hi)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ObservationError(
                f"{label}: column {col!r} has {v[i]!r} for station {names[i]!r} on "
                f"{_line_of(kind, i)}; expected WGS 84 degrees in [{lo}, {hi}]"
            )
    table = pd.DataFrame({"station": names, "latitude": lat, "longitude": lon, "altitude": alt})
    dup = table["station"].duplicated(keep=False)
    if unique and dup.any():
        i = int(np.flatnonzero(table["station"].duplicated().to_numpy())[0])
        raise ObservationError(
            f"{label}: station {names[i]!r} is listed twice in column 'station' "
            f"({_line_of(kind, i)}); list each station once"
        )
    if dup.any():
        # Several rows per station (coordinates repeated on every observation row): they
        # must agree.
        for col in ("latitude", "longitude", "altitude"):
            spread = table.groupby("station", sort=False)[col].agg(["min", "max"])
            diff = spread[~np.isclose(spread["min"], spread["max"], rtol=0, atol=1e-6)]
            if col == "altitude":
                diff = diff[diff["min"].notna()]
            if len(diff):
                name = diff.index[0]
                raise ObservationError(
                    f"{label}: station {name!r} has different values in column {col!r} "
                    f"({diff['min'].iloc[0]:g} and {diff['max'].iloc[0]:g}); give each "
                    "station one position"
                )
        alt_known = table.groupby("station", sort=False)["altitude"].max()
        table = table.drop_duplicates("station").set_index("station")
        table["altitude"] = alt_known.reindex(table.index)
        return table
    return table.set_index("station")


def _read_dsg(path: Path, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A CF DSG timeSeries NetCDF as a long DataFrame (station, time, speed, dir, lat, lon)."""
    try:
        ds = xr.open_dataset(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means "not readable"
        raise ObservationError(
            f"{label}: cannot be read as NetCDF ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    with ds:
        ft = str(ds.attrs.get("featureType", ""))
        if ft.lower() != "timeseries":
            raise ObservationError(
                f"{label}: global attribute featureType is {ft or 'missing'!r}; expected a "
                "CF discrete sampling geometry with featureType = 'timeSeries' (or give a CSV)"
            )
        variables = {**ds.coords, **ds.data_vars}

        def find(names, standard_names, required=True, what=""):
            for v in variables.values():
                if str(v.attrs.get("standard_name", "")) in standard_names:
                    return v
            for n in names:
                if n in variables:
                    return variables[n]
            if required:
                raise ObservationError(
                    f"{label}: no variable {names[0]!r} (standard_name {standard_names[0]}) "
                    f"for {what}; variables in the file: {', '.join(map(str, variables))}"
                )
            return None

        speed = find(("wind_speed",), ("wind_speed",), what="the wind speed (m s-1)")
        direction = find(
            ("wind_direction", "wind_from_direction"),
            ("wind_from_direction",),
            what="the wind FROM direction (degrees)",
        )
        lat = find(("latitude", "lat"), ("latitude",), what="the station latitudes")
        lon = find(("longitude", "lon"), ("longitude",), what="the station longitudes")
        time = find(("time",), ("time",), what="the observation times")
        ids = next(
            (v for v in variables.values() if v.attrs.get("cf_role") == "timeseries_id"), None
        )
        alt = find(
            ("altitude", "alt", "elevation", "station_altitude", "station_elevation"),
            ("surface_altitude", "altitude"),
            required=False,
        )
        if lat.ndim > 1 or lon.dims != lat.dims:
            raise ObservationError(
                f"{label}: variables {lat.name!r}/{lon.name!r} must be station coordinates "
                f"(one value per station); found dimensions {lat.dims} and {lon.dims}"
            )
        inst_dim = lat.dims[0] if lat.ndim == 1 else None
        n_inst = int(lat.size)
        if ids is not None and ids.dims[:1] == lat.dims[:1] and ids.size == n_inst:
            raw_ids = np.atleast_1d(ids.values)
            names = np.array(
                [v.decode().strip() if isinstance(v, bytes) else str(v).strip() for v in raw_ids],
                dtype=object,
            )
        else:
            names = np.array([str(i) for i in range(n_inst)], dtype=object)
        stations = pd.DataFrame(
            {
                "station": names,
                "latitude": np.atleast_1d(lat.values).astype(np.float64),
                "longitude": np.atleast_1d(lon.values).astype(np.float64),
                "altitude": (
                    np.atleast_1d(alt.values).astype(np.float64)
                    if alt is not None and alt.dims == lat.dims
                    else np.full(n_inst, np.nan)
                ),
            }
        )
        if speed.dims != direction.dims:
            raise ObservationError(
                f"{label}: variables {speed.name!r}{speed.dims} and {direction.name!r}"
                f"{direction.dims} have different dimensions"
            )
        if inst_dim is None or inst_dim in speed.dims:
            # (Incomplete) multidimensional arrays, or a single station.
            obs_dims = [d for d in speed.dims if d != inst_dim]
            if len(obs_dims) != 1:
                raise ObservationError(
                    f"{label}: variable {speed.name!r} has dimensions {speed.dims}; expected "
                    f"({inst_dim}, <time>) for a timeSeries file"
                )
            order = [d for d in (inst_dim, obs_dims[0]) if d is not None]
            sp, dr, tm = xr.broadcast(speed, direction, time)
            extra = [d for d in tm.dims if d not in order]
            if extra:
                raise ObservationError(
                    f"{label}: time variable {time.name!r} has dimensions {time.dims}; "
                    f"expected ({obs_dims[0]}) or ({inst_dim}, {obs_dims[0]})"
                )
            sp, dr, tm = (a.transpose(*order) for a in (sp, dr, tm))
            n_obs = sp.shape[-1]
            station_index = np.repeat(np.arange(n_inst), n_obs)
            sp, dr, tm = (a.values.reshape(-1) for a in (sp, dr, tm))
        else:
            if speed.ndim != 1:
                raise ObservationError(
                    f"{label}: variable {speed.name!r} has dimensions {speed.dims}; expected "
                    "one observation dimension for a ragged timeSeries file"
                )
            obs_dim = speed.dims[0]
            row_size = next(
                (v for v in variables.values() if v.attrs.get("sample_dimension") == obs_dim),
                None,
            )
            index = next(
                (v for v in variables.values() if v.attrs.get("instance_dimension") == inst_dim),
                None,
            )
            if row_size is not None:
                counts = np.asarray(row_size.values, dtype=np.int64)
                if counts.sum() != speed.size:
                    raise ObservationError(
                        f"{label}: variable {row_size.name!r} (sample_dimension) counts "
                        f"{counts.sum()} observations, {speed.name!r} has {speed.size}"
                    )
                station_index = np.repeat(np.arange(n_inst), counts)
            elif index is not None:
                station_index = np.asarray(index.values, dtype=np.int64)
            else:
                raise ObservationError(
                    f"{label}: ragged timeSeries without a count variable (attribute "
                    f"sample_dimension = {obs_dim!r}) or an index variable (attribute "
                    f"instance_dimension = {inst_dim!r})"
                )
            if time.dims != (obs_dim,):
                raise ObservationError(
                    f"{label}: time variable {time.name!r} has dimensions {time.dims}; "
                    f"expected ({obs_dim},)"
                )
            sp, dr, tm = speed.values, direction.values, time.values
        if not np.issubdtype(np.asarray(tm).dtype, np.datetime64):
            raise ObservationError(
                f"{label}: variable {time.name!r} is not a CF time (units 'seconds since ...')"
            )
        keep = ~pd.isna(tm)  # incomplete multidimensional arrays pad with missing times
        df = pd.DataFrame(
            {
                "station": names[station_index[keep]],
                "time": np.asarray(tm)[keep],
                "wind_speed": np.asarray(sp, dtype=np.float64)[keep],
                "wind_direction": np.asarray(dr, dtype=np.float64)[keep],
            }
        )
    return df, stations


def read_observations(observations, stations=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and validate station observations (see the module docstring for the format).

    Parameters
    ----------
    observations : str, os.PathLike or pandas.DataFrame
        CSV file in long format, CF DSG timeSeries NetCDF, or a DataFrame with the CSV
        columns (``time`` as texts or datetimes).
    stations : str, os.PathLike or pandas.DataFrame, optional
        Station list with ``station``, ``latitude``, ``longitude`` and optional ``altitude``;
        takes precedence over coordinates in ``observations``.

    Returns
    -------
    obs : pandas.DataFrame
        ``station`` (str), ``time`` (datetime64[ns], naive UTC), ``wind_speed`` (m/s),
        ``wind_direction`` (degrees FROM in [0, 360)), one row per station and time.
    station_table : pandas.DataFrame
        Indexed by station (in order of first appearance in ``obs``): ``latitude``,
        ``longitude``, ``altitude`` (NaN where unknown).

    Raises
    ------
    ObservationError
        Missing file or columns, non-numeric or out-of-range values, unparsable times, a
        station without coordinates or missing from ``stations``, duplicated station/time
        rows, no observations. The message names the file and the column.
    """
    dsg_stations = None
    if isinstance(observations, pd.DataFrame):
        raw, label, kind = observations.copy(), "observations (DataFrame)", "df"
        raw.columns = [str(c).strip() for c in raw.columns]
    else:
        p = Path(observations)
        label = str(p)
        if not p.is_file():
            raise ObservationError(
                f"{label}: file not found; give a CSV file (station, time, wind_speed, "
                "wind_direction, latitude, longitude) or a CF timeSeries NetCDF"
            )
        if _is_netcdf(p):
            raw, dsg_stations = _read_dsg(p, label)
            kind = "dsg"
        else:
            raw = _read_csv(p, label, dtype={"station": str, "time": "category"})
            kind = "csv"
    hint = "expected station, time, wind_speed, wind_direction"
    if stations is None and dsg_stations is None:
        hint += " and latitude, longitude (or give --stations)"
    _missing_columns(raw, _OBS_COLUMNS, label, hint)
    if len(raw) == 0:
        raise ObservationError(
            f"{label}: no observation rows; expected one row per station and time"
        )

    names = _station_names(raw["station"].to_numpy(), label, kind)
    times = _parse_times(raw["time"], label, kind)
    speed = _numeric(raw, "wind_speed", label, kind, "wind speeds in m s-1")
    direction = _numeric(raw, "wind_direction", label, kind, "FROM directions in degrees")
    with np.errstate(invalid="ignore"):
        neg = speed < 0
        bad_dir = (direction < 0) | (direction > 360)
    for col, bad, what in (
        ("wind_speed", neg, "a speed of 0 m s-1 or more"),
        ("wind_direction", bad_dir, "a FROM direction in degrees within [0, 360]"),
    ):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = speed[i] if col == "wind_speed" else direction[i]
            raise ObservationError(
                f"{label}: column {col!r} has {value:g} on {_line_of(kind, i)}; expected {what}"
            )
    direction = np.where(direction == 360, 0.0, direction)
    obs = pd.DataFrame(
        {"station": names, "time": times, "wind_speed": speed, "wind_direction": direction}
    )
    dup = obs.duplicated(["station", "time"], keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ObservationError(
            f"{label}: station {names[i]!r} has two rows at {_fmt_time(times[i])} (columns "
            f"station, time, {_line_of(kind, i)}); keep one row per station and time"
        )

    order = list(dict.fromkeys(names))
    if stations is not None:
        if isinstance(stations, pd.DataFrame):
            sraw, slabel, skind = stations.copy(), "stations (DataFrame)", "df"
        else:
            sp = Path(stations)
            slabel, skind = str(sp), "csv"
            if not sp.is_file():
                raise ObservationError(
                    f"{slabel}: file not found; give a CSV station list (station, latitude, "
                    "longitude, optional altitude)"
                )
            sraw = _read_csv(sp, slabel, dtype={"station": str})
        _missing_columns(
            sraw,
            _STATION_COLUMNS,
            slabel,
            "expected station, latitude, longitude, optional altitude",
        )
        table = _station_table(sraw, slabel, skind, unique=True)
        unknown = [s for s in order if s not in table.index]
        if unknown:
            i = int(np.flatnonzero(names == unknown[0])[0])
            raise ObservationError(
                f"{label}: station {unknown[0]!r} (column 'station', {_line_of(kind, i)}) is "
                f"not in {slabel}"
                + (
                    f" ({len(unknown)} unknown stations: {_names(unknown, 5)})"
                    if len(unknown) > 1
                    else ""
                )
                + "; add it to the station list or remove its rows"
            )
    elif dsg_stations is not None:
        table = _station_table(dsg_stations, label, kind, unique=True)
    else:
        _missing_columns(
            raw, ("latitude", "longitude"), label, "the station coordinates; or give --stations"
        )
        table = _station_table(raw, label, kind)
    table = table.loc[order]
    return obs, table


# --------------------------------------------------------------------------- sources
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
class _Source:
    name: str
    label: str
    times: np.ndarray
    inside: np.ndarray  # stations with a model value location
    outside_reason: str
    reader: object  # callable(t_idx_block) -> (speed (T, n), direction (T, n))
    block: int
    elevation: np.ndarray | None = None  # (n_station,) model elevation at the stations
    notes: list[str] = field(default_factory=list)
    crs: CRS | None = None
    dataset: xr.Dataset | None = None  # opened here from a path: closed at the end


def _unique_name(stem: str, taken: set[str]) -> str:
    name, k = stem, 2
    while name in taken:
        name = f"{stem}-{k}"
        k += 1
    taken.add(name)
    return name


def _wind_source(source, name, lon, lat, bilinear, label) -> _Source:
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
    notes = []
    if "elevation" in ds.variables and set(ds["elevation"].dims) == {"y", "x"}:
        elevation = np.full(lon.size, np.nan)
        inside = place.inside
        if inside.any():
            el = ds["elevation"].transpose("y", "x")
            elevation[inside] = el.isel(
                y=xr.DataArray(place.nearest_iy[inside], dims="station"),
                x=xr.DataArray(place.nearest_ix[inside], dims="station"),
            ).values
    else:
        notes.append(f"{label} has no elevation variable: the station altitude check is skipped")

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
    return _Source(
        name=name,
        label=label,
        times=times,
        inside=place.inside,
        outside_reason=f"outside the grid of {label} ({x_range} in {crs.name})",
        reader=reader,
        block=block,
        elevation=elevation,
        notes=notes,
        crs=crs,
        dataset=None if isinstance(source, xr.Dataset) else ds,
    )


def _nwp_source(nwp, lon, lat, tri_crs, nwp_crs, label) -> _Source:
    from devine_onnx.downscaling.regrid import RegridWeights
    from devine_onnx.io.nwp import open_nwp
    from devine_onnx.wind import uv_to_speed_dir

    winds = open_nwp(nwp, nwp_crs=nwp_crs)
    if not np.issubdtype(np.asarray(winds.time).dtype, np.datetime64):
        raise NWPError(f"{label}: the time axis is not made of dates; cannot match observations")
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

    return _Source(
        name=NWP_SOURCE,
        label=label,
        times=np.asarray(winds.time),
        inside=weights.valid.copy(),
        outside_reason=f"outside the NWP grid of {label}",
        reader=reader,
        block=block,
    )


def _stem(source, label: str) -> str:
    """Source name: the file name without its suffixes (``wind_30m.nc`` -> ``wind_30m``)."""
    if isinstance(source, xr.Dataset) and not source.encoding.get("source"):
        return "wind"
    name = Path(label).name
    for suffix in (".zarr", ".nc", ".nc4", ".netcdf"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or "wind"


def _label(source, default: str) -> str:
    if isinstance(source, xr.Dataset):
        src = source.encoding.get("source")
        return str(src) if src else default
    return str(source)


# --------------------------------------------------------------------------- result
@dataclass
class EvaluationResult:
    """What :func:`evaluate` returns.

    Attributes
    ----------
    metrics : pandas.DataFrame
        The metrics table (:data:`METRIC_COLUMNS`, plus ``altitude`` when known): per source
        one row ``station = "all"`` then one row per evaluated station.
    pairs : pandas.DataFrame
        Every matched pair: ``source``, ``station``, ``time`` (observation),
        ``model_time``, ``observed_speed``, ``observed_direction``, ``model_speed``,
        ``model_direction`` (NaN where either side is missing).
    report : pandas.DataFrame
        Stations skipped or flagged: ``source``, ``station``, ``issue`` (``outside``,
        ``no_value``, ``no_time``, ``altitude``) and ``detail``.
    output : pathlib.Path or None
        The CSV written.
    plots : list of pathlib.Path
        The images written.
    """

    metrics: pd.DataFrame
    pairs: pd.DataFrame
    report: pd.DataFrame
    output: Path | None = None
    plots: list[Path] = field(default_factory=list)

    def summary_table(self):
        """One row per source over all stations, as a :class:`rich.table.Table`."""
        from rich.table import Table

        table = Table(title="Evaluation against stations (all stations)")
        for col, justify in (
            ("source", "left"),
            ("stations", "right"),
            ("n", "right"),
            ("bias", "right"),
            ("mae", "right"),
            ("rmse", "right"),
            ("r", "right"),
            ("rel. bias", "right"),
            ("dir n", "right"),
            ("dir bias", "right"),
            ("dir mae", "right"),
        ):
            table.add_column(col, justify=justify)

        def f(v, fmt="{:.2f}"):
            return "-" if v is None or not np.isfinite(v) else fmt.format(v)

        m = self.metrics
        for _, row in m[m["station"] == ALL_STATIONS].iterrows():
            n_st = int(((m["source"] == row["source"]) & (m["station"] != ALL_STATIONS)).sum())
            table.add_row(
                str(row["source"]),
                str(n_st),
                str(int(row["n"])),
                f(row["bias"]),
                f(row["mae"]),
                f(row["rmse"]),
                f(row["r"], "{:.3f}"),
                f(row["relative_bias"], "{:+.1%}"),
                str(int(row["direction_n"])),
                f(row["direction_bias"], "{:.1f}°"),
                f(row["direction_mae"], "{:.1f}°"),
            )
        table.caption = "speeds in m s-1; direction errors model − observed in (−180°, 180°]"
        return table

    def print_summary(self, file=None) -> None:
        """Print :meth:`summary_table` (and the output paths) with rich."""
        from rich.console import Console

        console = Console(file=file or sys.stdout, width=120)
        console.print(self.summary_table())
        if self.output is not None:
            console.print(f"wrote {self.output}", highlight=False)
        if self.plots:
            console.print(
                f"wrote {len(self.plots)} plots in {self.plots[0].parent}", highlight=False
            )


# --------------------------------------------------------------------------- main entry
def _check_plots_dir(plots) -> Path:
    p = Path(plots)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{p}: --plots must be a folder, and this is a file; choose a folder")
    if not p.exists():
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(
                f"{p}: parent folder {parent} does not exist; create it or choose another "
                "--plots folder"
            )
        check_writable(p)
    elif not os.access(p, os.W_OK):
        raise OutputError(f"{p}: --plots folder is not writable; choose another folder")
    return p


def _check_output(output) -> Path:
    p = Path(output)
    if p.is_dir():
        raise OutputError(f"{p}: is a folder; give a CSV file name such as metrics.csv")
    return check_writable(p)


def _warn(message: str) -> None:
    warnings.warn(message, StationWarning, stacklevel=3)


def evaluate(
    observations,
    winds=(),
    *,
    output=None,
    nwp=None,
    stations=None,
    plots=None,
    time_tolerance=None,
    bilinear: bool = False,
    min_speed: float = 1.0,
    altitude_threshold: float = 50.0,
    nwp_crs=None,
    quiet: bool = False,
) -> EvaluationResult:
    """Score downscaled winds (and the raw forecast) against station observations.

    Parameters
    ----------
    observations : str, os.PathLike or pandas.DataFrame
        Observations: CSV in long format or CF DSG timeSeries NetCDF (see
        :func:`read_observations` and the module docstring).
    winds : path, xarray.Dataset or a sequence of them
        ``devine-onnx downscale`` outputs (NetCDF or Zarr); each is one source, named after
        its file stem (made unique with ``-2``, ``-3``...).
    output : str or os.PathLike, optional
        Metrics CSV to write (atomically).
    nwp : str, os.PathLike or xarray.Dataset, optional
        Raw NWP forecast evaluated as the source ``nwp`` (Delaunay interpolation to the
        stations, as ``downscale``).
    stations : str, os.PathLike or pandas.DataFrame, optional
        Station list (``station``, ``latitude``, ``longitude``, optional ``altitude``).
    plots : str or os.PathLike, optional
        Folder for the PNG plots (created if its parent exists): ``speed_<source>.png``
        (observed vs modelled speed), ``direction_error_<source>.png`` (direction error vs
        observed direction) and ``timeseries_<station>.png`` for the first
        :data:`MAX_STATION_PLOTS` stations.
    time_tolerance : str or pandas.Timedelta, optional
        Pair each observation with the nearest model time at most this far away (e.g.
        ``"30min"``); exact matches only by default.
    bilinear : bool
        Bilinear interpolation of the four surrounding pixels instead of the containing pixel.
    min_speed : float
        Observed speed (m/s) from which directions are scored (default 1).
    altitude_threshold : float
        Report stations whose altitude differs from the model elevation by more than this
        (metres; needs an ``elevation`` variable in the wind file).
    nwp_crs : str, optional
        CRS of the NWP coordinates (as ``downscale --nwp-crs``).
    quiet : bool
        No progress bar.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ObservationError
        Bad observations or station list (names the file and the column), or no observation
        time matching the times of a source.
    InputFileError, NWPError
        Unreadable wind or NWP file, or no station inside its grid.
    OptionError, OutputError
        Bad option values; output or plot folder not writable.
    """
    if isinstance(winds, str | os.PathLike | xr.Dataset):
        winds = [winds]
    winds = list(winds)
    if not winds and nwp is None:
        raise OptionError("no wind file to evaluate: give at least one WIND file (or --nwp)")
    try:
        min_speed = float(min_speed)
        altitude_threshold = float(altitude_threshold)
    except (TypeError, ValueError):
        raise OptionError(
            "--min-speed and --altitude-threshold must be numbers (m s-1 and m)"
        ) from None
    if not (np.isfinite(min_speed) and min_speed >= 0):
        raise OptionError(f"--min-speed {min_speed!r}: expected a speed of 0 m s-1 or more")
    if not (np.isfinite(altitude_threshold) and altitude_threshold >= 0):
        raise OptionError(f"--altitude-threshold {altitude_threshold!r}: expected 0 metres or more")
    tol = _parse_tolerance(time_tolerance)
    out_path = _check_output(output) if output is not None else None
    plots_dir = _check_plots_dir(plots) if plots is not None else None
    if out_path is not None and plots_dir is not None and out_path.resolve() == plots_dir.resolve():
        raise OptionError(f"--plots {plots_dir} is the metrics output too; choose another folder")

    obs, table = read_observations(observations, stations)
    obs_label = (
        "observations (DataFrame)" if isinstance(observations, pd.DataFrame) else str(observations)
    )
    station_names = table.index.to_numpy(dtype=object)
    lon = table["longitude"].to_numpy(dtype=np.float64)
    lat = table["latitude"].to_numpy(dtype=np.float64)
    alt = table["altitude"].to_numpy(dtype=np.float64)
    station_pos = pd.Index(station_names).get_indexer(obs["station"].to_numpy())

    # Open every source first (cheap), so that the progress bar knows the total.
    taken = {NWP_SOURCE} if nwp is not None else set()
    sources: list[_Source] = []
    try:
        for i, w in enumerate(winds):
            label = _label(w, f"wind dataset {i + 1}")
            name = _unique_name(_stem(w, label), taken)
            sources.append(_wind_source(w, name, lon, lat, bilinear, label))
        first_crs = sources[0].crs if sources else None
        if nwp is not None:
            sources.append(
                _nwp_source(nwp, lon, lat, first_crs, nwp_crs, _label(nwp, "NWP dataset"))
            )

        obs_t = obs["time"].to_numpy()
        report_rows = []
        plans = []
        for src in sources:
            for note in src.notes:
                if np.isfinite(alt).any():
                    LOGGER.info(note)
            idx = match_times(obs_t, src.times, pd.Timedelta(int(tol)))
            if not (idx >= 0).any():
                how = "exactly" if tol == 0 else f"within {pd.Timedelta(int(tol))}"
                raise ObservationError(
                    f"{obs_label}: no time in column 'time' ({_time_range(obs_t)} UTC) matches a "
                    f"time of {src.label} ({_time_range(src.times)}) {how}; check the time zone "
                    "of the observations or use --time-tolerance"
                )
            outside = ~src.inside
            if outside.all():
                raise InputFileError(
                    f"{src.label}: none of the {len(station_names)} stations lies inside its grid "
                    f"({src.outside_reason}); check the station coordinates (columns latitude, "
                    "longitude)"
                )
            for s in np.flatnonzero(outside):
                report_rows.append((src.name, station_names[s], "outside", src.outside_reason))
            if outside.any():
                _warn(
                    f"{src.name}: {int(outside.sum())} station(s) {src.outside_reason} are skipped: "
                    f"{_names(station_names[outside])}"
                )
            use = (idx >= 0) & src.inside[station_pos]
            need = np.unique(idx[use])
            plans.append((src, idx, use, need))

        total = sum(max(1, math.ceil(need.size / src.block)) for src, _, _, need in plans)
        pair_frames = []
        with progress_bar(total, "reading model values at the stations", quiet=quiet) as bar:
            for src, idx, use, need in plans:
                model_s = np.full(len(obs), np.nan)
                model_d = np.full(len(obs), np.nan)
                pos = np.searchsorted(need, idx)
                rows_all = np.flatnonzero(use)
                for a in range(0, max(need.size, 1), src.block):
                    b = min(a + src.block, need.size)
                    if b > a:
                        speed, direction = src.reader(need[a:b])
                        r = rows_all[(pos[rows_all] >= a) & (pos[rows_all] < b)]
                        model_s[r] = speed[pos[r] - a, station_pos[r]]
                        model_d[r] = direction[pos[r] - a, station_pos[r]]
                    bar.advance(1)
                # Stations inside the grid but without any value at the matched times.
                matched_st = np.zeros(len(station_names), dtype=bool)
                matched_st[station_pos[rows_all]] = True
                has_value = np.zeros(len(station_names), dtype=bool)
                has_value[station_pos[rows_all[np.isfinite(model_s[rows_all])]]] = True
                no_value = matched_st & ~has_value
                no_time = src.inside & ~matched_st
                for s in np.flatnonzero(no_value):
                    report_rows.append((src.name, station_names[s], "no_value", "NaN model pixel"))
                for s in np.flatnonzero(no_time):
                    report_rows.append(
                        (src.name, station_names[s], "no_time", "no observation at a model time")
                    )
                if no_value.any():
                    _warn(
                        f"{src.name}: {int(no_value.sum())} station(s) have no model value (NaN "
                        f"pixel) at any matched time and are skipped: "
                        f"{_names(station_names[no_value])}"
                    )
                if no_time.any():
                    _warn(
                        f"{src.name}: {int(no_time.sum())} station(s) have no observation at the "
                        f"times of {src.label}: {_names(station_names[no_time])}"
                    )
                if src.elevation is not None:
                    diff = np.abs(alt - src.elevation)
                    with np.errstate(invalid="ignore"):
                        far = src.inside & np.isfinite(diff) & (diff > altitude_threshold)
                    for s in np.flatnonzero(far):
                        report_rows.append(
                            (
                                src.name,
                                station_names[s],
                                "altitude",
                                f"station {alt[s]:.0f} m, model {src.elevation[s]:.0f} m",
                            )
                        )
                    if far.any():
                        listed = [
                            f"{station_names[s]} ({alt[s]:.0f} m vs {src.elevation[s]:.0f} m)"
                            for s in np.flatnonzero(far)
                        ]
                        _warn(
                            f"{src.name}: {int(far.sum())} station(s) differ from the model "
                            f"elevation by more than {altitude_threshold:g} m (still evaluated): "
                            f"{_names(listed)}"
                        )
                keep = use & has_value[station_pos]
                r = np.flatnonzero(keep)
                pair_frames.append(
                    pd.DataFrame(
                        {
                            "source": src.name,
                            "station": obs["station"].to_numpy()[r],
                            "time": obs_t[r],
                            "model_time": np.asarray(src.times)[idx[r]].astype("datetime64[ns]"),
                            "observed_speed": obs["wind_speed"].to_numpy()[r],
                            "observed_direction": obs["wind_direction"].to_numpy()[r],
                            "model_speed": model_s[r],
                            "model_direction": model_d[r],
                        }
                    )
                )

    finally:
        for src in sources:
            if src.dataset is not None:
                src.dataset.close()

    pairs = pd.concat(pair_frames, ignore_index=True)
    metrics = _metrics_table(pairs, [s.name for s in sources], table, min_speed)
    report = pd.DataFrame(report_rows, columns=["source", "station", "issue", "detail"])
    result = EvaluationResult(metrics=metrics, pairs=pairs, report=report)
    if plots_dir is not None:
        result.plots = _plot_all(pairs, metrics, [s.name for s in sources], plots_dir, min_speed)
    if out_path is not None:  # last: the CSV exists only when everything succeeded
        with atomic_output(out_path) as tmp:
            metrics.to_csv(tmp, index=False, na_rep="")
        result.output = out_path
    return result


def _metrics_table(pairs, source_names, table, min_speed) -> pd.DataFrame:
    rows = []
    groups = pairs.groupby(["source", "station"], sort=False).indices
    by_source = pairs.groupby("source", sort=False).indices
    cols = ("model_speed", "observed_speed", "model_direction", "observed_direction")
    arrays = {c: pairs[c].to_numpy(dtype=np.float64) for c in cols}
    with_alt = bool(np.isfinite(table["altitude"].to_numpy(dtype=np.float64)).any())
    for name in source_names:
        if name not in by_source:
            continue
        idx = by_source[name]
        row = {"source": name, "station": ALL_STATIONS}
        row.update(pair_metrics(*(arrays[c][idx] for c in cols), min_speed=min_speed))
        row.update(latitude=np.nan, longitude=np.nan)
        if with_alt:
            row["altitude"] = np.nan
        rows.append(row)
        for station in table.index:
            key = (name, station)
            if key not in groups:
                continue
            i = groups[key]
            row = {"source": name, "station": station}
            row.update(pair_metrics(*(arrays[c][i] for c in cols), min_speed=min_speed))
            row.update(
                latitude=table.at[station, "latitude"], longitude=table.at[station, "longitude"]
            )
            if with_alt:
                row["altitude"] = table.at[station, "altitude"]
            rows.append(row)
    columns = METRIC_COLUMNS + (["altitude"] if with_alt else [])
    out = pd.DataFrame(rows, columns=columns)
    for c in ("n", "direction_n"):
        out[c] = out[c].astype(np.int64)
    return out


# --------------------------------------------------------------------------- plots
def _safe(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "x"
    return _unique_name(base, taken)


def _save(fig, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _plot_all(pairs, metrics, source_names, folder: Path, min_speed) -> list[Path]:
    from matplotlib.figure import Figure

    folder.mkdir(exist_ok=True)
    written = []
    taken: set[str] = set()
    taken_stations: set[str] = set()
    colours = {name: f"C{i % 10}" for i, name in enumerate(source_names)}
    for name in source_names:
        p = pairs[pairs["source"] == name]
        safe = _safe(name, taken)
        row = metrics[(metrics["source"] == name) & (metrics["station"] == ALL_STATIONS)]
        fig = Figure(figsize=(6, 6), layout="constrained")
        ax = fig.add_subplot()
        ax.scatter(p["observed_speed"], p["model_speed"], s=6, alpha=0.5, color=colours[name])
        top = np.nanmax([p["observed_speed"].max(), p["model_speed"].max(), 1.0])
        top = float(top) * 1.05 if np.isfinite(top) else 1.0
        ax.plot([0, top], [0, top], color="k", lw=1, label="1:1")
        ax.set(xlim=(0, top), ylim=(0, top), aspect="equal")
        ax.set_xlabel("observed wind speed (m s-1)")
        ax.set_ylabel(f"{name} wind speed (m s-1)")
        if len(row):
            r0 = row.iloc[0]
            ax.set_title(
                f"{name}: n={int(r0['n'])}, bias={r0['bias']:.2f}, rmse={r0['rmse']:.2f}, "
                f"r={r0['r']:.2f}",
                fontsize=10,
            )
        ax.legend(loc="upper left")
        written.append(_save(fig, folder / f"speed_{safe}.png"))

        fig = Figure(figsize=(7, 4.5), layout="constrained")
        ax = fig.add_subplot()
        with np.errstate(invalid="ignore"):
            ok = p["observed_speed"].to_numpy() >= min_speed
        d = circular_difference(p["model_direction"].to_numpy(), p["observed_direction"].to_numpy())
        ax.scatter(
            p["observed_direction"].to_numpy()[ok], d[ok], s=6, alpha=0.5, color=colours[name]
        )
        ax.axhline(0, color="k", lw=1)
        ax.set(
            xlim=(0, 360), ylim=(-180, 180), xticks=range(0, 361, 45), yticks=range(-180, 181, 45)
        )
        ax.set_xlabel("observed wind FROM direction (degrees)")
        ax.set_ylabel("direction error model − observed (degrees)")
        ax.set_title(f"{name}: observed speed ≥ {min_speed:g} m s-1", fontsize=10)
        written.append(_save(fig, folder / f"direction_error_{safe}.png"))

    stations = list(dict.fromkeys(pairs["station"]))[:MAX_STATION_PLOTS]
    for station in stations:
        s = pairs[pairs["station"] == station]
        fig = Figure(figsize=(10, 6), layout="constrained")
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        first = s.drop_duplicates("time").sort_values("time")
        ax1.plot(first["time"], first["observed_speed"], "k.-", lw=1, ms=3, label="observed")
        ax2.plot(first["time"], first["observed_direction"], "k.", ms=3, label="observed")
        for name in source_names:
            q = s[s["source"] == name].sort_values("time")
            if len(q):
                ax1.plot(q["time"], q["model_speed"], "-", lw=1, color=colours[name], label=name)
                ax2.plot(
                    q["time"], q["model_direction"], ".", ms=3, color=colours[name], label=name
                )
        ax1.set_ylabel("wind speed (m s-1)")
        ax2.set(ylim=(0, 360), yticks=range(0, 361, 90))
        ax2.set_ylabel("FROM direction (degrees)")
        ax2.set_xlabel("time (UTC)")
        ax1.set_title(f"station {station}", fontsize=10)
        ax1.legend(loc="upper right", fontsize=8)
        fig.autofmt_xdate()
        written.append(_save(fig, folder / f"timeseries_{_safe(station, taken_stations)}.png"))
    return written
