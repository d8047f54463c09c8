"""CF metadata shared by the readers: the CRS of a gridded dataset from its grid mapping."""

from __future__ import annotations

import xarray as xr
from pyproj import CRS

__all__ = ["grid_mapping_crs"]

#: Grid-mapping variable names tried after the one a variable names.
_GRID_MAPPING_NAMES = ("spatial_ref", "crs", "grid_mapping", "lambert_conformal_conic")


def grid_mapping_crs(ds: xr.Dataset, var: str | None = None) -> CRS | None:
    """pyproj CRS of ``ds`` (or of ``ds[var]``) from its CF grid mapping, or None.

    Tried in order: the grid mapping named by ``var``'s ``grid_mapping`` attribute, then the
    usual names (``spatial_ref`` as written by rioxarray and devine-onnx, ``crs``...); in each,
    the ``crs_wkt`` (CF) or ``spatial_ref`` (GDAL) text, else the CF grid-mapping parameters.
    """
    names = []
    if var is not None and var in ds.variables:
        gm = ds[var].attrs.get("grid_mapping") or ds[var].encoding.get("grid_mapping")
        if gm:
            names.append(str(gm).split(":")[0].split()[0])
    names += [n for n in _GRID_MAPPING_NAMES if n not in names]
    for name in names:
        if name not in ds.variables:
            continue
        attrs = ds[name].attrs
        for key in ("crs_wkt", "spatial_ref"):
            if attrs.get(key):
                try:
                    return CRS.from_user_input(str(attrs[key]))
                except Exception:  # noqa: BLE001 - try the next attribute
                    pass
        if "grid_mapping_name" in attrs:
            try:
                return CRS.from_cf(dict(attrs))
            except Exception:  # noqa: BLE001 - try the next name
                pass
    return None
