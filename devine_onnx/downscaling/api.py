"""``downscale()``: downscale NWP wind with a correction table or, per step, a feature network.

A thin dispatcher: the options are checked once (:class:`~.options.DownscaleOptions`), a
:class:`~.downscaler.TableDownscaler` is built from the NWP grid and the table, and one driver
runs it: a lazy dask result (:meth:`~.downscaler.TableDownscaler.apply_lazy`), the time stream
with the whole table in memory (:mod:`.stream`), or spatial blocks, locally or on a
dask.distributed cluster (:mod:`.blocks`); per-step mode has its own driver
(:mod:`.per_step`). No module of the package imports this one.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from devine_onnx.errors import OptionError, option
from devine_onnx.io.atomic import check_writable, maybe_output_lock
from devine_onnx.regrid.cache import build_weights
from devine_onnx.tables.table import CorrectionTable

from . import blocks as _blocks
from .downscaler import TableDownscaler, open_wind
from .kernel import (
    DEFAULT_MAX_SPEED,
    ImplausibleSpeedWarning,
    NaNCount,
    NWPNaNWarning,
    warn_nan,
)
from .options import CoarsenRemainderWarning, DownscaleOptions, check_mode
from .output import write_output
from .stations import downscale_stations, is_observation_input
from .stream import run_stream

__all__ = [
    "CoarsenRemainderWarning",
    "DownscaleOptions",
    "ImplausibleSpeedWarning",
    "NWPNaNWarning",
    "TableDownscaler",
    "build_weights",
    "downscale",
]


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
    stations=None,
    barnes_spacing: float | None = None,
    min_stations: int | None = None,
    min_speed: float | None = None,
    start=None,
    end=None,
    max_speed: float = DEFAULT_MAX_SPEED,
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
        ``.nc`` (NetCDF4, zlib) or ``.zarr`` file, written chunk by chunk under a private
        temporary name in its folder and renamed when complete (no file carries the final
        name after a failure); ``<output>.lock`` keeps other runs off it meanwhile
        (:mod:`devine_onnx.io.atomic`). None: return the result (lazy if the NWP input is
        dask-backed, which is the case for any file path; in memory otherwise).
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
        with a :class:`~devine_onnx.downscaling.options.CoarsenRemainderWarning` saying how many rows and columns.
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
    max_speed : float
        Downscaled wind speed (m/s) above which the output pixel-steps are counted and
        reported by one :class:`~devine_onnx.downscaling.kernel.ImplausibleSpeedWarning`
        (forecast in km/h or knots, wrong variables, 1e6 m/s of a damaged file); the values
        are kept. ``math.inf``: no check. Infinite forecast values are blanked like NaN
        (counted in the :class:`NWPNaNWarning`).
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
    stations, barnes_spacing, min_stations, min_speed
        Station-driven downscaling, when ``wind`` is weather-station observations (a CSV
        file, a CF timeSeries NetCDF or a DataFrame, as read by ``evaluate``): the station
        winds are interpolated to the table grid by Barnes analysis at each time step, then
        the table applies; see :func:`~devine_onnx.downscaling.stations.downscale_stations`
        (NWP-only options are refused there). Given with NWP input: an OptionError.
    start, end : str, datetime or numpy.datetime64, optional
        Downscale only the forecast steps from ``start`` to ``end`` (both included): ISO
        times such as ``"2026-01-15T06:00"``, in UTC (or with an offset, converted to UTC; a
        date alone is its 00:00). The weights, the grid and every other option are the same
        as for the whole file. A window with no step, or ``start`` after ``end``, is an
        OptionError giving the file's time range.

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
          variable;
        - ``lat``/``lon`` (y, x) auxiliary coordinates: WGS 84 latitude and longitude of the
          pixel centres (degrees north/east), and a scalar ``height`` (m above ground) when
          the forecast variables give it (10 for ``u10``/``v10``); the variables list them in
          their ``coordinates`` attribute.

        NaN outside the NWP grid's hull (with an
        :class:`~devine_onnx.regrid.weights.OutsideHullWarning` giving the count) and where the
        table has no data. NaN in the NWP wind blanks the output pixels around it: with an
        ``output`` or an in-memory result, one :class:`~devine_onnx.downscaling.kernel.NWPNaNWarning` gives the number of
        output pixel-steps blanked (not counted for a lazy result). With ``output``, the
        written file opened lazily.

    Raises
    ------
    NWPError, TableError, WeightsMismatchError, OutputError, OptionError
        One-line messages naming the file or option.
    """
    with maybe_output_lock(output):  # one run per output: OUTPUT.lock (io.atomic)
        if is_observation_input(wind):
            return downscale_stations(
                wind, table, output=output, stations=stations, barnes_spacing=barnes_spacing,
                min_stations=min_stations, min_speed=min_speed, chunk_time=chunk_time,
                coarsen=coarsen, angular_interpolation=angular_interpolation, complevel=complevel,
                quiet=quiet, max_speed=max_speed, start=start, end=end, nwp_options=dict(
                    u_var=u_var, v_var=v_var, nwp_crs=nwp_crs, nwp_wind_frame=nwp_wind_frame,
                    weights=weights, grid_relative=grid_relative, model=model, per_step=per_step,
                    dem=dem, dem_crs=dem_crs, coarse_cell=coarse_cell, max_memory=max_memory,
                    block_size=block_size, workers=workers, scheduler=scheduler,
                ),
            )  # fmt: skip
        station_kw = dict(stations=stations, barnes_spacing=barnes_spacing,
                          min_stations=min_stations, min_speed=min_speed)  # fmt: skip
        if any(v is not None for v in station_kw.values()):
            given = ", ".join(option(k) for k, v in station_kw.items() if v is not None)
            raise OptionError(
                f"{given}: for weather-station observations (a CSV or CF timeSeries NetCDF file); "
                f"{wind if isinstance(wind, str | Path) else 'this input'} is NWP wind: leave "
                "them out"
            )
        per_step = check_mode(
            table=table, per_step=per_step, model=model, dem=dem, dem_crs=dem_crs,
            grid_relative=grid_relative,
            nwp_wind_frame=nwp_wind_frame,
        )  # fmt: skip
        options = DownscaleOptions(
            chunk_time=chunk_time, coarsen=coarsen, grid_relative=grid_relative,
            angular_interpolation=angular_interpolation, complevel=complevel,
            max_memory=max_memory, block_size=block_size, workers=workers, scheduler=scheduler,
            quiet=quiet, per_step=per_step, start=start, end=end, max_speed=max_speed,
        )  # fmt: skip
        if options.cluster:
            _blocks.check_cluster(workers, scheduler, output)
        if output is not None:
            check_writable(output)
        nwp_kw = dict(u_var=u_var, v_var=v_var, nwp_crs=nwp_crs, nwp_wind_frame=nwp_wind_frame)
        if per_step:
            from .per_step import downscale_per_step

            return downscale_per_step(
                wind, dem, model, options, output=output, weights=weights, cache_dir=cache_dir,
                device=device, coarse_cell=coarse_cell, dem_crs=dem_crs, **nwp_kw,
            )  # fmt: skip

        tbl = CorrectionTable.open(table)
        keep_open = False  # a lazy result reads the table when computed
        try:
            nwp = open_wind(wind, options, **nwp_kw)
            ds = TableDownscaler.from_nwp(
                nwp, tbl, options, weights=weights, cache_dir=cache_dir, _stacklevel=3
            )
            lazy = output is None and nwp.is_lazy
            plan_kw = dict(n_outputs=ds.n_outputs, chunk_time=options.chunk_time,
                           coarsen=options.coarsen)  # fmt: skip
            plan = _blocks.plan_blocks(
                tbl, ds.weights, max_memory=None if lazy else options.max_memory,
                block_size=options.block_size, **plan_kw,
            )  # fmt: skip
            # The table fits: blocks are the tasks all the same.
            if options.cluster and plan is None:
                plan = _blocks.cluster_plan(tbl, ds.weights, **plan_kw)
            if lazy:
                if plan is not None:
                    raise OptionError(
                        f"{option('block_size')}: downscaling by blocks writes its result; give an "
                        "output (a .nc or .zarr path)"
                    )
                keep_open = True
                return ds.apply_lazy(nwp)

            nan_count = NaNCount(None, None, nwp.n_times, max_speed=options.max_speed)
            if plan is None:
                layout = ds.layout(nwp)

                def run(writer):
                    run_stream(ds, nwp, writer, nan_count, quiet=options.quiet)

            else:
                layout = ds.layout(nwp, block=plan.block)

                def run(writer):
                    _blocks.run_blocks(
                        ds, nwp, plan, writer, nan_count=nan_count, quiet=options.quiet,
                        scratch=None if output is None else Path(output).absolute().parent,
                        workers=workers, scheduler=scheduler,
                    )  # fmt: skip

            result = write_output(output, layout, run, options.complevel)
        finally:
            if not keep_open:
                tbl.close()
        warn_nan(nan_count, nwp.source, nwp.u_name, nwp.v_name, nwp.n_times, layout.shape)
        return result
