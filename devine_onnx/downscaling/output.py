"""The downscaled output: its layout (:class:`OutputLayout`) and the writer of a run.

An :class:`OutputLayout` is built once from explicit parts (grid, times, variables, global
attributes, static variables) and never changed afterwards; the table and per-step drivers
build theirs with :func:`wind_variables`, :func:`global_attributes` and
:func:`static_variables`. :func:`write_output` runs a driver into an in-memory result or an
atomically written NetCDF/Zarr file (:mod:`devine_onnx.io.writers`) and opens it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property

import numpy as np
import xarray as xr
from pyproj import CRS

from devine_onnx._version import __version__
from devine_onnx.io.atomic import atomic_output
from devine_onnx.io.writers import BlockWriter, MemoryWriter, create_writer, output_format

from .kernel import coarsen_any, coarsen_mean
from .lookup import LOOKUP_THREADS

__all__ = [
    "GRID_MAPPING",
    "OUTPUT_CHUNK_BYTES",
    "VERTICAL_ATTRS",
    "VERTICAL_NAME",
    "OutputLayout",
    "file_writer",
    "global_attributes",
    "memory_writer",
    "static_variables",
    "wind_variables",
    "write_output",
]

#: Target size of one compressed output chunk in bytes (time steps per chunk follow from it).
OUTPUT_CHUNK_BYTES = 4 << 20
#: Name of the grid-mapping variable of every output.
GRID_MAPPING = "spatial_ref"
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


def static_variables(elevation=None, edge_influence=None, coarsen=None) -> dict:
    """Time-independent outputs on the output grid: ``elevation`` (block means with
    ``coarsen``; which altitude each wind value stands for) and ``edge_influence`` (a block
    is flagged when any of its pixels is; docs/method.md §9.1). Each is a ``(y, x)``
    DataArray or None (left out)."""
    out = {}
    gm = GRID_MAPPING
    if elevation is not None and tuple(elevation.dims) == ("y", "x"):
        z = np.asarray(elevation.values, dtype=np.float32)
        if coarsen:
            z = coarsen_mean(z[None], coarsen)[0]
        attrs = {
            "standard_name": "surface_altitude",
            "long_name": "terrain elevation of the correction table"
            + (" (block mean)" if coarsen else ""),
            "units": "m",
            "grid_mapping": gm,
        }
        out["elevation"] = xr.Variable(("y", "x"), z.astype(np.float32), attrs)
    if edge_influence is not None and tuple(edge_influence.dims) == ("y", "x"):
        flag = np.asarray(edge_influence.values) == 1
        if coarsen:
            flag = coarsen_any(flag, coarsen)
        attrs = {**edge_influence.attrs, "grid_mapping": gm}
        attrs["comment"] = (
            "1 where the correction table's value was influenced, for some direction, by the "
            "edge of its DEM or of its computed window (docs/method.md §9.1); the wind there "
            "is less reliable. " + str(attrs.get("comment", ""))
        ).strip()
        out["edge_influence"] = xr.Variable(("y", "x"), flag.astype(np.uint8), attrs)
    return out


def coarsen_axis(values, coarsen) -> np.ndarray:
    """1-D coordinate in float64, as block centres with ``coarsen`` (whole blocks only)."""
    a = np.asarray(values, dtype=np.float64)
    if coarsen:
        a = a[: (a.size // coarsen) * coarsen].reshape(-1, coarsen).mean(axis=1)
    return a


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
        Time-independent variables (:func:`static_variables`).
    chunk_time : int
        Time steps computed at once.
    coarsened : bool
        Whether x/y are block centres.
    spatial_chunks : (int, int) or None
        Spatial chunk of the stored output (rows, columns); None: the whole grid.
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

    def coords(self, times) -> dict:
        x_attrs, y_attrs = self._axes_attrs
        t = xr.Variable(("time",), np.asarray(times), self._time_encoding[0])
        return {
            "time": t,
            "y": xr.Variable(("y",), self.y, y_attrs),
            "x": xr.Variable(("x",), self.x, x_attrs),
            self.gm_name: xr.Variable((), np.int32(0), self.gm_attrs),
        }

    def template(self) -> xr.Dataset:
        """Everything of the output but its data variables (for :mod:`devine_onnx.io.writers`)."""
        ds = xr.Dataset(coords=self.coords(self.times), attrs=dict(self.global_attrs))
        _, num, units, calendar = self._time_encoding
        if units is not None:
            # One CF time encoding for the whole series, whatever the writer.
            ds["time"].encoding = {"units": units, "calendar": calendar, "dtype": num.dtype}
        for name, var in self.static.items():
            ds[name] = var
        return ds

    def variables(self) -> dict:
        """Data variable name -> attributes (with ``coordinates``), in output order."""
        return {
            name: {**attrs, "coordinates": self.gm_name} for name, attrs in self.var_attrs.items()
        }

    def dataset(self, arrays, times) -> xr.Dataset:
        """The output Dataset of data ``arrays`` (in output order, numpy or dask)."""
        data = {
            name: xr.Variable(("time", "y", "x"), arr, self.var_attrs[name])
            for name, arr in zip(self.names, arrays, strict=True)
        }
        data.update(self.static)
        return xr.Dataset(data, coords=self.coords(times), attrs=dict(self.global_attrs))


# --------------------------------------------------------------------------- writers
def memory_writer(layout: OutputLayout) -> MemoryWriter:
    """Writer of an in-memory result."""
    return MemoryWriter(layout.template(), "time", layout.variables())


def file_writer(tmp, layout: OutputLayout, kind: str, complevel: int, label) -> BlockWriter:
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
        threads=LOOKUP_THREADS,
        label=label,
        spatial_chunks=layout.spatial_chunks,
    )


def write_output(
    output, layout: OutputLayout, run: Callable[[object], None], complevel: int = 1
) -> xr.Dataset:
    """Run ``run(writer)`` into an in-memory result (``output`` None) or into ``output``.

    The file is written under ``<output>.partial`` and renamed when complete (no file carries
    the final name after a failure), then opened lazily and returned.
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
