"""One-off converter: official DEVINE weights (Keras-2 SavedModel or weights.h5) -> ONNX.

TensorFlow, tf_keras and tf2onnx are imported here and nowhere else in the project. Install
them with ``pip install "devine-onnx[convert]"`` and run ``python -m convert SRC -o OUT.onnx``
(or ``devine-onnx convert``).
"""

import os

# TensorFlow's C++ INFO/WARNING lines (oneDNN, missing CUDA...) drown the converter's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .layers import LAYER_NAMES, LAYERS, MULTIPLE  # noqa: E402
from .readers import ConversionError  # noqa: E402


def convert_model(*args, **kwargs):
    """See :func:`convert.export.convert_model` (imported lazily: it needs TensorFlow)."""
    from .export import convert_model as _convert_model

    return _convert_model(*args, **kwargs)


__all__ = ["LAYERS", "LAYER_NAMES", "MULTIPLE", "ConversionError", "convert_model"]
