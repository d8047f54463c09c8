"""What :func:`~devine_onnx.evaluation.evaluate` returns, and its console summary."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from devine_onnx.evaluation.metrics import ALL_STATIONS

__all__ = ["EvaluationResult"]


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
    pairing : str
        ``"common"`` (every source scored on the station-time pairs valid in all sources) or
        ``"per-source"``.
    dropped_pairs : dict of str to int
        With ``"common"`` pairing and several sources: per source, its valid pairs (observed
        and model speed known) left out because another source has no value there. Empty
        otherwise.
    unmatched_observations : dict of str to int
        Per source, the observations whose time matches no time of that source (left out).
    """

    metrics: pd.DataFrame
    pairs: pd.DataFrame
    report: pd.DataFrame
    output: Path | None = None
    plots: list[Path] = field(default_factory=list)
    pairing: str = "common"
    dropped_pairs: dict[str, int] = field(default_factory=dict)
    unmatched_observations: dict[str, int] = field(default_factory=dict)

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
