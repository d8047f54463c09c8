"""``devine-onnx export``: downscaled wind and correction tables to GeoTIFF, ASCII grids, KMZ."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from devine_onnx.cli.app import app, done, quiet_notes
from devine_onnx.cli.options import QuietOpt


class ExportFormat(str, Enum):
    geotiff = "geotiff"
    asc = "asc"
    kmz = "kmz"


@app.command(
    epilog=(
        "[bold]Examples[/bold]:\n\n"
        "  devine-onnx export wind.nc -o gis/ --format geotiff\n\n"
        "  devine-onnx export wind.nc -o speed.tif --var wind_speed "
        "--time 2026-01-15T00:00/2026-01-15T12:00\n\n"
        "  devine-onnx export wind.nc -o windninja/ --format asc\n\n"
        "  devine-onnx export wind.nc -o wind.kmz --format kmz\n\n"
        "  devine-onnx export table.nc -o table/ --angle 270 --angle 315\n\n"
        "GeoTIFF: one file per variable, one band per time step (band description = UTC "
        "time). asc: <stem>_<YYYYMMDDTHHMM>_vel.asc and _ang.asc with .prj, as WindNinja "
        "writes them. kmz: arrows coloured by speed, one folder per step for Google Earth's "
        "time slider. A failed export leaves no file."
    )
)
def export(
    file: Annotated[Path, typer.Argument(help="Downscaled output (or a table, GeoTIFF only).")],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="Folder for the files (created if missing), or the .tif (one variable) or "
            ".kmz file.",
        ),
    ],
    fmt: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="geotiff, asc (WindNinja) or kmz.")
    ] = ExportFormat.geotiff,
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            help="Variable to export; repeat for several (default wind_speed and "
            "wind_from_direction; a table: acceleration and alpha in degrees).",
        ),
    ] = None,
    time: Annotated[
        list[str] | None,
        typer.Option(
            "--time",
            help="Time step (ISO 8601, UTC) or START/END interval; repeat for several "
            "(default every step).",
        ),
    ] = None,
    angle: Annotated[
        list[float] | None,
        typer.Option("--angle", help="Table directions, degrees FROM; repeat (default all)."),
    ] = None,
    arrows: Annotated[
        int, typer.Option("--arrows", min=1, help="KMZ: about N arrows along the longer side.")
    ] = 25,
    quiet: QuietOpt = False,
) -> None:
    """Export to GeoTIFF, ESRI ASCII grids (WindNinja) or KMZ (Google Earth)."""
    from devine_onnx.export import export_file

    quiet_notes(quiet)
    written = export_file(
        file,
        output,
        fmt.value,
        var=var or None,
        time=time or None,
        angle=angle or None,
        arrows=arrows,
    )
    shown = ", ".join(p.name for p in written[:4]) + (
        f" ... ({len(written)} files)" if len(written) > 4 else ""
    )
    folder = written[0].parent if written else output
    done(quiet, f"wrote {shown} in {folder}")
