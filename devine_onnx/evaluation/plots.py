"""PNG plots of an evaluation: speed scatter, direction error and station time series."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from devine_onnx.evaluation.metrics import ALL_STATIONS, circular_difference
from devine_onnx.evaluation.stations import unique_name
from devine_onnx.io.atomic import atomic_output

__all__ = ["MAX_STATION_PLOTS", "plot_all"]

#: Time-series plots are drawn for at most this many stations (the first ones, in order of
#: first appearance in the observations).
MAX_STATION_PLOTS = 20


def _safe(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "x"
    return unique_name(base, taken)


def _save(fig, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def plot_all(pairs, metrics, source_names, folder: Path, min_speed) -> list[Path]:
    """Write the plots of an evaluation into ``folder`` (created if missing).

    Parameters
    ----------
    pairs, metrics : pandas.DataFrame
        As in :class:`~devine_onnx.evaluation.result.EvaluationResult`.
    source_names : list of str
        Sources, in order (colours C0, C1...).
    folder : pathlib.Path
        Folder of the PNG files (its parent must exist).
    min_speed : float
        Observed speed (m/s) from which direction errors are drawn.

    Returns
    -------
    list of pathlib.Path
        ``speed_<source>.png`` and ``direction_error_<source>.png`` per source, then
        ``timeseries_<station>.png`` for the first :data:`MAX_STATION_PLOTS` stations.
    """
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
