"""Per-step downscaling with a devine-torch feature network (what devine-torch itself does).

For each time step: the NWP ``u, v`` are interpolated to the DEM grid (without its 2-cell
frame) with the same cached Delaunay weights as table mode, rotated into grid components by
the meridian convergence, the terrain features are computed with the *local* FROM direction
field, the network runs once over the exact domain, and its ``(u, v, w)`` (for a 3 m/s inflow)
are scaled by ``S / 3`` (``S`` the interpolated NWP speed) and rotated back to earth-relative
components. The output has the layout of table mode (:mod:`.output`), plus
``upward_air_velocity``; the same time loop (:mod:`.timeloop`) drives it.

Differences from devine-torch's scripts: the direction field comes from the interpolated
components (no interpolation of angles across 0/360), and the scaling speed is their norm (the
same ``S`` table mode uses). Where the direction is undefined (calm wind, outside the NWP
grid) the features use the circular mean direction of the step (the output is then 0 for calm
wind, NaN outside the grid); neighbouring pixels see that direction through the network's
receptive field.

Memory: ``max_memory`` (default :data:`DEFAULT_MEMORY`) sizes both the network passes (steps
per pass, :data:`~devine_onnx.engines.features.NETWORK_BYTES_PER_PIXEL` per pixel and step, at
least one whole-domain pass per step) and the time chunk (:data:`CHUNK_BYTES_PER_PIXEL` per
pixel and step, at most ``chunk_time`` steps): see :func:`plan_memory`. Peak memory is then
flat in the number of steps.
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from devine_onnx.coarsen import coarsen_mean
from devine_onnx.engines.features import (
    DEFAULT_HALO,
    DEFAULT_MAX_PIXELS,
    DEFAULT_PASS_MEMORY,
    NETWORK_BYTES_PER_PIXEL,
    FeatureNetwork,
    FeatureStepKernel,
    check_dem_size,
    images_per_pass,
    interior_and_orientation,
)
from devine_onnx.engines.terrain_features import FRAME, TerrainGeometry, terrain_geometry
from devine_onnx.errors import OptionError, option
from devine_onnx.regrid.cache import resolve_weights
from devine_onnx.tables.table import static_outputs
from devine_onnx.wind import earth_to_grid, grid_to_earth, meridian_convergence, uv_to_speed_dir

from .downscaler import open_wind
from .kernel import NaNCount, blank_nonfinite, warn_nan
from .options import DownscaleOptions
from .output import (
    GRID_MAPPING,
    OutputLayout,
    coarsen_axis,
    global_attributes,
    wind_variables,
    write_output,
)
from .timeloop import stream

__all__ = [
    "BASELINE_BYTES",
    "CHUNK_BYTES_PER_PIXEL",
    "DEFAULT_MEMORY",
    "PerStepKernel",
    "downscale_per_step",
    "plan_memory",
]

#: Memory of a per-step run without ``max_memory``, bytes: a 320 x 360 DEM then runs one step
#: per network pass (0.2 GB) and chunks of 24 steps (estimated 0.8 GB in all, measured peak
#: 0.6-0.7 GB whatever the number of steps; docs/benchmarks.md).
DEFAULT_MEMORY = 1_200_000_000
#: Memory of the process before any chunk, bytes: Python with numpy, xarray, pyproj and ONNX
#: Runtime, the model's session (measured about 0.3 GB), plus the terrain terms
#: (:data:`TERRAIN_BYTES_PER_PIXEL`).
BASELINE_BYTES = 350 * 2**20
#: Terrain terms kept per DEM pixel, bytes: elevations, the geometry and the direction-
#: independent input terms (float64).
TERRAIN_BYTES_PER_PIXEL = 120
#: Memory per DEM pixel and time step of a chunk, bytes (float32): the interpolated wind and its
#: grid components (4 arrays), the network's u, v, w (3), the five outputs of this chunk and
#: those of the previous chunk still being written in the background (10), plus the rotated
#: components (2), rounded up.
CHUNK_BYTES_PER_PIXEL = 80


def plan_memory(
    shape,
    max_memory: int | None = None,
    chunk_time: int = 24,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """Network pass memory and time chunk of a per-step run within ``max_memory`` bytes.

    Parameters
    ----------
    shape : (int, int)
        Rows and columns of the DEM interior (the network's domain).
    max_memory : int, optional
        Bytes the run may use; None: :data:`DEFAULT_MEMORY`.
    chunk_time : int
        Most time steps per chunk.
    max_pixels : int or None
        Pixels of one network pass (larger domains are tiled; see
        :meth:`~devine_onnx.engines.features.FeatureNetwork.predict`).

    Returns
    -------
    pass_memory, chunk : int, int
        Bytes for the network passes (``min(DEFAULT_PASS_MEMORY, room / 2)``, at least one
        step per pass) and time steps per chunk (``room`` left after them divided by
        :data:`CHUNK_BYTES_PER_PIXEL` per pixel and step, between 1 and ``chunk_time``),
        where ``room = max_memory - BASELINE_BYTES - terrain terms``.

    Raises
    ------
    OptionError
        A ``max_memory`` given explicitly that cannot hold one pass of one step and a
        one-step chunk (the default budget never raises: it takes the minimum then).
    """
    h, w = (int(a) for a in shape)
    pixels = h * w
    budget = DEFAULT_MEMORY if max_memory is None else int(max_memory)
    room = budget - BASELINE_BYTES - TERRAIN_BYTES_PER_PIXEL * pixels
    pass_pixels = pixels if max_pixels is None else min(pixels, int(max_pixels))
    one_pass = NETWORK_BYTES_PER_PIXEL * pass_pixels
    pass_memory = max(one_pass, min(DEFAULT_PASS_MEMORY, room // 2))
    per_pass = images_per_pass((h, w), pass_memory, max_pixels)
    left = room - per_pass * one_pass
    chunk = max(1, min(int(chunk_time), left // (CHUNK_BYTES_PER_PIXEL * pixels)))
    if max_memory is not None and left < CHUNK_BYTES_PER_PIXEL * pixels:
        need = budget - left + CHUNK_BYTES_PER_PIXEL * pixels
        raise OptionError(
            f"{option('max_memory', f'{budget / 1e9:.2g}GB')}: too small for per-step "
            f"downscaling of a {h} x {w} domain: one network pass and one time step need "
            f"about {need / 1e9:.2g} GB; give more, or a smaller DEM"
        )
    return int(pass_memory), int(chunk)


class PerStepKernel:
    """Downscale chunks of NWP wind with the network, one pass per time step.

    Parameters
    ----------
    network : FeatureNetwork
    geom : TerrainGeometry
        Features' geometry of the DEM interior (north-up working view).
    weights : RegridWeights
        NWP grid -> DEM interior (in the DEM's own row order).
    gamma : numpy.ndarray or None
        Meridian convergence (degrees) of the interior pixels; None for grid-relative wind.
    flips : (bool, bool)
        Whether the DEM's rows (y) / columns (x) are flipped relative to the working view.
    coarsen : int or None
    max_pixels, halo
        See :meth:`FeatureNetwork.predict`.
    pass_memory : int, optional
        Bytes for the network passes (see
        :class:`~devine_onnx.engines.features.FeatureStepKernel`); from :func:`plan_memory`.
    nan_count : NaNCount, optional
        Counts the output pixel-steps blanked by NaN or infinite NWP values and the downscaled
        speeds above its ``max_speed``, as table mode does.
    """

    def __init__(
        self, network, geom, weights, gamma, flips, coarsen, max_pixels, halo, pass_memory=None,
        nan_count: NaNCount | None = None,
    ):  # fmt: skip
        self.network = network
        self.geom = geom
        self.weights = weights
        self.gamma = None if gamma is None else np.asarray(gamma, dtype=np.float32)
        self.flips = flips
        self.coarsen = coarsen
        self.nan_count = nan_count
        self.t0 = 0  # time index of the next chunk, for the count of blanked steps
        self.stepper = FeatureStepKernel(
            network, geom, flips, max_pixels=max_pixels, halo=halo, memory=pass_memory
        )

    @property
    def steps_per_pass(self) -> int:
        """Time steps run in one network pass."""
        return self.stepper.steps_per_pass

    def network_uvw(self, ug: np.ndarray, vg: np.ndarray):
        """Grid components ``(n, ny, nx)`` (DEM order) -> scaled ``(u, v, w)`` grid components,
        float32, NaN where the wind is unknown."""
        return self.stepper.uvw(ug, vg)

    def __call__(self, u, v) -> tuple[np.ndarray, ...]:
        """``(speed, from_dir, u, v, w)`` float32 ``(n, ny_out, nx_out)`` for NWP ``u, v``.

        Each network pass is rotated back, coarsened and turned into speed and direction
        while the next pass runs (:meth:`FeatureStepKernel.passes`)."""
        w8 = self.weights
        u = np.asarray(u).reshape((-1,) + w8.source_shape)
        v = np.asarray(v).reshape((-1,) + w8.source_shape)
        t0 = self.t0
        self.t0 += u.shape[0]
        u, v, blanked = blank_nonfinite(u, v)  # as table mode
        count = self.nan_count if blanked else None
        ur = w8.apply(np.asarray(u, dtype=np.float32))
        vr = w8.apply(np.asarray(v, dtype=np.float32))
        if self.gamma is not None:
            ur, vr = earth_to_grid(ur, vr, self.gamma)
        outputs = None
        for sl, uo, vo, wo in self.stepper.passes(ur, vr):
            if self.gamma is not None:
                uo, vo = grid_to_earth(uo, vo, self.gamma)
            if self.coarsen:
                uo, vo, wo = (
                    coarsen_mean(np.asarray(a, np.float32), self.coarsen) for a in (uo, vo, wo)
                )
            if count is not None:
                valid = w8.valid.reshape(w8.target_shape)
                count.add(ur[sl], vr[sl], valid, self.coarsen, uo, t0 + sl.start)
            speed, dirs = uv_to_speed_dir(uo, vo)
            if self.nan_count is not None:
                self.nan_count.add_speed(speed)
            if outputs is None:
                outputs = [np.empty((ur.shape[0],) + uo.shape[1:], np.float32) for _ in range(5)]
            for out, r in zip(outputs, (speed, dirs, uo, vo, wo), strict=True):
                out[sl] = r
        if outputs is None:  # no step
            empty = np.zeros((0,) + ur.shape[1:], np.float32)
            outputs = [coarsen_mean(empty, self.coarsen) if self.coarsen else empty] * 5
        return tuple(outputs)


def _layout(
    nwp, inner: xr.DataArray, crs, network: FeatureNetwork, options: DownscaleOptions,
    label: str, coarse_cell: float, chunk_time: int,
) -> OutputLayout:  # fmt: skip
    """The output layout of a per-step run: table mode's, with the network's provenance."""
    from pathlib import Path

    c = options.coarsen
    dem_name = Path(label).name
    model_attrs = {
        "model_sha256": network.sha256,
        "model_kind": "features",
        "model_id": network.model_id,
    }
    attrs = global_attributes(
        source=nwp.source,
        u_name=nwp.u_name,
        v_name=nwp.v_name,
        nwp_wind_frame=nwp.wind_frame,
        table_attrs=model_attrs,
        table_name=dem_name,
        grid_relative=options.grid_relative,
        options=options.history(),
        method=f"per time step with model {network.path.name} on DEM {dem_name}",
    )
    attrs["title"] = "DEVINE downscaled wind (devine-torch feature network, per time step)"
    attrs["downscaling_mode"] = "per-step: one network pass per time step, no table"
    attrs["model_id"] = network.model_id
    attrs["model_sha256"] = network.sha256
    attrs["features_coarse_cell"] = coarse_cell
    attrs["dem_source"] = label
    if network.synthetic:
        attrs["comment"] = (
            f"the model {network.model_id} has synthetic (untrained) weights: this output is "
            "NOT physical"
        )
    attrs["references"] = (
        str(attrs.get("references", "")) + "; devine-torch (F. Hammer and N. Helbig); "
        "Helbig et al. 2024 (terrain features)"
    ).lstrip("; ")
    return OutputLayout(
        x=coarsen_axis(inner["x"].values, c),
        y=coarsen_axis(inner["y"].values, c),
        crs=crs,
        times=np.asarray(nwp.time),
        var_attrs=wind_variables(options.grid_relative, vertical=True),
        global_attrs=attrs,
        static=static_outputs(elevation=inner, coarsen=c, grid_mapping=GRID_MAPPING),
        chunk_time=chunk_time,
        coarsened=bool(c),
        height=nwp.height,
    )


def downscale_per_step(
    wind,
    dem,
    model,
    options: DownscaleOptions | None = None,
    *,
    output=None,
    u_var: str | None = None,
    v_var: str | None = None,
    nwp_crs=None,
    nwp_wind_frame: str | None = None,
    weights=None,
    cache_dir=None,
    device: str = "auto",
    coarse_cell: float | None = None,
    fill_nodata: bool = False,
    dem_crs=None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    halo: int = DEFAULT_HALO,
    threads: int | None = None,
) -> xr.Dataset:
    """Downscale NWP wind with a feature network, one network pass per time step.

    Parameters
    ----------
    wind
        NWP wind (file or Dataset), as for :func:`~devine_onnx.downscaling.api.downscale`.
    dem
        DEM file or DataArray (projected, metric) with the 2-cell frame the features need;
        the output covers the DEM without its frame.
    model
        A converted feature-network model (``devine-onnx convert MODEL_FOLDER``).
    options : DownscaleOptions, optional
        ``per_step=True`` options (chunk_time, coarsen, grid_relative, complevel, quiet,
        max_memory), checked with the mode by
        :func:`~devine_onnx.downscaling.options.check_mode`. ``max_memory`` (default
        :data:`DEFAULT_MEMORY`) sizes the network passes and the time chunk, which may then
        be shorter than ``chunk_time`` (:func:`plan_memory`).
    output, u_var, v_var, nwp_crs, nwp_wind_frame, weights, cache_dir
        As for :func:`~devine_onnx.downscaling.api.downscale` (the regridding weights are
        those of a table of the same DEM: same grid, same cache file).
    device
        ``"auto"`` (CUDA when usable), ``"cpu"`` or ``"cuda"``.
    coarse_cell
        Coarse cell of the relative-DEM feature in metres (default: the model's, 1000).
    fill_nodata
        Fill DEM holes from the nearest valid pixel.
    dem_crs
        CRS of a DEM file without one (see :func:`devine_onnx.load_dem`).
    max_pixels, halo
        Pixels per network pass, and the halo of tiles for larger domains (see
        :class:`~devine_onnx.engines.features.FeatureNetworkEngine`).
    threads
        ONNX Runtime intra-op threads.

    Returns
    -------
    xarray.Dataset
        As :func:`~devine_onnx.downscaling.api.downscale`, plus
        ``upward_air_velocity(time, y, x)`` (m s-1). Computed eagerly (also without
        ``output``, in memory).
    """
    from devine_onnx.io.dem import load_dem
    from devine_onnx.regrid.cache import target_grid
    from devine_onnx.synthetic import warn_synthetic

    options = options if options is not None else DownscaleOptions(per_step=True)
    network = model if isinstance(model, FeatureNetwork) else FeatureNetwork(model, device, threads)
    if network.synthetic:  # before the work, not after
        named = isinstance(model, str | os.PathLike) and str(model) != "demo"
        warn_synthetic(
            model if named else network.path.name,
            made="the downscaled wind",
            engine="features",
            model=True,
            stacklevel=3,
        )
    da, notes = load_dem(dem, fill_nodata=fill_nodata, dem_crs=dem_crs)
    label = str(da.attrs.get("source", "DEM"))
    check_dem_size(da.shape, label)
    z, cell, flip_y, flip_x = interior_and_orientation(da)
    network.check_resolution(cell, label)
    cc = network.coarse_cell if coarse_cell is None else float(coarse_cell)
    try:
        geom: TerrainGeometry = terrain_geometry(z, cell, cc)
    except ValueError as exc:
        raise OptionError(f"{option('coarse_cell', cc)}: {exc}") from None
    inner = da.isel(y=slice(FRAME, da.sizes["y"] - FRAME), x=slice(FRAME, da.sizes["x"] - FRAME))
    inner = inner.drop_vars("spatial_ref", errors="ignore")
    # The grid (and CRS) read as a table of this DEM would be: same weights, same cache file.
    grid = target_grid(
        xr.Dataset(coords={"y": inner["y"], "x": inner["x"]}).rio.write_crs(da.rio.crs)
    )
    crs = grid.crs
    nwp = open_wind(
        wind, options, nwp_crs=nwp_crs, u_var=u_var, v_var=v_var, nwp_wind_frame=nwp_wind_frame
    )
    options.check_grid(*grid.shape, what="domain", stacklevel=3)
    w8 = resolve_weights(weights, nwp, grid, crs, cache_dir=cache_dir)
    gamma = None
    if not options.grid_relative:
        gamma = meridian_convergence(grid.x[None, :], grid.y[:, None], crs)
    pass_memory, chunk = plan_memory(geom.shape, options.max_memory, options.chunk_time, max_pixels)
    layout = _layout(nwp, inner, crs, network, options, label, cc, chunk)
    nan_count = NaNCount(None, None, nwp.n_times, max_speed=options.max_speed)
    kernel = PerStepKernel(
        network, geom, w8, gamma, (flip_y, flip_x), options.coarsen, max_pixels, halo,
        pass_memory, nan_count,
    )  # fmt: skip

    def run(writer):
        stream(nwp, kernel, writer, chunk, options.quiet, " per step")

    result = write_output(output, layout, run, options.complevel)
    warn_nan(nan_count, nwp.source, nwp.u_name, nwp.v_name, nwp.n_times, layout.shape)
    return result
