"""The DEVINE engine: the UNet run on the DEM rotated to every inflow direction.

Kernels (numpy only, equal to the original TensorFlow operations): :mod:`.geometry` (crop),
:mod:`.rotation`, :mod:`.boxfilter` (sliding mean), :mod:`.preprocess` / :mod:`.postprocess`;
:mod:`.frame`, the geometry of the frame method (one extended rotated frame, tile by tile).
See docs/method.md §3 and §9.1.
"""

from devine_onnx.engines.devine.preprocess import prepare_input

__all__ = ["prepare_input"]
