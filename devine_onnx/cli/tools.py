"""``devine-onnx demo``, ``plot`` and ``info``: trying, looking and checking the install."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .app import app, done, quiet_notes
from .options import Device, DeviceOpt, EngineName, QuietOpt, prepare_output


@app.command(
    epilog=(
        "[bold]Examples[/bold]:\n\n"
        "  devine-onnx demo                 (MicroMet, no model: writes into demo/)\n\n"
        "  devine-onnx demo -m devine.onnx --out demo-devine/\n\n"
        "  devine-onnx demo --engine helbig --out demo-helbig/\n\n"
        "Writes demo_dem.tif, demo_nwp.nc, demo_table.nc, demo_weights.nc, demo_wind.nc, "
        "demo_wind.png and demo_table.png into the folder. -m demo runs the shipped "
        "demonstration model, whose synthetic weights only show the pipeline."
    )
)
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo files.")] = Path("demo"),
    model: Annotated[
        str | None,
        typer.Option(
            "-m",
            "--model",
            help="ONNX model for the table (default: the built-in MicroMet engine); "
            "'demo': the demonstration model.",
        ),
    ] = None,
    device: DeviceOpt = Device.auto,
    engine: Annotated[
        EngineName | None,
        typer.Option(
            "--engine",
            help="Table engine (default: micromet without -m, the model's with -m); helbig: "
            "Helbig et al. (2017), the same speed ratio for every direction.",
        ),
    ] = None,
    angle_step: Annotated[int, typer.Option("--angle-step", min=1, max=180, hidden=True)] = 1,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole chain on real terrain and a synthetic wind series (about a minute)."""
    from devine_onnx.demo import run_demo

    quiet_notes(quiet)

    result = run_demo(
        out,
        model=model,
        quiet=quiet,
        angle_step=angle_step,
        device=device.value,
        engine=engine.value if engine is not None else None,
    )
    if not quiet:
        typer.echo(result.summary())


# ---------------------------------------------------------------------------- plot
@app.command(
    epilog=(
        "[bold]Examples[/bold]:\n\n"
        "  devine-onnx plot wind_2026-01.nc --time 2026-01-15T12:00 --table table.nc "
        "-o wind_map.png\n\n"
        "  devine-onnx plot table.nc --angle 270 -o table_270.png\n\n"
        "  devine-onnx plot wind.nc --time 2026-01-15T06:00 --time 2026-01-15T12:00 "
        "--vmax 20 -o two_steps.png\n\n"
        "  devine-onnx plot wind.nc --time 2026-01-15T00:00/2026-01-15T23:00 "
        "--animate wind.gif\n\n"
        "Colours match the colour bar (terrain as contour lines); the colour range and the "
        "arrow scale are fixed over the whole file. A correction table (acceleration, alpha) or a downscaled output (wind_speed) is "
        "recognised from its variables."
    )
)
def plot(
    file: Annotated[Path, typer.Argument(help="Downscaled output or correction table.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Image to write (.png; .pdf, .svg, .jpg)."),
    ] = None,
    time: Annotated[
        list[str] | None,
        typer.Option(
            "--time",
            help="Time step of a downscaled output: ISO 8601 (UTC), or START/END for every "
            "step of an interval; repeat for small multiples with one colour bar (default: "
            "the first step; with --animate: every step).",
        ),
    ] = None,
    angle: Annotated[
        float | None,
        typer.Option("--angle", help="Direction of a table, degrees FROM (default 270)."),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option("--table", "-t", help="Table whose elevation gives the terrain contours."),
    ] = None,
    var: Annotated[
        str | None,
        typer.Option(
            "--var",
            help="Variable to colour: wind_speed (default), wind_from_direction, "
            "upward_air_velocity...; a table: acceleration or alpha (default both).",
        ),
    ] = None,
    vmin: Annotated[
        float | None,
        typer.Option("--vmin", help="Bottom of the colour bar (default: the file's range)."),
    ] = None,
    vmax: Annotated[
        float | None,
        typer.Option("--vmax", help="Top of the colour bar (default: the file's range)."),
    ] = None,
    arrows: Annotated[
        int, typer.Option("--arrows", min=0, help="About N arrows along the longer side (0: none).")
    ] = 20,
    graticule: Annotated[
        bool, typer.Option("--graticule", help="Draw longitude/latitude lines.")
    ] = False,
    animate: Annotated[
        Path | None,
        typer.Option(
            "--animate",
            help="Write an animation over the --time steps instead of an image (.gif; .mp4 "
            "where ffmpeg is installed).",
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Draw a map of a downscaled output or explore a correction table."""
    from devine_onnx.plot import plot_file

    prepare_output(output)
    prepare_output(animate)
    times = time[0] if time and len(time) == 1 else (time or None)
    kind, path = plot_file(
        file,
        output,
        time=times,
        angle=angle,
        table=table,
        var=var,
        vmin=vmin,
        vmax=vmax,
        arrows=arrows,
        graticule=graticule,
        animate=animate,
    )
    what = {"table": "table explorer", "wind": "wind map", "animation": "animation"}[kind]
    done(quiet, f"wrote {path} ({what})")


@app.command(epilog="[bold]Example[/bold]:\n\n  devine-onnx info\n\n  devine-onnx info --json")
def info(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Versions, ONNX Runtime providers, GPU/CUDA status, default model, TensorFlow."""
    from devine_onnx.diagnostics import format_info
    from devine_onnx.diagnostics import info as collect

    data = collect()
    typer.echo(json.dumps(data, indent=2) if as_json else format_info(data))
