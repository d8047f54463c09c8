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

Memory: one chunk of ``chunk_time`` steps of wind lives at a time; the network runs on
``max_pixels // (ny * nx)`` steps at once (at least one whole-domain pass per step).
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from devine_onnx.engines.features import (
    DEFAULT_HALO,
    DEFAULT_MAX_PIXELS,
    FeatureNetwork,
    _interior_and_orientation,
    check_dem_size,
)
from devine_onnx.engines.terrain_features import (
    FRAME,
    TerrainGeometry,
    direction_features,
    normalise,
    terrain_geometry,
)
from devine_onnx.errors import OptionError, option
from devine_onnx.regrid.cache import resolve_weights
from devine_onnx.wind import earth_to_grid, grid_to_earth, meridian_convergence, uv_to_speed_dir

from .downscaler import open_wind
from .kernel import coarsen_mean
from .options import DownscaleOptions
from .output import (
    OutputLayout,
    coarsen_axis,
    global_attributes,
    static_variables,
    wind_variables,
    write_output,
)
from .timeloop import stream

__all__ = ["PerStepKernel", "downscale_per_step", "fill_directions"]


def fill_directions(from_dir: np.ndarray) -> np.ndarray:
    """Directions with NaN replaced by the circular mean of each step's valid directions
    (270 where a step has none). ``from_dir`` is ``(n, ny, nx)`` degrees."""
    d = np.asarray(from_dir, dtype=np.float64)
    ok = np.isfinite(d)
    if ok.all():
        return d
    rad = np.radians(np.where(ok, d, 0.0))
    s = np.where(ok, np.sin(rad), 0.0).sum(axis=(-2, -1))
    c = np.where(ok, np.cos(rad), 0.0).sum(axis=(-2, -1))
    mean = np.where((s == 0) & (c == 0), 270.0, np.mod(np.degrees(np.arctan2(s, c)), 360.0))
    return np.where(ok, d, mean[..., None, None])


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
    """

    def __init__(self, network, geom, weights, gamma, flips, coarsen, max_pixels, halo):
        self.network = network
        self.geom = geom
        self.weights = weights
        self.gamma = None if gamma is None else np.asarray(gamma, dtype=np.float32)
        self.flips = flips
        self.coarsen = coarsen
        self.max_pixels = max_pixels
        self.halo = halo

    def _orient(self, a):
        fy, fx = self.flips
        return a[..., :: -1 if fy else 1, :: -1 if fx else 1]

    def steps_per_pass(self) -> int:
        h, w = self.geom.shape
        if self.max_pixels is None:
            return 64
        return max(1, self.max_pixels // (h * w))

    def network_uvw(self, ug: np.ndarray, vg: np.ndarray):
        """Grid components ``(n, ny, nx)`` (DEM order) -> scaled ``(u, v, w)`` grid components,
        float32, NaN where the wind is unknown."""
        speed, from_dir = uv_to_speed_dir(ug, vg)
        theta = self._orient(fill_directions(from_dir))
        defl, ydsc = direction_features(self.geom, theta)
        net = self.network
        x = normalise(defl, self.geom.reldem, ydsc, net.mean, net.std)
        del defl, ydsc, theta
        out = self._orient(net.predict(x, self.max_pixels, self.halo))
        scale = (np.asarray(speed, dtype=np.float32) / np.float32(net.inflow))[:, None]
        out *= scale
        return out[:, 0], out[:, 1], out[:, 2]

    def __call__(self, u, v) -> tuple[np.ndarray, ...]:
        """``(speed, from_dir, u, v, w)`` float32 ``(n, ny_out, nx_out)`` for NWP ``u, v``."""
        w8 = self.weights
        u = np.asarray(u).reshape((-1,) + w8.source_shape)
        v = np.asarray(v).reshape((-1,) + w8.source_shape)
        n = u.shape[0]
        step = self.steps_per_pass()
        results: list[list[np.ndarray]] = [[] for _ in range(5)]
        for a in range(0, n, step):
            ur = w8.apply(np.asarray(u[a : a + step], dtype=np.float32))
            vr = w8.apply(np.asarray(v[a : a + step], dtype=np.float32))
            if self.gamma is not None:
                ur, vr = earth_to_grid(ur, vr, self.gamma)
            uo, vo, wo = self.network_uvw(ur, vr)
            del ur, vr
            if self.gamma is not None:
                uo, vo = grid_to_earth(uo, vo, self.gamma)
            if self.coarsen:
                uo = coarsen_mean(np.asarray(uo, dtype=np.float32), self.coarsen)
                vo = coarsen_mean(np.asarray(vo, dtype=np.float32), self.coarsen)
                wo = coarsen_mean(np.asarray(wo, dtype=np.float32), self.coarsen)
            speed, dirs = uv_to_speed_dir(uo, vo)
            for lst, r in zip(results, (speed, dirs, uo, vo, wo), strict=True):
                lst.append(np.asarray(r, dtype=np.float32))
        return tuple(np.concatenate(r, axis=0) for r in results)


def _layout(
    nwp, inner: xr.DataArray, crs, network: FeatureNetwork, options: DownscaleOptions,
    label: str, coarse_cell: float,
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
        static=static_variables(elevation=inner, coarsen=c),
        chunk_time=options.chunk_time,
        coarsened=bool(c),
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
        ``per_step=True`` options (chunk_time, coarsen, grid_relative, complevel, quiet),
        checked with the mode by :func:`~devine_onnx.downscaling.options.check_mode`.
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
    if network.synthetic:  # before the work, not after (issue 21 #3)
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
    z, cell, flip_y, flip_x = _interior_and_orientation(da)
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
    layout = _layout(nwp, inner, crs, network, options, label, cc)
    kernel = PerStepKernel(
        network, geom, w8, gamma, (flip_y, flip_x), options.coarsen, max_pixels, halo
    )

    def run(writer):
        stream(nwp, kernel, writer, options.chunk_time, options.quiet, " per step")

    return write_output(output, layout, run, options.complevel)
