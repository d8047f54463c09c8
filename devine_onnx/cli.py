"""The ``devine-onnx`` command line.

Each command only parses its arguments and calls the Python API (``devine_onnx.tables.corrections``,
``devine_onnx.downscaling.downscale``, ``devine_onnx.demo``, ``devine_onnx.plot``, ``devine_onnx.diagnostics``,
``convert.cli``). Errors the user can fix (:class:`~devine_onnx.errors.DevineError`) print one
line ``error: ...`` on stderr and exit with status 1, without a traceback unless ``--debug``;
usage errors exit with status 2; Ctrl-C prints ``interrupted`` and exits with status 130.
Python warnings (NWP points outside the hull, CPU fallback...) and WARNING records of the
``devine_onnx`` logger print as one line ``warning: ...`` on stderr; its INFO records (DEM
trimming and resume notes, timings) as ``note: ...``, hidden by ``--quiet``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from ._version import __version__
from .errors import DevineError, MissingDependencyError, cli_spelling

#: Environment variable naming the default model (same as ``devine_onnx.session.MODEL_ENV``;
#: repeated here so that ``--help`` does not import ONNX Runtime).
MODEL_ENV = "DEVINE_ONNX_MODEL"
#: Modules the ``convert`` command needs (the ``convert`` extra).
CONVERT_MODULES = ("tensorflow", "tf2onnx", "onnx", "h5py")
CONVERT_INSTALL = 'pip install "devine-onnx[convert]"'

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_NOISY = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, RuntimeWarning)
_NUMPY_NOTICES = ("encountered", "empty slice", "Degrees of freedom")


# ---------------------------------------------------------------------------- plumbing
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _err(text: str) -> None:
    typer.echo(_one_line(text), err=True)


def _hidden(message: str, category: type[Warning], filename: str) -> bool:
    """Library noise hidden without ``--debug``.

    Shown: warning classes defined in devine_onnx, plain RuntimeWarnings raised by
    devine_onnx code (except numpy's floating-point notices, which carry the caller's file
    name), and any other category that is not deprecation/future/runtime noise.
    """
    if getattr(category, "__module__", "").startswith("devine_onnx"):
        return False
    if category is RuntimeWarning and filename.startswith(_PACKAGE_DIR):
        return any(p in message for p in _NUMPY_NOTICES)
    return issubclass(category, _NOISY)


@contextmanager
def _warnings_to_stderr(debug: bool) -> Iterator[None]:
    """Print each warning as one ``warning: ...`` line on stderr.

    Library deprecation/future/runtime warnings (numpy's "all-NaN slice"...) are hidden unless
    ``--debug``; every warning class defined by devine_onnx is shown.
    """

    def show(message, category, filename, lineno, file=None, line=None):
        if not debug and _hidden(str(message), category, str(filename)):
            return
        _err(f"warning: {message}")

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


class _LineHandler(logging.Handler):
    """Log records of the ``devine_onnx`` logger as one line on stderr.

    INFO records (DEM trimming notes, resume notes...) print as ``note: ...``; WARNING and
    above as ``warning: ...``. Long commands raise the level to WARNING with ``--quiet``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = "warning" if record.levelno >= logging.WARNING else "note"
            _err(f"{prefix}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


_HANDLER = _LineHandler(level=logging.INFO)


def _quiet_notes(quiet: bool) -> None:
    """With ``--quiet`` only warnings are printed, not notes."""
    _HANDLER.setLevel(logging.WARNING if quiet else logging.INFO)


@contextmanager
def _log_to_stderr(debug: bool) -> Iterator[None]:
    logger = logging.getLogger("devine_onnx")
    old_level, old_propagate = logger.level, logger.propagate
    _HANDLER.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.addHandler(_HANDLER)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(_HANDLER)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def _passthrough() -> tuple[type[BaseException], ...]:
    """Exceptions that typer/click handle themselves (usage errors: exit 2; Exit; Abort)."""
    types: list[type[BaseException]] = [typer.Exit, typer.Abort, typer.BadParameter]
    if hasattr(typer, "TyperException"):  # typer >= 0.2x vendors click
        types.append(typer.TyperException)
    try:  # older typer uses click itself
        import click

        types += [click.ClickException, click.exceptions.Exit, click.Abort]
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


_PASSTHROUGH = _passthrough()


def _plain_flags(command, ctx) -> None:
    """Boolean flags take no value: no ``<bool>`` placeholder in their help line."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class _Group(TyperGroup):
    """Typer group that turns errors into one-line messages and exit statuses.

    Messages name parameters as options (``--coarsen 300``, not ``coarsen=300``): the
    commands run under :func:`~devine_onnx.errors.cli_spelling`.
    """

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_flags(command, ctx)
        return command

    def format_help(self, ctx, formatter):
        _plain_flags(self, ctx)
        return super().format_help(ctx, formatter)

    def invoke(self, ctx):
        debug = bool(ctx.params.get("debug")) or os.environ.get("DEVINE_ONNX_DEBUG") == "1"
        spelling = {"method": "--devine-method"}  # the devine engine's method option
        with _warnings_to_stderr(debug), _log_to_stderr(debug), cli_spelling(spelling):
            try:
                return super().invoke(ctx)
            except _PASSTHROUGH:
                raise
            except DevineError as exc:
                if debug:
                    raise
                _err(f"error: {exc}" if str(exc) else f"error: {type(exc).__name__}")
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                if debug:
                    raise
                _err("interrupted")
                raise typer.Exit(130) from None
            except MemoryError:
                if debug:
                    raise
                _err(
                    "error: out of memory; use smaller --chunk-time / tiles, or a machine with "
                    "more memory (rerun with --debug for the traceback)"
                )
                raise typer.Exit(1) from None
            except OSError as exc:
                if debug:
                    raise
                where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
                _err(f"error: {where}{exc.strerror or exc}")
                raise typer.Exit(1) from None
            except Exception as exc:  # noqa: BLE001 - a bug: one line, traceback with --debug
                if debug:
                    raise
                _err(
                    f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the "
                    "traceback and report it)"
                )
                raise typer.Exit(1) from None


app = typer.Typer(
    name="devine-onnx",
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help=(
        "DEVINE wind downscaling over complex terrain with ONNX Runtime.\n\n"
        "Workflow: [bold]convert[/bold] the official weights once, compute the "
        "[bold]corrections[/bold] table of a DEM once, build the [bold]regrid[/bold] weights "
        "once, then [bold]downscale[/bold] any NWP wind series; [bold]plot[/bold] the results. "
        "[bold]demo[/bold] runs the whole chain on synthetic data."
    ),
    epilog=(
        "Example: devine-onnx demo --out demo/   (then open demo/demo_wind.png)\n\n"
        "Errors print one line and exit 1; add --debug for the traceback."
    ),
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"devine-onnx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    """DEVINE wind downscaling over complex terrain with ONNX Runtime."""


# ---------------------------------------------------------------------------- option types
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


def _angles_callback(value: str | None) -> list[int] | None:
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


def _done(quiet: bool, text: str) -> None:
    if not quiet:
        typer.echo(text)


QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar and no summary on success.")
]
TableOpt = Annotated[
    Path, typer.Option("--table", "-t", help="Correction table from 'corrections'.")
]


# ---------------------------------------------------------------------------- convert
def _convert_extra_missing() -> list[str]:
    return [m for m in CONVERT_MODULES if importlib.util.find_spec(m) is None]


def _require_convert_extra() -> None:
    missing = _convert_extra_missing()
    if missing:
        raise MissingDependencyError(
            f"devine-onnx convert needs {', '.join(missing)}: {CONVERT_INSTALL} "
            '(or pip install -e ".[convert]" in a checkout)'
        )


CONVERT_EPILOG = (
    "[bold]Example[/bold]:\n\n"
    "  devine-onnx convert date_21_12_2021_name_simu_classic_all_low_epochs_0_model_UNet/ "
    "-o models/devine.onnx --fp16\n\n"
    "Needs the convert extra: " + CONVERT_INSTALL.replace("[", "\\[") + ". See models/README.md."
)
CONVERT_HELP = (
    "Convert the official DEVINE weights to a size-agnostic ONNX model.\n\n"
    "SRC is the official model folder (a Keras-2 SavedModel) or its weights.h5; σ is read from "
    "the dict_norm.csv next to it. The export is checked against TensorFlow.\n\n"
    "SRC may also be a devine-torch model folder (model.pt, norm.json, info.yaml): it becomes "
    "a feature-network model, checked against PyTorch (needs the torch extra)."
)

try:
    from devine_onnx_convert.cli import convert_command as _convert_command
except ImportError:  # pragma: no cover - the converter package is part of the distribution
    _convert_command = None

if _convert_command is not None:

    @functools.wraps(_convert_command)
    def _convert(*args, **kwargs):
        from devine_onnx_convert.torch_folder import is_torch_folder

        # A devine-torch folder needs PyTorch, not TensorFlow (checked by the converter).
        if not is_torch_folder(kwargs.get("src", args[0] if args else None)):
            _require_convert_extra()
        return _convert_command(*args, **kwargs)

    app.command("convert", help=CONVERT_HELP, epilog=CONVERT_EPILOG)(_convert)
else:  # pragma: no cover

    @app.command("convert", help=CONVERT_HELP, epilog=CONVERT_EPILOG)
    def _convert_unavailable(src: Path, output: Annotated[Path, typer.Option("-o")]) -> None:
        raise MissingDependencyError(f"the converter is not installed: {CONVERT_INSTALL}")


# ---------------------------------------------------------------------------- corrections
class EngineName(str, Enum):
    devine = "devine"
    micromet = "micromet"
    features = "features"


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
        "none. An interrupted run resumes where it stopped (--no-resume starts again)."
    )
)
def corrections(
    dem: Annotated[Path, typer.Argument(help="DEM in a projected metric CRS (GeoTIFF, NetCDF).")],
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
            help="devine, micromet or features; default: the model's.",
        ),
    ] = None,
    angles: Annotated[
        str | None,
        typer.Option(
            "--angles",
            callback=_angles_callback,
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
            rich_help_panel="Feature networks",
            metavar="M",
            help="Coarse cell of the relative-DEM feature, m (default: the model's, 1000).",
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
    device: Annotated[
        Device, typer.Option("--device", help="Where a network runs (auto: CUDA when usable).")
    ] = Device.auto,
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

    The table stores acceleration (speed ratio) and alpha (deviation, radians) per FROM direction on the DEM's grid, from the DEVINE UNet (devine), the MicroMet terrain parameterisation (micromet) or a devine-torch feature network (features).
    """
    from .tables.corrections import compute_corrections as _corrections_call

    _quiet_notes(quiet)
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
    micromet = {
        "length_scale": length_scale,
        "slope_weight": slope_weight,
        "curvature_weight": curvature_weight,
        "slope_reference": slope_reference,
        "curvature_reference": curvature_reference,
    }
    given = {k: v for k, v in micromet.items() if v is not None}
    name = engine.value if engine is not None else None
    if given and name != "micromet":
        first = "--" + next(iter(given)).replace("_", "-")
        raise typer.BadParameter(f"{first} applies to --engine micromet only", param_hint=first)
    if coarse_cell is not None:
        given["coarse_cell"] = coarse_cell  # the features engine; refused by the others
    if devine_method is not None:
        given["method"] = devine_method.value  # the devine engine; refused by the others
    if tile_size is not None:
        given["tile_size"] = tile_size
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
            quiet=quiet,
            workers=workers,
            scheduler=scheduler,
        )
    except KeyboardInterrupt:
        from .io.atomic import partial_path

        partial = partial_path(output)
        if partial.exists():
            _err(
                f"interrupted: the partial table {partial} was kept; rerun the same command to "
                "resume it (--no-resume starts over)"
            )
            raise typer.Exit(130) from None
        raise
    _done(quiet, f"wrote {output}: {table_summary(table)}")
    if str(table.attrs.get("synthetic_weights", "false")).lower() == "true":
        _err(
            f"warning: {model} has synthetic (untrained) weights: this table is NOT "
            "physical; convert the official weights with 'devine-onnx convert'"
        )


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
        "devine-torch's input layout: deflLis, reldem, ydsc on (n, nrows, ncols)."
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
            callback=_angles_callback,
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
        typer.Option("--normalised", help="Write the normalised network input (needs --model)."),
    ] = False,
    dem_crs: DemCrsOpt = None,
    fill_nodata: Annotated[
        bool, typer.Option("--fill-nodata", help="Fill DEM holes from the nearest valid pixel.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the devine-torch terrain features (deflLis, reldem, ydsc) of a DEM for given directions."""
    from .engines.features import compute_features

    _quiet_notes(quiet)
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
    _done(
        quiet,
        f"wrote {output}: {n} direction{'' if n == 1 else 's'} on a {ds.sizes['nrows']} x "
        f"{ds.sizes['ncols']} grid",
    )


# ---------------------------------------------------------------------------- regrid
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
    nwp_crs: Annotated[
        str | None,
        typer.Option(
            "--nwp-crs",
            help="CRS of the NWP coordinates (default: from the file, "
            "else EPSG:4326 for latitude/longitude).",
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Build the Delaunay interpolation weights from an NWP grid to a table's grid."""
    from .downscaling.downscale import build_weights

    _quiet_notes(quiet)

    weights = build_weights(nwp, table, nwp_crs=nwp_crs, output=output)
    n_out = getattr(weights, "n_outside", 0)
    n_t = getattr(weights, "n_target", 0)
    extra = f" ({n_out} outside the NWP grid)" if n_out else ""
    _done(quiet, f"wrote {output}: {n_t} table pixels{extra}")


# ---------------------------------------------------------------------------- downscale
@app.command(
    epilog=(
        "[bold]Example[/bold]:\n\n"
        "  devine-onnx downscale arome_2026-01.nc --table belledonne_table.nc "
        "--weights arome_weights.nc -o wind_2026-01.nc\n\n"
        "  devine-onnx downscale era5.zarr --table table.nc --u-var u10 --v-var v10 "
        "-o wind.zarr --chunk-time 48\n\n"
        "  devine-onnx downscale arome.nc --per-step -m devine-low-bias.onnx "
        "--dem dem_wborder2.tif -o wind.nc   (devine-torch, one network pass per step)"
    )
)
def downscale(
    nwp: Annotated[Path, typer.Argument(help="NWP wind series (NetCDF/GRIB/Zarr).")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Output to write (.nc NetCDF or .zarr).")
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
    nwp_crs: Annotated[
        str | None, typer.Option("--nwp-crs", help="CRS of the NWP coordinates.")
    ] = None,
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
    chunk_time: Annotated[
        int, typer.Option("--chunk-time", metavar="<n>", help="Time steps processed at once.")
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
        Path | None,
        typer.Option(
            "-m", "--model", envvar=MODEL_ENV, help="Feature-network model, with --per-step."
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
            "the output written, by spatial blocks (same result).",
        ),
    ] = None,
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
    quiet: QuietOpt = False,
) -> None:
    """Apply a correction table (or, per step, a feature network) to an NWP wind series."""
    from .downscaling.downscale import downscale as run_downscale

    _quiet_notes(quiet)
    if per_step and table is not None:
        raise typer.BadParameter(
            "--per-step computes the wind without a table: give -m MODEL and --dem DEM",
            param_hint="'--table'",
        )
    if not per_step and table is None:
        raise typer.BadParameter(
            "give --table TABLE, or --per-step with -m MODEL and --dem DEM",
            param_hint="'--table'",
        )
    if not per_step and dem is not None:
        raise typer.BadParameter("--dem is only used with --per-step", param_hint="'--dem'")
    if dem_crs is not None and dem is None:
        raise typer.BadParameter(
            "--dem-crs describes the --dem of --per-step", param_hint="'--dem-crs'"
        )
    per_step_options = {}
    if per_step:
        from .session import resolve_model_path

        per_step_options = {
            "per_step": True,
            "model": resolve_model_path(model),
            "dem": dem,
            "device": device.value,
            "coarse_cell": coarse_cell,
            "dem_crs": dem_crs,
        }

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
        **per_step_options,
        **{
            k: v
            for k, v in (
                ("max_memory", max_memory),
                ("block_size", block_size),
                ("workers", workers),
                ("scheduler", scheduler),
            )
            if v
        },
    )
    sizes = dict(getattr(result, "sizes", {}))
    shape = (
        f": {sizes.get('time', '?')} time steps on a {sizes.get('y', '?')} x "
        f"{sizes.get('x', '?')} grid"
        if sizes
        else ""
    )
    _done(quiet, f"wrote {output}{shape}")


# ---------------------------------------------------------------------------- demo
@app.command(
    epilog=(
        "[bold]Examples[/bold]:\n\n"
        "  devine-onnx demo                 (MicroMet, no model: writes into demo/)\n\n"
        "  devine-onnx demo -m devine.onnx --out demo-devine/\n\n"
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
    device: Annotated[
        Device, typer.Option("--device", help="Where a network runs (auto: CUDA when usable).")
    ] = Device.auto,
    angle_step: Annotated[int, typer.Option("--angle-step", min=1, max=180, hidden=True)] = 1,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole chain on real terrain and a synthetic wind series (about a minute)."""
    from .demo import run_demo

    _quiet_notes(quiet)

    result = run_demo(out, model=model, quiet=quiet, angle_step=angle_step, device=device.value)
    if not quiet:
        typer.echo(result.summary())


# ---------------------------------------------------------------------------- plot
@app.command(
    epilog=(
        "[bold]Examples[/bold]:\n\n"
        "  devine-onnx plot wind_2026-01.nc --time 2026-01-15T12:00 --table table.nc "
        "-o wind_map.png\n\n"
        "  devine-onnx plot table.nc --angle 270 -o table_270.png\n\n"
        "A correction table (acceleration, alpha) or a downscaled output (wind_speed) is "
        "recognised from its variables."
    )
)
def plot(
    file: Annotated[Path, typer.Argument(help="Downscaled output or correction table.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Image to write (.png).")],
    time: Annotated[
        str | None,
        typer.Option("--time", help="Time step of a downscaled output (ISO 8601; default first)."),
    ] = None,
    angle: Annotated[
        float | None,
        typer.Option("--angle", help="Direction of a table, degrees FROM (default 270)."),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option("--table", "-t", help="Table whose elevation gives the hillshade."),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Draw a map of a downscaled output or explore a correction table."""
    from .plot import plot_file

    kind, path = plot_file(file, output, time=time, angle=angle, table=table)
    _done(quiet, f"wrote {path} ({'table explorer' if kind == 'table' else 'wind map'})")


# ---------------------------------------------------------------------------- evaluate
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
    nwp_crs: Annotated[
        str | None, typer.Option("--nwp-crs", help="CRS of the NWP coordinates.")
    ] = None,
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
    quiet: QuietOpt = False,
) -> None:
    """Score downscaled winds (and the raw forecast) against weather-station observations."""
    from .evaluation import evaluate as run_evaluate

    _quiet_notes(quiet)

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
        quiet=quiet,
    )
    if not quiet:
        result.print_summary()


# ---------------------------------------------------------------------------- info
@app.command(epilog="[bold]Example[/bold]:\n\n  devine-onnx info\n\n  devine-onnx info --json")
def info(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Versions, ONNX Runtime providers, GPU/CUDA status, default model, TensorFlow."""
    from .diagnostics import format_info
    from .diagnostics import info as collect

    data = collect()
    typer.echo(json.dumps(data, indent=2) if as_json else format_info(data))


# ---------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``devine-onnx`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere before "--" (it is a global option).
    head = args[: args.index("--")] if "--" in args else args
    if "--debug" in head:
        args.remove("--debug")
        args.insert(0, "--debug")
    try:
        app(args=args, prog_name="devine-onnx")
    except KeyboardInterrupt:
        if "--debug" in head:
            raise
        _err("interrupted")
        raise SystemExit(130) from None


if __name__ == "__main__":  # pragma: no cover
    main()
