"""Option types and parsers shared by several commands (no heavy imports: ``--help`` stays fast)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

# The one definition; light import (no ONNX Runtime, no xarray). Re-exported for commands.
from devine_onnx.engines.runtime import MODEL_ENV  # noqa: F401


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Dtype(str, Enum):
    float32 = "float32"
    float16 = "float16"


class Interp(str, Enum):
    nearest = "nearest"
    linear = "linear"


class WindFrame(str, Enum):
    earth = "earth"
    grid = "grid"


def parse_angles(text: str | None) -> list[int] | None:
    """``"0,90,180"`` -> ``[0, 90, 180]``: whole degrees in 0..359, no duplicates.

    Raises :class:`typer.BadParameter` (usage error, exit status 2) when malformed.
    """
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise typer.BadParameter(
            f"{text!r}: expected comma-separated whole degrees such as 0,90,180,270"
        )
    values: list[int] = []
    for p in parts:
        try:
            v = int(p)
        except ValueError:
            raise typer.BadParameter(
                f"{p!r} is not a whole number of degrees; expected e.g. 0,90,180,270"
            ) from None
        if not 0 <= v <= 359:
            raise typer.BadParameter(f"{v} is outside 0..359 (FROM directions in degrees)")
        if v in values:
            raise typer.BadParameter(f"{v} is given twice")
        values.append(v)
    return sorted(values)


def angles_callback(value: str | None) -> list[int] | None:
    return parse_angles(value)


def parse_target(text: str | None):
    """``"xmin,ymin,xmax,ymax"`` -> tuple of 4 floats; anything else is a file path."""
    if text is None:
        return None
    if "," in text:
        parts = [p.strip() for p in text.split(",")]
        try:
            box = tuple(float(p) for p in parts)
        except ValueError:
            box = ()
        if len(box) != 4:
            raise typer.BadParameter(
                f"{text!r}: expected xmin,ymin,xmax,ymax (4 numbers in the DEM's CRS) or a file"
            )
        if not (box[0] < box[2] and box[1] < box[3]):
            raise typer.BadParameter(f"{text!r}: expected xmin < xmax and ymin < ymax")
        return box
    return Path(text)


QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar and no summary on success.")
]
DeviceOpt = Annotated[
    Device, typer.Option("--device", help="Where a network runs (auto: CUDA when usable).")
]
NwpCrsOpt = Annotated[
    str | None,
    typer.Option(
        "--nwp-crs",
        help="CRS of the NWP coordinates (default: from the file, else EPSG:4326 for "
        "latitude/longitude).",
    ),
]
TableOpt = Annotated[
    Path, typer.Option("--table", "-t", help="Correction table from 'corrections'.")
]


class EngineName(str, Enum):
    devine = "devine"
    micromet = "micromet"
    features = "features"
    helbig = "helbig"


class DevineMethod(str, Enum):
    auto = "auto"
    crop = "crop"
    frame = "frame"


DemCrsOpt = Annotated[
    str | None,
    typer.Option(
        "--dem-crs",
        help="CRS of a DEM file without one (.asc without .prj...), e.g. EPSG:2154.",
    ),
]


# ---------------------------------------------------------------------------- outputs
def prepare_output(path: Path | None) -> Path | None:
    """Create the missing folders of an output path (the one rule of every command).

    ``-o out/2026/wind.nc`` creates ``out/2026/``; a folder that cannot be created gives the
    one-line ``error: PATH: reason`` of :class:`~devine_onnx.cli.app.CommandGroup`.
    """
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------- models
def model_from_environment(
    ctx: typer.Context, model: str | None, *, check_exists: bool = True, name: str = "model"
) -> bool:
    """True when the ``-m/--model`` value came from ``$DEVINE_ONNX_MODEL``, not the command line.

    With ``check_exists``, a model file named there that does not exist raises
    :class:`~devine_onnx.errors.ModelError` saying where the path came from (``demo`` is the
    shipped demonstration model).
    """
    # By name: typer may vendor its own copy of click's ParameterSource enum.
    source = getattr(ctx.get_parameter_source(name), "name", None)
    if model is None or source != "ENVIRONMENT":
        return False
    if check_exists and model != "demo" and not Path(model).exists():
        from devine_onnx.errors import ModelError

        raise ModelError(
            f"{model}: model file not found (set by ${MODEL_ENV}); set {MODEL_ENV} to a model "
            "written by 'devine-onnx convert', or pass -m MODEL (-m demo: the demonstration model)"
        )
    return True
