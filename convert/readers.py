"""Read DEVINE's weights from the official Keras-2 SavedModel folder or a ``weights.h5``.

Both readers return a *weights dict* ``{layer name: (kernel HWIO float32, bias float32)}``
validated against :data:`convert.layers.LAYERS`. Errors are :class:`ConversionError` with a
one-line message naming the file, the layer, the expected and the found shape.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np

from devine_onnx.errors import InputFileError

from .layers import LAYER_NAMES, LAYERS

CHECKPOINT_KEY = "layer_with_weights-{n}/{what}/.ATTRIBUTES/VARIABLE_VALUE"


class ConversionError(InputFileError):
    """The source weights cannot be converted (missing file, missing layer, wrong shape...)."""


def _check_shapes(source: Path, weights: dict) -> dict:
    for layer in LAYERS:
        if layer.name not in weights:
            raise ConversionError(
                f"{source}: layer {layer.name} is missing (expected kernel {layer.kernel}); "
                "this is not DEVINE's UNet or the file is incomplete"
            )
        kernel, bias = weights[layer.name]
        for what, expected, found in (
            ("kernel", layer.kernel, kernel.shape),
            ("bias", layer.bias, bias.shape),
        ):
            if tuple(found) != tuple(expected):
                raise ConversionError(
                    f"{source}: layer {layer.name} {what}: expected shape {tuple(expected)}, "
                    f"found {tuple(found)}; this is not DEVINE's UNet"
                )
    return {
        name: (np.asarray(k, dtype=np.float32), np.asarray(b, dtype=np.float32))
        for name, (k, b) in weights.items()
    }


def metadata_conv_names(metadata_path: Path) -> list[str] | None:
    """Conv2D layer names, in graph order, from a Keras-2 ``keras_metadata.pb`` (or None)."""
    if not metadata_path.is_file():
        return None
    text = metadata_path.read_bytes().decode("latin-1")
    start = text.find('{"class_name": "Functional"')
    if start < 0:
        start = text.find('{"class_name": "Model"')
    if start < 0:
        return None
    try:
        config, _ = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    layers = config.get("config", {}).get("layers", [])
    return [layer["config"]["name"] for layer in layers if layer.get("class_name") == "Conv2D"]


def checkpoint_mapping(folder: Path) -> dict[str, str]:
    """Map each layer name to its checkpoint prefix ``layer_with_weights-N``.

    The checkpoint only numbers the layers; the order is docs/method.md §1's. When the folder has a
    ``keras_metadata.pb``, its Conv2D layer names must be exactly that order.
    """
    names = metadata_conv_names(folder / "keras_metadata.pb")
    if names is not None and tuple(names) != LAYER_NAMES:
        raise ConversionError(
            f"{folder / 'keras_metadata.pb'}: Conv2D layers are {names}, expected "
            f"{list(LAYER_NAMES)}; this is not DEVINE's UNet"
        )
    return {name: f"layer_with_weights-{n}" for n, name in enumerate(LAYER_NAMES)}


def read_checkpoint(folder: str | Path) -> dict:
    """Read the 18 conv layers of an official-layout SavedModel folder (core TensorFlow only)."""
    from ._tf import import_tensorflow

    tf = import_tensorflow()
    folder = Path(folder)
    index = folder / "variables" / "variables.index"
    if not index.is_file():
        raise ConversionError(
            f"{folder}: no variables/variables.index; expected the official DEVINE SavedModel "
            "folder (saved_model.pb, variables/) or a weights.h5 file"
        )
    prefix = str(folder / "variables" / "variables")
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except Exception as exc:  # TF raises many types for damaged checkpoints
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(
            f"{folder}/variables: cannot read the checkpoint ({first}); "
            "check that variables.data-00000-of-00001 is complete"
        ) from None
    weights = {}
    for name, key in checkpoint_mapping(folder).items():
        pair = []
        for what in ("kernel", "bias"):
            full = f"{key}/{what}/.ATTRIBUTES/VARIABLE_VALUE"
            if full not in shapes:
                raise ConversionError(
                    f"{folder}/variables: layer {name} ({key}) has no {what}; "
                    "this is not DEVINE's UNet or the checkpoint is incomplete"
                )
            pair.append(reader.get_tensor(full))
        weights[name] = tuple(pair)
    return _check_shapes(folder / "variables", weights)


def read_h5(path: str | Path) -> dict:
    """Read a Keras-2 HDF5 file: weights-only (``save_weights``) or a full model file.

    Layers are found by name: group ``<name>/<name>/kernel:0`` at the root or under
    ``model_weights/``.
    """
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise ConversionError(
            f"{path}: not a readable HDF5 file; expected DEVINE's Keras-2 weights.h5"
        ) from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        weights = {}
        for layer in LAYERS:
            if layer.name not in root:
                continue
            found: dict[str, np.ndarray] = {}

            def visit(name, obj, found=found):
                if hasattr(obj, "shape"):
                    leaf = name.rsplit("/", 1)[-1].split(":")[0]
                    if leaf in ("kernel", "bias"):
                        found[leaf] = obj[()]

            root[layer.name].visititems(visit)
            if "kernel" not in found or "bias" not in found:
                raise ConversionError(
                    f"{path}: layer {layer.name} has no kernel/bias datasets; "
                    "expected groups like conv1_0/conv1_0/kernel:0"
                )
            weights[layer.name] = (found["kernel"], found["bias"])
    return _check_shapes(path, weights)


def read_weights(src: str | Path) -> tuple[dict, Path]:
    """Read weights from a SavedModel folder or an ``.h5`` file; return (weights, weight file)."""
    src = Path(src)
    if not src.exists():
        raise ConversionError(
            f"{src}: no such file or folder; pass the official DEVINE model folder or its weights.h5"
        )
    if src.is_dir():
        if (src / "variables" / "variables.index").is_file():
            return read_checkpoint(src), src / "variables"
        if (src / "weights.h5").is_file():
            return read_h5(src / "weights.h5"), src / "weights.h5"
        raise ConversionError(
            f"{src}: neither a SavedModel folder (variables/variables.index) nor a folder with "
            "weights.h5; pass the official DEVINE model folder or its weights.h5"
        )
    return read_h5(src), src


def read_std(src: str | Path) -> float:
    """σ (``train_std``) from the ``dict_norm.csv`` next to ``src`` (a folder or an .h5 file)."""
    src = Path(src)
    folder = src if src.is_dir() else src.parent
    path = folder / "dict_norm.csv"
    if not path.is_file():
        raise ConversionError(
            f"{path}: dict_norm.csv not found next to the weights; copy it from the official "
            "model folder or pass --std (141.1161085195641 for the official model)"
        )
    with path.open(newline="") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[0].strip() == "train_std":
                try:
                    value = float(row[1])
                except ValueError:
                    break
                if np.isfinite(value) and value > 0:
                    return value
                break
    raise ConversionError(
        f"{path}: no positive train_std row; expected lines like 'train_std,141.116'; "
        "fix the file or pass --std"
    )


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file, or of all files of a folder (sorted by relative name)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
