"""Import TensorFlow without its start-up log lines (oneDNN, CUDA probing...)."""

from __future__ import annotations

import os
import sys


def import_tensorflow():
    """Return the ``tensorflow`` module, silencing the C++ logging it prints while loading.

    TensorFlow 2.21 writes absl INFO lines to file descriptor 2 before its log level is read,
    so the descriptor is redirected to /dev/null for the import (set DEVINE_ONNX_DEBUG=1 to
    see them).
    """
    if "tensorflow" in sys.modules or os.environ.get("DEVINE_ONNX_DEBUG"):
        import tensorflow as tf

        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.constant(0.0)  # initialises the runtime (and its CUDA probe) while muted
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf
