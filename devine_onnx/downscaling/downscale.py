"""Downscale NWP wind with a correction table (docs/method.md §4-§5), streaming over time.

Pipeline for each chunk of ``chunk_time`` time steps:

1. read the NWP ``u``/``v`` of the chunk (dask → numpy);
2. interpolate them to the table grid with fixed Delaunay weights
   (:class:`~devine_onnx.regrid.weights.RegridWeights`, built once and cached);
3. rotate the earth-relative wind into grid components by the meridian convergence ``gamma``
   of each table pixel, look up the table by FROM direction, rotate back
   (:func:`~devine_onnx.downscaling.lookup.downscale_uv`);
4. optionally block-average ``u``/``v`` over ``coarsen x coarsen`` pixels;
5. write the chunk (NetCDF or Zarr) and forget it.

Memory does not grow with the number of time steps: one chunk of wind lives at a time, the
lookup works on sub-chunks of at most :data:`MAX_BLOCK_ELEMENTS` pixel-steps, and the table
(``acceleration`` and ``alpha``, ``(n_angles, ny, nx)``) is held once in memory as float32
(2 x 360 MB for a 500 x 500 table with 360 angles; measured peak RSS of a whole run ≈ 1.2 GB,
the same for 240 and 8760 hourly steps). float16 would halve the table, but the lookup would
then compute ``degrees(alpha)`` in float16 (errors up to 0.03°), so it is not used. A table
that does not fit in ``max_memory`` (or any table, with ``block_size``) is processed by
spatial blocks instead (:mod:`.blocks`): each block reads its part of the table and writes
its whole time range, with the same result. A background thread compresses and writes chunk
``k`` while chunk ``k + 1`` is computed (at most two output chunks alive).

With ``output=None`` and a dask-backed NWP input (any file path, or a Dataset with dask
arrays), :func:`downscale` returns a lazy Dataset instead: the same per-chunk function is
applied blockwise with ``xarray.apply_ufunc(..., dask="parallelized")``; nothing is computed
before ``.compute()`` / ``.to_netcdf()``, and it runs on a ``dask.distributed`` cluster (the
function, the weights and the table pickle).
"""

from __future__ import annotations

import os
import warnings
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr
from pyproj import CRS

from devine_onnx._version import __version__
from devine_onnx.errors import DevineWarning, OptionError, option
from devine_onnx.io.atomic import atomic_output, check_writable
from devine_onnx.io.nwp import NWPWinds, _open_nwp
from devine_onnx.io.writers import (
    BlockWriter,
    MemoryWriter,
    create_writer,
    output_format,
)
from devine_onnx.progress import progress_bar
from devine_onnx.regrid.cache import (
    CACHE_DIR_ENV,
    build_weights,
    default_cache_dir,
    weights_cache_path,
)
from devine_onnx.regrid.cache import resolve_weights as _resolve_weights
from devine_onnx.regrid.weights import RegridWeights
from devine_onnx.tables.table import (
    alpha_in_degrees,
    open_table,
    synthetic_note,
    table_crs,
)
from devine_onnx.wind import meridian_convergence, uv_to_speed_dir

from . import lookup as _lookup
from .tableio import read_variable
from .vertical import add_vertical, read_vertical, table_vertical, vertical_wind

__all__ = [
    "CACHE_DIR_ENV",
    "MAX_BLOCK_ELEMENTS",
    "CoarsenRemainderWarning",
    "NWPNaNWarning",
    "build_weights",
    "default_cache_dir",
    "downscale",
    "open_table",
    "table_crs",
    "weights_cache_path",
]

#: Pixel-steps processed per call of the lookup (bounds its temporaries to ~50 MB).
MAX_BLOCK_ELEMENTS = 1_000_000
#: Target size of one compressed output chunk in bytes (time steps per chunk follow from it).
_OUTPUT_CHUNK_BYTES = 4 << 20
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")
_ZARR_SUFFIXES = (".zarr",)


class NWPNaNWarning(DevineWarning):
    """NaN in the NWP wind blanked output pixel-steps (the warning gives their number)."""


class CoarsenRemainderWarning(DevineWarning):
    """The table size is not a multiple of ``coarsen``: the last rows/columns are dropped."""


# --------------------------------------------------------------------------- table
def _read_table_arrays(
    table: xr.Dataset, dtype=np.float32, region: tuple[slice, slice] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """acceleration and alpha (radians) as C-contiguous ``dtype`` arrays, read in pieces.

    ``region``: ``(rows, columns)`` slices of the table grid to read (a spatial block).
    """
    scale = np.deg2rad if alpha_in_degrees(table) else None
    return (
        read_variable(table["acceleration"], dtype, region),
        read_variable(table["alpha"], dtype, region, scale),
    )


# --------------------------------------------------------------------------- weights
def _as_nwp(
    nwp, *, nwp_crs=None, u_var=None, v_var=None, chunk_time=None, nwp_wind_frame=None, rotate=True
) -> NWPWinds:
    if isinstance(nwp, NWPWinds):
        return nwp
    return _open_nwp(
        nwp,
        u_var=u_var,
        v_var=v_var,
        nwp_crs=nwp_crs,
        nwp_wind_frame=nwp_wind_frame,
        chunk_time=chunk_time,
        rotate=rotate,
    )


# --------------------------------------------------------------------------- kernel
def _block_mean(a: np.ndarray, n: int) -> np.ndarray:
    """Mean over n x n blocks of the last two axes (trimmed), ignoring NaN; NaN if none."""
    ny, nx = a.shape[-2] // n, a.shape[-1] // n
    b = a[..., : ny * n, : nx * n].reshape(a.shape[:-2] + (ny, n, nx, n))
    finite = np.isfinite(b)
    total = np.where(finite, b, 0).sum(axis=(-3, -1), dtype=np.float64)
    count = finite.sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return mean.astype(a.dtype, copy=False)


class _NaNCount:
    """Output pixel-steps blanked by NaN in the NWP wind, summed over the chunks of a run.

    ``steps`` counts the time steps with any blanked pixel once, however many spatial blocks
    (:mod:`.blocks`) saw them.
    """

    def __init__(self, acc: np.ndarray | None, alpha: np.ndarray | None, n_times: int = 0):
        self._tables = (acc, alpha)
        self._has_data: np.ndarray | None = None
        self.blanked = 0
        self._hit = np.zeros(n_times, dtype=bool)

    @property
    def steps(self) -> int:
        """Time steps with at least one blanked output pixel."""
        return int(np.count_nonzero(self._hit))

    @property
    def hit_steps(self) -> np.ndarray:
        """``(n_times,)`` bool: the time steps with a blanked output pixel."""
        return self._hit

    def merge(self, blanked: int, hit_steps) -> None:
        """Add the count of another run over other pixels (a block on a cluster worker)."""
        self.blanked += int(blanked)
        hit = np.asarray(hit_steps, dtype=bool)
        if hit.size > self._hit.size:
            self._hit = np.concatenate([self._hit, np.zeros(hit.size - self._hit.size, bool)])
        self._hit[: hit.size] |= hit

    def set_table(self, acc: np.ndarray, alpha: np.ndarray) -> None:
        """The table (block) that the following chunks use."""
        self._tables = (acc, alpha)
        self._has_data = None

    def has_data(self) -> np.ndarray:
        """``(ny, nx)`` True where the table has values for some direction (computed once)."""
        if self._has_data is None:
            acc, alpha = self._tables
            self._has_data = (np.isfinite(acc) & np.isfinite(alpha)).any(axis=0)
        return self._has_data

    def add(self, ur, vr, w: RegridWeights, coarsen, out_u, t0: int = 0) -> None:
        """Count the pixel-steps of ``out_u`` (time steps ``t0``...) NaN because ``ur``/``vr`` are."""
        hit = np.isnan(ur) | np.isnan(vr)
        hit &= (w.valid.reshape(w.target_shape) & self.has_data())[None]
        if coarsen:
            hit = _block_any(hit, coarsen) & np.isnan(out_u)
        n = hit.reshape(hit.shape[0], -1).sum(axis=1)
        self.blanked += int(n.sum())
        end = t0 + n.size
        if end > self._hit.size:
            self._hit = np.concatenate([self._hit, np.zeros(end - self._hit.size, dtype=bool)])
        self._hit[t0:end] |= n > 0


def _block_any(a: np.ndarray, n: int) -> np.ndarray:
    """Any over n x n blocks of the last two axes (trimmed like :func:`_block_mean`)."""
    ny, nx = a.shape[-2] // n, a.shape[-1] // n
    b = a[..., : ny * n, : nx * n].reshape(a.shape[:-2] + (ny, n, nx, n))
    return b.any(axis=(-3, -1))


def _downscale_block(
    u, v, acc, alpha, params, nan_count=None, vertical=None, t0: int = 0
) -> tuple[np.ndarray, ...]:
    """Downscale one chunk of NWP wind: regrid, lookup, optional coarsening.

    Parameters
    ----------
    u, v : numpy.ndarray
        ``(..., *source_shape)`` NWP wind (earth-relative, or grid-relative if
        ``params.gamma`` is None), m/s.
    acc, alpha : numpy.ndarray
        ``(n_angles, ny, nx)`` table.
    params : _KernelParams
    nan_count : _NaNCount, optional
        Counts the output pixel-steps that NaN in ``u``/``v`` blanked (checked only when the
        NWP chunk has NaN).
    vertical : numpy.ndarray, optional
        ``(n_angles, ny, nx)`` table of w / inflow speed: adds ``upward_air_velocity``.
    t0 : int
        Time index of the first step of ``u``/``v`` in the series (for ``nan_count``).

    Returns
    -------
    tuple of numpy.ndarray
        ``(speed, from_dir, u_out, v_out)`` (and ``w_out`` with ``vertical``), float32, shape
        ``(..., ny_out, nx_out)``.
    """
    w: RegridWeights = params.weights
    nsrc = len(w.source_shape)
    u = np.asarray(u)
    v = np.asarray(v)
    lead = u.shape[: u.ndim - nsrc]
    u = u.reshape((-1,) + w.source_shape)
    v = v.reshape((-1,) + w.source_shape)
    n = u.shape[0]
    out_shape = params.out_shape
    n_out = 4 if vertical is None else 5
    outs = tuple(np.empty((n,) + out_shape, dtype=np.float32) for _ in range(n_out))
    table = _lookup.TableLookup(acc, alpha, params.angles, params.method)
    step = max(1, MAX_BLOCK_ELEMENTS // max(1, w.n_target))
    # NaN in the (small) NWP chunk: count what it blanks in the output.
    count = (
        nan_count if nan_count is not None and (np.isnan(u).any() or np.isnan(v).any()) else None
    )
    for a in range(0, n, step):
        b = min(n, a + step)
        ur = w.apply(np.asarray(u[a:b], dtype=np.float32))
        vr = w.apply(np.asarray(v[a:b], dtype=np.float32))
        if vertical is not None:
            # Same interpolated components as the horizontal wind: interpolated once.
            wv = vertical_wind(vertical, params.angles, params.method, ur, vr, params.gamma)
            outs[4][a:b] = _block_mean(wv, params.coarsen) if params.coarsen else wv
        if not params.coarsen:
            # Straight into the outputs: no result arrays to allocate and copy.
            table.downscale_uv(ur, vr, params.gamma, out=tuple(o[a:b] for o in outs[:4]))
            if count is not None:
                count.add(ur, vr, w, None, outs[2][a:b], t0 + a)
            continue
        _, _, uo, vo = table.downscale_uv(ur, vr, params.gamma)
        uo = _block_mean(np.asarray(uo, dtype=np.float32), params.coarsen)
        vo = _block_mean(np.asarray(vo, dtype=np.float32), params.coarsen)
        if count is not None:
            count.add(ur, vr, w, params.coarsen, uo, t0 + a)
        del ur, vr
        speed, dirs = uv_to_speed_dir(uo, vo)
        for o, r in zip(outs[:4], (speed, dirs, uo, vo), strict=True):
            o[a:b] = r
    return tuple(o.reshape(lead + out_shape) for o in outs)


class _KernelParams:
    """Everything the blockwise function needs besides the data (picklable)."""

    def __init__(self, weights, angles, gamma, method, coarsen, out_shape):
        self.weights = weights
        self.angles = np.asarray(angles, dtype=np.float64)
        self.gamma = None if gamma is None else np.asarray(gamma, dtype=np.float32)
        self.method = method
        self.coarsen = coarsen
        self.out_shape = tuple(int(s) for s in out_shape)


class _BlockKernel:
    """Picklable callable applied blockwise by ``xarray.apply_ufunc``."""

    def __init__(self, params: _KernelParams):
        self.params = params

    def __call__(self, u, v, acc, alpha, vertical=None):
        return _downscale_block(u, v, acc, alpha, self.params, vertical=vertical)


# --------------------------------------------------------------------------- layout
class _Layout:
    """Names, attributes and coordinates of the output (shared by all writers)."""

    def __init__(self, *, nwp, tbl, crs, grid_relative, coarsen, chunk_time, method):
        x = np.asarray(tbl["x"].values, dtype=np.float64)
        y = np.asarray(tbl["y"].values, dtype=np.float64)
        if coarsen:
            x = x[: (x.size // coarsen) * coarsen].reshape(-1, coarsen).mean(axis=1)
            y = y[: (y.size // coarsen) * coarsen].reshape(-1, coarsen).mean(axis=1)
        self.x, self.y = x, y
        self.shape = (y.size, x.size)
        self.crs = crs
        self.times = np.asarray(nwp.time)
        self.n_times = self.times.size
        self.grid_relative = grid_relative
        gm = "spatial_ref"
        self.gm_name = gm
        if grid_relative:
            self.names = ("wind_speed", "wind_from_direction", "x_wind", "y_wind")
        else:
            self.names = ("wind_speed", "wind_from_direction", "eastward_wind", "northward_wind")
        north = "grid north (the table CRS's +y axis)" if grid_relative else "true north"
        dir_attrs = {
            "units": "degree",
            "long_name": f"downscaled wind FROM direction, clockwise from {north}",
            "comment": "NaN where the wind is calm (speed 0: direction undefined) or unknown",
            "grid_mapping": gm,
        }
        if not grid_relative:
            dir_attrs["standard_name"] = "wind_from_direction"
        comp = "grid +x" if grid_relative else "eastward"
        comp_y = "grid +y" if grid_relative else "northward"
        self.var_attrs = {
            "wind_speed": {
                "units": "m s-1",
                "standard_name": "wind_speed",
                "long_name": "downscaled wind speed",
                "grid_mapping": gm,
            },
            "wind_from_direction": dir_attrs,
            self.names[2]: {
                "units": "m s-1",
                "standard_name": self.names[2],
                "long_name": f"downscaled {comp} wind component",
                "grid_mapping": gm,
            },
            self.names[3]: {
                "units": "m s-1",
                "standard_name": self.names[3],
                "long_name": f"downscaled {comp_y} wind component",
                "grid_mapping": gm,
            },
        }
        if crs.is_geographic:
            self.x_attrs = {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}
            self.y_attrs = {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}
        else:
            unit = crs.axis_info[0].unit_name if crs.axis_info else "metre"
            unit = "m" if unit in ("metre", "meter") else unit
            self.x_attrs = {
                "units": unit,
                "standard_name": "projection_x_coordinate",
                "long_name": "x coordinate of projection" + (" (block centre)" if coarsen else ""),
                "axis": "X",
            }
            self.y_attrs = {
                "units": unit,
                "standard_name": "projection_y_coordinate",
                "long_name": "y coordinate of projection" + (" (block centre)" if coarsen else ""),
                "axis": "Y",
            }
        gm_attrs = dict(crs.to_cf())
        wkt = crs.to_wkt()
        gm_attrs["crs_wkt"] = wkt
        gm_attrs["spatial_ref"] = wkt
        self.gm_attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in gm_attrs.items()}
        # Time encoding (CF): computed once for the whole series so appends agree.
        self.time_attrs = {"standard_name": "time", "long_name": "valid time", "axis": "T"}
        if np.issubdtype(self.times.dtype, np.datetime64):
            num, units, calendar = xr.coding.times.encode_cf_datetime(self.times)
            self.time_num = np.asarray(num)
            self.time_units, self.time_calendar = units, calendar
        else:  # not datetimes (e.g. plain step numbers): no CF time semantics
            self.time_num = self.times
            self.time_units = self.time_calendar = None
            self.time_attrs = {"long_name": "time step (as in the NWP input)"}
        src = tbl.encoding.get("source")
        table_name = Path(src).name if src else "in-memory Dataset"
        tattrs = dict(tbl.attrs)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        options = (
            f"chunk_time={chunk_time}, coarsen={coarsen}, grid_relative={grid_relative}, "
            f"angular_interpolation={method}"
        )
        attrs = {
            "Conventions": "CF-1.8",
            "title": "Downscaled wind (" + str(tattrs.get("engine_title", "DEVINE")) + ")",
            "source": str(nwp.source),
            "table_source": table_name,
            "table_model_sha256": str(tattrs.get("model_sha256", "unknown")),
            # Which engine built the table (devine, micromet, features), and what to cite.
            "table_engine": str(tattrs.get("engine", "devine")),
            "table_engine_title": str(tattrs.get("engine_title", "")),
            "table_engine_citation": str(tattrs.get("engine_citation", "")),
            "software": f"devine-onnx {__version__}",
            "history": (
                f"{now}: devine-onnx {__version__} downscale {nwp.source} "
                f"(variables {nwp.u_name}/{nwp.v_name}) with table {table_name} ({options})"
            ),
            "references": str(
                tattrs.get("engine_citation")
                or "Le Toumelin et al. 2023, AIES, doi:10.1175/AIES-D-22-0034.1"
            ),
        }
        if "valid_radius" in tattrs:
            attrs["table_valid_radius"] = tattrs["valid_radius"]
        if "devine_method" in tattrs:
            attrs["table_devine_method"] = tattrs["devine_method"]  # crop or frame (§9.1)
        if nwp.wind_frame:
            attrs["nwp_wind_frame"] = f"NWP components: {nwp.wind_frame}"
        if grid_relative:
            attrs["wind_frame"] = (
                "grid-relative: x_wind/y_wind and wind_from_direction refer to the grid "
                "north of the table CRS, not true north"
            )
        else:
            attrs["wind_frame"] = (
                "earth-relative: eastward_wind/northward_wind, wind_from_direction from true "
                "north (rotated by the meridian convergence of the table CRS)"
            )
        note = synthetic_note(tattrs)
        if note:
            attrs["comment"] = note
        self.global_attrs = attrs
        self.chunk_time = chunk_time
        self.time_chunk = self.time_chunk_for(self.shape)
        #: Spatial chunk of the output (rows, columns); None: the whole grid.
        self.spatial_chunks: tuple[int, int] | None = None
        #: The table's per-pixel quality flag, carried to the output (docs/method.md §9.1).
        self.static = {**_elevation(tbl, coarsen, gm), **_edge_influence(tbl, coarsen, gm)}

    def time_chunk_for(self, chunk_shape) -> int:
        """Time steps per stored chunk of ``chunk_shape`` pixels: a divisor of ``chunk_time``
        with chunks of ~4 MB at most."""
        per_step = max(1, int(chunk_shape[0]) * int(chunk_shape[1]) * 4)
        limit = max(1, min(self.chunk_time, _OUTPUT_CHUNK_BYTES // per_step, self.n_times))
        return max(d for d in range(1, limit + 1) if self.chunk_time % d == 0)

    def coords(self, times) -> dict:
        t = xr.Variable(("time",), np.asarray(times), self.time_attrs)
        return {
            "time": t,
            "y": xr.Variable(("y",), self.y, self.y_attrs),
            "x": xr.Variable(("x",), self.x, self.x_attrs),
            self.gm_name: xr.Variable((), np.int32(0), self.gm_attrs),
        }

    def template(self) -> xr.Dataset:
        """Everything of the output but its data variables (for :mod:`devine_onnx.io.writers`)."""
        ds = xr.Dataset(coords=self.coords(self.times), attrs=dict(self.global_attrs))
        if self.time_units is not None:
            # One CF time encoding for the whole series, whatever the writer.
            ds["time"].encoding = {
                "units": self.time_units,
                "calendar": self.time_calendar,
                "dtype": self.time_num.dtype,
            }
        for name, var in self.static.items():
            ds[name] = var
        return ds

    def variables(self) -> dict:
        """Data variable name -> attributes, in output order."""
        return {name: {**self.var_attrs[name], "coordinates": self.gm_name} for name in self.names}

    def dataset(self, arrays, times) -> xr.Dataset:
        data = {
            name: xr.Variable(("time", "y", "x"), arr, self.var_attrs[name])
            for name, arr in zip(self.names, arrays, strict=True)
        }
        data.update(self.static)
        return xr.Dataset(data, coords=self.coords(times), attrs=dict(self.global_attrs))


def _elevation(tbl: xr.Dataset, coarsen, gm: str) -> dict:
    """The table's terrain elevation on the output grid (block means with ``coarsen``): it
    tells users, and ``evaluate``, which altitude each wind value stands for."""
    if "elevation" not in tbl.variables or tbl["elevation"].dims != ("y", "x"):
        return {}
    z = np.asarray(tbl["elevation"].values, dtype=np.float32)
    if coarsen:
        z = _block_mean(z[None], coarsen)[0]
    attrs = {
        "standard_name": "surface_altitude",
        "long_name": "terrain elevation of the correction table"
        + (" (block mean)" if coarsen else ""),
        "units": "m",
        "grid_mapping": gm,
    }
    return {"elevation": xr.Variable(("y", "x"), z.astype(np.float32), attrs)}


def _edge_influence(tbl: xr.Dataset, coarsen, gm: str) -> dict:
    """``edge_influence(y, x)`` of a devine table on the output grid (a block is flagged when
    any of its pixels is), or nothing for tables without it."""
    if "edge_influence" not in tbl.variables or tbl["edge_influence"].dims != ("y", "x"):
        return {}
    flag = np.asarray(tbl["edge_influence"].values) == 1
    if coarsen:
        flag = _block_any(flag, coarsen)
    attrs = {**tbl["edge_influence"].attrs, "grid_mapping": gm}
    attrs["comment"] = (
        "1 where the correction table's value was influenced, for some direction, by the edge "
        "of its DEM or of its computed window (docs/method.md §9.1); the wind there is less "
        "reliable. " + str(attrs.get("comment", ""))
    ).strip()
    return {"edge_influence": xr.Variable(("y", "x"), flag.astype(np.uint8), attrs)}


# --------------------------------------------------------------------------- writers
def _memory_writer(layout: _Layout) -> MemoryWriter:
    return MemoryWriter(layout.template(), "time", layout.variables())


def _file_writer(tmp, layout: _Layout, kind: str, complevel: int, label) -> BlockWriter:
    """The shared incremental writer, one chunk of ``layout.time_chunk`` steps at a time
    (and ``layout.spatial_chunks`` pixels when downscaling by blocks)."""
    return create_writer(
        tmp,
        layout.template(),
        "time",
        layout.variables(),
        fmt=kind,
        chunk=layout.time_chunk,
        complevel=complevel,
        threads=_lookup.LOOKUP_THREADS,
        label=label,
        spatial_chunks=layout.spatial_chunks,
    )


def _output_kind(output) -> str:
    kind = output_format(output)
    return kind


# --------------------------------------------------------------------------- downscale


def _is_int(value, low: int, high: int | None = None) -> bool:
    return (
        isinstance(value, int | np.integer)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def _check_options(chunk_time, coarsen, angular_interpolation, complevel=1) -> None:
    if not _is_int(chunk_time, 1):
        raise OptionError(f"{option('chunk_time', chunk_time)}: expected a positive integer")
    if coarsen is not None and not _is_int(coarsen, 1):
        raise OptionError(
            f"{option('coarsen', coarsen)}: expected a positive integer (block size in pixels)"
        )
    if angular_interpolation not in _lookup.METHODS:
        raise OptionError(
            f"{option('angular_interpolation', angular_interpolation)}: use one of "
            f"{', '.join(_lookup.METHODS)}"
        )
    if not _is_int(complevel, 0, 9):
        raise OptionError(
            f"{option('complevel', complevel)}: expected an integer from 0 (none) to 9"
        )


def _warn_coarsen_remainder(coarsen: int, ny: int, nx: int) -> None:
    """Say which rows/columns block averaging drops (they do not fill a whole block)."""
    ry, rx = ny % coarsen, nx % coarsen
    if not (ry or rx):
        return
    common = [d for d in range(2, min(ny, nx) + 1) if ny % d == 0 and nx % d == 0][:6]
    hint = (
        f"use a block size dividing both ({', '.join(map(str, common))})"
        if common
        else "no block size > 1 divides both"
    )
    left = [
        f"{r} {what}{'' if r == 1 else 's'} ({side})"
        for r, what, side in ((ry, "row", "south"), (rx, "column", "east"))
        if r
    ]
    warnings.warn(
        f"{option('coarsen', coarsen)}: the table's {ny} x {nx} pixels are not whole blocks: "
        f"the last {' and '.join(left)} {'is' if ry + rx == 1 else 'are'} left out of the "
        f"output; {hint} to keep every pixel",
        CoarsenRemainderWarning,
        stacklevel=3,
    )


def open_inputs(
    wind,
    tbl: xr.Dataset,
    *,
    nwp_crs,
    u_var,
    v_var,
    chunk_time: int,
    nwp_wind_frame,
    grid_relative: bool,
    coarsen,
    what: str = "table",
) -> tuple[CRS, NWPWinds]:
    """The output grid's CRS and the NWP winds, with the ``coarsen`` checks: one setup for
    table and per-step downscaling."""
    crs = table_crs(tbl)
    is_path = isinstance(wind, str | os.PathLike)
    nwp = _as_nwp(
        wind,
        nwp_crs=nwp_crs,
        u_var=u_var,
        v_var=v_var,
        chunk_time=chunk_time if is_path else None,
        nwp_wind_frame=nwp_wind_frame,
        rotate=not grid_relative,
    )
    ny, nx = tbl.sizes["y"], tbl.sizes["x"]
    if coarsen and (coarsen > ny or coarsen > nx):
        raise OptionError(
            f"{option('coarsen', coarsen)}: larger than the {what} ({ny} x {nx} pixels); give "
            "a smaller block size"
        )
    if coarsen:
        _warn_coarsen_remainder(coarsen, ny, nx)
    return crs, nwp


def downscale(
    wind,
    table=None,
    *,
    output=None,
    u_var: str | None = None,
    v_var: str | None = None,
    nwp_crs=None,
    nwp_wind_frame: str | None = None,
    weights=None,
    cache_dir=None,
    chunk_time: int = 24,
    coarsen: int | None = None,
    grid_relative: bool = False,
    angular_interpolation: str = "nearest",
    complevel: int = 1,
    quiet: bool = False,
    model=None,
    per_step: bool = False,
    dem=None,
    device: str = "auto",
    coarse_cell: float | None = None,
    dem_crs=None,
    max_memory=None,
    block_size=None,
    workers: int | None = None,
    scheduler=None,
) -> xr.Dataset:
    """Downscale NWP wind with a correction table (or, ``per_step``, a feature network).

    Parameters
    ----------
    wind : str, os.PathLike, xarray.Dataset or NWPWinds
        NWP wind: NetCDF/Zarr/GRIB file or Dataset (see :func:`~devine_onnx.io.nwp.open_nwp`):
        components (grid-relative ones are rotated to true north first), or speed and
        direction. Taken as they are with ``grid_relative``.
    table : str, os.PathLike or xarray.Dataset
        Correction table (see :func:`open_table`).
    output : str or os.PathLike, optional
        ``.nc`` (NetCDF4, zlib) or ``.zarr`` file, written chunk by chunk under
        ``<output>.partial`` and renamed when complete (no file carries the final name after
        a failure). None: return the result (lazy if the NWP input is dask-backed, which is
        the case for any file path; in memory otherwise).
    u_var, v_var, nwp_crs, nwp_wind_frame
        See :func:`~devine_onnx.io.nwp.open_nwp`. ``nwp_wind_frame`` ("earth" or
        "grid") is required for a projected or curvilinear NWP grid whose file does not say
        whether its components are relative to true north or to the grid.
    weights : RegridWeights or str or os.PathLike, optional
        Regridding weights (object or file). They must have been built for these grids,
        else :class:`~devine_onnx.errors.WeightsMismatchError`. None: loaded from the cache
        if a matching file is there, else built and cached (see :func:`weights_cache_path`).
    cache_dir : str or os.PathLike or False, optional
        Folder for cached weights, one file per pair of grids named by their fingerprints,
        so that every forecast on the same NWP grid reuses it whatever the output is
        called. Default: :func:`default_cache_dir` (``$DEVINE_ONNX_CACHE_DIR``, else the
        user cache folder). ``False`` disables caching.
    chunk_time : int
        Time steps read, processed and written at once (memory scales with it, not with the
        length of the series). File inputs are read in dask chunks of this size.
    coarsen : int, optional
        Block-average ``u`` and ``v`` over ``coarsen x coarsen`` pixels (NaN pixels are
        ignored, a block with no data is NaN), then recompute speed and direction; ``x``/``y``
        become the block centres. Incomplete blocks at the east/south edges are left out,
        with a :class:`CoarsenRemainderWarning` saying how many rows and columns.
    grid_relative : bool
        Treat the NWP components as relative to the table's grid north (no meridian
        convergence rotation) and write ``x_wind``/``y_wind`` and a direction from grid
        north.
    angular_interpolation : {"nearest", "linear"}
        Table lookup between directions (see :class:`~devine_onnx.downscaling.lookup.TableLookup`).
        "nearest" on a table whose directions are more than 1° apart gives a
        :class:`~devine_onnx.downscaling.lookup.CoarseTableWarning`.
    complevel : int
        Deflate level (0-9) of ``.nc`` outputs, stored with HDF5's standard shuffle + deflate
        filters (readable by any netCDF-4/HDF5 tool). 1-3 are compressed with ISA-L where
        ``isal`` is installed (fast), 4-9 with zlib (slower, a few % smaller for float
        winds); chunks are compressed in parallel. 0 writes uncompressed NetCDF-4, ~1.6x
        larger. Ignored for ``.zarr``.
    quiet : bool
        No progress bar.
    model, per_step, dem, device, coarse_cell, dem_crs
        ``per_step=True``: no table; a devine-torch feature network (``model``, converted
        with ``devine-onnx convert``) runs once per time step on the features of ``dem``
        (with its 2-cell frame) for the local wind direction, on ``device``; see
        :func:`~devine_onnx.downscaling.per_step.downscale_per_step`. The output then also
        has ``upward_air_velocity``.
    max_memory : str or int, optional
        Memory the run may use, e.g. ``"2GB"`` (bytes for an int). When the whole table
        (``n_angles x ny x nx x 4`` bytes per variable) and its buffers do not fit, the table
        is read and the output written by spatial blocks, as large as the memory allows
        (:mod:`~devine_onnx.downscaling.blocks`; a note says so). The result is the same.
    block_size : int or str or (int, int), optional
        Force blocks of ``N x N`` (or ``"ROWSxCOLUMNS"``) table pixels, multiples of
        ``coarsen``. Block mode writes an output (or an in-memory result); it does not
        apply to a lazy result.
    workers, scheduler : optional
        Run the blocks as dask.distributed tasks: ``workers`` starts a local cluster of that
        many processes, ``scheduler`` uses an existing one (address, cluster or
        ``distributed.Client``). Each task reads its block of the table and writes its
        regions of the output, which must be a ``.zarr`` store on a file system the workers
        share; ``max_memory`` then bounds each worker (blocks of 1024 x 1024 table pixels
        without it). Same result as a local run.

    Returns
    -------
    xarray.Dataset
        CF-1.8 dataset on ``(time, y, x)`` (table coordinates and CRS):

        - ``wind_speed`` (m s-1);
        - ``wind_from_direction`` (degree, FROM direction clockwise from true north;
          grid north if ``grid_relative``); NaN for calm wind (speed 0), where the direction
          is undefined;
        - ``eastward_wind``/``northward_wind`` (m s-1), or ``x_wind``/``y_wind`` if
          ``grid_relative``;
        - ``spatial_ref`` grid mapping (``crs_wkt``), ``grid_mapping`` attribute on each
          variable.

        NaN outside the NWP grid's hull (with an
        :class:`~devine_onnx.regrid.weights.OutsideHullWarning` giving the count) and where the
        table has no data. NaN in the NWP wind blanks the output pixels around it: with an
        ``output`` or an in-memory result, one :class:`NWPNaNWarning` gives the number of
        output pixel-steps blanked (not counted for a lazy result). With ``output``, the
        written file opened lazily.

    Raises
    ------
    NWPError, TableError, WeightsMismatchError, OutputError, OptionError
        One-line messages naming the file or option.
    """
    if per_step or model is not None or dem is not None:
        if not per_step or table is not None:
            raise OptionError(
                "per-step downscaling (per_step=True / --per-step) takes a feature-network "
                "model and the DEM instead of a table; table mode takes only the table"
            )
        from .per_step import downscale_per_step

        if angular_interpolation != "nearest":
            raise OptionError("angular_interpolation applies to tables, not to per-step mode")
        if any(o is not None for o in (max_memory, block_size, workers, scheduler)):
            raise OptionError(
                f"{option('max_memory')}, {option('block_size')}, {option('workers')} and "
                f"{option('scheduler')} apply to tables (spatial blocks of the table), not to "
                "per-step mode"
            )
        return downscale_per_step(
            wind, dem, model, output=output, u_var=u_var, v_var=v_var, nwp_crs=nwp_crs,
            nwp_wind_frame=nwp_wind_frame, weights=weights, cache_dir=cache_dir,
            chunk_time=chunk_time, coarsen=coarsen, grid_relative=grid_relative,
            complevel=complevel, quiet=quiet, device=device, coarse_cell=coarse_cell,
            dem_crs=dem_crs,
        )  # fmt: skip
    if table is None:
        raise OptionError(
            "no correction table: give one (--table), or use per-step mode with a "
            "feature-network model and the DEM (--per-step -m MODEL --dem DEM)"
        )
    _check_options(chunk_time, coarsen, angular_interpolation, complevel)
    if grid_relative and nwp_wind_frame is not None:
        raise OptionError(
            f"{option('grid_relative')} takes the NWP components as they are (relative to the "
            f"table's grid north): do not combine it with {option('nwp_wind_frame')}"
        )
    chunk_time = int(chunk_time)
    coarsen = int(coarsen) if coarsen not in (None, 1) else None
    from . import blocks as _blocks

    max_memory = _blocks.parse_memory(max_memory)
    block_size = _blocks.parse_block_size(block_size, coarsen)
    cluster = workers is not None or scheduler is not None
    if cluster:
        _blocks.check_cluster(workers, scheduler, output)
    kind = _output_kind(output) if output is not None else None
    if output is not None:
        check_writable(output)

    tbl = open_table(table)
    crs, nwp = open_inputs(
        wind,
        tbl,
        nwp_crs=nwp_crs,
        u_var=u_var,
        v_var=v_var,
        chunk_time=chunk_time,
        nwp_wind_frame=nwp_wind_frame,
        grid_relative=grid_relative,
        coarsen=coarsen,
    )
    table_label = str(tbl.encoding.get("source") or "correction table (in memory)")
    _lookup.warn_if_coarse(tbl["angle"].values, angular_interpolation, label=table_label)

    w = _resolve_weights(weights, nwp, tbl, crs, cache_dir=cache_dir)
    layout = _Layout(
        nwp=nwp,
        tbl=tbl,
        crs=crs,
        grid_relative=grid_relative,
        coarsen=coarsen,
        chunk_time=chunk_time,
        method=angular_interpolation,
    )
    if table_vertical(tbl):
        add_vertical(layout)  # upward_air_velocity = vertical[k] * speed
    lazy = output is None and nwp.is_lazy
    plan = _blocks.plan_blocks(
        tbl,
        w,
        n_outputs=len(layout.names),
        chunk_time=chunk_time,
        coarsen=coarsen,
        max_memory=None if lazy else max_memory,
        block_size=block_size,
    )
    if cluster and plan is None:  # the table fits in memory: blocks are the tasks all the same
        side = _blocks.CLUSTER_BLOCK // (coarsen or 1) * (coarsen or 1)
        plan = _blocks.plan_blocks(
            tbl, w, n_outputs=len(layout.names), chunk_time=chunk_time, coarsen=coarsen,
            max_memory=None, block_size=(side, side),
        )  # fmt: skip
    if lazy and plan is not None:
        raise OptionError(
            f"{option('block_size')}: downscaling by blocks writes its result; give an output "
            "(a .nc or .zarr path)"
        )
    opened = not isinstance(table, xr.Dataset)
    nan_count = _NaNCount(None, None, nwp.n_times)
    if plan is not None:
        layout.spatial_chunks = plan.out_block
        layout.time_chunk = layout.time_chunk_for(plan.out_block)
        layout.global_attrs["history"] = layout.global_attrs["history"][:-1] + (
            f", blocks of {plan.block[0]}x{plan.block[1]} table pixels)"
        )

        def run(writer):
            _blocks.run_blocks(
                nwp, tbl, w, layout, plan, writer, method=angular_interpolation,
                coarsen=coarsen, grid_relative=grid_relative, crs=crs, chunk_time=chunk_time,
                quiet=quiet, nan_count=nan_count,
                scratch=None if output is None else Path(output).absolute().parent,
                workers=workers, scheduler=scheduler,
            )  # fmt: skip

    else:
        gamma = None
        if not grid_relative:
            x = np.asarray(tbl["x"].values, dtype=np.float64)
            y = np.asarray(tbl["y"].values, dtype=np.float64)
            gamma = meridian_convergence(x[None, :], y[:, None], crs)
        params = _KernelParams(
            w, tbl["angle"].values, gamma, angular_interpolation, coarsen, layout.shape
        )
        if lazy:
            return _lazy(nwp, tbl, params, layout)

        acc, alpha = _read_table_arrays(tbl)
        vertical = read_vertical(tbl)
        if opened:
            tbl.close()  # we opened it: release the file and its HDF5 chunk caches
            opened = False
        nan_count.set_table(acc, alpha)
        position = [0]

        def compute(u, v):
            t0 = position[0]
            position[0] += u.shape[0]
            return _downscale_block(u, v, acc, alpha, params, nan_count, vertical=vertical, t0=t0)

        def run(writer):
            stream(nwp, compute, writer, chunk_time, quiet)

    try:
        if output is None:
            writer = _memory_writer(layout)
            run(writer)
            _warn_nan(nan_count, nwp, layout.shape)
            return writer.result()
        with atomic_output(output) as tmp:
            writer = _file_writer(tmp, layout, kind, complevel, output)
            try:
                run(writer)
                writer.finalize({})
            finally:
                writer.close()
    finally:
        if opened:
            tbl.close()
    _warn_nan(nan_count, nwp, layout.shape)
    if kind == "zarr":
        return xr.open_zarr(output)
    return xr.open_dataset(output, engine="netcdf4", chunks={})


def _read_inputs(nwp: NWPWinds, a: int, b: int, box=None) -> tuple[np.ndarray, np.ndarray]:
    """NWP ``u``/``v`` of steps ``a:b``; ``box``: ``(rows, columns)`` slices of the NWP grid."""
    sel = {"time": slice(a, b)}
    if box is not None:
        sel.update(zip(nwp.spatial_dims, box, strict=True))
    u_c = nwp.u.isel(sel)
    v_c = nwp.v.isel(sel)
    if u_c.chunks is not None:
        import dask

        u_np, v_np = dask.compute(u_c.data, v_c.data)
        return np.asarray(u_np), np.asarray(v_np)
    return np.asarray(u_c.values), np.asarray(v_c.values)


def stream(
    nwp, compute, writer, chunk_time: int, quiet: bool, what: str = "", *, read=None, bar=None
) -> None:
    """Loop over time chunks: read, ``compute(u, v) -> outputs``, write.

    The one streaming loop of table and per-step downscaling (and of each spatial block,
    :mod:`.blocks`). File writers run in one background thread, so that compressing and
    writing chunk ``k`` overlaps the computation of chunk ``k + 1``, and the next chunk is read
    while this one is computed; at most two chunks of output are alive at once. NetCDF output
    is written through h5py and the input read through netCDF4: two separate HDF5 libraries,
    each serialising its own calls.

    ``read(a, b) -> (u, v)`` replaces the reading of steps ``a:b`` (default: the whole NWP
    grid); ``bar``: an open progress bar to advance instead of a new one. A writer with a
    ``background`` attribute says itself whether it writes in the background thread.
    """
    from concurrent.futures import ThreadPoolExecutor

    nt = nwp.n_times
    starts = list(range(0, nt, chunk_time))
    if read is None:

        def read(a, b):
            return _read_inputs(nwp, a, b)

    background = getattr(writer, "background", not isinstance(writer, MemoryWriter))
    pool = ThreadPoolExecutor(1, thread_name_prefix="devine-onnx-writer") if background else None
    pending = None
    pending_n = 0
    bar_context = (
        progress_bar(nt, f"downscaling {nwp.source}{what}", quiet)
        if bar is None
        else nullcontext(bar)
    )
    try:
        with bar_context as bar:
            inputs = read(0, min(nt, chunk_time)) if starts else None
            for i, a in enumerate(starts):
                b = min(nt, a + chunk_time)
                outs = compute(inputs[0], inputs[1])
                inputs = None
                if pending is not None:
                    pending.result()
                    pending = None
                    bar.advance(pending_n)
                if i + 1 < len(starts):
                    c = starts[i + 1]
                    inputs = read(c, min(nt, c + chunk_time))
                if pool is not None:
                    pending = pool.submit(writer.write, a, b, outs)
                    pending_n = b - a
                else:
                    writer.write(a, b, outs)
                    bar.advance(b - a)
                del outs
            if pending is not None:
                pending.result()
                pending = None
                bar.advance(pending_n)
    finally:
        if pending is not None:
            pending.exception()  # wait for the write in flight before the file is closed
        if pool is not None:
            pool.shutdown(wait=True)


def _warn_nan(nan_count: _NaNCount, nwp: NWPWinds, shape) -> None:
    """One warning per run: how many output pixel-steps NaN in the forecast blanked."""
    if nan_count.blanked:
        total = nwp.n_times * int(np.prod(shape))
        warnings.warn(
            f"{nwp.source}: NaN in the NWP wind ({nwp.u_name}/{nwp.v_name}) blanked "
            f"{nan_count.blanked} output pixel-steps ({100.0 * nan_count.blanked / total:.2g}% "
            f"of {total}, in {nan_count.steps} of {nwp.n_times} time steps): each missing NWP "
            "value makes every table pixel of the triangles around it NaN; fill or mask the "
            "missing values in the forecast if that is not intended",
            NWPNaNWarning,
            stacklevel=3,
        )


def _lazy(nwp: NWPWinds, tbl: xr.Dataset, params: _KernelParams, layout: _Layout) -> xr.Dataset:
    ydim, xdim = nwp.spatial_dims
    ren = {ydim: "_nwp_y", xdim: "_nwp_x"}
    u = nwp.u.rename(ren).chunk({"_nwp_y": -1, "_nwp_x": -1})
    v = nwp.v.rename(ren).chunk({"_nwp_y": -1, "_nwp_x": -1})
    tren = {"angle": "_angle", "y": "_ty", "x": "_tx"}
    tables = []
    names = ("acceleration", "alpha") + (("vertical",) if table_vertical(tbl) else ())
    for name in names:
        var = tbl[name].transpose("angle", "y", "x").variable.chunk({"angle": -1, "y": -1, "x": -1})
        if name == "alpha" and alpha_in_degrees(tbl):
            var = var * (np.pi / 180.0)
        var = var.astype(np.float32)
        tables.append(xr.DataArray(var).rename(tren))
    results = xr.apply_ufunc(
        _BlockKernel(params),
        u,
        v,
        *tables,
        input_core_dims=[["_nwp_y", "_nwp_x"]] * 2 + [["_angle", "_ty", "_tx"]] * len(tables),
        output_core_dims=[["y", "x"]] * len(layout.names),
        dask="parallelized",
        output_dtypes=[np.float32] * len(layout.names),
        dask_gufunc_kwargs={"output_sizes": {"y": layout.shape[0], "x": layout.shape[1]}},
    )
    arrays = [r.transpose("time", "y", "x").data for r in results]
    return layout.dataset(arrays, layout.times)
