"""``devine-onnx corrections`` and ``devine-onnx features``: what is computed from a DEM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, done, echo_error, quiet_notes
from .options import (
    MODEL_ENV,
    DemCrsOpt,
    Device,
    DeviceOpt,
    DevineMethod,
    Dtype,
    EngineName,
    QuietOpt,
    angles_callback,
    model_from_environment,
    parse_target,
    prepare_output,
)


@app.command(
    epilog=(
        "[bold]Examples[/bold]:\n\n"
        "  devine-onnx corrections dem_30m.tif --engine micromet -o table.nc\n\n"
        "  devine-onnx corrections dem_30m.tif -m models/devine.onnx -o table.nc "
        "--angle-step 1\n\n"
        "  devine-onnx corrections dem_50m.asc --dem-crs EPSG:2154 --resample 30 "
        "-m models/devine.onnx -o table.nc\n\n"
        "  devine-onnx corrections dem_30m.tif -m models/devine.onnx -o table.zarr --workers 4\n\n"
        f"Engines: devine and features need a converted model (-m, default ${MODEL_ENV}; "
        "-m demo is the shipped demonstration model with synthetic weights); micromet needs "
        "none. An interrupted run resumes where it stopped (--no-resume starts again); a "
        "finished table is kept (--overwrite computes it again)."
    )
)
def corrections(
    ctx: typer.Context,
    dem: Annotated[
        Path,
        typer.Argument(
            help="DEM in a projected metric CRS (GeoTIFF, NetCDF, Zarr or ESRI ASCII grid "
            ".asc; --dem-crs when it has no CRS)."
        ),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Correction table to write (.nc or .zarr).")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "-m",
            "--model",
            envvar=MODEL_ENV,
            show_envvar=False,
            metavar="MODEL",
            help=f"ONNX model from 'devine-onnx convert', default from {MODEL_ENV} . 'demo': "
            "the demonstration model.",
        ),
    ] = None,
    engine: Annotated[
        EngineName | None,
        typer.Option(
            "--engine",
            metavar="NAME",
            help="devine, micromet, features or helbig; default: the model's.",
        ),
    ] = None,
    angles: Annotated[
        str | None,
        typer.Option(
            "--angles",
            callback=angles_callback,
            help="Comma-separated FROM directions in whole degrees, e.g. 0,90,180,270.",
        ),
    ] = None,
    angle_step: Annotated[
        int | None,
        typer.Option(
            "--angle-step", min=1, max=180, help="Every N degrees from 0 (default: all 360)."
        ),
    ] = None,
    length_scale: Annotated[
        float | None,
        typer.Option(
            "--length-scale",
            rich_help_panel="MicroMet engine",
            metavar="X",
            help="Curvature length scale, m (default 500).",
        ),
    ] = None,
    slope_weight: Annotated[
        float | None,
        typer.Option(
            "--slope-weight",
            rich_help_panel="MicroMet engine",
            metavar="X",
            help="Slope weight (default 0.58).",
        ),
    ] = None,
    curvature_weight: Annotated[
        float | None,
        typer.Option(
            "--curvature-weight",
            rich_help_panel="MicroMet engine",
            metavar="X",
            help="Curvature weight (default 0.42).",
        ),
    ] = None,
    slope_reference: Annotated[
        float | None,
        typer.Option(
            "--slope-reference",
            rich_help_panel="MicroMet engine",
            metavar="X",
            help="Fixed slope reference, rad (default: domain maximum).",
        ),
    ] = None,
    curvature_reference: Annotated[
        float | None,
        typer.Option(
            "--curvature-reference",
            rich_help_panel="MicroMet engine",
            metavar="X",
            help="Fixed curvature reference (default: domain maximum).",
        ),
    ] = None,
    coarse_cell: Annotated[
        float | None,
        typer.Option(
            "--coarse-cell",
            rich_help_panel="Feature networks and Helbig engine",
            metavar="M",
            help="Coarse cell, m. features: of the relative-DEM feature (default: the model's, "
            "1000); helbig: the NWP cell size L, adds the subgrid factor x_sgp (default: off).",
        ),
    ] = None,
    devine_method: Annotated[
        DevineMethod | None,
        typer.Option(
            "--devine-method",
            rich_help_panel="DEVINE engine",
            help="crop: one central crop per direction (a disc); frame: the whole DEM, tile "
            "by tile; auto: the one with more pixels free of edge influence (docs/method.md "
            "§9.1).",
        ),
    ] = None,
    tile_size: Annotated[
        int | None,
        typer.Option(
            "--tile-size",
            min=16,
            rich_help_panel="DEVINE engine",
            metavar="PX",
            help="Tile side of the frame method, pixels (default 704; memory per task grows "
            "with it, the values do not change).",
        ),
    ] = None,
    device: DeviceOpt = Device.auto,
    dtype: Annotated[
        Dtype,
        typer.Option(
            "--dtype",
            help="float16: round the table values to float16 precision like the original "
            "(stored as float32 either way).",
        ),
    ] = Dtype.float32,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Directions per step.")] = 1,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="Keep only this area of the table: xmin,ymin,xmax,ymax in the DEM's CRS, or a "
            "raster/NetCDF file whose extent to cover.",
        ),
    ] = None,
    fill_nodata: Annotated[
        bool, typer.Option("--fill-nodata", help="Fill DEM holes from the nearest valid pixel.")
    ] = False,
    dem_crs: DemCrsOpt = None,
    resample: Annotated[
        float | None,
        typer.Option("--resample", help="Resample the DEM to this pixel size (m) first."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue an interrupted table.")
    ] = True,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace a finished OUTPUT (refused without it when its settings differ).",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            metavar="N",
            rich_help_panel="Cluster (dask.distributed)",
            help="Compute on a local dask cluster of N worker processes (output .zarr).",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            rich_help_panel="Cluster (dask.distributed)",
            help="Compute on an existing dask cluster, e.g. tcp://host:8786 (output .zarr).",
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Compute the correction table of a DEM for each wind direction.

    The table stores acceleration (speed ratio) and alpha (deviation, radians) per FROM direction on the DEM's grid, from the DEVINE UNet (devine), the MicroMet terrain parameterisation (micromet), a devine-torch feature network (features) or the Helbig et al. (2017) speed factor (helbig: the same for every direction, alpha 0).
    """
    from devine_onnx.tables.build import compute_corrections as _corrections_call

    quiet_notes(quiet)
    model_from_environment(
        ctx, model, check_exists=engine not in (EngineName.micromet, EngineName.helbig)
    )
    prepare_output(output)
    if angles is not None and angle_step is not None:
        raise typer.BadParameter(
            "give either --angles or --angle-step, not both", param_hint="'--angles'"
        )
    if angles is not None:
        chosen = angles
    elif angle_step is not None:
        chosen = list(range(0, 360, angle_step))
    else:
        chosen = list(range(360))
    # Engine options as given; the engine refuses those it does not take (one line naming it).
    engine_options = {
        "length_scale": length_scale,
        "slope_weight": slope_weight,
        "curvature_weight": curvature_weight,
        "slope_reference": slope_reference,
        "curvature_reference": curvature_reference,
        "coarse_cell": coarse_cell,
        "method": None if devine_method is None else devine_method.value,
        "tile_size": tile_size,
    }
    given = {k: v for k, v in engine_options.items() if v is not None}
    name = engine.value if engine is not None else None
    try:
        table = _corrections_call(
            dem,
            model=model,
            angles=chosen,
            engine=name,
            engine_options=given,
            output=output,
            device=device.value,
            dtype=dtype.value,
            batch=batch,
            target=parse_target(target),
            fill_nodata=fill_nodata,
            dem_crs=dem_crs,
            resample=resample,
            resume=resume,
            overwrite=overwrite,
            quiet=quiet,
            workers=workers,
            scheduler=scheduler,
        )
    except KeyboardInterrupt:
        from devine_onnx.io.atomic import partial_path

        partial = partial_path(output)
        if partial.exists():
            echo_error(
                f"interrupted: the partial table {partial} was kept; rerun the same command to "
                "resume it (--no-resume starts over)"
            )
            raise typer.Exit(130) from None
        raise
    verb = "kept the complete" if table.encoding.get("complete_before") else "wrote"
    done(quiet, f"{verb} {output}: {table_summary(table)}")
    # A model with synthetic weights was warned about before the run (compute_corrections).


def table_summary(table) -> str:
    """One line: engine, directions, grid, and for DEVINE the valid and reliable radii."""
    sizes = dict(table.sizes)
    n = sizes.get("angle", 0)
    text = (
        f"{table.attrs.get('engine', '?')} engine, {n} direction{'' if n == 1 else 's'} on a "
        f"{sizes.get('y', '?')} x {sizes.get('x', '?')} grid"
    )
    attrs = table.attrs
    if attrs.get("devine_method") == "frame":
        text += (
            f"; frame method: values on the whole DEM, free of edge influence at least "
            f"{float(attrs['edge_margin_m']):.0f} m inside its edges "
            f"({100 * float(attrs['clean_fraction']):.0f} % of the pixels, edge_influence = 0)"
        )
    elif "valid_radius_m" in attrs:
        text += (
            f"; values within {float(attrs['valid_radius_m']):.0f} m of the centre "
            f"({float(attrs['valid_radius']):g} px), reliable within "
            f"{float(attrs['interior_radius_m']):.0f} m ({float(attrs['interior_radius']):g} px)"
        )
    return text


# ---------------------------------------------------------------------------- features
@app.command(
    epilog=(
        "[bold]Example[/bold]:\n\n"
        "  devine-onnx features dem_50m_wborder2.tif --angles 270 -o features.nc\n\n"
        "  devine-onnx features dem.tif --angles 0,90,180,270 -m devine-low-bias.onnx "
        "--normalised -o input.nc\n\n"
        "The DEM carries a 2-cell frame, removed after the terrain derivatives. The file has "
        "devine-torch's channels deflLis, reldem, ydsc on (n, y, x), with the DEM's CRS (CF: opens "
        "in QGIS)."
    )
)
def features(
    dem: Annotated[
        Path, typer.Argument(help="DEM in a projected metric CRS, with a 2-cell frame.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="NetCDF file to write (.nc).")],
    angles: Annotated[
        str,
        typer.Option(
            "--angles",
            callback=angles_callback,
            help="Comma-separated inflow FROM directions in whole degrees, e.g. 270 or 0,90.",
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "-m",
            "--model",
            help="Feature-network model (devine-torch, converted): coarse cell default, "
            "training resolution check, normalisation.",
        ),
    ] = None,
    coarse_cell: Annotated[
        float | None,
        typer.Option(
            "--coarse-cell", help="Coarse cell of reldem in metres (default: model's, else 1000)."
        ),
    ] = None,
    normalised: Annotated[
        bool,
        typer.Option(
            "--normalised",
            help="Write the normalised network input, as the table and per-step mode give it "
            "to the network (needs --model).",
        ),
    ] = False,
    dem_crs: DemCrsOpt = None,
    fill_nodata: Annotated[
        bool, typer.Option("--fill-nodata", help="Fill DEM holes from the nearest valid pixel.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the devine-torch terrain features (deflLis, reldem, ydsc) of a DEM for given directions."""
    from devine_onnx.feature_maps import compute_features

    quiet_notes(quiet)
    prepare_output(output)
    ds = compute_features(
        dem,
        angles,
        output=output,
        coarse_cell=coarse_cell,
        model=model,
        normalised=normalised,
        fill_nodata=fill_nodata,
        dem_crs=dem_crs,
    )
    n = ds.sizes["n"]
    done(
        quiet,
        f"wrote {output}: {n} direction{'' if n == 1 else 's'} on a {ds.sizes['y']} x "
        f"{ds.sizes['x']} grid",
    )
