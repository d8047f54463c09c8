"""``python -m devine_onnx.cli``: same as the ``devine-onnx`` console script."""

from . import main

main()
