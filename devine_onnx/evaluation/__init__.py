"""Evaluation of downscaled winds (and the raw forecast) against weather stations.

:func:`evaluate` reads station observations, extracts the model values at the stations from
each downscaled output (``devine-onnx downscale``) and, optionally, from the raw NWP forecast,
pairs them in time and computes speed and direction scores per source and station and over
all stations. The CLI command ``devine-onnx evaluate`` calls it.

One concept per module (rules also in README.md and docs/method.md, "Station evaluation"):

- :mod:`devine_onnx.io.observations`: the observation reader (CSV in long format or CF
  DSG timeSeries NetCDF; speeds in m s-1, FROM directions in degrees clockwise from true
  north, times in UTC, station positions in WGS 84).
- :mod:`~devine_onnx.evaluation.stations`: model values at the stations (containing pixel or
  bilinear; grid-relative outputs turned to true north; the NWP baseline with the Delaunay
  weights of ``downscale``, projected into the CRS of the first wind file; model files that
  repeat a time are refused).
- :mod:`~devine_onnx.evaluation.pairs`: time matching (exact, or the nearest model time
  within ``time_tolerance``) and the pairing of the sources: by default (``"common"``) every
  source is scored on the station-time pairs valid in all sources; ``"per-source"`` keeps
  each source's own pairs.
- :mod:`~devine_onnx.evaluation.metrics`: the scores and the metrics table (row
  ``station = "all"`` pooling the pairs of all stations of a source).
- :mod:`~devine_onnx.evaluation.plots` and :mod:`~devine_onnx.evaluation.result`.

What is reported: stations outside a grid or without a model value are skipped with a
:class:`StationWarning` per source; stations whose altitude differs from the model
``elevation(y, x)`` by more than ``altitude_threshold`` metres are listed in ONE warning per
run (still evaluated); wind files without ``elevation`` are named in one note (INFO record of
the ``devine_onnx`` logger). Observations outside the times of a source and, with common
pairing, the pairs each source loses are counted in notes and in the result
(:attr:`EvaluationResult.unmatched_observations`, :attr:`EvaluationResult.dropped_pairs`).
Source names are the file stems of the wind files (``wind_30m.nc`` -> ``wind_30m``), made
unique by appending ``-2``, ``-3``... (``nwp`` is reserved for the NWP baseline).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from devine_onnx.errors import InputFileError, ObservationError, OptionError, OutputError
from devine_onnx.evaluation.metrics import (
    ALL_STATIONS,
    METRIC_COLUMNS,
    circular_difference,
    metrics_table,
    pair_metrics,
)
from devine_onnx.evaluation.pairs import PAIRINGS, common_pairs, match_times, parse_tolerance
from devine_onnx.evaluation.plots import MAX_STATION_PLOTS, plot_all
from devine_onnx.evaluation.result import EvaluationResult
from devine_onnx.evaluation.stations import (
    NWP_SOURCE,
    READ_BLOCK_BYTES,
    ModelSource,
    nwp_source,
    source_label,
    source_stem,
    unique_name,
    wind_source,
)
from devine_onnx.io.atomic import atomic_output, check_writable
from devine_onnx.io.observations import names_text, read_observations, time_text
from devine_onnx.progress import progress_bar

__all__ = [
    "ALL_STATIONS",
    "MAX_STATION_PLOTS",
    "METRIC_COLUMNS",
    "NWP_SOURCE",
    "PAIRINGS",
    "READ_BLOCK_BYTES",
    "EvaluationResult",
    "StationWarning",
    "circular_difference",
    "evaluate",
    "match_times",
    "pair_metrics",
    "read_observations",
]

LOGGER = logging.getLogger("devine_onnx")


class StationWarning(UserWarning):
    """Stations skipped (outside the grid, no model value) or far from the model elevation."""


def _time_range(times) -> str:
    t = np.asarray(times)
    if t.size == 0:
        return "none"
    return f"{time_text(t.min())} .. {time_text(t.max())}"


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
    pairing: str = "common",
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
    pairing : {"common", "per-source"}
        ``"common"`` (default): every source is scored on the same station-time pairs, those
        with an observed speed and a model speed in every source, so that the rows of two
        sources compare the same samples; the pairs dropped per source are counted in
        :attr:`EvaluationResult.dropped_pairs` (and a note says how many). ``"per-source"``:
        each source is scored on all its own pairs (the raw NWP then counts stations that a
        downscaled output does not cover).
    quiet : bool
        No progress bar. Notes go to the ``devine_onnx`` logger (INFO) in any case;
        warnings (:class:`StationWarning`) are Python warnings.

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
    if pairing not in PAIRINGS:
        raise OptionError(
            f"--pairing {pairing!r}: expected {' or '.join(PAIRINGS)} (common: every source on "
            "the station-time pairs valid in all sources)"
        )
    tol = parse_tolerance(time_tolerance)
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
    sources: list[ModelSource] = []
    try:
        for i, w in enumerate(winds):
            label = source_label(w, f"wind dataset {i + 1}")
            name = unique_name(source_stem(w, label), taken)
            sources.append(wind_source(w, name, lon, lat, bilinear, label))
        first_crs = sources[0].crs if sources else None
        if nwp is not None:
            sources.append(
                nwp_source(nwp, lon, lat, first_crs, nwp_crs, source_label(nwp, "NWP dataset"))
            )

        obs_t = obs["time"].to_numpy()
        report_rows = []
        plans = []
        left_out: dict[str, int] = {}
        no_elevation = [s.label for s in sources if s.kind == "wind" and s.elevation is None]
        if no_elevation and np.isfinite(alt).any():
            LOGGER.info(
                "%s %s no elevation variable: the station altitude check is skipped for %s",
                names_text(no_elevation),
                "has" if len(no_elevation) == 1 else "have",
                "it" if len(no_elevation) == 1 else "them",
            )
        for src in sources:
            idx = match_times(obs_t, src.times, pd.Timedelta(int(tol)))
            how = "exactly" if tol == 0 else f"within {pd.Timedelta(int(tol))}"
            if not (idx >= 0).any():
                raise ObservationError(
                    f"{obs_label}: no time in column 'time' ({_time_range(obs_t)} UTC) matches a "
                    f"time of {src.label} ({_time_range(src.times)}) {how}; check the time zone "
                    "of the observations or use --time-tolerance"
                )
            unmatched = idx < 0
            left_out[src.name] = int(unmatched.sum())
            if unmatched.any():
                LOGGER.info(
                    "%s: %d of %d observations (%s UTC) match no time of %s (%s) %s and are "
                    "left out",
                    src.name,
                    int(unmatched.sum()),
                    len(obs),
                    _time_range(obs_t[unmatched]),
                    src.label,
                    _time_range(src.times),
                    how,
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
                    f"{names_text(station_names[outside])}"
                )
            use = (idx >= 0) & src.inside[station_pos]
            plans.append((src, idx, use))

        total = sum(src.n_blocks(idx[use]) for src, idx, use in plans)
        values = []  # per source: (src, idx, rows kept, model speed, model direction)
        far_at: dict[int, list[tuple[str, float]]] = {}  # station -> [(source, elevation)]
        with progress_bar(total, "reading model values at the stations", quiet=quiet) as bar:
            for src, idx, use in plans:
                model_s, model_d = src.values_at(idx, use, station_pos, bar.advance)
                rows_all = np.flatnonzero(use)
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
                        f"{names_text(station_names[no_value])}"
                    )
                if no_time.any():
                    _warn(
                        f"{src.name}: {int(no_time.sum())} station(s) have no observation at the "
                        f"times of {src.label}: {names_text(station_names[no_time])}"
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
                        far_at.setdefault(int(s), []).append((src.name, float(src.elevation[s])))
                keep = use & has_value[station_pos]
                values.append((src, idx, keep, model_s, model_d))
    finally:
        for src in sources:
            if src.dataset is not None:
                src.dataset.close()

    if far_at:
        _warn(
            f"{len(far_at)} station(s) differ from the model elevation by more than "
            f"{altitude_threshold:g} m (still evaluated): "
            + names_text(
                _altitude_text(station_names[s], alt[s], far_at[s]) for s in sorted(far_at)
            )
        )
    dropped: dict[str, int] = {}
    if pairing == "common" and len(values) > 1:
        rows, dropped = _common_rows(values, obs, obs_label)
    else:
        rows = [np.flatnonzero(keep) for _, _, keep, _, _ in values]
    pair_frames = [
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
        for (src, idx, _, model_s, model_d), r in zip(values, rows, strict=True)
    ]
    pairs = pd.concat(pair_frames, ignore_index=True)
    names = [s.name for s in sources]
    metrics = metrics_table(pairs, names, table, min_speed)
    report = pd.DataFrame(report_rows, columns=["source", "station", "issue", "detail"])
    result = EvaluationResult(
        metrics=metrics,
        pairs=pairs,
        report=report,
        pairing=pairing,
        dropped_pairs=dropped,
        unmatched_observations=left_out,
    )
    if plots_dir is not None:
        result.plots = plot_all(pairs, metrics, names, plots_dir, min_speed)
    if out_path is not None:  # last: the CSV exists only when everything succeeded
        with atomic_output(out_path) as tmp:
            metrics.to_csv(tmp, index=False, na_rep="")
        result.output = out_path
    return result


def _altitude_text(station, altitude: float, elevations: list[tuple[str, float]]) -> str:
    """``B (1200 m vs 1000 m)``, or with several sources of different elevations
    ``B (1200 m vs 1000 m in wind_30m, 1012 m in micromet)``."""
    shown = {f"{e:.0f}" for _, e in elevations}
    if len(shown) == 1:
        return f"{station} ({altitude:.0f} m vs {elevations[0][1]:.0f} m)"
    listed = ", ".join(f"{e:.0f} m in {name}" for name, e in elevations)
    return f"{station} ({altitude:.0f} m vs {listed})"


def _common_rows(values, obs: pd.DataFrame, obs_label: str):
    """Observation rows valid in every source, and the pairs dropped per source."""
    observed = np.isfinite(obs["wind_speed"].to_numpy(dtype=np.float64))
    valid = [keep & np.isfinite(model_s) & observed for _, _, keep, model_s, _ in values]
    common = common_pairs(valid)
    n = int(common.sum())
    dropped = {src.name: int(v.sum()) - n for (src, *_), v in zip(values, valid, strict=True)}
    if n == 0:
        raise ObservationError(
            f"{obs_label}: no station-time pair has an observed speed and a model speed in every "
            f"source ({', '.join(f'{k}: {int(v.sum())} pairs' for k, v in zip(dropped, valid, strict=True))}); "
            "check that the sources cover the same stations and times, or use --pairing per-source"
        )
    if any(dropped.values()):
        LOGGER.info(
            "all sources are scored on the %d station-time pairs valid in every source; pairs "
            "dropped: %s (--pairing per-source keeps them)",
            n,
            ", ".join(f"{k} {v}" for k, v in dropped.items()),
        )
    r = np.flatnonzero(common)
    return [r] * len(values), dropped
