"""The correction table of a DEM, with any engine: the engine-neutral loop.

:func:`compute_corrections` reads and validates the DEM (:func:`devine_onnx.io.dem.load_dem`),
opens the engine (:func:`devine_onnx.engines.get_engine`: ``devine``, ``micromet`` or
``features``), lets it adapt the DEM and say which pixels the table covers (optionally
restricted to a target), then writes the directions batch by batch as the engine yields them.
The result has the one table format of every engine (:mod:`devine_onnx.tables.table`).

Writing (``output=``) is incremental (:mod:`devine_onnx.io.writers`), under the temporary name
``OUTPUT.partial``, renamed when complete: memory stays bounded by a few direction slices
whatever the number of directions, and an interrupted run resumes where it stopped. The
attribute ``directions_done`` counts the directions (in the order of the ``angle``
coordinate) completely written; it is removed on completion. A partial output that does not
match the run (other DEM, engine, parameters, angles, precision, target) is never deleted
silently: the run is refused, naming what differs, unless ``resume=False`` (``--no-resume``)
asks to start over.

A finished ``OUTPUT`` is never replaced silently either: the same run on it does nothing (the
table is complete: it is returned as it is), a run with other settings is refused, naming what
differs, unless ``overwrite=True`` (``--overwrite``) or ``resume=False`` asks to compute it
again (the old table stays in place until the new one is complete).

With ``workers=N`` or ``scheduler=ADDRESS`` the directions are computed as tasks on
dask.distributed and written by the workers into one Zarr store, with per-direction done
markers instead of the counter (:mod:`devine_onnx.tables.distributed`).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import xarray as xr

from devine_onnx.errors import OptionError, OutputError, option
from devine_onnx.io.atomic import (
    atomic_output,
    check_partial,
    check_writable,
    maybe_output_lock,
    partial_path,
    remove_path,
)
from devine_onnx.io.dem import load_dem
from devine_onnx.io.formats import NETCDF_SUFFIXES
from devine_onnx.io.writers import (
    MemoryWriter,
    create_writer,
    inspect_output,
    open_writer,
    output_format,
)
from devine_onnx.progress import progress_bar
from devine_onnx.tables.table import VARIABLE_ATTRS, mismatches, table_template

__all__ = ["compute_corrections"]

LOGGER = logging.getLogger("devine_onnx")

#: Above this size (bytes) an in-memory table (no ``output``) triggers a warning in the log.
_MEMORY_WARNING = 2 << 30
#: Progress attribute of a partial table.
_DONE = "directions_done"


def compute_corrections(
    dem,
    model=None,
    angles=range(360),
    *,
    engine=None,
    engine_options: dict | None = None,
    output: str | os.PathLike | None = None,
    device: str = "auto",
    dtype: str = "float32",
    batch: int = 1,
    target=None,
    fill_nodata: bool = False,
    dem_crs=None,
    resample: float | None = None,
    resume: bool = True,
    overwrite: bool = False,
    quiet: bool = False,
    tile="default",
    workers: int | None = None,
    scheduler=None,
) -> xr.Dataset:
    """Compute the correction table of a DEM (speed ratio and deviation per inflow direction).

    Parameters
    ----------
    dem
        DEM path (GeoTIFF, ESRI ASCII grid, NetCDF...) or :class:`xarray.DataArray`, in a
        metric projected CRS with square pixels (see :func:`devine_onnx.io.dem.load_dem`).
    model
        For the ``devine`` and ``features`` engines: the ONNX model written by
        ``devine-onnx convert`` (path), ``"demo"`` (the shipped demonstration model, synthetic
        weights), an open model, or None for ``$DEVINE_ONNX_MODEL``.
    angles
        Table directions in whole degrees, 0..359 (FROM direction of the inflow, clockwise
        from the DEM's grid north); stored in ascending order. Default: all 360.
    engine
        ``"devine"``, ``"micromet"`` (built in, no model: Liston & Elder 2006),
        ``"features"``, or a :class:`~devine_onnx.engines.base.TableEngine`. None: the engine
        of the model (a model is then required; there is no silent default).
    engine_options
        Engine parameters, e.g. ``{"length_scale": 500.0, "slope_weight": 0.58}`` for
        ``micromet`` (see :class:`~devine_onnx.engines.micromet.MicroMetEngine`).
    output
        Optional ``.nc`` or ``.zarr`` path: written incrementally under ``OUTPUT.partial``
        and renamed when complete. Without it the table is kept in memory.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for model engines.
    dtype
        ``"float32"`` (default), or ``"float16"`` to round every value to float16 precision
        as the original DEVINE does; values are stored as float32 either way.
    batch
        Directions per step (> 1 helps the UNet on GPUs).
    target
        Optional area to store: ``(xmin, ymin, xmax, ymax)`` in the DEM's CRS, or the path of
        a raster/NetCDF file (or an xarray object) whose extent is used (reprojected to the
        DEM's CRS). Only the table pixels whose centres lie inside are stored; engines may
        refuse targets too close to the edge of what they compute reliably.
    fill_nodata
        Fill DEM holes from the nearest valid pixel instead of refusing the DEM.
    dem_crs
        CRS of a DEM file that has none (e.g. ``"EPSG:2154"`` for an ``.asc`` without
        ``.prj``).
    resample
        Pixel size in metres to resample the DEM to first (average), e.g. 30 for DEVINE.
    resume
        Continue a matching ``OUTPUT.partial`` left by an interrupted run (default); a
        partial output that does not match is refused. False deletes it and starts over,
        and replaces a finished ``output`` as ``overwrite`` does.
    overwrite
        Compute the table again when ``output`` already holds a finished table (replaced
        when the new one is complete; ``--overwrite``), and start over instead of resuming a
        partial output. Without it a finished table computed with the same settings is
        returned as it is (nothing is computed), and one computed with other settings (or a
        file that is not a table) is refused, naming what differs.
    quiet
        No progress bar.
    tile
        UNet tile size of the ``devine`` engine (``"default"``: the model's; None: no tiling).
    workers
        Compute on a new dask.distributed ``LocalCluster`` of this many worker processes
        (``--workers``). Needs ``output`` ending in ``.zarr`` and the ``distributed`` package
        (``pip install "devine-onnx[distributed]"``); the values equal a local run's. In a
        script, call it under ``if __name__ == "__main__":`` (workers import the main module).
    scheduler
        Compute on an existing dask cluster (``--scheduler``): its address
        (``"tcp://host:8786"``), a cluster object or a :class:`distributed.Client`. The output
        must be a ``.zarr`` path on a file system every worker can write to. See
        :mod:`devine_onnx.tables.distributed`.

    Returns
    -------
    xarray.Dataset
        ``acceleration(angle, y, x)`` (1), ``alpha(angle, y, x)`` (radians, positive = flow
        turned to the left), ``vertical(angle, y, x)`` for engines that give it,
        ``elevation(y, x)``, the DEM's grid mapping and the attributes of
        :func:`~devine_onnx.tables.table.table_template` and of the engine. NaN where no
        value exists. With ``output`` the dataset is opened lazily from the written file.

    Raises
    ------
    DEMError, ModelError, DeviceError, OptionError, OutputError
        One-line messages naming the file or option at fault.
    MissingDependencyError
        ``workers``/``scheduler`` without the ``distributed`` package.
    """
    with maybe_output_lock(output):  # one run per output: OUTPUT.lock (io.atomic)
        from devine_onnx.engines import ENGINES, engine_class, get_engine

        angles = _check_angles(angles)
        if dtype not in ("float32", "float16"):
            raise OptionError(f"{option('dtype', dtype)}: expected 'float32' or 'float16'")
        if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
            raise OptionError(f"{option('batch', batch)}: expected a positive integer")
        batch = int(batch)
        dist = workers is not None or scheduler is not None
        if dist:
            from devine_onnx.tables import distributed as _dist

            _dist.check_distributed(workers, scheduler, output)
        out_path = fmt = None
        if output is not None:
            out_path = Path(output)
            fmt = output_format(out_path)
            check_writable(out_path)

        options = dict(engine_options or {})
        if engine in (None, "devine") and not (isinstance(tile, str) and tile == "default"):
            options.setdefault("tile", tile)
        # The DEM first: a bad DEM is reported before a model is loaded.
        title = engine_class(engine).title.split(" (")[0] if engine in ENGINES else None
        dem_da, notes = load_dem(
            dem, fill_nodata=fill_nodata, dem_crs=dem_crs, resample=resample, engine=title
        )
        if dist:
            eng, spec = _dist.driver_engine(engine, model, device, options)
        else:
            eng = get_engine(engine, model, device=device, options=options)
        _warn_if_synthetic(eng, model)  # before the work, not after
        dem_da = eng.prepare_dem(dem_da, notes)
        for note in notes:
            LOGGER.info(note)
        bounds = None
        if target is None:
            window = eng.coverage(dem_da)
        else:
            bounds = _target_bounds(target, dem_da)
            xmin, ymin, xmax, ymax = bounds
            if not (xmin <= xmax and ymin <= ymax):
                raise OptionError(
                    f"{option('target')} ({xmin:.1f}, {ymin:.1f}, {xmax:.1f}, {ymax:.1f}): expected xmin, "
                    "ymin, xmax, ymax with xmin <= xmax and ymin <= ymax"
                )
            window = eng.target_window(dem_da, bounds)
        eng.bind(dem_da, window)
        template = table_template(
            dem_da, window, angles, eng.attrs(), dtype=dtype, notes=notes, bounds=bounds, target=target,
            static=eng.static_variables(),
        )  # fmt: skip
        variables = {name: dict(VARIABLE_ATTRS[name]) for name in eng.variables}
        if overwrite:
            resume = False
        if out_path is not None and (out_path.exists() or out_path.is_symlink()):
            finished = _finished_output(out_path, fmt, template, eng.resume_keys, resume, notes)
            if finished is not None:
                return finished
        if dist:
            resume_keys = eng.resume_keys
            del eng  # the workers open their own
            return _dist.run_distributed(
                spec=spec,
                resume_keys=resume_keys,
                dem=dem_da,
                window=window,
                template=template,
                variables=variables,
                angles=angles,
                batch=batch,
                round16=dtype == "float16",
                out_path=out_path,
                resume=resume,
                notes=notes,
                quiet=quiet,
                workers=workers,
                scheduler=scheduler,
            )
        loop = _BatchFeeder(eng, angles, batch, dtype == "float16", quiet)

        if out_path is None:
            ny, nx = template.sizes["y"], template.sizes["x"]
            nbytes = len(variables) * len(angles) * ny * nx * 4
            if nbytes > _MEMORY_WARNING:
                LOGGER.warning(
                    "the table needs %.1f GB in memory; pass output= (a .nc or .zarr path) to "
                    "write it incrementally",
                    nbytes / 2**30,
                )
            writer = MemoryWriter(template, "angle", variables)
            loop.run(writer, 0)
            return writer.result()

        tmp = partial_path(out_path)
        start = 0
        check_partial(tmp)  # never a link or another user's partial
        if tmp.exists() or tmp.is_symlink():
            start = _resume_point(tmp, fmt, template, eng, resume, notes, out_path)
        template.attrs["notes"] = "\n".join(notes)
        with atomic_output(out_path, keep_partial=True) as tmp:
            if start == 0:
                template.attrs[_DONE] = 0
                writer = create_writer(tmp, template, "angle", variables, fmt=fmt, label=out_path)
            else:
                writer = open_writer(tmp, tuple(variables), fmt=fmt, label=out_path)
            try:
                loop.run(writer, start)
                writer.finalize({"notes": template.attrs["notes"]}, remove=[_DONE])
            finally:
                writer.close()
        return _open_output(out_path, fmt)


def _warn_if_synthetic(eng, model) -> None:
    """Warn before computing when the engine's model has synthetic (untrained) weights."""
    from devine_onnx.synthetic import warn_synthetic

    network = getattr(eng, "network", None)  # devine-torch feature network
    synthetic = getattr(eng, "synthetic", None)
    if synthetic is None:
        synthetic = getattr(network, "synthetic", False)
    if not synthetic:
        return
    if isinstance(model, str | os.PathLike) and str(model) != "demo":
        name = model  # as typed
    else:
        path = getattr(getattr(eng, "model", None), "path", None) or getattr(network, "path", None)
        name = Path(path).name if path is not None else "the model"
    warn_synthetic(name, made="this table", engine=eng.name, model=True, stacklevel=4)


def _finished_output(out_path, fmt, template, resume_keys, resume, notes) -> xr.Dataset | None:
    """The finished table at ``out_path`` when it matches the run; None to compute it (again).

    Raises :class:`OutputError` when it does not match (or is no table) and ``resume`` is
    True (neither ``overwrite`` nor ``--no-resume``).
    """
    if not resume:
        note = f"{out_path} exists: it is replaced when the new table is complete"
        notes.append(note)
        LOGGER.info(note)
        return None
    state = inspect_output(out_path, "angle", "acceleration", fmt)
    if state is None:
        raise OutputError(
            f"{out_path}: exists and is not a readable correction table; pass "
            f"{option('overwrite')} to replace it, or choose another output"
        )
    if _DONE in state["attrs"] or state.get("done") is not None:
        raise OutputError(
            f"{out_path}: a table left unfinished (it has progress markers); pass "
            f"{option('overwrite')} to compute it again, or choose another output"
        )
    differ = mismatches(state, template, resume_keys, complete=True)
    if differ:
        raise OutputError(
            f"{out_path}: a finished table computed with other settings "
            f"({'; '.join(differ[:3])}); pass {option('overwrite')} to replace it, or choose "
            "another output"
        )
    LOGGER.info(
        "%s: already complete with these settings (%d directions); nothing to compute "
        "(pass %s to compute it again)",
        out_path,
        template.sizes["angle"],
        option("overwrite"),
    )
    table = _open_output(out_path, fmt)
    table.encoding["complete_before"] = True
    return table


def _resume_point(tmp, fmt, template, eng, resume, notes, out_path) -> int:
    """Directions already done in a partial output; refuse a partial that does not match."""
    if not resume:
        remove_path(tmp)
        note = f"removed the partial output {tmp} (--no-resume); starting over"
        notes.append(note)
        LOGGER.info(note)
        return 0
    state = inspect_output(tmp, "angle", "acceleration", fmt)
    if state is None:
        raise OutputError(
            f"{tmp}: a partial output of an earlier run that cannot be read; delete it or "
            f"rerun with --no-resume to start {out_path} over"
        )
    if state.get("done") is not None and _DONE not in state["attrs"]:
        raise OutputError(
            f"{tmp}: a partial table of a distributed run (per-direction done markers); finish "
            f"it with the same command ({option('workers')} N or {option('scheduler')} "
            "ADDRESS), or pass --no-resume to delete it and start over"
        )
    differ = mismatches(state, template, eng.resume_keys)
    if differ:
        raise OutputError(
            f"{tmp}: a partial output of an earlier run with other settings "
            f"({'; '.join(differ[:3])}); rerun that command to finish it, or pass --no-resume "
            "to delete it and start over"
        )
    start = int(state["attrs"][_DONE])
    note = f"resuming {tmp}: {start} of {template.sizes['angle']} directions already done"
    notes.append(note)
    LOGGER.info(note)
    return start


class _BatchFeeder:
    """Feeds the engine's batches to a writer, with progress and float16 rounding."""

    def __init__(self, engine, angles, batch, round16, quiet):
        self.engine = engine
        self.angles = angles
        self.batch = batch
        self.round16 = round16
        self.quiet = quiet

    def run(self, writer, start: int) -> None:
        todo = self.angles[start:]
        if todo.size == 0:
            return
        pos = start
        with progress_bar(len(todo), "correction table", self.quiet) as bar:
            for ks, values in self.engine.batches(todo, self.batch):
                arrays = [values[name] for name in writer.names]
                if self.round16:
                    arrays = [a.astype(np.float16).astype(np.float32) for a in arrays]
                writer.write(pos, pos + len(ks), arrays)
                pos += len(ks)
                writer.set_attrs({_DONE: pos})
                bar.advance(len(ks))


def _open_output(path: Path, fmt: str) -> xr.Dataset:
    if fmt == "zarr":
        return xr.open_zarr(str(path), decode_coords="all")
    return xr.open_dataset(path, engine="netcdf4", decode_coords="all", chunks={})


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


# --- target area ----


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
    from devine_onnx.io.cf import find_xy_dims, read_crs

    ydim, xdim = find_xy_dims(obj)
    if xdim is None or ydim is None or xdim not in obj.coords or ydim not in obj.coords:
        raise OptionError(f"{label}: no x/y (or longitude/latitude) coordinates found")
    edges = []
    for dim in (xdim, ydim):
        c = np.asarray(obj[dim].values, dtype=np.float64)
        half = abs(float(c[1] - c[0])) / 2 if c.size > 1 else 0.0
        edges.append((float(c.min()) - half, float(c.max()) + half))
    crs = read_crs(obj, strict=False)
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
