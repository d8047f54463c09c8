"""Interpolation of NWP fields to a table grid with fixed Delaunay weights (docs/method.md §5).

Build once, apply many times, in the style of xESMF and pyresample:

weights
    :class:`RegridWeights`: build (Delaunay triangulation), apply (to numpy, dask or xarray),
    validate against grids, save to / read from NetCDF.
fingerprint
    Short hashes of grids (:func:`grid_fingerprint`) that tell whether weights fit a file.
cache
    The per-user weights cache (:func:`load_or_build`) and :func:`build_weights`, which takes
    an NWP file and a table grid (duck-typed: anything with ``x``, ``y`` and ``crs``).

This package depends only on :mod:`devine_onnx.io` and :mod:`devine_onnx.errors`: it never
imports the tables or the downscaling packages.
"""

from __future__ import annotations

from .cache import (
    CACHE_DIR_ENV,
    CacheWarning,
    TargetGrid,
    build_weights,
    cache_file,
    default_cache_dir,
    load_or_build,
    resolve_weights,
    target_grid,
    unsafe_cache_reason,
    weights_cache_path,
)
from .fingerprint import (
    crs_identity,
    grid_fingerprint,
    source_grid_fingerprint,
    source_grid_shape,
    target_grid_fingerprint,
)
from .weights import (
    FORMAT_NAME,
    FORMAT_VERSION,
    OutsideHullWarning,
    RegridWeights,
    check_weights_path,
)

__all__ = [
    "CACHE_DIR_ENV",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CacheWarning",
    "OutsideHullWarning",
    "RegridWeights",
    "TargetGrid",
    "build_weights",
    "cache_file",
    "check_weights_path",
    "crs_identity",
    "default_cache_dir",
    "grid_fingerprint",
    "load_or_build",
    "resolve_weights",
    "source_grid_fingerprint",
    "source_grid_shape",
    "target_grid",
    "target_grid_fingerprint",
    "unsafe_cache_reason",
    "weights_cache_path",
]
