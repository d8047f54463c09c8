"""``devine-onnx evaluate``: scores against weather-station observations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, quiet_notes
from .options import NwpCrsOpt, QuietOpt, prepare_output


@app.command(
    epilog=(
        "[bold]Examples[/bold]:\n\n"
        "  devine-onnx evaluate stations_obs.csv wind_30m.nc micromet_30m.nc --nwp arome.nc "
        "-o metrics.csv --plots plots/\n\n"
        "  devine-onnx evaluate obs.csv wind.nc --stations stations.csv --time-tolerance 30min "
        "-o metrics.csv\n\n"
        "OBSERVATIONS: CSV with columns station, time (ISO 8601, UTC unless a zone is given), "
        "wind_speed (m s-1), wind_direction (degrees FROM), latitude, longitude (or in "
        "--stations), optional altitude; or a CF timeSeries NetCDF. Each WIND is a source "
        "named after its file stem; --nwp adds the source 'nwp'."
    )
)
def evaluate(
    observations: Annotated[
        Path, typer.Argument(help="Station observations (CSV in long format or CF NetCDF).")
    ],
    winds: Annotated[
        list[Path], typer.Argument(help="Downscaled outputs from 'downscale' (.nc or .zarr).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Metrics table to write (CSV).")],
    nwp: Annotated[
        Path | None,
        typer.Option("--nwp", help="Raw NWP forecast, evaluated as the source 'nwp'."),
    ] = None,
    nwp_crs: NwpCrsOpt = None,
    stations: Annotated[
        Path | None,
        typer.Option(
            "--stations",
            help="Station list (CSV: station, latitude, longitude, optional altitude).",
        ),
    ] = None,
    plots: Annotated[
        Path | None,
        typer.Option("--plots", help="Folder for scatter, direction-error and time-series PNGs."),
    ] = None,
    time_tolerance: Annotated[
        str | None,
        typer.Option(
            "--time-tolerance",
            help="Pair each observation with the nearest model time within this duration "
            "(e.g. 30min); default: exact times only.",
        ),
    ] = None,
    bilinear: Annotated[
        bool,
        typer.Option("--bilinear", help="Bilinear interpolation instead of the station's pixel."),
    ] = False,
    min_speed: Annotated[
        float,
        typer.Option(
            "--min-speed", min=0.0, help="Observed speed (m s-1) from which directions count."
        ),
    ] = 1.0,
    altitude_threshold: Annotated[
        float,
        typer.Option(
            "--altitude-threshold",
            min=0.0,
            help="Report stations whose altitude differs from the model's by more (m).",
        ),
    ] = 50.0,
    pairing: Annotated[
        str,
        typer.Option(
            "--pairing",
            help="common: score every source on the station-time pairs valid in all sources "
            "(default); per-source: each source on all its own pairs.",
        ),
    ] = "common",
    quiet: QuietOpt = False,
) -> None:
    """Score downscaled winds (and the raw forecast) against weather-station observations."""
    from devine_onnx.evaluation import evaluate as run_evaluate

    quiet_notes(quiet)
    prepare_output(output)

    result = run_evaluate(
        observations,
        winds,
        output=output,
        nwp=nwp,
        nwp_crs=nwp_crs,
        stations=stations,
        plots=plots,
        time_tolerance=time_tolerance,
        bilinear=bilinear,
        min_speed=min_speed,
        altitude_threshold=altitude_threshold,
        pairing=pairing,
        quiet=quiet,
    )
    if not quiet:
        result.print_summary()
