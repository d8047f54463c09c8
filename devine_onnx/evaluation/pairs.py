"""Pairing observations with model values in time, and choosing the pairs to score.

- **Times**: all times are UTC. By default an observation is paired with the model time
  equal to its own; with a tolerance with the nearest model time at most that far away (ties
  go to the earlier model time; several observations can share one model time)
  (:func:`match_times`).
- **Pairing of the sources** (:func:`common_pairs`): with ``"common"`` (the default of
  :func:`~devine_onnx.evaluation.evaluate`) every source is scored on the same
  station-time pairs, those with an observed speed and a model speed in every source; with
  ``"per-source"`` each source keeps all its own pairs, so that the rows of two sources can
  be computed on different stations and times.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from devine_onnx.errors import OptionError

__all__ = ["PAIRINGS", "common_pairs", "match_times", "parse_tolerance"]

#: Accepted values of ``pairing``.
PAIRINGS = ("common", "per-source")


def parse_tolerance(value) -> np.int64:
    """Time tolerance in nanoseconds (0: exact matches).

    Parameters
    ----------
    value : str, pandas.Timedelta, datetime.timedelta or None
        A duration such as ``"30min"`` or ``"PT30M"``; ``None`` means exact matches.

    Returns
    -------
    numpy.int64
        The tolerance in nanoseconds.
    """
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
    tol = parse_tolerance(tolerance)
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


def common_pairs(valid) -> np.ndarray:
    """Observation rows that form a valid pair in every source.

    Parameters
    ----------
    valid : sequence of numpy.ndarray of bool
        One mask per source over the observation rows: ``True`` where the row has an
        observed speed and a model speed in that source (time matched, station covered).

    Returns
    -------
    numpy.ndarray of bool
        The rows valid in all sources (the logical AND of the masks).
    """
    valid = [np.asarray(v, dtype=bool) for v in valid]
    if not valid:
        raise ValueError("common_pairs needs at least one source")
    return np.logical_and.reduce(valid)
