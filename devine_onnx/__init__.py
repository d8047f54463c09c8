"""devine-onnx: DEVINE wind downscaling over complex terrain with ONNX Runtime.

The public API is imported lazily so that ``import devine_onnx`` stays fast and never pulls in
heavy optional pieces.
"""

from __future__ import annotations

from importlib import import_module

from ._version import __version__
from .errors import DevineError

_LAZY = {
    "DevineModel": "devine_onnx.model",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'devine_onnx' has no attribute {name!r}")


__all__ = ["DevineError", "__version__", *_LAZY]
