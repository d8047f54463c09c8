"""The weights cache: one weights file per pair of grids, shared by every forecast.

Building :class:`~devine_onnx.regrid.weights.RegridWeights` triangulates the NWP grid (seconds
to minutes); applying them is cheap. The cache keeps them in a per-user folder
(:func:`default_cache_dir`) under a name made of both grid fingerprints
(:func:`cache_file`), so that every NWP file on the same grid, for the same table, reuses
one file whatever the output is called.

The target grid (a correction table's grid) is duck-typed: any object with 1-D ``x``, ``y``
(metres, CRS units) and a ``crs`` (e.g. :class:`~devine_onnx.tables.table.CorrectionTable`),
or an :class:`xarray.Dataset` (or a file of one) with ``x``/``y`` coordinates and a CF grid
mapping. This package never imports ``devine_onnx.tables`` nor ``devine_onnx.downscaling``.

Several runs may share a cache: files are written under a unique temporary name and renamed,
so a reader sees a whole file or none. A cached file is trusted only when nobody else could
have written it (:func:`unsafe_cache_reason`: folder and file owned by the user, not writable
by others) and its contents are valid weights (:meth:`RegridWeights.check_values`); otherwise
it is ignored with a :class:`CacheWarning` (rebuilt; in memory for an unsafe folder). A cache
shared between users on purpose is therefore not used: give each user their own folder.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from pyproj import CRS

from devine_onnx.errors import DevineWarning, InputFileError, TableError, first_line
from devine_onnx.io.atomic import maybe_output_lock
from devine_onnx.io.cf import read_crs

from .fingerprint import (
    grid_fingerprint,
    source_grid_fingerprint,
    source_grid_shape,
    target_grid_fingerprint,
)
from .weights import RegridWeights, check_weights_path

__all__ = [
    "CACHE_DIR_ENV",
    "CacheWarning",
    "TargetGrid",
    "build_weights",
    "cache_file",
    "cache_folder",
    "default_cache_dir",
    "load_or_build",
    "resolve_weights",
    "save_to_cache",
    "target_grid",
    "unsafe_cache_reason",
    "weights_cache_path",
]

#: Environment variable naming the weights cache folder (see :func:`default_cache_dir`).
CACHE_DIR_ENV = "DEVINE_ONNX_CACHE_DIR"


def default_cache_dir() -> Path:
    """Per-user folder of cached regridding weights.

    ``$DEVINE_ONNX_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/devine-onnx`` or
    ``~/.cache/devine-onnx``; on Windows ``%LOCALAPPDATA%\\devine-onnx\\Cache``.
    """
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "devine-onnx" / "Cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "devine-onnx"


def cache_folder(cache_dir) -> Path | None:
    """The cache folder a ``cache_dir`` option means.

    ``None``: :func:`default_cache_dir`; ``False``: no cache (returns None); else that folder.
    """
    if cache_dir is False:
        return None
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


# --------------------------------------------------------------------------- target grid
@dataclass(frozen=True)
class TargetGrid:
    """The grid weights interpolate to: 1-D axes in metres (CRS units) and their CRS."""

    x: np.ndarray
    y: np.ndarray
    crs: CRS

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return (int(self.y.size), int(self.x.size))

    @property
    def fingerprint(self) -> str:
        """:func:`~devine_onnx.regrid.fingerprint.target_grid_fingerprint` of the axes."""
        return target_grid_fingerprint(self.x, self.y, self.crs)


def _open_grid_file(path: Path) -> xr.Dataset:
    """Open a table file lazily, for its coordinates and grid mapping only."""
    if not path.exists():
        raise TableError(f"{path}: correction table not found; check the path")
    is_zarr = path.is_dir() or path.suffix.lower() == ".zarr"
    try:
        return xr.open_dataset(path, engine="zarr" if is_zarr else None, chunks=None)
    except Exception as exc:  # noqa: BLE001 - any reader failure: not a table
        raise TableError(
            f"{path}: cannot be read as a correction table ({type(exc).__name__}: "
            f"{first_line(exc)}); give a table written by devine-onnx"
        ) from None


def target_grid(table, crs=None) -> TargetGrid:
    """The grid of a correction table (or of anything shaped like one).

    Parameters
    ----------
    table : TargetGrid, object with ``x``, ``y``, ``crs``, xarray.Dataset, str or os.PathLike
        A :class:`~devine_onnx.tables.table.CorrectionTable` (or any object with 1-D ``x``,
        ``y`` in metres and a ``crs``), a Dataset with ``x``/``y`` coordinates and a CF grid
        mapping, or a NetCDF/Zarr file of one (only its coordinates are read).
    crs : optional
        CRS of the grid when the caller already knows it (anything pyproj accepts); default:
        ``table.crs``, or the grid mapping of the Dataset.

    Raises
    ------
    TableError
        A missing or unreadable file, missing ``x``/``y`` coordinates or no readable CRS.
    """
    if isinstance(table, TargetGrid) and crs is None:
        return table
    if isinstance(table, str | os.PathLike):
        path = Path(table)
        with _open_grid_file(path) as ds:
            return target_grid(ds.assign_attrs(_grid_label=str(path)), crs)
    if isinstance(table, xr.Dataset):
        label = table.attrs.get("_grid_label") or str(
            table.encoding.get("source") or "correction table (in memory)"
        )
        missing = [c for c in ("x", "y") if c not in table.variables]
        if missing:
            raise TableError(
                f"{label}: no {' and '.join(missing)} coordinate; expected a correction table "
                "written by devine-onnx (1-D x and y in metres)"
            )
        if crs is None:
            var = "acceleration" if "acceleration" in table.data_vars else None
            crs = read_crs(table, var, label=label, error=TableError)
            if crs is None:
                raise TableError(
                    f"{label}: no CRS (expected a spatial_ref grid mapping variable with "
                    "crs_wkt); write it with ds.rio.write_crs(...) or recompute the table"
                )
        x, y = table["x"].values, table["y"].values
    else:
        try:
            x, y = table.x, table.y
            crs = table.crs if crs is None else crs
        except AttributeError:
            raise TypeError(
                f"{type(table).__name__}: expected a correction table (CorrectionTable, "
                "Dataset or file) or an object with x, y and crs"
            ) from None
    return TargetGrid(
        np.asarray(getattr(x, "values", x), dtype=np.float64),
        np.asarray(getattr(y, "values", y), dtype=np.float64),
        CRS.from_user_input(crs),
    )


def _source_fingerprint(nwp) -> str:
    """Fingerprint of an opened NWP grid (:class:`~devine_onnx.io.nwp.NWPWinds`)."""
    return grid_fingerprint(nwp.lon_or_x, nwp.lat_or_y, nwp.crs, nwp.source_shape)


# --------------------------------------------------------------------------- cache
class CacheWarning(DevineWarning):
    """The weights cache (or a file in it) is not used: unsafe permissions or a bad file."""


def unsafe_cache_reason(path: str | os.PathLike) -> str | None:
    """Why a cached weights file (or its folder) could have been planted by another user.

    The folder of ``path`` (when it exists) must be owned by the current user and not
    writable by group or others, unless it has the sticky bit (as ``/tmp``: others may then
    add files but not replace ours); ``path`` itself (when it exists) must be a regular file
    (not a symbolic link) owned by the current user and not writable by group or others.
    Parent folders are not checked. Always None on systems without POSIX owners (Windows).

    Returns
    -------
    str or None
        A short reason ("the folder is writable by other users"...), None when safe.
    """
    import stat

    if not hasattr(os, "getuid"):
        return None
    uid = os.getuid()
    path = Path(path)
    try:
        st = os.stat(path.parent)
    except (FileNotFoundError, NotADirectoryError):
        return None  # created by us when the weights are saved (or not: a RuntimeWarning)
    except OSError as exc:
        return f"the folder cannot be inspected ({exc.strerror or exc})"
    if st.st_uid != uid:
        return f"the folder belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        return f"the folder is writable by other users (mode {stat.filemode(st.st_mode)})"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path.name} cannot be inspected ({exc.strerror or exc})"
    if not stat.S_ISREG(st.st_mode):
        return f"{path.name} is not a regular file (a symbolic link?)"
    if st.st_uid != uid:
        return f"{path.name} belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path.name} is writable by other users (mode {stat.filemode(st.st_mode)})"
    return None


def cache_file(
    cache_dir: str | os.PathLike, source_fingerprint: str, target_fingerprint: str
) -> Path:
    """Cached weights file of two grids: ``<cache_dir>/weights-<source fp>-<target fp>.nc``."""
    return Path(cache_dir) / f"weights-{source_fingerprint}-{target_fingerprint}.nc"


def save_to_cache(weights: RegridWeights, path: Path) -> bool:
    """Write ``path`` atomically under its lock: concurrent runs may share a cache.

    The file is written in a private temporary folder and renamed
    (:func:`devine_onnx.io.atomic.atomic_output`). When another run holds the lock of
    ``path`` (it is caching the same weights right now), nothing is written: returns False.
    """
    from devine_onnx.io.atomic import output_lock

    path.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(path, busy="skip") as held:
        if held:
            weights.to_netcdf(path)
    return held


def load_or_build(
    cache_dir: str | os.PathLike | None,
    src_lon_or_x,
    src_lat_or_y,
    src_crs,
    tgt_x,
    tgt_y,
    tgt_crs,
    *,
    scattered: bool = False,
    warn: bool = True,
) -> RegridWeights:
    """Weights of two grids from the cache keyed on their fingerprints, else built and cached.

    Parameters
    ----------
    cache_dir : str or os.PathLike or None
        Cache folder (created if needed). The weights live in :func:`cache_file`, named by the
        fingerprints of both grids, so every NWP file on the same grid (every forecast of a
        chain) reuses one file. A file there is used if its shapes and fingerprints match
        and its contents pass :meth:`RegridWeights.check_values`; otherwise (missing,
        unreadable, damaged: a :class:`CacheWarning`; other grids) the weights are built and
        written there atomically. A folder or file other users could have written
        (:func:`unsafe_cache_reason`) is ignored with a :class:`CacheWarning`: the weights
        are built in memory. A cache that cannot be written gives a RuntimeWarning, not an
        error. ``None``: build without caching.
    src_lon_or_x, src_lat_or_y, src_crs, tgt_x, tgt_y, tgt_crs, scattered
        As in :meth:`RegridWeights.from_grids`.
    warn : bool
        Emit :class:`OutsideHullWarning` when some table pixels are outside the NWP grid
        (also for cached weights).

    Returns
    -------
    RegridWeights
        ``path`` is the cache file when cached.
    """
    src_fp = source_grid_fingerprint(src_lon_or_x, src_lat_or_y, src_crs, scattered=scattered)
    tx = np.asarray(tgt_x)
    ty = np.asarray(tgt_y)
    tgt_fp = target_grid_fingerprint(tx, ty, tgt_crs)
    path = None if cache_dir is None else cache_file(cache_dir, src_fp, tgt_fp)
    if path is not None:
        unsafe = unsafe_cache_reason(path)
        if unsafe:
            warnings.warn(
                f"ignoring the regridding weights cache {path.parent}: {unsafe}, so a planted "
                "file could be used; building the weights in memory (make the folder yours "
                f"and not writable by others, e.g. chmod go-w, or set {CACHE_DIR_ENV} to a "
                "private folder)",
                CacheWarning,
                stacklevel=2,
            )
            path = None
    if path is not None and path.is_file():
        try:
            cached = RegridWeights.from_netcdf(path)
        except InputFileError as exc:
            warnings.warn(
                f"rebuilding the cached regridding weights: {first_line(exc, 300)}",
                CacheWarning,
                stacklevel=2,
            )
            cached = None
        if cached is not None and cached.matches(
            source_fingerprint=src_fp,
            target_fingerprint=tgt_fp,
            source_shape=source_grid_shape(src_lon_or_x, src_lat_or_y, scattered=scattered),
            target_shape=(ty.size, tx.size),
        ):
            if warn:
                cached.warn_outside(f"cached weights {path}")
            return cached
    weights = RegridWeights.from_grids(
        src_lon_or_x, src_lat_or_y, src_crs, tgt_x, tgt_y, tgt_crs, scattered=scattered, warn=warn
    )
    if path is not None:
        try:
            if save_to_cache(weights, path):  # False: another run is caching them
                weights.path = path
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written is not fatal
            text = str(exc).strip()
            warnings.warn(
                f"cannot cache the regridding weights in {path} "
                f"({text.splitlines()[0] if text else type(exc).__name__}); continuing without "
                "cache",
                RuntimeWarning,
                stacklevel=2,
            )
    return weights


def weights_cache_path(nwp, table, *, cache_dir=None) -> Path | None:
    """Where the weights of an NWP grid and a table grid are cached.

    ``<folder>/weights-<nwp grid fingerprint>-<table grid fingerprint>.nc``, with the folder
    ``cache_dir``, or :func:`default_cache_dir` when None: every forecast on the same NWP
    grid shares one file, whatever the output is called. ``cache_dir=False``: no cache
    (None).

    Parameters
    ----------
    nwp : devine_onnx.io.nwp.NWPWinds
        The opened NWP (its grid: ``lon_or_x``, ``lat_or_y``, ``crs``, ``source_shape``).
    table
        The table grid, as accepted by :func:`target_grid`.
    """
    folder = cache_folder(cache_dir)
    if folder is None:
        return None
    return cache_file(folder, _source_fingerprint(nwp), target_grid(table).fingerprint)


def build_weights(nwp, table, *, nwp_crs=None, output=None) -> RegridWeights:
    """Regridding weights from an NWP grid to a table grid (the ``regrid`` step).

    Parameters
    ----------
    nwp : str, os.PathLike, xarray.Dataset or NWPWinds
        NWP file or Dataset (only its grid is read).
    table
        Correction table: a :class:`~devine_onnx.tables.table.CorrectionTable`, a Dataset, a
        file, or any object with ``x``, ``y`` and ``crs`` (only the grid is read; see
        :func:`target_grid`).
    nwp_crs : optional
        CRS of the NWP coordinates (see :func:`~devine_onnx.io.nwp.open_nwp`).
    output : str or os.PathLike, optional
        NetCDF file (``.nc``) to save the weights to (written atomically; a missing folder is
        created).

    Returns
    -------
    RegridWeights
        Pass it (or the file) to :func:`~devine_onnx.downscaling.api.downscale` as ``weights``.

    Raises
    ------
    OutputError
        An output that is not ``.nc``, or whose folder cannot be written (checked before any
        work).
    NWPError
        If the NWP grid does not cover the table at all (a warning,
        :class:`~devine_onnx.regrid.weights.OutsideHullWarning`, if only part of it).
    """
    with maybe_output_lock(output):  # one run per output: OUTPUT.lock (io.atomic)
        from devine_onnx.io.nwp import NWPWinds, _open_nwp

        if output is not None:
            check_weights_path(output)
        if not isinstance(nwp, NWPWinds):
            # Only the grid is read: the wind frame does not matter here.
            nwp = _open_nwp(
                nwp,
                u_var=None,
                v_var=None,
                nwp_crs=nwp_crs,
                nwp_wind_frame=None,
                chunk_time=None,
                rotate=False,
            )
        grid = target_grid(table)
        weights = RegridWeights.from_grids(
            nwp.lon_or_x, nwp.lat_or_y, nwp.crs, grid.x, grid.y, grid.crs
        )
        if output is not None:
            weights.to_netcdf(output)
            weights.path = Path(output)
        return weights


def resolve_weights(weights, nwp, table, crs=None, *, cache_dir=None) -> RegridWeights:
    """The weights a downscaling run uses: given ones (checked), else cached or built.

    Parameters
    ----------
    weights : RegridWeights, str, os.PathLike or None
        Weights (or their file) from :func:`build_weights`: checked against both grids
        (:meth:`RegridWeights.validate`). None: :func:`load_or_build` in the cache.
    nwp : devine_onnx.io.nwp.NWPWinds
        The opened NWP.
    table, crs
        The table grid, as accepted by :func:`target_grid`.
    cache_dir
        As in :func:`cache_folder` (None: default folder, False: no cache).

    Raises
    ------
    WeightsMismatchError
        Given weights built for other grids.
    """
    grid = target_grid(table, crs)
    if weights is not None:
        if not isinstance(weights, RegridWeights):
            weights = RegridWeights.from_netcdf(weights)
        weights.validate(
            source_fingerprint=_source_fingerprint(nwp),
            target_fingerprint=grid.fingerprint,
            source_shape=nwp.source_shape,
            target_shape=grid.shape,
        )
        weights.warn_outside()
        return weights
    return load_or_build(
        cache_folder(cache_dir), nwp.lon_or_x, nwp.lat_or_y, nwp.crs, grid.x, grid.y, grid.crs
    )
