"""The downscaled output: its layout (:class:`OutputLayout`) and the writer of a run.

An :class:`OutputLayout` is built once from explicit parts (grid, times, variables, global
attributes, static variables) and never changed afterwards; the table and per-step drivers
build theirs with :func:`wind_variables`, :func:`global_attributes` and
:func:`devine_onnx.tables.table.static_outputs`. :func:`write_output` runs a driver into an in-memory result or an
atomically written NetCDF/Zarr file (:mod:`devine_onnx.io.writers`) and opens it back.

Every output carries, besides its projected ``x``/``y`` axes and grid mapping, the CF
auxiliary coordinates ``lat``/``lon`` (2-D, degrees north/east on WGS 84, computed with pyproj
from the table's CRS at the output pixel centres) and, when the forecast says it, the scalar
``height`` of the wind above ground (m); the data variables list them in their
``coordinates`` attribute. ``lat``/``lon`` are computed lazily in blocks of rows
(:data:`LONLAT_BLOCK_PIXELS` pixels) and written once when the output is created, so a grid
larger than memory never needs them whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property, lru_cache

import numpy as np
import xarray as xr
from pyproj import CRS, Transformer

from devine_onnx._version import __version__
from devine_onnx.io.atomic import atomic_output
from devine_onnx.io.writers import (
    BlockWriter,
    MemoryWriter,
    create_writer,
    output_format,
    writing,
)

from .lookup import LOOKUP_THREADS

__all__ = [
    "GRID_MAPPING",
    "HEIGHT_ATTRS",
    "LONLAT_BLOCK_PIXELS",
    "OUTPUT_CHUNK_BYTES",
    "VERTICAL_ATTRS",
    "VERTICAL_NAME",
    "OutputLayout",
    "file_writer",
    "global_attributes",
    "lazy_lonlat",
    "lonlat_block",
    "memory_writer",
    "wind_variables",
    "write_output",
]

#: Target size of one compressed output chunk in bytes (time steps per chunk follow from it).
OUTPUT_CHUNK_BYTES = 4 << 20
#: Name of the grid-mapping variable of every output.
GRID_MAPPING = "spatial_ref"
#: Pixels of ``lat``/``lon`` computed at once (rows of the grid): 8 MB of float64 per block.
LONLAT_BLOCK_PIXELS = 1 << 19
#: Attributes of the scalar ``height`` coordinate (height of the wind above ground).
HEIGHT_ATTRS = {
    "standard_name": "height",
    "long_name": "height of the wind above ground (as given by the forecast variable)",
    "units": "m",
    "positive": "up",
    "axis": "Z",
}
_LAT_ATTRS = {
    "standard_name": "latitude",
    "long_name": "latitude of the pixel centre (WGS 84)",
    "units": "degrees_north",
}
_LON_ATTRS = {
    "standard_name": "longitude",
    "long_name": "longitude of the pixel centre (WGS 84)",
    "units": "degrees_east",
}
#: Name (and CF standard name) of the vertical wind output.
VERTICAL_NAME = "upward_air_velocity"
#: Its attributes, without ``grid_mapping``.
VERTICAL_ATTRS = {
    "units": "m s-1",
    "standard_name": "upward_air_velocity",
    "long_name": "downscaled upward wind (w)",
    "comment": "w of the network scaled by the NWP wind speed / 3 m/s; NaN where unknown",
}


# --------------------------------------------------------------------------- parts
def wind_variables(grid_relative: bool, vertical: bool = False) -> dict[str, dict]:
    """Output variable name -> attributes, in output order.

    ``wind_speed`` (m s-1), ``wind_from_direction`` (degree FROM, clockwise from true north, or
    grid north with ``grid_relative``), ``eastward_wind``/``northward_wind`` (or
    ``x_wind``/``y_wind``), and ``upward_air_velocity`` with ``vertical``.
    """
    gm = GRID_MAPPING
    if grid_relative:
        names = ("wind_speed", "wind_from_direction", "x_wind", "y_wind")
    else:
        names = ("wind_speed", "wind_from_direction", "eastward_wind", "northward_wind")
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
    out = {
        "wind_speed": {
            "units": "m s-1",
            "standard_name": "wind_speed",
            "long_name": "downscaled wind speed",
            "grid_mapping": gm,
        },
        "wind_from_direction": dir_attrs,
        names[2]: {
            "units": "m s-1",
            "standard_name": names[2],
            "long_name": f"downscaled {comp} wind component",
            "grid_mapping": gm,
        },
        names[3]: {
            "units": "m s-1",
            "standard_name": names[3],
            "long_name": f"downscaled {comp_y} wind component",
            "grid_mapping": gm,
        },
    }
    if vertical:
        out[VERTICAL_NAME] = {**VERTICAL_ATTRS, "grid_mapping": gm}
    return out


def global_attributes(
    *,
    source,
    u_name,
    v_name,
    nwp_wind_frame,
    table_attrs: Mapping,
    table_name: str,
    grid_relative: bool,
    options: str,
    synthetic_note: str | None = None,
    method: str | None = None,
) -> dict:
    """CF global attributes of a downscaled output.

    ``source``, ``u_name``, ``v_name``, ``nwp_wind_frame``: the NWP input; ``table_attrs`` and
    ``table_name``: the table's attributes and file name; ``options``: the run's options as
    written in ``history``; ``method``: how the wind was downscaled, as written in ``history``
    (default ``with table <table_name>``).
    """
    tattrs = dict(table_attrs)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    how = method if method is not None else f"with table {table_name}"
    attrs = {
        "Conventions": "CF-1.8",
        "title": "Downscaled wind (" + str(tattrs.get("engine_title", "DEVINE")) + ")",
        "source": str(source),
        "table_source": table_name,
        "table_model_sha256": str(tattrs.get("model_sha256", "unknown")),
        # Which engine built the table (devine, micromet, features), and what to cite.
        "table_engine": str(tattrs.get("engine", "devine")),
        "table_engine_title": str(tattrs.get("engine_title", "")),
        "table_engine_citation": str(tattrs.get("engine_citation", "")),
        "software": f"devine-onnx {__version__}",
        "history": (
            f"{now}: devine-onnx {__version__} downscale {source} "
            f"(variables {u_name}/{v_name}) {how} ({options})"
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
    if nwp_wind_frame:
        attrs["nwp_wind_frame"] = f"NWP components: {nwp_wind_frame}"
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
    if synthetic_note:
        attrs["comment"] = synthetic_note
    return attrs


def coarsen_axis(values, coarsen) -> np.ndarray:
    """1-D coordinate in float64, as block centres with ``coarsen`` (whole blocks only)."""
    a = np.asarray(values, dtype=np.float64)
    if coarsen:
        a = a[: (a.size // coarsen) * coarsen].reshape(-1, coarsen).mean(axis=1)
    return a


# --------------------------------------------------------------------------- lat/lon
@lru_cache(maxsize=8)
def _to_wgs84(wkt: str) -> Transformer:
    """The transformer from the CRS ``wkt`` to WGS 84 longitude/latitude (degrees)."""
    return Transformer.from_crs(CRS.from_wkt(wkt), CRS.from_epsg(4326), always_xy=True)


def lonlat_block(y, x, wkt: str) -> np.ndarray:
    """Longitude and latitude (WGS 84, degrees east/north) of the grid points ``(y, x)``.

    Parameters
    ----------
    y, x : array_like
        1-D coordinates in the CRS ``wkt`` (its units, e.g. metres).
    wkt : str
        The CRS of ``x``/``y`` (WKT).

    Returns
    -------
    numpy.ndarray
        ``(2, len(y), len(x))`` float64: ``[0]`` longitude, ``[1]`` latitude; NaN where the
        transformation has no result.
    """
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    out = np.empty((2, y.size, x.size), dtype=np.float64)
    out[0] = x[None, :]
    out[1] = y[:, None]
    _to_wgs84(wkt).transform(out[0], out[1], inplace=True)
    out[~np.isfinite(out)] = np.nan
    return out


def lazy_lonlat(x, y, crs: CRS, block_pixels: int | None = None):
    """``(lat, lon)``: dask arrays ``(len(y), len(x))`` float64 of the grid's pixel centres
    (:func:`lonlat_block`), computed in blocks of whole rows of about ``block_pixels`` pixels
    (default :data:`LONLAT_BLOCK_PIXELS`; a task computes both of a block at once)."""
    import dask.array as dsa

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    block_pixels = LONLAT_BLOCK_PIXELS if block_pixels is None else block_pixels
    rows = max(1, int(block_pixels) // max(1, x.size))
    both = dsa.blockwise(
        lonlat_block,
        "cyx",
        dsa.from_array(y, chunks=rows),
        "y",
        dsa.from_array(x, chunks=-1),
        "x",
        new_axes={"c": 2},
        dtype=np.float64,
        meta=np.empty((0, 0, 0), dtype=np.float64),
        wkt=crs.to_wkt(),
    )
    return both[1], both[0]


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True, eq=False)
class OutputLayout:
    """Names, attributes and coordinates of a downscaled output (shared by all writers).

    Attributes
    ----------
    x, y : numpy.ndarray
        Output coordinates (block centres with coarsening), in the units of ``crs``.
    crs : pyproj.CRS
        The output grid's CRS (the table's).
    times : numpy.ndarray
        Valid times (as in the NWP input).
    var_attrs : dict
        Data variable name -> attributes, in output order (:func:`wind_variables`).
    global_attrs : dict
        Global attributes (:func:`global_attributes`).
    static : dict
        Time-independent variables (:func:`devine_onnx.tables.table.static_outputs`).
    chunk_time : int
        Time steps computed at once.
    coarsened : bool
        Whether x/y are block centres.
    spatial_chunks : (int, int) or None
        Spatial chunk of the stored output (rows, columns); None: the whole grid.
    height : float or None
        Height of the wind above ground in metres (from the forecast variable, e.g. 10 for
        ``u10``/``v10``): the scalar ``height`` coordinate; None (unknown): none.
    """

    x: np.ndarray
    y: np.ndarray
    crs: CRS
    times: np.ndarray
    var_attrs: Mapping[str, dict]
    global_attrs: Mapping[str, object]
    static: Mapping[str, xr.Variable]
    chunk_time: int
    coarsened: bool = False
    spatial_chunks: tuple[int, int] | None = None
    height: float | None = None

    gm_name = GRID_MAPPING

    def replace(self, **changes) -> OutputLayout:
        """A copy with some parts changed (the layout itself never changes)."""
        return dataclasses.replace(self, **changes)

    @property
    def names(self) -> tuple[str, ...]:
        """Data variable names, in output order."""
        return tuple(self.var_attrs)

    @property
    def shape(self) -> tuple[int, int]:
        """Output grid ``(ny, nx)``."""
        return (self.y.size, self.x.size)

    @property
    def n_times(self) -> int:
        return int(np.asarray(self.times).size)

    @property
    def time_chunk(self) -> int:
        """Time steps per stored chunk of the output."""
        return self.time_chunk_for(self.spatial_chunks or self.shape)

    def time_chunk_for(self, chunk_shape) -> int:
        """Time steps per stored chunk of ``chunk_shape`` pixels: a divisor of ``chunk_time``
        with chunks of ~4 MB at most."""
        per_step = max(1, int(chunk_shape[0]) * int(chunk_shape[1]) * 4)
        limit = max(1, min(self.chunk_time, OUTPUT_CHUNK_BYTES // per_step, self.n_times))
        return max(d for d in range(1, limit + 1) if self.chunk_time % d == 0)

    @cached_property
    def _axes_attrs(self) -> tuple[dict, dict]:
        crs = self.crs
        if crs.is_geographic:
            return (
                {"units": "degrees_east", "standard_name": "longitude", "axis": "X"},
                {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"},
            )
        unit = crs.axis_info[0].unit_name if crs.axis_info else "metre"
        unit = "m" if unit in ("metre", "meter") else unit
        centre = " (block centre)" if self.coarsened else ""
        return tuple(
            {
                "units": unit,
                "standard_name": f"projection_{a}_coordinate",
                "long_name": f"{a} coordinate of projection" + centre,
                "axis": a.upper(),
            }
            for a in ("x", "y")
        )

    @cached_property
    def gm_attrs(self) -> dict:
        """Attributes of the grid-mapping variable (CF parameters and ``crs_wkt``)."""
        gm_attrs = dict(self.crs.to_cf())
        wkt = self.crs.to_wkt()
        gm_attrs["crs_wkt"] = wkt
        gm_attrs["spatial_ref"] = wkt
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in gm_attrs.items()}

    @cached_property
    def _time_encoding(self) -> tuple[dict, object, object, object]:
        """(attributes, numbers, units, calendar): one CF encoding for the whole series."""
        times = np.asarray(self.times)
        attrs = {"standard_name": "time", "long_name": "valid time", "axis": "T"}
        if np.issubdtype(times.dtype, np.datetime64):
            num, units, calendar = xr.coding.times.encode_cf_datetime(times)
            return attrs, np.asarray(num), units, calendar
        # not datetimes (e.g. plain step numbers): no CF time semantics
        return {"long_name": "time step (as in the NWP input)"}, times, None, None

    @cached_property
    def _lonlat(self):
        return lazy_lonlat(self.x, self.y, self.crs)

    @property
    def coordinates(self) -> str:
        """The CF ``coordinates`` attribute of the ``(time, y, x)`` variables: ``lat lon``
        (``height`` when known) and the grid mapping."""
        return " ".join(["lat", "lon", *(["height"] if self.height is not None else []),
                         self.gm_name])  # fmt: skip

    def coords(self, times, lazy: bool = True) -> dict:
        """Coordinates of the output: ``time``, ``y``, ``x``, ``lat``/``lon`` (dask arrays;
        numpy with ``lazy=False``), ``height`` when known, and the grid mapping."""
        x_attrs, y_attrs = self._axes_attrs
        t = xr.Variable(("time",), np.asarray(times), self._time_encoding[0])
        lat, lon = self._lonlat
        if not lazy:
            import dask

            lat, lon = dask.compute(lat, lon, scheduler="threads")
        out = {
            "time": t,
            "y": xr.Variable(("y",), self.y, y_attrs),
            "x": xr.Variable(("x",), self.x, x_attrs),
            "lat": xr.Variable(("y", "x"), lat, _LAT_ATTRS),
            "lon": xr.Variable(("y", "x"), lon, _LON_ATTRS),
        }
        if self.height is not None:
            out["height"] = xr.Variable((), np.float64(self.height), HEIGHT_ATTRS)
        out[self.gm_name] = xr.Variable((), np.int32(0), self.gm_attrs)
        return out

    def _static(self) -> dict:
        """The static variables; those on ``(y, x)`` list ``lat lon`` in ``coordinates``."""
        out = {}
        for name, var in self.static.items():
            if tuple(var.dims[-2:]) == ("y", "x") and "coordinates" not in var.attrs:
                var = var.copy(deep=False)
                var.attrs["coordinates"] = f"lat lon {self.gm_name}"
            out[name] = var
        return out

    def template(self, lazy: bool = True) -> xr.Dataset:
        """Everything of the output but its data variables (for :mod:`devine_onnx.io.writers`);
        ``lat``/``lon`` are dask arrays unless ``lazy=False``."""
        ds = xr.Dataset(coords=self.coords(self.times, lazy), attrs=dict(self.global_attrs))
        _, num, units, calendar = self._time_encoding
        if units is not None:
            # One CF time encoding for the whole series, whatever the writer.
            ds["time"].encoding = {"units": units, "calendar": calendar, "dtype": num.dtype}
        for name, var in self._static().items():
            ds[name] = var
        return ds

    def variables(self) -> dict:
        """Data variable name -> attributes (with ``coordinates``), in output order."""
        return {
            name: {**attrs, "coordinates": self.coordinates}
            for name, attrs in self.var_attrs.items()
        }

    def dataset(self, arrays, times) -> xr.Dataset:
        """The output Dataset of data ``arrays`` (in output order, numpy or dask)."""
        data = {
            name: xr.Variable(("time", "y", "x"), arr, self.var_attrs[name])
            for name, arr in zip(self.names, arrays, strict=True)
        }
        data.update(self._static())
        return xr.Dataset(data, coords=self.coords(times), attrs=dict(self.global_attrs))


# --------------------------------------------------------------------------- writers
def memory_writer(layout: OutputLayout) -> MemoryWriter:
    """Writer of an in-memory result (``lat``/``lon`` computed, numpy)."""
    return MemoryWriter(layout.template(lazy=False), "time", layout.variables())


def file_writer(tmp, layout: OutputLayout, kind: str, complevel: int, label) -> BlockWriter:
    """The shared incremental writer, one chunk of ``layout.time_chunk`` steps at a time
    (and ``layout.spatial_chunks`` pixels when downscaling by blocks).

    ``lat``/``lon`` are written now, block of rows by block of rows, on local threads (also
    when a dask.distributed client is the default scheduler).
    """
    import dask

    template = layout.template()
    with dask.config.set(scheduler="threads"):
        writer = create_writer(
            tmp,
            template,
            "time",
            layout.variables(),
            fmt=kind,
            chunk=layout.time_chunk,
            complevel=complevel,
            threads=LOOKUP_THREADS,
            label=label,
            spatial_chunks=layout.spatial_chunks,
        )
        if kind == "zarr":  # xarray declared them without writing them (compute=False)
            _store_lazy(writer, template)
    return writer


def _store_lazy(writer, template: xr.Dataset) -> None:
    """Write the dask-backed variables of ``template`` into the Zarr store of ``writer``."""
    import dask.array as dsa
    import zarr

    names = [n for n, v in template.variables.items() if isinstance(v.data, dsa.Array)]
    if not names:
        return
    with writing(writer.label):
        group = zarr.open_group(str(writer.path), mode="r+")
        dsa.store([template[n].data for n in names], [group[n] for n in names], lock=False)


def write_output(
    output, layout: OutputLayout, run: Callable[[object], None], complevel: int = 1
) -> xr.Dataset:
    """Run ``run(writer)`` into an in-memory result (``output`` None) or into ``output``.

    The file is written in a private temporary folder next to ``output`` and renamed when
    complete (:func:`devine_onnx.io.atomic.atomic_output`: no file carries the final name
    after a failure, no existing file or link is written through), then opened lazily.
    """
    if output is None:
        writer = memory_writer(layout)
        run(writer)
        return writer.result()
    kind = output_format(output)
    with atomic_output(output) as tmp:
        writer = file_writer(tmp, layout, kind, complevel, output)
        try:
            run(writer)
            writer.finalize({})
        finally:
            writer.close()
    if kind == "zarr":
        return xr.open_zarr(output)
    return xr.open_dataset(output, engine="netcdf4", chunks={})
