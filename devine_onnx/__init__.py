"""devine-onnx: wind downscaling over complex terrain (DEVINE, MicroMet, devine-torch).

The public API (imported lazily, so that ``import devine_onnx`` stays fast):

- :func:`compute_corrections`: the per-direction correction table of a DEM, with any engine.
- :func:`get_engine`: open a table engine (``devine``, ``micromet``, ``features``).
- :func:`build_weights`, :class:`RegridWeights`: Delaunay interpolation weights NWP -> table.
- :func:`downscale`: apply a table to an NWP wind series (CF NetCDF/Zarr, streaming or lazy).
- :class:`DevineModel`: the converted UNet on ONNX Runtime (CPU or CUDA).
- :func:`load_dem`, :func:`open_nwp`, :func:`open_table`: validated readers.
- :func:`run_demo`, :func:`plot_wind`, :func:`plot_table`, :func:`animate_wind`, :func:`info`.
- :func:`export_file`: GeoTIFF, ESRI ASCII grids (WindNinja) or KMZ (Google Earth).
- :func:`evaluate`: scores of downscaled winds (and the raw NWP) at weather stations.
- :class:`FeatureNetwork`, :func:`compute_features`: devine-torch feature networks (converted
  to ONNX) and their terrain features; per-step downscaling: ``downscale(..., per_step=True)``.

Conventions: wind directions are FROM directions in degrees clockwise from north, speeds in
m/s; NaN marks "no data".
"""

from __future__ import annotations

from importlib import import_module

# pyproj first: when the ecCodes wheel (cfgrib, GRIB input) is loaded before pyproj, for
# instance by xarray looking for a backend, the process aborts at exit ("double free") after
# its work is done. Loading pyproj first avoids that (0.1 s).
import pyproj  # noqa: F401, I001

from ._version import __version__
from .errors import DevineError

_LAZY = {
    "DevineModel": "devine_onnx.engines.devine.model",
    "compute_corrections": "devine_onnx.tables.build",
    "get_engine": "devine_onnx.engines",
    "load_dem": "devine_onnx.io.dem",
    "RegridWeights": "devine_onnx.regrid.weights",
    "build_weights": "devine_onnx.regrid.cache",
    "downscale": "devine_onnx.downscaling.api",
    "open_table": "devine_onnx.tables.table",
    "open_nwp": "devine_onnx.io.nwp",
    "run_demo": "devine_onnx.demo",
    "plot_wind": "devine_onnx.plot",
    "plot_table": "devine_onnx.plot",
    "animate_wind": "devine_onnx.plot",
    "export_file": "devine_onnx.export",
    "info": "devine_onnx.diagnostics",
    "evaluate": "devine_onnx.evaluation",
    "FeatureNetwork": "devine_onnx.engines.features",
    "compute_features": "devine_onnx.feature_maps",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'devine_onnx' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["DevineError", "__version__", *_LAZY]
