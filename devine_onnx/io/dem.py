"""Reading and validating the DEM of a correction table (engine-neutral).

:func:`load_dem` accepts a GeoTIFF (or any raster GDAL reads), a NetCDF file or an in-memory
:class:`xarray.DataArray`, and returns a north-up float32 elevation grid with square metric
pixels, a projected CRS (its own, or ``dem_crs`` for files without one) and no holes, optionally
resampled, plus a list of notes describing what was changed on the way (flips, resampling,
filled holes). Every refusal is a
:class:`~devine_onnx.errors.DEMError` whose one-line message names the file, says what was
expected and what to do.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import xarray as xr

from devine_onnx.errors import DEMError, first_line, number_option, option
from devine_onnx.io.cf import crs_label, find_xy_dims, local_projected_crs, lonlat_extent, read_crs
from devine_onnx.io.formats import guess_format, open_any

__all__ = ["dem_fingerprint", "dem_pixel_size", "dem_resolution", "load_dem"]

_GEOGRAPHIC_NAMES = {"lon", "longitude", "Longitude", "lat", "latitude", "Latitude"}
#: Readable name of the engines in messages when the caller does not say which one is used.
_ANY_ENGINE = "the table engines (DEVINE, MicroMet, Helbig, devine-torch)"


def _reproject_hint(da: xr.DataArray, crs) -> str:
    """How to reproject this DEM: to the UTM zone of its own centre, at about 30 m."""
    local = None
    if crs is not None and "x" in da.coords and "y" in da.coords:
        local = local_projected_crs(da["x"].values, da["y"].values, crs)
    if local is not None:
        auth = local.to_authority()
        code = f"{auth[0]}:{auth[1]}" if auth else local.to_proj4()
        return (
            f"reproject it to a metric projected CRS first, e.g. to the UTM zone of its centre "
            f"({local.name}): gdalwarp -t_srs {code} -tr 30 30"
        )
    return (
        "reproject it to a metric projected CRS first (e.g. the UTM zone of the area): "
        "gdalwarp -t_srs EPSG:<code> -tr 30 30"
    )


def load_dem(
    source: str | os.PathLike | xr.DataArray,
    *,
    fill_nodata: bool = False,
    var: str | None = None,
    dem_crs=None,
    resample: float | None = None,
    engine: str | None = None,
    square_pixels: bool = True,
) -> tuple[xr.DataArray, list[str]]:
    """Read and validate a DEM for the correction table.

    Parameters
    ----------
    source
        Path to a GeoTIFF / other GDAL raster (band 1 is used, nodata masked) or to a NetCDF
        file (``.nc``, ``.nc4``, ``.cdf``...: the single 2-D variable, or ``var``; CRS from
        its grid mapping), or an in-memory :class:`xarray.DataArray` with ``x``/``y``
        coordinates and a CRS written by rioxarray (``da.rio.write_crs``).
    fill_nodata
        Fill NaN/nodata holes with the value of the nearest valid pixel (and add a note)
        instead of refusing the DEM.
    var
        Variable to read from a NetCDF file (or from an in-memory Dataset).
    dem_crs
        CRS of a DEM without CRS information (an ESRI ASCII grid without ``.prj``, a
        NetCDF file without grid mapping), e.g. ``"EPSG:2154"`` (``--dem-crs``). A DEM that
        has a different CRS of its own is refused.
    resample
        Pixel size in metres to bring the DEM to (``--resample``): block average when
        coarsening (rasterio's ``average`` resampling), bilinear when refining. The result
        always has square pixels, whatever the input's (e.g. 25 m x 31 m after reprojecting a
        latitude/longitude DEM).
    engine
        Readable name of the engine that will use the DEM (e.g. "MicroMet"), named in the
        messages about pixel requirements; default: the table engines in general.
    square_pixels
        Refuse non-square pixels (after ``resample``). Every engine of devine-onnx needs
        square pixels (DEVINE's network, MicroMet's and Helbig's slopes and curvature, the devine-torch
        features all take one pixel size); False is for callers that handle dx != dy.

    Returns
    -------
    dem : xarray.DataArray
        ``elevation(y, x)`` float32 in metres, row 0 = north (``y`` decreasing), ``x``
        increasing, CRS written with rioxarray (engines may trim it further: DEVINE needs
        odd dimensions),
        ``attrs["source"]`` naming where it came from.
    notes : list of str
        One sentence per change made (flip to north-up, resampling, filled holes, band used).
        Pixel sizes are ``dem.x``/``dem.y`` spacings; :func:`dem_resolution` gives the square
        pixel size.

    Raises
    ------
    DEMError
        Missing or unreadable file; no CRS; geographic CRS or non-metric units; irregular or
        non-square pixels; holes (with their count and bounding box) unless ``fill_nodata``.
    """
    notes: list[str] = []
    if isinstance(source, xr.DataArray | xr.Dataset):
        label = str(source.attrs.get("source", "the DEM given in memory"))
        if isinstance(source, xr.Dataset):
            da = _pick_variable(source, var, label)
        else:
            da = source
        da = da.copy()
    else:
        path = Path(source)
        label = str(path)
        da = _read_file(path, var, label, notes, strict=dem_crs is None)
    if isinstance(source, xr.DataArray | xr.Dataset):
        da = _with_crs(source, da, label, strict=dem_crs is None)
    da = _squeeze_2d(da, label)
    da = _spatial_dims(da, label)
    if dem_crs is not None:
        da = _assign_crs(da, dem_crs, label, notes)
    _check_crs(da, label)
    da = _orient(da, notes)
    if resample is not None:
        da = _resample(da, resample, dem_pixel_size(da, label), label, notes)
    if square_pixels:
        dem_resolution(da, label, engine=engine)
    else:
        dem_pixel_size(da, label)

    z = np.asarray(da.values, dtype=np.float64)
    nodata = da.rio.nodata if hasattr(da, "rio") else None
    if nodata is not None and np.isfinite(nodata):
        z = np.where(z == nodata, np.nan, z)
    holes = ~np.isfinite(z)
    n_holes = int(holes.sum())
    if n_holes == holes.size:
        raise DEMError(f"{label}: the DEM has no valid elevation at all; check its nodata value")
    if n_holes:
        x = da["x"].values
        y = da["y"].values
        rows = np.flatnonzero(holes.any(axis=1))
        cols = np.flatnonzero(holes.any(axis=0))
        bbox = f"x {x[cols[0]]:.1f} to {x[cols[-1]]:.1f}, y {y[rows[-1]]:.1f} to {y[rows[0]]:.1f}"
        lonlat = lonlat_extent(x[cols[[0, -1]]], y[rows[[0, -1]]], _crs_of(da))
        where = f"{bbox} m" + (f" ({lonlat})" if lonlat else "")
        if not fill_nodata:
            raise DEMError(
                f"{label}: {n_holes} pixels without elevation (NaN/nodata) within {where}; "
                f"fill them ({_switch('fill_nodata')} uses the nearest valid pixel) or "
                "use a complete DEM"
            )
        from scipy.ndimage import distance_transform_edt

        idx = distance_transform_edt(holes, return_distances=False, return_indices=True)
        z = z[tuple(idx)]
        notes.append(
            f"filled {n_holes} nodata pixels ({bbox}) with the elevation of the nearest valid pixel"
        )

    ht, wt = z.shape
    crs = _crs_of(da)
    out = xr.DataArray(
        z[:ht, :wt].astype(np.float32),
        dims=("y", "x"),
        coords={
            "y": np.asarray(da["y"].values[:ht], dtype=np.float64),
            "x": np.asarray(da["x"].values[:wt], dtype=np.float64),
        },
        name="elevation",
        attrs={
            "units": "m",
            "long_name": "terrain elevation",
            "standard_name": "surface_altitude",
            "source": label,
        },
    )
    out.x.attrs.update(units="m", standard_name="projection_x_coordinate", axis="X")
    out.y.attrs.update(units="m", standard_name="projection_y_coordinate", axis="Y")
    out = out.rio.write_crs(crs)
    return out, notes


def dem_pixel_size(da: xr.DataArray, label: str = "DEM") -> tuple[float, float]:
    """``(dx, dy)`` pixel sizes (positive, CRS units: metres) of a regular grid (DEMError otherwise)."""
    sizes = []
    for dim in ("x", "y"):
        c = np.asarray(da[dim].values, dtype=np.float64)
        if c.size < 2:
            raise DEMError(f"{label}: only {c.size} pixel along {dim}; use a larger extent")
        step = np.diff(c)
        mean = float(np.mean(np.abs(step)))
        if mean == 0 or np.max(np.abs(np.abs(step) - mean)) > 1e-4 * mean:
            raise DEMError(
                f"{label}: irregular {dim} coordinates (pixel spacing varies); resample the "
                "DEM to a regular grid, e.g. with gdalwarp -tr 30 30"
            )
        sizes.append(mean)
    return sizes[0], sizes[1]


def dem_resolution(da: xr.DataArray, label: str = "DEM", *, engine: str | None = None) -> float:
    """Pixel size in metres of a DEM with regular, square pixels (DEMError otherwise).

    ``engine`` is the readable name of the engine that needs square pixels, for the message.
    """
    dx, dy = dem_pixel_size(da, label)
    if abs(dx - dy) > 1e-4 * max(dx, dy):
        size = max(dx, dy)
        who = engine or _ANY_ENGINE
        raise DEMError(
            f"{label}: non-square pixels ({dx:g} m x {dy:g} m); {who} needs square pixels: "
            f"give {option('resample', int(size) if size == int(size) else size)} (resamples to {size:g} m x {size:g} m), "
            f"or gdalwarp -tr {size:g} {size:g}"
        )
    return 0.5 * (dx + dy)


def dem_fingerprint(dem: xr.DataArray) -> str:
    """SHA-256 of the elevations (float32), the x/y coordinates (float64) and the CRS (WKT)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(dem.values, dtype=np.float32).tobytes())
    digest.update(str(dem.shape).encode())
    for dim in ("x", "y"):
        digest.update(np.ascontiguousarray(dem[dim].values, dtype=np.float64).tobytes())
    crs = dem.rio.crs
    digest.update((crs.to_wkt() if crs is not None else "").encode())
    return digest.hexdigest()


# --- helpers ------------------------------------------------------------------------------


def _read_file(
    path: Path, var: str | None, label: str, notes: list[str], *, strict: bool
) -> xr.DataArray:
    if not path.exists():
        raise DEMError(f"{label}: DEM file not found; check the path")
    fmt = guess_format(path)  # the content first (a NetCDF file named .tif is NetCDF)
    if path.is_dir() and fmt != "zarr":
        raise DEMError(f"{label}: is a folder, not a DEM file; pass a GeoTIFF or NetCDF file")
    if fmt in ("netcdf", "zarr"):
        ds = open_any(
            path,
            label=label,
            what="DEM",
            error=DEMError,
            formats=("netcdf", "zarr"),
            decode_coords="all",
        )
        try:
            with ds:
                da = _with_crs(ds, _pick_variable(ds, var, label), label, strict=strict).load()
        except DEMError:
            raise
        except Exception as exc:  # noqa: BLE001 - every backend has its own errors
            raise DEMError(
                f"{label}: not a readable NetCDF file ({first_line(exc)}); pass a GeoTIFF or NetCDF DEM"
            ) from None
        return da
    import rioxarray

    if var is not None:
        raise DEMError(f"{label}: {option('var', var)} only applies to NetCDF and Zarr DEMs")
    try:
        with rioxarray.open_rasterio(path, masked=True) as raw:
            n_bands = raw.sizes.get("band", 1)
            da = raw.isel(band=0) if "band" in raw.dims else raw
            da = da.load()
    except Exception as exc:  # noqa: BLE001 - rasterio raises RasterioIOError and others
        raise DEMError(
            f"{label}: not a readable raster ({first_line(exc)}); pass a GeoTIFF (or another "
            "GDAL raster) or a NetCDF DEM"
        ) from None
    if n_bands > 1:
        notes.append(f"the DEM file has {n_bands} bands; using band 1 as elevation")
    if "band" in da.coords:
        da = da.drop_vars("band")
    try:
        transform = da.rio.transform()
    except Exception:  # noqa: BLE001
        transform = None
    if transform is not None and (transform.b != 0 or transform.d != 0):
        raise DEMError(
            f"{label}: rotated or sheared raster grid; warp it to a north-up grid first, "
            "e.g. gdalwarp -tr 30 30 (with -t_srs for another CRS)"
        )
    return da


def _with_crs(source, da: xr.DataArray, label: str, *, strict: bool) -> xr.DataArray:
    """``da`` with the CRS that :func:`~devine_onnx.io.cf.read_crs` finds in ``source``."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    name = da.name if isinstance(source, xr.Dataset) and da.name in source.variables else None
    crs = read_crs(
        source,
        name,
        label=label,
        strict=strict,
        error=DEMError,
        remedy=f"give the CRS with {option('dem_crs')}",
    )
    return da.rio.write_crs(crs.to_wkt()) if crs is not None else da


def _pick_variable(ds: xr.Dataset, var: str | None, label: str) -> xr.DataArray:
    if var is not None:
        if var not in ds.data_vars:
            raise DEMError(
                f"{label}: no variable {var!r}; variables are {sorted(map(str, ds.data_vars))}"
            )
        return ds[var]
    candidates = [
        name
        for name, v in ds.data_vars.items()
        if np.issubdtype(v.dtype, np.number)
        and sum(1 for n in v.shape if n > 1) == 2
        and v.attrs.get("grid_mapping_name") is None
    ]
    if len(candidates) != 1:
        found = "none" if not candidates else ", ".join(map(str, candidates))
        raise DEMError(
            f"{label}: expected exactly one 2-D elevation variable, found {found}; "
            f"{_name_the_variable(candidates)}"
        )
    return ds[candidates[0]]


def _name_the_variable(candidates) -> str:
    """How to choose the elevation variable: ``var=`` in Python; the command line has no option."""
    example = repr(str(candidates[0])) if candidates else "'elevation'"
    if option("var").startswith("-"):
        return (
            "write a file with the elevation variable only, e.g. ncks -v NAME in.nc dem.nc, or "
            "export it as a GeoTIFF"
        )
    return f"name the variable to use, e.g. {option('var', example.strip(chr(39)))}"


def _squeeze_2d(da: xr.DataArray, label: str) -> xr.DataArray:
    extra = [d for d in da.dims if da.sizes[d] == 1]
    if da.ndim > 2 and extra:
        da = da.squeeze(extra[: da.ndim - 2], drop=True)
    if da.ndim != 2:
        raise DEMError(
            f"{label}: expected a 2-D elevation grid, got dimensions {dict(da.sizes)}; "
            "select one 2-D field"
        )
    if not np.issubdtype(da.dtype, np.number) or np.issubdtype(da.dtype, np.complexfloating):
        raise DEMError(f"{label}: elevations must be real numbers, got dtype {da.dtype}")
    return da


def _spatial_dims(da: xr.DataArray, label: str) -> xr.DataArray:
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    ydim, xdim = find_xy_dims(da)
    if xdim is None or ydim is None or xdim == ydim:
        raise DEMError(
            f"{label}: cannot tell the x and y dimensions apart among {list(da.dims)}; name "
            "them x and y (projected coordinates in metres)"
        )
    if xdim in _GEOGRAPHIC_NAMES or ydim in _GEOGRAPHIC_NAMES:
        crs = _crs_of(da)
        if crs is None or crs.is_geographic:
            raise DEMError(
                f"{label}: the DEM is on a longitude/latitude grid; "
                f"{_reproject_hint(da.rename({xdim: 'x', ydim: 'y'}), crs or 'EPSG:4326')}"
            )
    for dim in (xdim, ydim):
        if dim not in da.coords:
            raise DEMError(
                f"{label}: dimension {dim!r} has no coordinate values; the DEM needs "
                "georeferenced x/y coordinates"
            )
    crs = _crs_of(da)
    da = da.rename({xdim: "x", ydim: "y"}) if (xdim, ydim) != ("x", "y") else da
    da = da.transpose("y", "x")
    da = da.rio.set_spatial_dims(x_dim="x", y_dim="y")
    if crs is not None:
        da = da.rio.write_crs(crs)
    return da


def _crs_of(da: xr.DataArray):
    """The DEM's CRS (:func:`~devine_onnx.io.cf.read_crs`), None when absent or unreadable."""
    return read_crs(da, strict=False)


def _assign_crs(da: xr.DataArray, dem_crs, label: str, notes: list[str]) -> xr.DataArray:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        given = CRS.from_user_input(dem_crs)
    except CRSError:
        raise DEMError(
            f"{option('dem_crs', dem_crs)}: not a CRS pyproj knows; give e.g. EPSG:2154 or a WKT/PROJ "
            "string"
        ) from None
    own = _crs_of(da)
    if own is not None:
        if own != given:
            raise DEMError(
                f"{label}: the DEM's own CRS ({crs_label(own)}) differs "
                f"from {option('dem_crs', dem_crs)}; drop {option('dem_crs')}, or fix the file's CRS"
            )
        return da
    notes.append(f"the DEM has no CRS of its own; using {option('dem_crs', dem_crs)}")
    return da.rio.write_crs(given.to_wkt())


def _resample(da: xr.DataArray, size, pixel: tuple[float, float], label: str, notes: list[str]):
    """Resample to square ``size`` m pixels from ``pixel`` = (dx, dy), square or not."""
    size = number_option(
        "resample", size, "expected a pixel size in metres > 0, e.g. 30", error=DEMError
    )
    dx, dy = pixel
    if abs(size - dx) <= 1e-6 * dx and abs(size - dy) <= 1e-6 * dy:
        return da
    from rasterio.enums import Resampling

    method = Resampling.average if size > min(dx, dy) else Resampling.bilinear
    nodata = da.rio.nodata
    da = da.astype(np.float32)
    if nodata is not None and np.isfinite(nodata):
        da = da.where(da != nodata)
    da = da.rio.write_nodata(np.nan, encoded=False)
    from affine import Affine

    # The new grid starts at the DEM's north-west corner and keeps only whole pixels, so
    # that no output pixel reaches past the DEM (which would leave NaN at its edges).
    left, bottom, right, top = da.rio.bounds()
    shape = (int((top - bottom) / size + 1e-9), int((right - left) / size + 1e-9))
    if min(shape) < 2:
        raise DEMError(
            f"{option('resample', size)}: the DEM ({da.shape[0]} x {da.shape[1]} pixels of {_pixel_text(dx, dy)}) "
            "would have fewer than 2 pixels on a side; give a smaller pixel size"
        )
    transform = Affine(size, 0.0, left, 0.0, -size, top)
    out = da.rio.reproject(
        da.rio.crs, shape=shape, transform=transform, resampling=method, nodata=np.nan
    )
    out = out.rename({out.rio.x_dim: "x", out.rio.y_dim: "y"}) if out.rio.x_dim != "x" else out
    notes.append(
        f"resampled the DEM from {_pixel_text(dx, dy)} to {size:g} m pixels ({method.name}): "
        f"{da.shape[0]} x {da.shape[1]} -> {out.shape[0]} x {out.shape[1]}"
    )
    return out


def _switch(name: str) -> str:
    """A boolean option switched on, as the user spells it: ``name=True`` or ``--name``."""
    flag = option(name)
    return flag if flag.startswith("-") else f"{flag}=True"


def _pixel_text(dx: float, dy: float) -> str:
    return f"{dx:g} m" if abs(dx - dy) <= 1e-4 * max(dx, dy) else f"{dx:g} m x {dy:g} m"


def _check_crs(da: xr.DataArray, label: str) -> None:
    from pyproj import CRS

    crs = _crs_of(da)
    if crs is None:
        raise DEMError(
            f"{label}: the DEM has no CRS; pass it with {option('dem_crs')}, e.g. "
            f"{option('dem_crs', 'EPSG:2154')} for Lambert-93"
        )
    pcrs = CRS.from_user_input(crs.to_wkt())
    if pcrs.is_geographic:
        raise DEMError(f"{label}: geographic CRS ({crs_label(pcrs)}); {_reproject_hint(da, pcrs)}")
    if not pcrs.is_projected:
        raise DEMError(
            f"{label}: CRS {crs_label(pcrs)} is not a projected CRS; {_reproject_hint(da, pcrs)}"
        )
    units = {(a.unit_name, a.unit_conversion_factor) for a in pcrs.axis_info[:2]}
    if any(factor != 1.0 for _, factor in units):
        names = ", ".join(sorted({u for u, _ in units}))
        raise DEMError(
            f"{label}: CRS {crs_label(pcrs)} has units of {names}, not metres; "
            f"{_reproject_hint(da, pcrs)}"
        )


def _orient(da: xr.DataArray, notes: list[str]) -> xr.DataArray:
    """North-up (y decreasing with row) and x increasing, with a note for each flip."""
    y = np.asarray(da["y"].values)
    x = np.asarray(da["x"].values)
    if y.size > 1 and y[1] > y[0]:
        da = da.isel(y=slice(None, None, -1))
        notes.append("flipped the DEM north-up (its rows went from south to north)")
    if x.size > 1 and x[1] < x[0]:
        da = da.isel(x=slice(None, None, -1))
        notes.append("flipped the DEM west to east (its columns went from east to west)")
    return da
