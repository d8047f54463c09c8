"""The public API is importable without TensorFlow and exposes what the CLI uses."""

from __future__ import annotations

import subprocess
import sys

import devine_onnx


def test_every_public_name_resolves():
    for name in devine_onnx.__all__:
        assert getattr(devine_onnx, name) is not None


def test_runtime_never_imports_tensorflow():
    code = (
        "import sys, devine_onnx as dv\n"
        "[getattr(dv, n) for n in dv.__all__]\n"
        "import devine_onnx.cli\n"
        "bad = [m for m in ('tensorflow', 'tf_keras', 'keras', 'tf2onnx') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
