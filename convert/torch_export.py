"""Convert a devine-torch model folder to a dynamic-size ONNX model, checked against PyTorch.

The ONNX graph is exactly devine-torch's network: input ``features`` (N, 3, H, W) float32,
the *normalised* features (deflLis, reldem, ydsc), any H, W >= 8; output ``uvw`` (N, 3, H, W)
= (u east, v north, w up) in m/s for a 3 m/s inflow. The normalisation (mean, std), the channel
order and everything else a runtime needs are in the model's metadata (``devine.kind =
features``); the runtime (:mod:`devine_onnx.engines.features`) computes and normalises the
features with numpy.

Export: ``torch.onnx.export(..., opset_version=17, dynamo=False)`` with dynamic axes n, h, w
(checked here: the size-dependent padding of the decoder and the align-corners
upsampling export correctly).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from devine_onnx._version import __version__
from devine_onnx.io.atomic import atomic_output

from .readers import ConversionError
from .torch_folder import TorchFolder, read_torch_folder
from .torch_layout import CHANNELS, INFLOW_SPEED, OUTPUTS, n_parameters

#: (H, W) of the parity inputs: none is a multiple of 8 except the first.
PARITY_SHAPES = ((64, 96), (97, 131), (50, 77))
#: Largest accepted |ONNX Runtime - PyTorch| on the parity inputs, m/s.
PARITY_TOLERANCE = 1e-4
OPSET = 17
INPUT_NAME = "features"
OUTPUT_NAME = "uvw"
#: Value of the ``devine.kind`` metadata of these models.
KIND = "features"
#: Frame (cells) the feature pipeline removes around the DEM.
FRAME = 2
#: Default coarse cell of the relative-DEM feature, metres.
COARSE_CELL = 1000.0


@dataclass
class TorchConversionReport:
    """What :func:`convert_torch_model` wrote and measured."""

    output: Path
    model_id: str
    source_sha256: str
    parity: dict = field(default_factory=dict)  # {(H, W): max |ONNX - PyTorch|}
    metadata: dict = field(default_factory=dict)
    fp16_output: Path | None = None
    fp16_error: dict = field(default_factory=dict)

    @property
    def max_difference(self) -> float:
        return max(self.parity.values()) if self.parity else float("nan")


def build_module(folder: TorchFolder):
    """The PyTorch WindUNet with the folder's weights, in eval mode."""
    from .torch_model import WindUNet

    module = WindUNet(activation=folder.activation)
    module.load_state_dict(folder.state_dict, strict=True)
    return module.eval()


def metadata_for(folder: TorchFolder, synthetic: bool) -> dict:
    """The ``devine.*`` metadata of a converted devine-torch model."""
    meta = {
        "devine.format": "devine-onnx/1",
        "devine.kind": KIND,
        "devine.architecture": "devine-torch WindUNet (base width 32, bilinear "
        "align_corners upsampling)",
        "devine.parameters": n_parameters(),
        "devine.channels": ",".join(CHANNELS),
        "devine.outputs": ",".join(OUTPUTS),
        "devine.input_layout": "NCHW",
        "devine.norm_mean": json.dumps(folder.mean),
        "devine.norm_std": json.dumps(folder.std),
        "devine.activation": folder.activation,
        "devine.inflow_speed": repr(INFLOW_SPEED),
        "devine.frame": FRAME,
        "devine.coarse_cell_default": repr(COARSE_CELL),
        "devine.min_size": 8,
        "devine.units": "m s-1",
        "devine.precision": "float32",
        "devine.source": folder.folder.name,
        "devine.source_sha256": folder.sha256,
        "devine.norm_sha256": folder.norm_sha256,
        "devine.model_id": folder.model_id,
        "devine.model_description": folder.description,
        "devine.model_status": str(folder.info.get("status", "")),
        "devine.converter_version": __version__,
        "devine.synthetic_weights": "true" if synthetic else "false",
    }
    if folder.training_resolution is not None:
        meta["devine.training_resolution"] = repr(folder.training_resolution)
    return meta


def _set_metadata(proto, meta: dict) -> None:
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)


def export_proto(module, metadata: dict, opset: int = OPSET):
    """ONNX ``ModelProto`` of ``module`` with dynamic n, h, w and ``metadata``."""
    import io

    import onnx
    import torch

    dummy = torch.zeros(1, len(CHANNELS), 64, 96)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # "padding='same' with even kernel lengths ... requires a zero-padded copy": harmless.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (dummy,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=False,
            dynamic_axes={
                INPUT_NAME: {0: "n", 2: "h", 3: "w"},
                OUTPUT_NAME: {0: "n", 2: "h", 3: "w"},
            },
        )
    proto = onnx.load_model_from_string(buffer.getvalue())
    proto.producer_name = "devine-onnx convert"
    proto.producer_version = __version__
    proto.doc_string = (
        "devine-torch WindUNet (F. Hammer & N. Helbig; DEVINE, Le Toumelin et al. 2023, "
        "doi:10.1175/AIES-D-22-0034.1, retrained on terrain features after Helbig et al. 2024). "
        "Input (N, 3, H, W): normalised deflLis, reldem, ydsc; output (N, 3, H, W): u (east), "
        "v (north), w (up) in m/s for a 3 m/s inflow. See the devine.* metadata."
    )
    _set_metadata(proto, metadata)
    return proto


def parity_inputs(seed: int = 0):
    """Feature-like normalised inputs (smooth fields plus noise) of :data:`PARITY_SHAPES`."""
    rng = np.random.default_rng(seed)
    for h, w in PARITY_SHAPES:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack(
            [
                np.sin(xx / 7.0) * np.cos(yy / 5.0),
                2.0 * np.sin(xx / 19.0 + yy / 23.0),
                np.cos(xx / 11.0) - np.sin(yy / 13.0),
            ]
        )
        x = base + rng.normal(0.0, 0.3, base.shape)
        yield (h, w), x.astype(np.float32)[None]


def torch_predict(module, x: np.ndarray) -> np.ndarray:
    """Run the PyTorch module on a float32 (N, 3, H, W) array (no gradients, CPU)."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: x})[0]


def convert_torch_model(
    src: str | os.PathLike,
    output: str | os.PathLike,
    *,
    check: bool = True,
    synthetic: bool = False,
    fp16: bool = False,
    trusted: bool = False,
    opset: int = OPSET,
) -> TorchConversionReport:
    """Convert a devine-torch model folder to a dynamic-size ONNX model.

    Parameters
    ----------
    src
        The model folder (``model.pt``, ``norm.json``, ``info.yaml``) or its checkpoint file
        (``norm.json`` and ``info.yaml`` are then read next to it).
    output
        The ``.onnx`` file to write (under a temporary name, renamed once checked).
    check
        Compare ONNX Runtime with PyTorch on three input sizes (two not multiples of 8) and
        fail if max |difference| > 1e-4 m/s (no output is left behind then).
    synthetic
        Mark the model as made of synthetic (untrained) weights; also set when info.yaml says
        ``synthetic: true``.
    fp16
        Also write ``<output stem>.fp16.onnx`` (float16 weights, float32 inputs/outputs).
    trusted
        Load a checkpoint holding Python objects besides tensors with pickle (only for files
        you trust); by default only tensors are loaded (``torch.load(weights_only=True)``).
    """
    output = Path(output)
    if output.suffix != ".onnx":
        raise ConversionError(f"{output}: the output must end in .onnx")
    folder = read_torch_folder(src, trusted=trusted)
    synthetic = bool(synthetic or folder.synthetic)
    module = build_module(folder)
    meta = metadata_for(folder, synthetic)
    proto = export_proto(module, meta, opset=opset)
    report = TorchConversionReport(
        output=output, model_id=folder.model_id, source_sha256=folder.sha256, metadata=meta
    )
    import onnx

    with atomic_output(output) as tmp:
        onnx.save(proto, str(tmp))
        if check:
            for shape, x in parity_inputs():
                diff = float(np.max(np.abs(_ort_run(tmp, x) - torch_predict(module, x))))
                report.parity[shape] = diff
                if not diff <= PARITY_TOLERANCE:
                    raise ConversionError(
                        f"{output}: ONNX Runtime differs from PyTorch by {diff:.3g} m/s on a "
                        f"{shape[0]}x{shape[1]} input (tolerance {PARITY_TOLERANCE}); please "
                        "report this with your PyTorch and onnxruntime versions"
                    )
    if fp16:
        from .export import to_fp16

        out16 = output.with_name(output.stem + ".fp16.onnx")
        with atomic_output(out16) as tmp16:
            onnx.save(to_fp16(proto), str(tmp16))
            for shape, x in parity_inputs():
                ref = _ort_run(output, x)
                report.fp16_error[shape] = float(np.max(np.abs(_ort_run(tmp16, x) - ref)))
        report.fp16_output = out16
    return report
