"""``devine-onnx regrid`` and ``devine-onnx downscale``: from NWP winds to the table's grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, done, quiet_notes
from .options import (
    MODEL_ENV,
    DemCrsOpt,
    Device,
    Interp,
    NwpCrsOpt,
    QuietOpt,
    TableOpt,
    WindFrame,
    model_from_environment,
    prepare_output,
)


@app.command(
    epilog=(
        "[bold]Example[/bold]:\n\n"
        "  devine-onnx regrid arome_2026-01.nc --table belledonne_table.nc -o arome_weights.nc"
        "\n\nThe weights fit every NWP file on the same grid: pass them to downscale --weights."
    )
)
def regrid(
    nwp: Annotated[Path, typer.Argument(help="NWP file (NetCDF/GRIB/Zarr) giving the grid.")],
    table: TableOpt,
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="Regridding weights file to write (NetCDF, .nc)."),
    ],
    nwp_crs: NwpCrsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Build the Delaunay interpolation weights from an NWP grid to a table's grid."""
    from devine_onnx.regrid.cache import build_weights

    quiet_notes(quiet)
    prepare_output(output)
    weights = build_weights(nwp, table, nwp_crs=nwp_crs, output=output)
    n_out = getattr(weights, "n_outside", 0)
    n_t = getattr(weights, "n_target", 0)
    extra = f" ({n_out} outside the NWP grid)" if n_out else ""
    done(quiet, f"wrote {output}: {n_t} table pixels{extra}")


# ---------------------------------------------------------------------------- downscale
@app.command(
    epilog=(
        "[bold]Example[/bold]:\n\n"
        "  devine-onnx downscale arome_2026-01.nc --table belledonne_table.nc "
        "--weights arome_weights.nc -o wind_2026-01.nc\n\n"
        "  devine-onnx downscale era5.zarr --table table.nc --u-var u10 --v-var v10 "
        "-o wind.zarr --chunk-time 48\n\n"
        "  devine-onnx downscale arome_2026-01.nc --table belledonne_table.nc "
        "--start 2026-01-15T06:00 --end 2026-01-16T06:00 -o wind_15th.nc   (a time window, "
        "UTC)\n\n"
        "  devine-onnx downscale arome.nc --per-step -m devine-low-bias.onnx "
        "--dem dem_wborder2.tif -o wind.nc   (devine-torch, one network pass per step)\n\n"
        "  devine-onnx downscale stations.csv --table table.nc -o wind.nc   (weather-station "
        "winds, Barnes analysis per step; --stations S.csv: positions and which stations)"
    )
)
def downscale(
    ctx: typer.Context,
    nwp: Annotated[
        Path,
        typer.Argument(
            help="NWP wind series (NetCDF/GRIB/Zarr), or weather-station observations (CSV or "
            "CF timeSeries NetCDF, as for evaluate).",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="Output to write (.nc NetCDF or .zarr)."),
    ],
    table: Annotated[
        Path | None,
        typer.Option("--table", "-t", help="Correction table from 'corrections'."),
    ] = None,
    u_var: Annotated[
        str | None, typer.Option("--u-var", help="Name of the eastward wind variable.")
    ] = None,
    v_var: Annotated[
        str | None, typer.Option("--v-var", help="Name of the northward wind variable.")
    ] = None,
    nwp_crs: NwpCrsOpt = None,
    nwp_wind_frame: Annotated[
        WindFrame | None,
        typer.Option(
            "--nwp-wind-frame",
            metavar="<earth|grid>",
            help="NWP u/v relative to true north (earth) or to the NWP grid (grid: rotated to "
            "true north). Needed on a projected grid when the file does not say.",
        ),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option("--weights", "-w", help="Weights from 'regrid'.")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Folder of the weights cache, shared by all forecasts on one NWP grid "
            "(default: $DEVINE_ONNX_CACHE_DIR, else ~/.cache/devine-onnx).",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not cache the regridding weights.")
    ] = False,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            metavar="<time>",
            help="First forecast time to downscale, ISO (e.g. 2026-01-15T06:00), UTC unless "
            "an offset is given; included.",
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--end",
            metavar="<time>",
            help="Last forecast time to downscale (ISO, UTC; included). A date alone is 00:00.",
        ),
    ] = None,
    chunk_time: Annotated[
        int,
        typer.Option(
            "--chunk-time",
            metavar="<n>",
            help="Time steps processed at once (--per-step: at most; fewer if --max-memory asks).",
        ),
    ] = 24,
    coarsen: Annotated[
        int | None,
        typer.Option(
            "--coarsen",
            metavar="<n>",
            help="Average N x N table pixels in the output (a remainder is left out, with a "
            "warning).",
        ),
    ] = None,
    grid_relative: Annotated[
        bool,
        typer.Option(
            "--grid-relative",
            help="The NWP components are relative to the table's grid north (no convergence "
            "rotation); write x_wind / y_wind.",
        ),
    ] = False,
    angular_interpolation: Annotated[
        Interp,
        typer.Option(
            "--angular-interpolation",
            metavar="<method>",
            help="Table lookup between directions: nearest, or linear (blends the two nearest; "
            "better for tables with fewer than 360 directions).",
        ),
    ] = Interp.nearest,
    complevel: Annotated[
        int,
        typer.Option(
            "--complevel",
            metavar="<0-9>",
            help="Deflate level of .nc outputs: 1-3 fast (ISA-L), 4-9 slower zlib, 0 none.",
        ),
    ] = 1,
    per_step: Annotated[
        bool,
        typer.Option(
            "--per-step",
            help="No table: run a devine-torch feature network (-m) on the DEM (--dem) once "
            "per time step, with the local wind direction (slower, no table approximation).",
        ),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "-m",
            "--model",
            envvar=MODEL_ENV,
            show_envvar=False,
            metavar="MODEL",
            help=f"Feature-network model (devine-torch, converted), with --per-step; default "
            f"from {MODEL_ENV}.",
        ),
    ] = None,
    dem: Annotated[
        Path | None,
        typer.Option("--dem", help="DEM with its 2-cell frame, with --per-step."),
    ] = None,
    dem_crs: DemCrsOpt = None,
    device: Annotated[
        Device, typer.Option("--device", help="Where the network runs, with --per-step.")
    ] = Device.auto,
    coarse_cell: Annotated[
        float | None,
        typer.Option("--coarse-cell", help="Coarse cell of reldem in metres, with --per-step."),
    ] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory",
            metavar="<size>",
            help="Memory the run may use (e.g. 2GB): a table that does not fit is read, and "
            "the output written, by spatial blocks (same result). With --per-step (default "
            "1.2GB): ~0.4 GB for libraries and model, network passes of ~1.8 kB per DEM pixel "
            "and step (200 MB per step at 320 x 360; at least one step, at most half the rest "
            "or 0.5 GB), and ~80 bytes per pixel and step of the time chunk (9 MB): "
            "--chunk-time is lowered to fit.",
        ),
    ] = None,
    max_speed: Annotated[
        float,
        typer.Option(
            "--max-speed",
            metavar="<m/s>",
            help="Warn when downscaled speeds exceed this many m/s (a forecast in km/h or "
            "knots, wrong variables, a damaged file); inf: no check.",
        ),
    ] = 100.0,
    block_size: Annotated[
        str | None,
        typer.Option(
            "--block-size",
            metavar="<n|RxC>",
            help="Force spatial blocks of N x N (or ROWSxCOLUMNS) table pixels.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            rich_help_panel="Cluster (dask.distributed)",
            help="Run the spatial blocks on a local dask cluster of N processes (output .zarr).",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            rich_help_panel="Cluster (dask.distributed)",
            help="Run the spatial blocks on an existing dask cluster (output .zarr).",
        ),
    ] = None,
    stations: Annotated[
        Path | None,
        typer.Option(
            "--stations",
            rich_help_panel="Station input",
            help="Station list (CSV: station, latitude, longitude): positions, and the "
            "stations to use (others are left out: leave-one-out runs).",
        ),
    ] = None,
    barnes_spacing: Annotated[
        float | None,
        typer.Option(
            "--barnes-spacing",
            metavar="<m>",
            rich_help_panel="Station input",
            help="Mean station spacing (m) of the Barnes filter (default: from the table "
            "area and the number of stations at each step, as SnowModel).",
        ),
    ] = None,
    min_stations: Annotated[
        int | None,
        typer.Option(
            "--min-stations",
            metavar="<n>",
            rich_help_panel="Station input",
            help="Steps with fewer stations with values are NaN, with a warning (default 1).",
        ),
    ] = None,
    min_speed: Annotated[
        float | None,
        typer.Option(
            "--min-speed",
            metavar="<m/s>",
            rich_help_panel="Station input",
            help="SnowModel's minimum wind speed for station and output speeds (default "
            "0.1; 0: none).",
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Apply a correction table (or, per step, a feature network) to NWP or station winds."""
    from devine_onnx.downscaling.api import downscale as run_downscale

    quiet_notes(quiet)
    if not per_step and table is None:
        # Parsing only: which of two options is required. What the options mean together
        # (a model or a DEM with a table...) is checked by the library.
        raise typer.BadParameter(
            "give --table TABLE, or --per-step with -m MODEL and --dem DEM",
            param_hint="'--table'",
        )
    if per_step:
        model_from_environment(ctx, model)  # a missing file named by $DEVINE_ONNX_MODEL says so
    elif model_from_environment(ctx, model, check_exists=False):
        model = None  # $DEVINE_ONNX_MODEL is a default for --per-step, not an error with --table
    prepare_output(output)
    result = run_downscale(
        nwp,
        table,
        output=output,
        u_var=u_var,
        v_var=v_var,
        nwp_crs=nwp_crs,
        nwp_wind_frame=None if nwp_wind_frame is None else nwp_wind_frame.value,
        weights=weights,
        cache_dir=False if no_cache else cache_dir,
        chunk_time=chunk_time,
        coarsen=coarsen,
        grid_relative=grid_relative,
        angular_interpolation=angular_interpolation.value,
        complevel=complevel,
        quiet=quiet,
        per_step=per_step,
        model=model,
        dem=dem,
        device=device.value,
        coarse_cell=coarse_cell,
        dem_crs=dem_crs,
        max_memory=max_memory,
        max_speed=max_speed,
        block_size=block_size,
        workers=workers,
        scheduler=scheduler,
        stations=stations,
        barnes_spacing=barnes_spacing,
        min_stations=min_stations,
        min_speed=min_speed,
        start=start,
        end=end,
    )
    sizes = dict(getattr(result, "sizes", {}))
    shape = (
        f": {sizes.get('time', '?')} time steps on a {sizes.get('y', '?')} x "
        f"{sizes.get('x', '?')} grid"
        if sizes
        else ""
    )
    done(quiet, f"wrote {output}{shape}")
