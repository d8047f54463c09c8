"""Export DEVINE's weights to a size-agnostic ONNX model and check it against TensorFlow."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from devine_onnx._version import __version__
from devine_onnx.io.atomic import atomic_output

from .layers import CHANNELS, MULTIPLE
from .readers import ConversionError, read_std, read_weights, sha256_of

#: Shapes (H, W) used for the parity check; one is non-square.
PARITY_SHAPES = ((80, 72), (136, 200), (248, 104))
#: Largest accepted |ONNX − TensorFlow| on the parity inputs (fp32 model).
PARITY_TOLERANCE = 1e-4
OPSET = 17

INPUT_NAME = "dem"
OUTPUT_NAME = "uvw"


@dataclass
class ConversionReport:
    """What :func:`convert_model` wrote and measured."""

    output: Path
    sigma: float
    source_sha256: str
    parity: dict = field(default_factory=dict)  # {(H, W): max |ONNX − TF|}
    fp16_output: Path | None = None
    fp16_error: dict = field(default_factory=dict)  # {(H, W): max |fp16 − fp32|}

    @property
    def max_difference(self) -> float:
        return max(self.parity.values()) if self.parity else float("nan")


def _rename_io(proto) -> None:
    """Give the graph input/output stable names (``dem`` and ``uvw``)."""
    graph = proto.graph
    old_out = graph.output[0].name
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if o == old_out else o for o in node.output]
        node.input[:] = [OUTPUT_NAME if i == old_out else i for i in node.input]
    graph.output[0].name = OUTPUT_NAME


def _set_metadata(proto, meta: dict) -> None:
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)


def export_onnx(weights: dict, metadata: dict, opset: int = OPSET):
    """Return the ONNX ``ModelProto`` of the size-agnostic UNet (docs/method.md §2) with ``weights``."""
    import tf2onnx

    from .unet import build_unet_function

    fn = build_unet_function(weights)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset)
    _rename_io(proto)
    proto.producer_name = "devine-onnx convert"
    proto.producer_version = __version__
    proto.doc_string = (
        "DEVINE UNet (Le Toumelin et al. 2023, doi:10.1175/AIES-D-22-0034.1), size-agnostic: "
        "input (N, H, W, 1) normalised DEM with H, W multiples of 8; output (N, H, W, 3) = "
        "(u, v, w) in m/s in the rotated frame (u along the inflow)."
    )
    _set_metadata(proto, metadata)
    return proto, fn


def to_fp16(proto):
    """Half-precision variant: weights and activations float16, inputs/outputs stay float32."""
    import warnings

    from onnxconverter_common import float16

    with warnings.catch_warnings():
        # It warns for every weight below fp16's range; those are flushed to ±1e-7 on purpose.
        warnings.simplefilter("ignore", UserWarning)
        model16 = float16.convert_float_to_float16(proto, keep_io_types=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    meta["devine.precision"] = "float16"
    _set_metadata(model16, meta)
    return model16


def _ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: x})[0]


def parity_inputs(seed: int = 0):
    """Random normalised-DEM-like inputs (smooth terrain plus noise) of PARITY_SHAPES."""
    rng = np.random.default_rng(seed)
    for h, w in PARITY_SHAPES:
        yy, xx = np.mgrid[0:h, 0:w]
        terrain = 3.0 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + rng.normal(0, 0.3, (h, w))
        yield (h, w), terrain.astype(np.float32)[None, :, :, None]


def convert_model(
    src: str | os.PathLike,
    output: str | os.PathLike,
    *,
    std: float | None = None,
    fp16: bool = False,
    check: bool = True,
    synthetic: bool = False,
    opset: int = OPSET,
) -> ConversionReport:
    """Convert the official DEVINE weights to a size-agnostic ONNX model.

    Parameters
    ----------
    src
        The official Keras-2 SavedModel folder (``saved_model.pb``, ``variables/``) or a
        Keras-2 ``weights.h5`` (weights-only or full-model layout).
    output
        The ``.onnx`` file to write (written under a temporary name, renamed when checked).
    std
        Normalisation σ in metres; default: ``train_std`` of the ``dict_norm.csv`` next to
        ``src``.
    fp16
        Also write a half-precision variant ``<output stem>.fp16.onnx`` (float32 I/O).
    check
        Compare ONNX Runtime with TensorFlow on three input shapes and fail if
        max |difference| > 1e-4 (no output is left behind then).
    synthetic
        Mark the model as built from synthetic (untrained) weights, for demonstration models.
    """
    output = Path(output)
    if output.suffix != ".onnx":
        raise ConversionError(f"{output}: the output must end in .onnx")
    weights, weight_file = read_weights(src)
    sigma = float(std) if std is not None else read_std(src)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ConversionError(f"--std {std}: expected a positive number of metres (e.g. 141.116)")
    sha = sha256_of(weight_file)
    metadata = {
        "devine.format": "devine-onnx/1",
        "devine.sigma": repr(sigma),
        "devine.multiple": MULTIPLE,
        "devine.channels": ",".join(CHANNELS),
        "devine.input_layout": "NHWC",
        "devine.units": "m s-1",
        "devine.precision": "float32",
        "devine.source": Path(src).name,
        "devine.source_sha256": sha,
        "devine.converter_version": __version__,
        "devine.synthetic_weights": "true" if synthetic else "false",
    }
    proto, fn = export_onnx(weights, metadata, opset=opset)
    report = ConversionReport(output=output, sigma=sigma, source_sha256=sha)

    import onnx

    with atomic_output(output) as tmp:
        onnx.save(proto, str(tmp))
        if check:
            for shape, x in parity_inputs():
                diff = float(np.max(np.abs(_ort_run(tmp, x) - fn(x).numpy())))
                report.parity[shape] = diff
                if not diff <= PARITY_TOLERANCE:
                    raise ConversionError(
                        f"{output}: ONNX Runtime differs from TensorFlow by {diff:.3g} on a "
                        f"{shape[0]}x{shape[1]} input (tolerance {PARITY_TOLERANCE}); "
                        "please report this with your TensorFlow and tf2onnx versions"
                    )
    if fp16:
        out16 = output.with_name(output.stem + ".fp16.onnx")
        model16 = to_fp16(proto)
        with atomic_output(out16) as tmp16:
            onnx.save(model16, str(tmp16))
            for shape, x in parity_inputs():
                ref = _ort_run(output, x)
                report.fp16_error[shape] = float(np.max(np.abs(_ort_run(tmp16, x) - ref)))
        report.fp16_output = out16
    return report
