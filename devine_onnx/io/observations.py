"""Reader of weather-station observations: a long-format CSV or a CF timeSeries NetCDF.

:func:`read_observations` returns one validated table of observations (station, time,
speed, direction) and one of station positions. ``devine-onnx evaluate``
(:mod:`devine_onnx.evaluation`) uses it; nothing here knows about model outputs.

Format (also in README.md and docs/method.md, "Station evaluation"):

- **CSV** in long format (one row per station and time) with the columns ``station``,
  ``time`` (ISO 8601; UTC unless the text gives a zone), ``wind_speed`` (m s-1),
  ``wind_direction`` (degrees FROM, clockwise from true north), and
  ``latitude``/``longitude`` (WGS 84 degrees; optional ``altitude`` in m) either in the same
  file (constant per station) or in a separate station list (``stations``: columns
  ``station``, ``latitude``, ``longitude``, optional ``altitude``), which then takes
  precedence.
- **CF discrete-sampling-geometry NetCDF** (``featureType = "timeSeries"``: orthogonal or
  incomplete multidimensional arrays, contiguous or indexed ragged arrays).
- Missing values are empty cells or NaN. Two rows for the same station and time are refused.
  The station name :data:`RESERVED_STATION` (``"all"``) is refused: it names the rows over
  all stations in the evaluation's metrics table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from devine_onnx.errors import ObservationError, first_line

__all__ = ["RESERVED_STATION", "read_observations"]

#: Station name refused in observations (the evaluation's rows over all stations).
RESERVED_STATION = "all"
#: Station names listed at most in one message.
_MAX_NAMES = 10

_OBS_COLUMNS = ("station", "time", "wind_speed", "wind_direction")
_STATION_COLUMNS = ("station", "latitude", "longitude")


def names_text(items, limit: int = _MAX_NAMES) -> str:
    """``"a, b, c and 7 more"``: at most ``limit`` items of a list, for one-line messages."""
    items = [str(i) for i in items]
    text = ", ".join(items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def time_text(t) -> str:
    """A time as ``YYYY-MM-DD hh:mm:ss`` (UTC), for messages."""
    return str(np.datetime64(t, "s")).replace("T", " ")


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
    if (names == RESERVED_STATION).any():
        raise ObservationError(
            f"{label}: column {column!r} names a station {RESERVED_STATION!r}, which is reserved "
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


def read_observations(
    observations, stations=None, *, drop_unlisted: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and validate station observations (format: see the module docstring).

    Parameters
    ----------
    observations : str, os.PathLike or pandas.DataFrame
        CSV file in long format, CF DSG timeSeries NetCDF, or a DataFrame with the CSV
        columns (``time`` as texts or datetimes).
    stations : str, os.PathLike or pandas.DataFrame, optional
        Station list with ``station``, ``latitude``, ``longitude`` and optional ``altitude``;
        takes precedence over coordinates in ``observations``.
    drop_unlisted : bool
        With ``stations``: leave out the rows of stations missing from the list (their
        names in ``obs.attrs["unlisted_stations"]``) instead of refusing them; a station
        list then selects stations (``downscale`` from stations, leave-one-out runs).

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
            f"{label}: station {names[i]!r} has two rows at {time_text(times[i])} (columns "
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
        if unknown and drop_unlisted:
            obs = obs[~np.isin(names, unknown)]
            obs.attrs["unlisted_stations"] = unknown
            order = [s for s in order if s in table.index]
        elif unknown:
            i = int(np.flatnonzero(names == unknown[0])[0])
            raise ObservationError(
                f"{label}: station {unknown[0]!r} (column 'station', {_line_of(kind, i)}) is "
                f"not in {slabel}"
                + (
                    f" ({len(unknown)} unknown stations: {names_text(unknown, 5)})"
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
