"""Command line of the converter: ``python -m convert SRC -o OUT.onnx``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from devine_onnx.errors import DevineError, MissingDependencyError

from .readers import ConversionError

CONVERT_HELP = """Convert the official DEVINE weights to a size-agnostic ONNX model.

SRC is the official model folder (date_21_12_2021_name_simu_classic_all_low_epochs_0_model_UNet/,
a Keras-2 SavedModel) or its weights.h5. σ is read from the dict_norm.csv next to SRC.
A devine-torch model folder (model.pt, norm.json, info.yaml) is converted with PyTorch
instead (pip install "devine-onnx[torch]") into a feature-network model.

--example writes a devine-torch folder with SYNTHETIC weights at SRC instead (to try the
workflow before having a model; nothing computed with it is physical), and converts it when
-o is given.

Example:

    python -m convert date_21_12_2021_..._model_UNet/ -o models/devine.onnx --fp16
    python -m convert --example example-torch/ -o example-torch.onnx
"""

#: Seed of the synthetic weights of ``convert --example`` (the same folder every time).
EXAMPLE_SEED = 2021


def _require_tensorflow() -> None:
    from importlib.util import find_spec

    missing = [m for m in ("tensorflow", "tf2onnx", "onnx", "h5py") if find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"the converter needs {', '.join(missing)}: install them with "
            "pip install 'devine-onnx[convert]' (or pip install -e '.[convert]' in a checkout)"
        )


def _require_torch() -> None:
    from importlib.util import find_spec

    missing = [m for m in ("torch", "onnx") if find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"converting a devine-torch model needs {', '.join(missing)}: install them with "
            "pip install 'devine-onnx[torch]' (or pip install -e '.[torch]' in a checkout)"
        )


def write_example(folder) -> Path:
    """Write a devine-torch model folder with SYNTHETIC weights at ``folder`` (which must not
    exist, or be empty): ``model.pt``, ``norm.json`` and ``info.yaml`` in devine-torch's
    layout, ``info.yaml`` saying ``synthetic: true``. Needs PyTorch (the torch extra).

    The folder is written beside its final name and renamed when complete: an interrupted run
    leaves nothing under ``folder``.
    """
    import shutil
    import tempfile

    from devine_onnx.errors import OutputError

    folder = Path(folder)
    if folder.is_symlink() or folder.is_file():
        raise OutputError(f"{folder}: exists and is not a folder; give a new folder to --example")
    if folder.is_dir() and any(folder.iterdir()):
        raise OutputError(
            f"{folder}: the folder exists and is not empty; give a new folder to --example "
            "(nothing is overwritten)"
        )
    from importlib.util import find_spec

    if find_spec("torch") is None:
        raise MissingDependencyError(
            "devine-onnx convert --example needs PyTorch: pip install 'devine-onnx[torch]' (on "
            "Linux, CPU-only PyTorch first: see docs/devine_torch.md)"
        )
    from .torch_fixture import write_torch_folder

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        write_torch_folder(tmp, seed=EXAMPLE_SEED, model_id=f"example-synthetic-{EXAMPLE_SEED}")
        if folder.is_dir():
            folder.rmdir()  # empty (checked above)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _convert_torch(src, output, *, check, synthetic, fp16, trusted, quiet) -> None:
    """``convert`` for a devine-torch model folder (model.pt + norm.json + info.yaml)."""
    _require_torch()
    from .torch_export import PARITY_TOLERANCE, convert_torch_model

    report = convert_torch_model(
        src, output, check=check, synthetic=synthetic, fp16=fp16, trusted=trusted
    )
    if quiet:
        return
    typer.echo(
        f"wrote {report.output} (devine-torch model {report.model_id}, feature network, "
        f"source sha256 {report.source_sha256[:12]}…)"
    )
    for (h, w), diff in report.parity.items():
        typer.echo(f"  parity ONNX Runtime vs PyTorch on {h}x{w}: max |diff| = {diff:.2e} m/s")
    if report.parity:
        typer.echo(f"  parity check passed (tolerance {PARITY_TOLERANCE})")
    if report.fp16_output is not None:
        worst = max(report.fp16_error.values())
        typer.echo(f"wrote {report.fp16_output} (fp16 vs fp32: max |diff| = {worst:.2e} m/s)")


def convert_command(
    src: Annotated[
        Path,
        typer.Argument(
            help="Official model folder or weights.h5, or a devine-torch model folder "
            "(model.pt, norm.json, info.yaml); with --example, the folder to write."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="ONNX file to write (optional with --example)."),
    ] = None,
    std: Annotated[
        float | None, typer.Option(help="σ in metres (default: train_std of dict_norm.csv).")
    ] = None,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Also write OUTPUT stem + .fp16.onnx for GPUs.")
    ] = False,
    check: Annotated[
        bool, typer.Option(help="Compare ONNX Runtime with TensorFlow after export.")
    ] = True,
    synthetic: Annotated[
        bool,
        typer.Option("--synthetic", help="Mark the model as untrained (demonstration models)."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
    trusted_checkpoint: Annotated[
        bool,
        typer.Option(
            "--trusted-checkpoint",
            help="devine-torch: load a checkpoint holding Python objects (pickle); only for "
            "files you trust.",
        ),
    ] = False,
    example: Annotated[
        bool,
        typer.Option(
            "--example",
            help="Write a devine-torch model folder with SYNTHETIC weights at SRC (model.pt, "
            "norm.json, info.yaml), to try the workflow before having a model; with -o, also "
            "convert it. Needs the torch extra.",
        ),
    ] = False,
) -> None:
    """Convert the official DEVINE weights to a size-agnostic ONNX model."""
    from .torch_folder import is_torch_folder

    if example:
        folder = write_example(src)
        if not quiet:
            typer.echo(
                f"wrote {folder}: a devine-torch model folder (model.pt, norm.json, info.yaml) "
                "with SYNTHETIC (untrained) weights: nothing computed with it is physical"
            )
        if output is None:
            if not quiet:
                typer.echo(f"convert it with: devine-onnx convert {folder} -o {folder}.onnx")
            return
        synthetic = True
        src = folder
    if output is None:
        raise typer.BadParameter(
            "missing: give the ONNX file to write (only --example works without it)",
            param_hint="'-o' / '--output'",
        )
    if is_torch_folder(src):
        if std is not None:
            raise ConversionError(
                f"--std {std}: only for the official DEVINE weights; a devine-torch model "
                "takes its normalisation from norm.json"
            )
        _convert_torch(
            src,
            output,
            check=check,
            synthetic=synthetic,
            fp16=fp16,
            trusted=trusted_checkpoint,
            quiet=quiet,
        )
        return
    _require_tensorflow()
    from .export import PARITY_TOLERANCE, convert_model

    report = convert_model(src, output, std=std, fp16=fp16, check=check, synthetic=synthetic)
    if quiet:
        return
    typer.echo(
        f"wrote {report.output} (σ = {report.sigma} m, source sha256 {report.source_sha256[:12]}…)"
    )
    for (h, w), diff in report.parity.items():
        typer.echo(f"  parity ONNX Runtime vs TensorFlow on {h}x{w}: max |diff| = {diff:.2e} m/s")
    if report.parity:
        typer.echo(f"  parity check passed (tolerance {PARITY_TOLERANCE})")
    if report.fp16_output is not None:
        worst = max(report.fp16_error.values())
        typer.echo(f"wrote {report.fp16_output} (fp16 vs fp32: max |diff| = {worst:.2e} m/s)")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m convert``: one-line errors, exit 1; ``--debug`` for tracebacks."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
        os.environ["DEVINE_ONNX_DEBUG"] = "1"
    app = typer.Typer(add_completion=False, help=CONVERT_HELP)
    app.command(help=CONVERT_HELP)(convert_command)
    try:
        app(argv, prog_name="python -m convert")
    except DevineError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
