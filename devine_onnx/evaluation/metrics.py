"""Scores of model/observation pairs: speed and direction metrics and the metrics table.

Over the pairs where both speeds are finite: ``n``, ``bias`` = mean(model − observed),
``mae``, ``rmse``, ``r`` (Pearson; NaN with fewer than 2 pairs or a constant series),
``relative_bias`` = bias / mean(observed). Over the pairs whose observed speed is at least
``min_speed`` and whose two directions are finite: ``direction_n``, ``direction_bias`` and
``direction_mae``, the mean and mean absolute value of the circular difference
model − observed wrapped into (−180, 180] (:func:`circular_difference`). Speeds in m/s,
directions in degrees FROM, clockwise from true north.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from devine_onnx.io.observations import RESERVED_STATION

__all__ = ["ALL_STATIONS", "METRIC_COLUMNS", "circular_difference", "metrics_table", "pair_metrics"]

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
ALL_STATIONS = RESERVED_STATION


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


def metrics_table(pairs, source_names, table, min_speed) -> pd.DataFrame:
    """The metrics table: per source one row over all stations, then one row per station.

    Parameters
    ----------
    pairs : pandas.DataFrame
        Pairs as in :attr:`EvaluationResult.pairs` (``source``, ``station``, speeds in m/s,
        FROM directions in degrees).
    source_names : list of str
        Sources in output order (sources without pairs are left out).
    table : pandas.DataFrame
        Station table indexed by name: ``latitude``, ``longitude``, ``altitude``.
    min_speed : float
        Smallest observed speed (m/s) whose direction is scored.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`METRIC_COLUMNS` (plus ``altitude`` when any altitude is known).
    """
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
