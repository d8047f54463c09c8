"""``devine-onnx convert``: the model converter (package ``devine_onnx_convert``)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from devine_onnx.errors import MissingDependencyError

from .app import app
from .options import prepare_output

CONVERT_MODULES = ("tensorflow", "tf2onnx", "onnx", "h5py")
CONVERT_INSTALL = 'pip install "devine-onnx[convert]"'


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
    "  devine-onnx convert --example example-torch/ -o example-torch.onnx   (a devine-torch "
    "folder with SYNTHETIC weights, to try the workflow)\n\n"
    "Needs the convert extra: " + CONVERT_INSTALL.replace("[", "\\[") + " (the torch extra for "
    "devine-torch folders and --example). See models/README.md and docs/devine_torch.md."
)
CONVERT_HELP = (
    "Convert the official DEVINE weights to a size-agnostic ONNX model.\n\n"
    "SRC is the official model folder (a Keras-2 SavedModel) or its weights.h5; σ is read from "
    "the dict_norm.csv next to it. The export is checked against TensorFlow.\n\n"
    "SRC may also be a devine-torch model folder (model.pt, norm.json, info.yaml): it becomes "
    "a feature-network model, checked against PyTorch (needs the torch extra).\n\n"
    "--example writes such a folder with SYNTHETIC (untrained) weights at SRC, to try the "
    "workflow before having a model (nothing computed with it is physical); with -o it is "
    "converted too."
)

try:
    from devine_onnx_convert.cli import convert_command as _convert_command
except ImportError:  # pragma: no cover - the converter package is part of the distribution
    _convert_command = None

if _convert_command is not None:

    @functools.wraps(_convert_command)
    def _convert(*args, **kwargs):
        from devine_onnx_convert.torch_folder import is_torch_folder

        # A devine-torch folder (or --example) needs PyTorch, not TensorFlow (checked by the
        # converter).
        example = bool(kwargs.get("example"))
        if not example and not is_torch_folder(kwargs.get("src", args[0] if args else None)):
            _require_convert_extra()
        prepare_output(kwargs.get("output"))
        return _convert_command(*args, **kwargs)

    app.command("convert", help=CONVERT_HELP, epilog=CONVERT_EPILOG)(_convert)
else:  # pragma: no cover

    @app.command("convert", help=CONVERT_HELP, epilog=CONVERT_EPILOG)
    def _convert_unavailable(src: Path, output: Annotated[Path, typer.Option("-o")]) -> None:
        raise MissingDependencyError(f"the converter is not installed: {CONVERT_INSTALL}")
