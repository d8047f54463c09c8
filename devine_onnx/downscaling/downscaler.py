"""The table downscaler: built once from an NWP grid and a correction table, then applied.

:class:`TableDownscaler` follows the regridders' precompute-then-apply pattern (xESMF's
``Regridder``, pyresample's ``precompute``/``compute``): building it fixes everything that does
not depend on the wind (regridding weights, the meridian convergence ``gamma`` of each table
pixel, the table directions, the lookup method, the coarsening and the output layout); applying
it is a pure function of arrays (:func:`~devine_onnx.downscaling.kernel.downscale_chunk`).

Two stages can be called separately:

- :meth:`TableDownscaler.interpolate`: NWP wind ``(t, *source_shape)`` -> the table grid
  ``(t, ny, nx)``, earth-relative (or grid-relative with ``grid_relative``);
- :meth:`TableDownscaler.correct`: wind on the table grid -> the output arrays (speed,
  FROM direction, components[, upward wind]);

and ``downscaler(u, v)`` chains both. :meth:`TableDownscaler.apply_lazy` gives a lazy
(dask) Dataset. The drivers (:mod:`.stream`, :mod:`.blocks`) take the object.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import xarray as xr

from devine_onnx.io.nwp import NWPWinds, _open_nwp
from devine_onnx.regrid.cache import resolve_weights
from devine_onnx.synthetic import warn_synthetic
from devine_onnx.tables.table import CorrectionTable
from devine_onnx.wind import meridian_convergence

from . import kernel as _kernel
from .lookup import warn_if_coarse
from .options import DownscaleOptions
from .output import OutputLayout, coarsen_axis, global_attributes, wind_variables

__all__ = ["TableDownscaler", "open_wind"]

LOGGER = logging.getLogger("devine_onnx")


def open_wind(
    wind, options: DownscaleOptions, *, nwp_crs=None, u_var=None, v_var=None, nwp_wind_frame=None
) -> NWPWinds:
    """The NWP winds of a run (``wind`` as accepted by :func:`devine_onnx.io.nwp.open_nwp`).

    File inputs are read in dask chunks of ``options.chunk_time`` steps; components are
    rotated to true north unless ``options.grid_relative``; only the steps from
    ``options.start`` to ``options.end`` are kept (:meth:`NWPWinds.window`).
    """
    if isinstance(wind, NWPWinds):
        return wind.window(options.start, options.end)
    is_path = isinstance(wind, str | os.PathLike)
    nwp = _open_nwp(
        wind,
        u_var=u_var,
        v_var=v_var,
        nwp_crs=nwp_crs,
        nwp_wind_frame=nwp_wind_frame,
        chunk_time=options.chunk_time if is_path else None,
        rotate=not options.grid_relative,
    )
    if nwp.wind_note:  # which variables (u10 or u100...) were chosen: a note (-q silences it)
        LOGGER.info(nwp.wind_note)
    return nwp.window(options.start, options.end)


def warn_if_synthetic(table: CorrectionTable, made: str, *, stacklevel: int = 2) -> None:
    """Warn (:class:`~devine_onnx.synthetic.SyntheticWeightsWarning`) before a run when
    ``table`` was computed with synthetic (untrained) model weights."""
    if table.synthetic:
        warn_synthetic(table.label, made=made, engine=table.engine, stacklevel=stacklevel + 1)


class TableDownscaler:
    """Downscale NWP wind with a correction table: built once, applied to many chunks.

    Parameters
    ----------
    table : CorrectionTable
        The table (its grid is the output grid, coarsened by ``options.coarsen``).
    weights : RegridWeights
        NWP grid -> table grid (:func:`devine_onnx.regrid.cache.resolve_weights`).
    options : DownscaleOptions, optional
        Lookup method, coarsening, frame (default options when None).

    Attributes
    ----------
    table, weights, options
        As given.
    crs : pyproj.CRS
        The table's (and the output's) CRS.
    angles : numpy.ndarray
        Table directions: FROM, degrees clockwise from the table's grid north.
    gamma : numpy.ndarray or None
        ``(ny, nx)`` meridian convergence in degrees (grid north lies ``gamma`` clockwise of
        true north), computed once; None with ``grid_relative``.
    shape, out_shape : (int, int)
        Table grid and output grid.
    n_outputs : int
        4, or 5 with a vertical ratio in the table (``upward_air_velocity``).
    """

    def __init__(self, table, weights, options: DownscaleOptions | None = None):
        self.table = CorrectionTable.open(table)
        self.weights = weights
        self.options = options if options is not None else DownscaleOptions()
        self.crs = self.table.crs
        self.angles = np.asarray(self.table.angles, dtype=np.float64)
        self.method = self.options.angular_interpolation
        self.coarsen = self.options.coarsen
        self.shape = tuple(self.table.shape)
        c = self.coarsen or 1
        self.out_shape = (self.shape[0] // c, self.shape[1] // c)
        self.has_vertical = self.table.has_vertical
        self.n_outputs = 5 if self.has_vertical else 4
        self.gamma = None
        if not self.options.grid_relative:
            x, y = self.table.x, self.table.y
            self.gamma = meridian_convergence(x[None, :], y[:, None], self.crs)
        self._arrays = None

    @classmethod
    def from_nwp(
        cls, nwp: NWPWinds, table, options: DownscaleOptions | None = None, *, weights=None,
        cache_dir=None, _stacklevel: int = 2,
    ) -> TableDownscaler:  # fmt: skip
        """Build from an opened NWP grid: the weights are given ones (checked against both
        grids), else loaded from the cache or built (``cache_dir``; False: no cache).

        Warns (:class:`~devine_onnx.downscaling.options.CoarsenRemainderWarning`,
        :class:`~devine_onnx.downscaling.lookup.CoarseTableWarning`) about coarsening
        remainders and a nearest lookup on a coarse table."""
        table, options = _checked(table, options, _stacklevel + 1)
        w = resolve_weights(weights, nwp, table, table.crs, cache_dir=cache_dir)
        return cls(table, w, options)

    @classmethod
    def on_table_grid(
        cls, table, options: DownscaleOptions | None = None, *, _stacklevel: int = 2
    ) -> TableDownscaler:
        """Build for wind already on the table grid (no NWP, no weights; e.g. a Barnes
        analysis of station winds, :mod:`.stations`): only :meth:`correct` applies. Warns
        like :meth:`from_nwp` about coarsening remainders and a nearest lookup on a coarse
        table."""
        table, options = _checked(table, options, _stacklevel + 1)
        return cls(table, None, options)

    # ----------------------------------------------------------------------- parts
    def params(self, region=None, weights=None) -> _kernel.KernelParams:
        """Kernel parameters of the whole grid, or of ``region = (y0, y1, x0, x1)`` with its
        ``weights`` (:func:`~devine_onnx.downscaling.blocks.block_weights`)."""
        gamma = self.gamma
        shape = self.shape
        if region is not None:
            y0, y1, x0, x1 = region
            shape = (y1 - y0, x1 - x0)
            if gamma is not None:
                gamma = gamma[y0:y1, x0:x1]
        c = self.coarsen or 1
        return _kernel.KernelParams.create(
            self.weights if weights is None else weights,
            self.angles,
            gamma,
            self.method,
            self.coarsen,
            (shape[0] // c, shape[1] // c),
        )

    def read_table(self, region=None, source=None) -> tuple:
        """``(acceleration, alpha, vertical)`` float32 ``(angle, y, x)`` arrays of the table
        (or of ``region``, or of ``source``: a copy of the table), alpha in radians; vertical
        None without one."""
        src = self.table if source is None else source
        arrays = src.read(region, np.float32)
        return arrays["acceleration"], arrays["alpha"], arrays.get("vertical")

    def load(self) -> TableDownscaler:
        """Read the whole table into memory once (then the file is no longer needed)."""
        if self._arrays is None:
            self._arrays = self.read_table()
        return self

    def release(self) -> None:
        """Forget the table arrays read by :meth:`load`."""
        self._arrays = None

    # ----------------------------------------------------------------------- apply
    def interpolate(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """NWP wind ``(..., *source_shape)`` (m/s) -> ``(..., ny, nx)`` float32 on the table grid.

        Earth-relative components stay earth-relative (grid-relative ones, with
        ``grid_relative``, stay grid-relative); NaN outside the NWP grid's hull.
        """
        w = self.weights
        nsrc = len(w.source_shape)
        u = np.asarray(u, dtype=np.float32)
        v = np.asarray(v, dtype=np.float32)
        lead = u.shape[: u.ndim - nsrc]
        ur = w.apply(u.reshape((-1,) + tuple(w.source_shape)))
        vr = w.apply(v.reshape((-1,) + tuple(w.source_shape)))
        return ur.reshape(lead + self.shape), vr.reshape(lead + self.shape)

    def correct(self, u_grid, v_grid) -> tuple[np.ndarray, ...]:
        """Apply the table to wind already on the table grid.

        Parameters
        ----------
        u_grid, v_grid : array_like
            ``(..., ny, nx)`` components in m/s: eastward/northward (grid x/y with
            ``grid_relative``).

        Returns
        -------
        tuple of numpy.ndarray
            ``(wind_speed, wind_from_direction, u, v[, upward_air_velocity])`` float32
            ``(..., ny_out, nx_out)``: m/s, FROM direction in degrees clockwise from true
            north (grid north with ``grid_relative``).
        """
        acc, alpha, vertical = self._table_arrays()
        params = _kernel.KernelParams.create(
            None, self.angles, self.gamma, self.method, self.coarsen, self.out_shape
        )
        return _kernel.downscale_chunk(u_grid, v_grid, acc, alpha, params, vertical=vertical)

    def __call__(self, u, v) -> tuple[np.ndarray, ...]:
        """``correct(interpolate(u, v))`` on NWP wind ``(..., *source_shape)``, in sub-chunks
        of bounded memory."""
        acc, alpha, vertical = self._table_arrays()
        return _kernel.downscale_chunk(u, v, acc, alpha, self.params(), vertical=vertical)

    def _table_arrays(self):
        self.load()
        return self._arrays

    def stream_kernel(self, nan_count=None) -> _kernel.StreamKernel:
        """``compute(u, v)`` of the time loop over the whole grid (reads the table once)."""
        acc, alpha, vertical = self._table_arrays()
        if nan_count is not None:
            nan_count.set_table(acc, alpha)
        return _kernel.StreamKernel(acc, alpha, self.params(), nan_count, vertical)

    # ----------------------------------------------------------------------- output
    def layout(self, nwp: NWPWinds, block: tuple[int, int] | None = None) -> OutputLayout:
        """The output layout for the NWP series ``nwp``; ``block``: the spatial blocks (table
        pixels) of a block run, which become the output's spatial chunks."""
        t = self.table
        opts = self.options
        c = self.coarsen
        options = opts.history()
        spatial_chunks = None
        if block is not None:
            options += f", blocks of {block[0]}x{block[1]} table pixels"
            spatial_chunks = (block[0] // (c or 1), block[1] // (c or 1))
        src = t.dataset.encoding.get("source")
        attrs = global_attributes(
            source=nwp.source,
            u_name=nwp.u_name,
            v_name=nwp.v_name,
            nwp_wind_frame=nwp.wind_frame,
            table_attrs=t.attrs,
            table_name=Path(src).name if src else "in-memory Dataset",
            grid_relative=opts.grid_relative,
            options=options,
            synthetic_note=t.synthetic_note,
        )
        return OutputLayout(
            x=coarsen_axis(t.x, c),
            y=coarsen_axis(t.y, c),
            crs=self.crs,
            times=np.asarray(nwp.time),
            var_attrs=wind_variables(opts.grid_relative, self.has_vertical),
            global_attrs=attrs,
            static=t.static_variables(c),
            chunk_time=opts.chunk_time,
            coarsened=bool(c),
            spatial_chunks=spatial_chunks,
            height=getattr(nwp, "height", None),
        )

    def apply_lazy(self, nwp: NWPWinds, layout: OutputLayout | None = None) -> xr.Dataset:
        """The downscaled Dataset of a dask-backed NWP series, computed on demand.

        The kernel is applied blockwise (``xarray.apply_ufunc(..., dask="parallelized")``), one
        call per time chunk of the input; the table is read once per computation (a delayed
        task), so nothing is read or computed before ``.compute()`` / ``.to_netcdf()``. The
        function, the weights and the table pickle: it runs on a dask.distributed cluster.
        NaN in the forecast is not counted here.
        """
        import dask
        import dask.array as dsa

        layout = self.layout(nwp) if layout is None else layout
        ydim, xdim = nwp.spatial_dims
        ren = {ydim: "_nwp_y", xdim: "_nwp_x"}
        u = nwp.u.rename(ren).chunk({"_nwp_y": -1, "_nwp_x": -1})
        v = nwp.v.rename(ren).chunk({"_nwp_y": -1, "_nwp_x": -1})
        names = self.table.variables
        shape = (self.angles.size, *self.shape)
        read = dask.delayed(_read_all, pure=False)(self.table)
        tables = [
            xr.DataArray(
                dsa.from_delayed(read[i], shape, dtype=np.float32), dims=("_angle", "_ty", "_tx")
            )
            for i in range(len(names))
        ]
        results = xr.apply_ufunc(
            _kernel.ChunkKernel(self.params()),
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


def _read_all(table: CorrectionTable) -> tuple[np.ndarray, ...]:
    """All per-direction variables of ``table`` as float32 arrays (alpha in radians)."""
    arrays = table.read(None, np.float32)
    return tuple(arrays[name] for name in table.variables)


def _checked(table, options, stacklevel):
    """The table opened and the options defaulted, with the warnings every downscaler gives
    (synthetic weights, coarsening remainder, nearest lookup on a coarse table) with
    ``stacklevel`` as given to :func:`warnings.warn` from here."""
    options = options if options is not None else DownscaleOptions()
    table = CorrectionTable.open(table)
    warn_if_synthetic(table, "the downscaled wind", stacklevel=stacklevel)
    options.check_grid(*table.shape, stacklevel=stacklevel)
    warn_if_coarse(
        table.angles, options.angular_interpolation, label=table.label, stacklevel=stacklevel
    )
    return table, options
