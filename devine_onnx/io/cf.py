"""CF metadata of gridded data: the one reader of a CRS, of the spatial dimensions, and the one
writer of a grid mapping.

Every reader of devine-onnx (DEM, NWP, correction table, outputs, plots, evaluation) goes
through :func:`read_crs` and :func:`find_xy_dims`, so that a file gives the same CRS and the
same x/y dimensions whichever command reads it; every writer (tables, downscaled winds) goes
through :func:`write_grid_mapping` / :func:`grid_mapping_attrs`. Callers add only their own
policy on top (e.g. the NWP reader takes latitude/longitude without any CRS as WGS 84; the DEM
reader takes ``dem_crs`` for a file without one).

CRS precedence (:func:`read_crs`), first found wins:

1. The grid-mapping variable named by the data variable's ``grid_mapping`` attribute (or its
   encoding, where xarray moves it with ``decode_coords``).
2. Otherwise a grid-mapping variable found by itself: ``spatial_ref`` (rioxarray, GDAL,
   devine-onnx), ``crs``, then any other variable with a ``grid_mapping_name`` or ``crs_wkt``
   attribute (e.g. ``Lambert_Conformal``), in file order.
3. A ``crs`` text attribute (EPSG code, WKT or PROJ string) of the data variable, then of the
   dataset (a global attribute).
4. What rioxarray reads (``obj.rio.crs``), for objects that carry their CRS only there.

Within one grid-mapping variable the forms are tried in this order: ``crs_wkt`` (CF 1.7 WKT),
``spatial_ref`` (GDAL's WKT), the CF grid-mapping parameters (``grid_mapping_name``,
``standard_parallel``... through :meth:`pyproj.CRS.from_cf`), then a PROJ string (``proj4``,
``proj4text``, ``proj4_params``). The WKT comes first because it is complete (datum, names,
units), whereas the CF parameters lose the CRS name and sometimes the datum.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import xarray as xr
from pyproj import CRS

from devine_onnx.errors import InputFileError, first_line

__all__ = [
    "X_DIM_NAMES",
    "Y_DIM_NAMES",
    "crs_label",
    "dim_axis",
    "find_xy_dims",
    "grid_mapping_attrs",
    "grid_mapping_crs",
    "read_crs",
    "write_grid_mapping",
]

#: Grid-mapping variable names tried (in this order) when no variable names its own.
GRID_MAPPING_NAMES = ("spatial_ref", "crs")
#: Attributes of a grid-mapping variable holding a whole CRS as text, in order of precedence.
_WKT_KEYS = ("crs_wkt", "spatial_ref")
_PROJ_KEYS = ("proj4", "proj4text", "proj4_params")
#: Attributes that make a variable a grid mapping (one of them is enough).
_CRS_KEYS = (*_WKT_KEYS, "grid_mapping_name", *_PROJ_KEYS)

#: Dimension names taken as the x (easting / longitude) axis, in order of preference.
X_DIM_NAMES = (
    "x",
    "X",
    "xc",
    "easting",
    "projection_x_coordinate",
    "longitude",
    "lon",
    "Longitude",
    "rlon",
    "west_east",
    "nav_lon",
    "lon_0",
)
#: Dimension names taken as the y (northing / latitude) axis, in order of preference.
Y_DIM_NAMES = (
    "y",
    "Y",
    "yc",
    "northing",
    "projection_y_coordinate",
    "latitude",
    "lat",
    "Latitude",
    "rlat",
    "south_north",
    "nav_lat",
    "lat_0",
)
_X_STANDARD_NAMES = ("projection_x_coordinate", "longitude", "grid_longitude")
_Y_STANDARD_NAMES = ("projection_y_coordinate", "latitude", "grid_latitude")


# --------------------------------------------------------------------------- CRS
def _variables(obj) -> dict[Hashable, xr.DataArray]:
    """Variables where a grid mapping may live: all of a Dataset's, a DataArray's coordinates."""
    if isinstance(obj, xr.Dataset):
        return dict(obj.variables.items())
    return dict(obj.coords.items())


def _named_grid_mapping(var: xr.DataArray | None) -> str | None:
    if var is None:
        return None
    gm = var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
    if not gm:
        return None
    # CF allows "name" or "name: coord1 coord2 ..."; the first word names the variable.
    return str(gm).split(":")[0].split()[0]


def _crs_from_grid_mapping(attrs: dict) -> tuple[CRS | None, str | None]:
    """(CRS, None) from the first readable form in ``attrs``, else (None, why the last failed)."""
    why = None
    for key in _WKT_KEYS:
        if attrs.get(key):
            try:
                return CRS.from_user_input(str(attrs[key])), None
            except Exception as exc:  # noqa: BLE001 - try the next form
                why = f"{key}: {first_line(exc, 100)}"
    if attrs.get("grid_mapping_name"):
        try:
            return CRS.from_cf(dict(attrs)), None
        except Exception as exc:  # noqa: BLE001 - try the next form
            why = f"CF parameters: {first_line(exc, 100)}"
    for key in _PROJ_KEYS:
        if attrs.get(key):
            try:
                return CRS.from_user_input(str(attrs[key])), None
            except Exception as exc:  # noqa: BLE001 - try the next form
                why = f"{key}: {first_line(exc, 100)}"
    return None, why


def _crs_attribute(attrs: dict) -> CRS | None:
    value = attrs.get("crs")
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        return None
    try:
        return CRS.from_user_input(value)
    except Exception:  # noqa: BLE001 - free text that is no CRS: not a CRS source
        return None


def read_crs(
    obj: xr.Dataset | xr.DataArray,
    var: str | None = None,
    *,
    label: str | None = None,
    strict: bool = True,
    error: type[Exception] = InputFileError,
    remedy: str = "fix or remove the grid mapping",
) -> CRS | None:
    """The CRS of a dataset (or of one of its variables), following the module's precedence.

    Parameters
    ----------
    obj
        A Dataset, or a DataArray (whose coordinates may hold the grid-mapping variable).
    var
        Data variable of ``obj`` (a Dataset) whose ``grid_mapping`` is looked at first. When
        None: the DataArray itself, or, for a Dataset, the grid mapping that its data variables
        name (when they all name the same one).
    label
        How to name the data in an error message (a file name); default "the dataset".
    strict
        When True, a grid-mapping variable that the data names but from which no CRS can be read
        (it has CRS attributes, none understood by pyproj) raises ``error``; when False it is
        ignored (as if absent), for callers that are given a CRS to use instead.
    error
        Class of the error raised (e.g. :class:`~devine_onnx.errors.NWPError`).
    remedy
        What to do, appended to that error message (e.g. "give the CRS with --nwp-crs").

    Returns
    -------
    pyproj.CRS or None
        None when ``obj`` carries no CRS in any form.
    """
    variables = _variables(obj)
    if isinstance(obj, xr.DataArray):
        data = obj
    elif var is not None and var in obj.variables:
        data = obj[var]
    else:
        data = None
    # 1. the grid mapping the data names
    named = _named_grid_mapping(data)
    if named is None and data is None and isinstance(obj, xr.Dataset):
        names = {_named_grid_mapping(v) for v in obj.data_vars.values()} - {None}
        named = names.pop() if len(names) == 1 else None
    if named is not None and named in variables:
        crs, why = _crs_from_grid_mapping(dict(variables[named].attrs))
        if crs is not None:
            return crs
        if why is not None and strict:
            raise error(
                f"{label or 'the dataset'}: grid mapping variable {named!r} does not describe a "
                f"CRS pyproj understands ({why}); {remedy}"
            )
    # 2. a grid-mapping variable found by its name, then by its attributes
    candidates = [n for n in GRID_MAPPING_NAMES if n in variables and n != named]
    candidates += [
        n
        for n, v in variables.items()
        if n not in candidates
        and n != named
        and v.ndim == 0
        and any(k in v.attrs for k in ("grid_mapping_name", "crs_wkt"))
    ]
    for name in candidates:
        crs, _ = _crs_from_grid_mapping(dict(variables[name].attrs))
        if crs is not None:
            return crs
    # 3. a ``crs`` attribute of the data, then a global one
    for attrs in (data.attrs if data is not None else {}, obj.attrs):
        crs = _crs_attribute(attrs)
        if crs is not None:
            return crs
    # 4. rioxarray
    try:
        import rioxarray  # noqa: F401  (registers .rio)

        rio_crs = (data if data is not None else obj).rio.crs
    except Exception:  # noqa: BLE001 - no rioxarray, or a CRS it cannot parse
        rio_crs = None
    if rio_crs is not None:
        try:
            return CRS.from_user_input(rio_crs.to_wkt())
        except Exception:  # noqa: BLE001
            return None
    return None


def grid_mapping_crs(ds: xr.Dataset | xr.DataArray, var: str | None = None) -> CRS | None:
    """:func:`read_crs` that never raises: None when the CRS is absent or unreadable."""
    return read_crs(ds, var, strict=False)


def crs_label(crs: CRS | None, default: str = "the grid's projection") -> str:
    """A readable name for ``crs`` in messages and attributes.

    Its name, unless pyproj has none ("undefined", as for a CF grid mapping without
    ``crs_wkt``); then its authority code, then its projection method (e.g. "Lambert Conic
    Conformal (2SP)"), then ``default``.
    """
    if crs is None:
        return default
    name = (crs.name or "").strip()
    if name and name.lower() not in ("undefined", "unknown", "unnamed"):
        return name
    auth = crs.to_authority(min_confidence=90)
    if auth:
        return f"{auth[0]}:{auth[1]}"
    method = getattr(getattr(crs, "coordinate_operation", None), "method_name", "")
    if method:
        return f"a {method} projection"
    return default


# --------------------------------------------------------------------------- dimensions
def dim_axis(obj: xr.Dataset | xr.DataArray, dim: Hashable) -> str | None:
    """ "X", "Y" or None: the spatial axis a dimension stands for.

    By its name (:data:`X_DIM_NAMES`, :data:`Y_DIM_NAMES`), else by its coordinate's ``axis``
    attribute, else by its coordinate's ``standard_name`` (projection_x_coordinate, longitude,
    grid_longitude and their y counterparts).
    """
    if dim in X_DIM_NAMES:
        return "X"
    if dim in Y_DIM_NAMES:
        return "Y"
    coord = obj.coords.get(dim)
    if coord is None:
        return None
    axis = str(coord.attrs.get("axis", "")).upper()
    if axis in ("X", "Y"):
        return axis
    sn = str(coord.attrs.get("standard_name", ""))
    if sn in _X_STANDARD_NAMES:
        return "X"
    if sn in _Y_STANDARD_NAMES:
        return "Y"
    return None


def find_xy_dims(obj: xr.Dataset | xr.DataArray) -> tuple[str | None, str | None]:
    """``(y_dim, x_dim)`` of gridded data, each None when not found.

    Dimension names are matched first (in the order of :data:`Y_DIM_NAMES` /
    :data:`X_DIM_NAMES`, so ``x`` wins over ``lon`` when both are present), then the
    ``axis`` and ``standard_name`` attributes of the dimension coordinates
    (:func:`dim_axis`). The caller decides what a missing or ambiguous axis means.
    """
    dims = [d for d in obj.dims]
    found = {}
    for axis, names in (("Y", Y_DIM_NAMES), ("X", X_DIM_NAMES)):
        hit = next((n for n in names if n in dims), None)
        if hit is None:
            hit = next((d for d in dims if dim_axis(obj, d) == axis), None)
        found[axis] = None if hit is None else str(hit)
    return found["Y"], found["X"]


# --------------------------------------------------------------------------- writing
def grid_mapping_attrs(crs) -> dict:
    """Attributes of a CF grid-mapping variable for ``crs``.

    The CF grid-mapping parameters (:meth:`pyproj.CRS.to_cf`) plus the WKT twice, as
    ``crs_wkt`` (CF) and ``spatial_ref`` (GDAL and rioxarray), so that every reader finds the
    same CRS (see :func:`read_crs`). Tuples are turned into lists for the NetCDF writers.
    """
    crs = CRS.from_user_input(crs if not hasattr(crs, "to_wkt") else crs.to_wkt())
    attrs = dict(crs.to_cf())
    wkt = crs.to_wkt()
    attrs["crs_wkt"] = wkt
    attrs["spatial_ref"] = wkt
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items()}


def write_grid_mapping(
    ds: xr.Dataset,
    crs,
    *,
    name: str = "spatial_ref",
    variables=None,
) -> xr.Dataset:
    """A copy of ``ds`` with a CF grid mapping for ``crs``, named by its gridded variables.

    Parameters
    ----------
    ds
        Dataset to georeference.
    crs
        Anything :meth:`pyproj.CRS.from_user_input` takes (also a rasterio CRS).
    name
        Name of the grid-mapping variable (a scalar coordinate, as rioxarray writes it).
    variables
        Data variables that get ``grid_mapping = name`` as a plain attribute (an attribute
        survives an explicit encoding at writing time, unlike xarray's encoding entry).
        Default: every data variable that has both spatial dimensions (:func:`find_xy_dims`).

    Returns
    -------
    xarray.Dataset
    """
    out = ds.copy()
    out = out.drop_vars(name, errors="ignore")
    out = out.assign_coords({name: xr.DataArray(np.int32(0), attrs=grid_mapping_attrs(crs))})
    if variables is None:
        ydim, xdim = find_xy_dims(out)
        variables = [n for n, v in out.data_vars.items() if ydim in v.dims and xdim in v.dims]
    for v in variables:
        out[v].encoding.pop("grid_mapping", None)
        out[v].attrs["grid_mapping"] = name
    return out


# --------------------------------------------------------------------------- messages
def lonlat_extent(x, y, crs) -> str | None:
    """``"lon 5.10 to 6.20, lat 44.90 to 45.60"`` (degrees, WGS 84) for coordinates in ``crs``.

    ``x``/``y`` are coordinate values (1-D axes or any arrays) in ``crs``; the extent of the
    box they span is transformed (with densified edges). None when ``crs`` is None or cannot
    be transformed to WGS 84.
    """
    if crs is None:
        return None
    try:
        from pyproj import Transformer

        src = CRS.from_user_input(crs if not hasattr(crs, "to_wkt") else crs.to_wkt())
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        box = (np.nanmin(x), np.nanmin(y), np.nanmax(x), np.nanmax(y))
        if src.is_geographic:
            w, s, e, n = box
        else:
            t = Transformer.from_crs(src, CRS.from_epsg(4326), always_xy=True)
            w, s, e, n = t.transform_bounds(*box, densify_pts=21)
        if not all(np.isfinite(v) for v in (w, s, e, n)):
            return None
    except Exception:  # noqa: BLE001 - a message helper never fails the caller
        return None
    return f"lon {w:.3f} to {e:.3f}, lat {s:.3f} to {n:.3f}"


def local_projected_crs(x, y, crs) -> CRS | None:
    """The WGS 84 UTM zone CRS of the centre of the box spanned by ``x``/``y`` (in ``crs``).

    For messages that suggest a metric CRS to reproject to (``gdalwarp -t_srs EPSG:326..``),
    chosen from the data's own position rather than a fixed country. None when unknown.
    """
    if crs is None:
        return None
    try:
        from pyproj import Transformer
        from pyproj.aoi import AreaOfInterest
        from pyproj.database import query_utm_crs_info

        src = CRS.from_user_input(crs if not hasattr(crs, "to_wkt") else crs.to_wkt())
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        cx = 0.5 * (np.nanmin(x) + np.nanmax(x))
        cy = 0.5 * (np.nanmin(y) + np.nanmax(y))
        if not src.is_geographic:
            cx, cy = Transformer.from_crs(src, CRS.from_epsg(4326), always_xy=True).transform(
                cx, cy
            )
        if not (np.isfinite(cx) and np.isfinite(cy) and -180 <= cx <= 360 and -90 <= cy <= 90):
            return None
        cx = ((cx + 180.0) % 360.0) - 180.0
        infos = query_utm_crs_info(
            datum_name="WGS 84", area_of_interest=AreaOfInterest(cx, cy, cx, cy)
        )
        if not infos:
            return None
        return CRS.from_authority(infos[0].auth_name, infos[0].code)
    except Exception:  # noqa: BLE001 - a message helper never fails the caller
        return None
