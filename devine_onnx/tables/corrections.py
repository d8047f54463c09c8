"""The correction table: DEVINE run for every inflow direction over one DEM (METHOD §3).

:func:`compute_corrections` reads and validates the DEM (:func:`devine_onnx.tables.dem.load_dem`),
and for each table direction ``k`` rotates and normalises it
(:func:`devine_onnx.engines.devine.postprocess.prepare_input`), runs the UNet
(:meth:`devine_onnx.session.DevineModel.predict`) and back-rotates speed and deviation
(:func:`devine_onnx.engines.devine.postprocess.finish_output`). The result is a CF-1.8 dataset
``acceleration(angle, y, x)`` / ``alpha(angle, y, x)`` on the DEM's grid and CRS, with NaN
where no value exists (the original writes -1 there, METHOD §6.5).

Writing (``output=``) is incremental, one batch of directions at a time, under the temporary
name ``OUTPUT.partial``, renamed when complete: memory stays bounded by a few direction slices
whatever the number of directions (the original allocates the whole table, METHOD §6.8), and an
interrupted run resumes where it stopped.

- ``.zarr`` (Zarr format 2, one chunk per direction): the store is created with all its
  metadata first (xarray, ``compute=False``), then each batch is assigned to its slice of the
  zarr arrays; chunks never written read as NaN (the fill value).
- ``.nc`` (NetCDF-4/HDF5): xarray writes the coordinates, grid mapping and elevation, then
  the netCDF4 library adds ``acceleration`` and ``alpha`` (zlib level 1 with shuffle, chunks
  ``(1, ny, nx)``, NaN fill value) and each batch is written into its slice and flushed.

In both, the attribute ``directions_done`` counts the directions (in the order of the
``angle`` coordinate) that are completely written; it is removed on completion. On a rerun,
a partial output whose DEM fingerprint, model SHA-256, angles, target, value precision and
σ match is resumed after its last complete direction.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

from devine_onnx._version import __version__
from devine_onnx.engines.devine.geometry import CropGeometry
from devine_onnx.engines.devine.postprocess import (
    ARPS_INFLOW,
    finish_output,
    prepare_input,
    speed_alpha,
)
from devine_onnx.engines.devine.rotation import (
    rotate_nearest,
    rotation_angle,
    rotation_source_indices,
)
from devine_onnx.errors import OptionError, OutputError
from devine_onnx.io.atomic import atomic_output, check_writable, partial_path, remove_path
from devine_onnx.progress import progress_bar
from devine_onnx.session import HALO

from .dem import NETCDF_SUFFIXES, dem_fingerprint, dem_resolution, load_dem

__all__ = [
    "DEFAULT",
    "MARGIN",
    "OUTPUT_SUFFIXES",
    "compute_corrections",
    "minimum_dem_size",
]

LOGGER = logging.getLogger("devine_onnx")

#: Sentinel for "the model's own tile size" (``tile=DEFAULT``).
DEFAULT = "default"
#: Pixels near the rim of the valid disc where the UNet's zero padding influences some
#: directions (receptive field ≤ 58 px, METHOD §2): a ``target`` must stay this far inside.
MARGIN = HALO
#: Output suffixes and their formats.
OUTPUT_SUFFIXES = {".nc": "netcdf", ".zarr": "zarr"}
#: Above this size (bytes) an in-memory table (no ``output``) triggers a warning in the log.
_MEMORY_WARNING = 2 << 30
#: zlib level of the NetCDF variables: level 1 compresses these fields nearly as well as the
#: default 4, several times faster.
_NC_COMPLEVEL = 1


def compute_corrections(
    dem,
    model=None,
    angles=range(360),
    *,
    output: str | os.PathLike | None = None,
    device: str = "auto",
    dtype: str = "float32",
    batch: int = 1,
    target=None,
    fill_nodata: bool = False,
    resume: bool = True,
    quiet: bool = False,
    tile=DEFAULT,
) -> xr.Dataset:
    """Compute DEVINE's correction table (acceleration and deviation per inflow direction).

    Parameters
    ----------
    dem
        DEM path (GeoTIFF or NetCDF) or :class:`xarray.DataArray`, in a metric projected CRS
        with square pixels (see :func:`devine_onnx.tables.dem.load_dem`). Even dimensions are
        trimmed by one row/column (METHOD §6.6).
    model
        ONNX model path, a :class:`~devine_onnx.session.DevineModel`, or None for
        ``$DEVINE_ONNX_MODEL``.
    angles
        Table directions ``k`` in whole degrees, 0..359 (the FROM direction of the inflow,
        clockwise from the DEM's grid north); stored in ascending order. Default: all 360.
    output
        Optional ``.nc`` or ``.zarr`` path: written incrementally under ``OUTPUT.partial``
        and renamed when complete. Without it the table is kept in memory
        (``2 · n · s² · 4`` bytes).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (only used when ``model`` is not a DevineModel).
    dtype
        ``"float32"`` (default), or ``"float16"`` to round every value to float16 precision
        as the original does; values are stored as float32 either way (NetCDF-3 tools and
        many readers lack float16).
    batch
        Directions per UNet call (> 1 helps on GPUs).
    target
        Optional area to store: ``(xmin, ymin, xmax, ymax)`` in the DEM's CRS, or the path of
        a raster/NetCDF file (or an xarray object) whose x/y extent is used (reprojected to
        the DEM's CRS if it has another CRS). Only the table pixels whose centres lie inside
        the bounds are stored, and the UNet only runs on the part of each rotated crop they
        depend on. The bounds must lie inside the disc valid for every direction and at
        least :data:`MARGIN` (64) pixels from its rim, else :class:`OptionError` says how far
        the DEM must extend around the target.
    fill_nodata
        Fill DEM holes from the nearest valid pixel instead of refusing the DEM.
    resume
        Continue a matching ``OUTPUT.partial`` left by an interrupted run (default); False
        starts over.
    quiet
        No progress bar.
    tile
        UNet tile size (see :class:`~devine_onnx.session.DevineModel`); ``DEFAULT`` keeps the
        model's, None disables tiling.

    Returns
    -------
    xarray.Dataset
        ``acceleration(angle, y, x)`` (dimensionless, DEVINE speed / 3 m/s inflow),
        ``alpha(angle, y, x)`` (radians, positive = flow turned to the left /
        counter-clockwise), ``elevation(y, x)`` (the DEM on the table grid), coordinates
        ``angle`` (degrees), ``x``/``y`` (the DEM's pixel centres over the table crop, or the
        target), ``spatial_ref`` (CF grid mapping with ``crs_wkt``), and the attributes
        ``Conventions``, ``software``, ``model_sha256``, ``model_file``, ``sigma``,
        ``synthetic_weights`` (``"true"``/``"false"``, with a ``comment`` when true),
        ``dem_source``, ``dem_fingerprint``, ``resolution``, ``table_size``,
        ``table_center_x``/``table_center_y``, ``valid_radius``/``valid_radius_m`` (disc valid
        for all directions), ``interior_radius``/``interior_radius_m`` (the part not
        influenced by the UNet's zero padding), ``value_precision``, ``target_bounds`` (when
        given), ``notes`` and ``history``. NaN where no value exists. When ``output`` is
        given the dataset is opened lazily from the written file.

    Raises
    ------
    DEMError, ModelError, DeviceError, OptionError, OutputError
        One-line messages naming the file or option at fault.
    """
    angles = _check_angles(angles)
    if dtype not in ("float32", "float16"):
        raise OptionError(f"dtype={dtype!r}: expected 'float32' or 'float16'")
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise OptionError(f"batch={batch!r}: expected a positive integer")
    batch = int(batch)
    out_path = fmt = None
    if output is not None:
        out_path, fmt = _check_output(output)

    dem_da, notes = load_dem(dem, fill_nodata=fill_nodata)
    for note in notes:
        LOGGER.info(note)
    geom = CropGeometry.from_shape(dem_da.shape)
    res = dem_resolution(dem_da)
    trows, tcols, bounds = _target_window(target, dem_da, geom, res)

    model = _load_model(model, device, tile)
    z = np.ascontiguousarray(dem_da.values, dtype=np.float32)
    template = _template(
        dem_da, geom, res, trows, tcols, bounds, angles, model, dtype, notes, target
    )
    ny, nx = template.sizes["y"], template.sizes["x"]
    runner = _Runner(model, z, geom, trows, tcols, tile, dtype)

    if out_path is None:
        nbytes = 2 * len(angles) * ny * nx * 4
        if nbytes > _MEMORY_WARNING:
            LOGGER.warning(
                "the table needs %.1f GB in memory; pass output= (a .nc or .zarr path) to "
                "write it incrementally",
                nbytes / 2**30,
            )
        writer = _MemoryWriter(len(angles), ny, nx)
        runner.run(angles, 0, batch, writer, quiet)
        ds = template.copy()
        ds["acceleration"] = (("angle", "y", "x"), writer.acceleration, dict(_ACCEL_ATTRS))
        ds["alpha"] = (("angle", "y", "x"), writer.alpha, dict(_ALPHA_ATTRS))
        ds = ds[["acceleration", "alpha", "elevation"]]
        ds.attrs = template.attrs
        return ds

    writer_cls = _ZarrWriter if fmt == "zarr" else _NetCDFWriter
    tmp = partial_path(out_path)
    start = 0
    if tmp.exists() or tmp.is_symlink():
        state = writer_cls.inspect(tmp) if resume else None
        if state is not None and _matches(state, template):
            start = int(state["directions_done"])
            note = f"resuming {tmp}: {start} of {len(angles)} directions already done"
        else:
            why = "resume=False" if not resume else "it does not match this run"
            note = f"removed the partial output {tmp} ({why}); starting over"
            remove_path(tmp)
        notes.append(note)
        LOGGER.info(note)
    template.attrs["notes"] = "\n".join(notes)
    with atomic_output(out_path, keep_partial=True) as tmp:
        writer = writer_cls(tmp)
        if start == 0:
            writer.create(template)
        else:
            writer.open()
        try:
            runner.run(angles, start, batch, writer, quiet)
            writer.finalize({"notes": template.attrs["notes"]})
        finally:
            writer.close()
    return _open_output(out_path, fmt)


def minimum_dem_size(radius_px: float) -> int:
    """Smallest short side ``m`` (pixels) whose table is reliable within ``radius_px``.

    That is the smallest ``m`` with ``d(m) - MARGIN >= radius_px`` where
    ``d(m) = floor(floor(m / sqrt(2)) / 2)`` (METHOD notation).
    """
    need = math.ceil(radius_px) + MARGIN
    m = max(int(2 * need * math.sqrt(2)) - 4, 1)
    while math.isqrt(m * m // 2) // 2 < need:
        m += 1
    return m


# --- option checks --------------------------------------------------------------------------


def _check_angles(angles) -> np.ndarray:
    if isinstance(angles, int | np.integer):
        angles = [angles]
    try:
        arr = np.asarray(list(angles))
    except TypeError:
        raise OptionError(f"angles={angles!r}: expected whole degrees in 0..359") from None
    if arr.size == 0:
        raise OptionError("angles: no direction given; expected whole degrees in 0..359")
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
        raise OptionError(f"angles: expected whole degrees in 0..359, got {arr!r}")
    if np.any(arr != np.round(arr)) or np.any(arr < 0) or np.any(arr > 359):
        bad = arr[(arr != np.round(arr)) | (arr < 0) | (arr > 359)]
        raise OptionError(f"angles: {bad[:5].tolist()} not whole degrees in 0..359")
    ints = arr.astype(np.int64)
    if np.unique(ints).size != ints.size:
        raise OptionError("angles: duplicate directions; give each direction once")
    return np.sort(ints)


def _check_output(output) -> tuple[Path, str]:
    path = Path(output)
    fmt = OUTPUT_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"{path}: unknown output format {path.suffix or '(no suffix)'!r}; name the "
            "output .nc (NetCDF-4) or .zarr"
        )
    check_writable(path)
    return path, fmt


def _load_model(model, device: str, tile):
    if model is not None and hasattr(model, "predict"):
        return model
    from devine_onnx.session import DevineModel

    kwargs = {} if isinstance(tile, str) and tile == DEFAULT else {"tile": tile}
    return DevineModel(model, device=device, **kwargs)


# --- target area ----------------------------------------------------------------------------


def _target_window(target, dem: xr.DataArray, geom: CropGeometry, res: float):
    """Rows/columns of the table crop to store (slices in crop coordinates) and the bounds."""
    full = (slice(0, geom.s), slice(0, geom.s), None)
    if target is None:
        return full
    xmin, ymin, xmax, ymax = _target_bounds(target, dem)
    label = f"target ({xmin:.1f}, {ymin:.1f}, {xmax:.1f}, {ymax:.1f})"
    if not (xmin <= xmax and ymin <= ymax):
        raise OptionError(
            f"{label}: expected (xmin, ymin, xmax, ymax) with xmin <= xmax, ymin <= ymax"
        )
    cy, cx = geom.center
    x0 = float(dem.x.values[cx])
    y0 = float(dem.y.values[cy])
    corners = [(x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
    reach = max(math.hypot(x - x0, y - y0) for x, y in corners) / res
    inner = geom.valid_radius - MARGIN
    if reach > inner:
        a = (xmax - xmin) / 2 / res
        b = (ymax - ymin) / 2 / res
        m = minimum_dem_size(math.hypot(a, b))
        beyond = math.ceil((m / 2 - min(a, b)) * res)
        raise OptionError(
            f"{label}: reaches {reach * res:.0f} m from the DEM centre ({x0:.1f}, {y0:.1f}) "
            f"but the table is reliable only within {max(inner, 0) * res:.0f} m (valid radius "
            f"{geom.valid_radius:g} px minus a {MARGIN} px UNet margin, at {res:g} m); the DEM "
            f"must extend at least {beyond} m beyond the target on every side (centred on it: "
            f"at least {m} x {m} pixels)"
        )
    xs = dem.x.values[geom.cols]
    ys = dem.y.values[geom.rows]
    tol = 1e-3 * res
    ci = np.flatnonzero((xs >= xmin - tol) & (xs <= xmax + tol))
    ri = np.flatnonzero((ys >= ymin - tol) & (ys <= ymax + tol))
    if ci.size == 0 or ri.size == 0:
        raise OptionError(
            f"{label}: contains no pixel centre of the DEM grid; give bounds at least one "
            f"pixel ({res:g} m) wide"
        )
    return (
        slice(int(ri[0]), int(ri[-1]) + 1),
        slice(int(ci[0]), int(ci[-1]) + 1),
        (float(xmin), float(ymin), float(xmax), float(ymax)),
    )


def _target_bounds(target, dem: xr.DataArray) -> tuple[float, float, float, float]:
    if isinstance(target, str | os.PathLike):
        return _file_bounds(Path(target), dem)
    if isinstance(target, xr.DataArray | xr.Dataset):
        return _xarray_bounds(target, dem, "target")
    try:
        values = [float(v) for v in target]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(map(math.isfinite, values)):
        raise OptionError(
            f"target={target!r}: expected (xmin, ymin, xmax, ymax) in the DEM's CRS or the "
            "path of a raster/NetCDF file"
        )
    return values[0], values[1], values[2], values[3]


def _file_bounds(path: Path, dem: xr.DataArray) -> tuple[float, float, float, float]:
    if not path.exists():
        raise OptionError(f"target {path}: file not found; pass bounds or an existing file")
    try:
        if path.suffix.lower() in NETCDF_SUFFIXES:
            with xr.open_dataset(path, decode_coords="all") as ds:
                return _xarray_bounds(ds, dem, f"target {path}")
        if path.suffix.lower() == ".zarr":
            with xr.open_zarr(path, decode_coords="all") as ds:
                return _xarray_bounds(ds, dem, f"target {path}")
        import rioxarray

        with rioxarray.open_rasterio(path) as da:
            return _reproject_bounds(da.rio.bounds(), da.rio.crs, dem)
    except OptionError:
        raise
    except Exception as exc:  # noqa: BLE001 - backend errors
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise OptionError(
            f"target {path}: not a readable raster or NetCDF file ({msg}); pass bounds "
            "(xmin, ymin, xmax, ymax) instead"
        ) from None


def _xarray_bounds(obj, dem: xr.DataArray, label: str) -> tuple[float, float, float, float]:
    from .dem import _X_NAMES, _Y_NAMES, _find_dim

    xdim = _find_dim(obj, _X_NAMES, "X")
    ydim = _find_dim(obj, _Y_NAMES, "Y")
    if xdim is None or ydim is None or xdim not in obj.coords or ydim not in obj.coords:
        raise OptionError(f"{label}: no x/y (or longitude/latitude) coordinates found")
    edges = []
    for dim in (xdim, ydim):
        c = np.asarray(obj[dim].values, dtype=np.float64)
        half = abs(float(c[1] - c[0])) / 2 if c.size > 1 else 0.0
        edges.append((float(c.min()) - half, float(c.max()) + half))
    try:
        crs = obj.rio.crs
    except Exception:  # noqa: BLE001
        crs = None
    if crs is None and xdim in ("lon", "longitude", "Longitude"):
        crs = "EPSG:4326"
    return _reproject_bounds((edges[0][0], edges[1][0], edges[0][1], edges[1][1]), crs, dem)


def _reproject_bounds(bounds, crs, dem: xr.DataArray):
    from pyproj import CRS, Transformer

    dst = dem.rio.crs
    if crs is None:
        return tuple(float(b) for b in bounds)
    src = CRS.from_user_input(crs if isinstance(crs, str) else crs.to_wkt())
    dst = CRS.from_user_input(dst.to_wkt())
    if src == dst:
        return tuple(float(b) for b in bounds)
    tr = Transformer.from_crs(src, dst, always_xy=True)
    return tuple(float(b) for b in tr.transform_bounds(*bounds, densify_pts=21))


# --- dataset layout ---------------------------------------------------------------------------

_ACCEL_ATTRS = {
    "long_name": "wind speed acceleration factor (DEVINE wind speed / 3 m s-1 inflow speed)",
    "units": "1",
    "comment": "downscaled speed = acceleration[k] * NWP wind speed, k = round(from-direction)",
    "grid_mapping": "spatial_ref",
}
_ALPHA_ATTRS = {
    "long_name": "wind direction deviation",
    "units": "radian",
    "comment": (
        "angle between the downscaled wind and the inflow; positive = flow turned to the "
        "left (counter-clockwise): downscaled from-direction = from-direction - degrees(alpha)"
    ),
    "grid_mapping": "spatial_ref",
}
_ANGLE_ATTRS = {
    "long_name": "inflow wind from-direction (table index k)",
    "units": "degree",
    "comment": (
        "meteorological FROM direction of the uniform inflow, in degrees clockwise from the "
        "DEM's grid north (+y axis); 270 = wind from the west (DEM not rotated). Grid north "
        "differs from true north by the meridian convergence of the projection"
    ),
}


def _template(dem, geom, res, trows, tcols, bounds, angles, model, dtype, notes, target):
    rows = slice(geom.rows.start + trows.start, geom.rows.start + trows.stop)
    cols = slice(geom.cols.start + tcols.start, geom.cols.start + tcols.stop)
    crop = dem.isel(y=rows, x=cols)
    ds = xr.Dataset(
        {"elevation": crop.drop_vars("spatial_ref", errors="ignore")},
        coords={"angle": ("angle", angles.astype(np.int32), _ANGLE_ATTRS)},
    )
    ds["elevation"].attrs = {
        "long_name": "terrain elevation (the DEM on the table grid)",
        "standard_name": "surface_altitude",
        "units": "m",
        "grid_mapping": "spatial_ref",
    }
    ds.x.attrs = {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}
    ds.y.attrs = {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}
    ds = ds.rio.write_crs(dem.rio.crs, grid_mapping_name="spatial_ref")
    # rioxarray puts grid_mapping in the encoding, which an explicit encoding at writing
    # time replaces: keep it as a plain attribute instead.
    ds["elevation"].encoding.pop("grid_mapping", None)
    ds["elevation"].attrs["grid_mapping"] = "spatial_ref"
    cy, cx = geom.center
    synthetic = bool(getattr(model, "synthetic", False))
    path = getattr(model, "path", None)
    attrs = {
        "title": "DEVINE wind correction table",
        "Conventions": "CF-1.8",
        "software": f"devine-onnx {__version__}",
        "model_sha256": str(getattr(model, "sha256", "")),
        "model_file": Path(path).name if path is not None else "",
        "sigma": float(model.sigma),
        "synthetic_weights": "true" if synthetic else "false",
        "dem_source": str(dem.attrs.get("source", "")),
        "dem_fingerprint": dem_fingerprint(dem),
        "dem_shape": [int(n) for n in dem.shape],
        "resolution": float(res),
        "table_size": int(geom.s),
        "table_center_x": float(dem.x.values[cx]),
        "table_center_y": float(dem.y.values[cy]),
        "valid_radius": float(geom.valid_radius),
        "valid_radius_m": float(geom.valid_radius * res),
        "interior_radius": float(max(geom.valid_radius - MARGIN, 0)),
        "interior_radius_m": float(max(geom.valid_radius - MARGIN, 0) * res),
        "value_precision": (
            "float16 (values rounded to float16 precision as the original, stored as float32)"
            if dtype == "float16"
            else "float32"
        ),
        "geometry_comment": (
            "table values exist for every direction within valid_radius pixels of "
            "(table_center_x, table_center_y); within 64 pixels of that rim (beyond "
            "interior_radius) the UNet's zero padding influences some directions"
        ),
    }
    if bounds is not None:
        attrs["target_bounds"] = [float(b) for b in bounds]
        if isinstance(target, str | os.PathLike):
            attrs["target_source"] = str(target)
    if synthetic:
        attrs["comment"] = (
            "computed with a model with SYNTHETIC (untrained) weights: the values are NOT "
            "physical and only demonstrate the pipeline"
        )
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs["history"] = (
        f"{now}: devine-onnx {__version__} compute_corrections "
        f"(dem={attrs['dem_source'] or 'in memory'}, model={attrs['model_file']}, "
        f"{len(angles)} directions)"
    )
    attrs["notes"] = "\n".join(notes)
    ds.attrs = attrs
    return ds


_RESUME_KEYS = (
    "dem_fingerprint",
    "model_sha256",
    "sigma",
    "value_precision",
    "target_bounds",
    "software",
)


def _matches(state: dict, template: xr.Dataset) -> bool:
    attrs = state["attrs"]
    for key in _RESUME_KEYS:
        a, b = attrs.get(key), template.attrs.get(key)
        if a is None and b is None:
            continue
        if a is None or b is None:
            return False
        if isinstance(b, list | tuple) or isinstance(a, list | tuple | np.ndarray):
            if not np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float)):
                return False
        elif isinstance(b, float):
            if float(a) != b:
                return False
        elif str(a) != str(b):
            return False
    if not np.array_equal(np.asarray(state["angle"]), template.angle.values):
        return False
    if tuple(state["shape"]) != (template.sizes["y"], template.sizes["x"]):
        return False
    done = state.get("directions_done")
    return done is not None and 0 <= int(done) <= template.sizes["angle"]


# --- the computation --------------------------------------------------------------------------


class _Runner:
    """Prepares, predicts and finishes batches of directions; feeds a writer."""

    def __init__(self, model, z, geom, trows, tcols, tile, dtype):
        self.model = model
        self.z = z
        self.geom = geom
        self.trows, self.tcols = trows, tcols
        self.full = (trows.stop - trows.start, tcols.stop - tcols.start) == (geom.s, geom.s)
        self.tile = tile
        self.round16 = dtype == "float16"
        self.sigma = float(model.sigma)
        self.timings = {"kernels": 0.0, "unet": 0.0, "write": 0.0}

    def _roi(self, k: int) -> tuple[slice, slice]:
        """Window of the rotated crop that the stored pixels of direction k depend on."""
        s = self.geom.s
        if self.full:
            return slice(0, s), slice(0, s)
        src_r, src_c, valid = rotation_source_indices(
            (s, s), (s, s), rotation_angle(k, inverse=True), rows=self.trows, cols=self.tcols
        )
        if not valid.any():
            return slice(0, 0), slice(0, 0)
        r, c = src_r[valid], src_c[valid]
        # Origin on a multiple of 8 of the crop frame and a 64 px halo: the UNet output on
        # the window equals the untiled one (METHOD §2).
        r0 = max(0, (int(r.min()) - HALO) // 8 * 8)
        c0 = max(0, (int(c.min()) - HALO) // 8 * 8)
        return (
            slice(r0, min(s, int(r.max()) + 1 + HALO)),
            slice(c0, min(s, int(c.max()) + 1 + HALO)),
        )

    def prepare(self, ks):
        t0 = time.perf_counter()
        rois = [self._roi(int(k)) for k in ks]
        r0 = min(r.start for r, _ in rois)
        r1 = max(r.stop for r, _ in rois)
        c0 = min(c.start for _, c in rois)
        c1 = max(c.stop for _, c in rois)
        x = np.empty((len(ks), max(r1 - r0, 0), max(c1 - c0, 0)), np.float32)
        for i, k in enumerate(ks):
            x[i] = prepare_input(self.z, int(k), self.sigma, self.geom)[r0:r1, c0:c1]
        return x, (slice(r0, r1), slice(c0, c1)), time.perf_counter() - t0

    def predict(self, x: np.ndarray) -> np.ndarray:
        if isinstance(self.tile, str) and self.tile == DEFAULT:
            return self.model.predict(x)
        return self.model.predict(x, tile=self.tile)

    def finish(self, out: np.ndarray, ks, roi) -> tuple[np.ndarray, np.ndarray]:
        n = len(ks)
        ny = self.trows.stop - self.trows.start
        nx = self.tcols.stop - self.tcols.start
        acc = np.empty((n, ny, nx), np.float32)
        alp = np.empty((n, ny, nx), np.float32)
        s = self.geom.s
        for i, k in enumerate(ks):
            u, v = out[i, ..., 0], out[i, ..., 1]
            if self.full:
                acc[i], alp[i] = finish_output(u, v, int(k))
                continue
            speed, alpha = speed_alpha(u, v)
            fields = np.full((2, s, s), np.nan, np.float32)
            fields[0][roi] = speed / np.float32(ARPS_INFLOW)
            fields[1][roi] = alpha
            back = rotate_nearest(
                fields,
                rotation_angle(int(k), inverse=True),
                np.nan,
                rows=self.trows,
                cols=self.tcols,
            )
            acc[i], alp[i] = back[0], back[1]
        if self.round16:
            acc = acc.astype(np.float16).astype(np.float32)
            alp = alp.astype(np.float16).astype(np.float32)
        return acc, alp

    def run(self, angles: np.ndarray, start: int, batch: int, writer, quiet: bool) -> None:
        todo = [angles[i : i + batch] for i in range(start, len(angles), batch)]
        if not todo:
            return
        t_start = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            with progress_bar(len(angles) - start, "correction table", quiet) as bar:
                # The next batch is prepared (numpy, releases the GIL) while the UNet runs.
                pending = pool.submit(self.prepare, todo[0])
                pos = start
                for j, ks in enumerate(todo):
                    x, roi, t_prep = pending.result()
                    if j + 1 < len(todo):
                        pending = pool.submit(self.prepare, todo[j + 1])
                    t0 = time.perf_counter()
                    out = self.predict(x)
                    t1 = time.perf_counter()
                    acc, alp = self.finish(out, ks, roi)
                    del out, x
                    t2 = time.perf_counter()
                    writer.write(pos, acc, alp)
                    pos += len(ks)
                    writer.mark_done(pos)
                    t3 = time.perf_counter()
                    self.timings["kernels"] += t_prep + (t2 - t1)
                    self.timings["unet"] += t1 - t0
                    self.timings["write"] += t3 - t2
                    bar.advance(len(ks))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        n = len(angles) - start
        t = self.timings
        LOGGER.debug(
            "computed %d directions in %.1f s (per direction: kernels %.3f s, UNet %.3f s, "
            "writing %.3f s)",
            n,
            time.perf_counter() - t_start,
            t["kernels"] / n,
            t["unet"] / n,
            t["write"] / n,
        )


# --- writers ------------------------------------------------------------------------------------


class _MemoryWriter:
    def __init__(self, n: int, ny: int, nx: int):
        self.acceleration = np.full((n, ny, nx), np.nan, np.float32)
        self.alpha = np.full((n, ny, nx), np.nan, np.float32)

    def write(self, pos: int, acc: np.ndarray, alp: np.ndarray) -> None:
        self.acceleration[pos : pos + len(acc)] = acc
        self.alpha[pos : pos + len(alp)] = alp

    def mark_done(self, n: int) -> None:
        pass


def _zarr_v3() -> bool:
    import zarr

    return int(zarr.__version__.split(".")[0]) >= 3


class _ZarrWriter:
    """Zarr format 2 store: metadata first, then one assignment per batch."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.group = None

    @staticmethod
    def inspect(path: Path) -> dict | None:
        try:
            import zarr

            g = zarr.open_group(str(path), mode="r")
            attrs = dict(g.attrs)
            return {
                "attrs": attrs,
                "angle": np.asarray(g["angle"][:]),
                "shape": tuple(g["acceleration"].shape[1:]),
                "directions_done": attrs.get("directions_done"),
            }
        except Exception:  # noqa: BLE001 - anything unreadable is started over
            return None

    def create(self, template: xr.Dataset) -> None:
        import dask.array as dsa

        n, ny, nx = template.sizes["angle"], template.sizes["y"], template.sizes["x"]
        ds = template.copy()
        ds.attrs = dict(template.attrs, directions_done=0)
        for name, attrs in (("acceleration", _ACCEL_ATTRS), ("alpha", _ALPHA_ATTRS)):
            placeholder = dsa.full((n, ny, nx), np.nan, dtype=np.float32, chunks=(1, ny, nx))
            ds[name] = (("angle", "y", "x"), placeholder, dict(attrs))
        encoding = {
            "acceleration": {"_FillValue": np.float32(np.nan), "chunks": (1, ny, nx)},
            "alpha": {"_FillValue": np.float32(np.nan), "chunks": (1, ny, nx)},
            "elevation": {"_FillValue": np.float32(np.nan)},
        }
        kwargs = {"zarr_format": 2} if _zarr_v3() else {}
        # compute=False: metadata and the small (numpy) variables only; the placeholders are
        # never computed, so no chunk of the table exists until a batch writes it.
        ds.to_zarr(
            str(self.path),
            mode="w",
            compute=False,
            encoding=encoding,
            consolidated=False,  # attrs change per batch; consolidated in finalize()
            **kwargs,
        )
        self.open()

    def open(self) -> None:
        import zarr

        self.group = zarr.open_group(str(self.path), mode="r+")

    def write(self, pos: int, acc: np.ndarray, alp: np.ndarray) -> None:
        self.group["acceleration"][pos : pos + len(acc)] = acc
        self.group["alpha"][pos : pos + len(alp)] = alp

    def mark_done(self, n: int) -> None:
        self.group.attrs["directions_done"] = int(n)

    def finalize(self, attrs: dict) -> None:
        import zarr

        self.group.attrs.update(attrs)
        del self.group.attrs["directions_done"]
        zarr.consolidate_metadata(str(self.path))

    def close(self) -> None:
        self.group = None


class _NetCDFWriter:
    """NetCDF-4: xarray writes the small variables, netCDF4 the table slices."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.nc = None

    @staticmethod
    def inspect(path: Path) -> dict | None:
        try:
            import netCDF4

            with netCDF4.Dataset(str(path), "r") as nc:
                attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
                return {
                    "attrs": {
                        k: (v.tolist() if isinstance(v, np.ndarray) else v)
                        for k, v in attrs.items()
                    },
                    "angle": np.asarray(nc.variables["angle"][:]),
                    "shape": tuple(nc.variables["acceleration"].shape[1:]),
                    "directions_done": attrs.get("directions_done"),
                }
        except Exception:  # noqa: BLE001 - a half-written HDF5 file is started over
            return None

    def create(self, template: xr.Dataset) -> None:
        import netCDF4

        ds = template.copy()
        ds.attrs = dict(template.attrs)
        ds.attrs["directions_done"] = 0
        encoding = {
            "elevation": {"zlib": True, "complevel": _NC_COMPLEVEL, "_FillValue": np.nan},
            "x": {"_FillValue": None},
            "y": {"_FillValue": None},
            "angle": {"_FillValue": None},
        }
        ds.to_netcdf(self.path, engine="netcdf4", format="NETCDF4", encoding=encoding)
        nc = netCDF4.Dataset(str(self.path), "a")
        self.nc = nc
        ny, nx = template.sizes["y"], template.sizes["x"]
        for name, attrs in (("acceleration", _ACCEL_ATTRS), ("alpha", _ALPHA_ATTRS)):
            v = nc.createVariable(
                name,
                "f4",
                ("angle", "y", "x"),
                zlib=True,
                complevel=_NC_COMPLEVEL,
                shuffle=True,
                chunksizes=(1, ny, nx),
                fill_value=np.float32(np.nan),
            )
            v.setncatts(dict(attrs))
        nc.sync()

    def open(self) -> None:
        import netCDF4

        self.nc = netCDF4.Dataset(str(self.path), "a")

    def write(self, pos: int, acc: np.ndarray, alp: np.ndarray) -> None:
        self.nc.variables["acceleration"][pos : pos + len(acc)] = acc
        self.nc.variables["alpha"][pos : pos + len(alp)] = alp

    def mark_done(self, n: int) -> None:
        self.nc.setncattr("directions_done", np.int32(n))
        self.nc.sync()

    def finalize(self, attrs: dict) -> None:
        for key, value in attrs.items():
            self.nc.setncattr(key, value)
        self.nc.delncattr("directions_done")

    def close(self) -> None:
        if self.nc is not None:
            self.nc.close()
            self.nc = None


def _open_output(path: Path, fmt: str) -> xr.Dataset:
    if fmt == "zarr":
        ds = xr.open_zarr(str(path), decode_coords="all")
    else:
        ds = xr.open_dataset(path, engine="netcdf4", decode_coords="all", chunks={})
    return ds
