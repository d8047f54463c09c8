"""Incremental writers: one family for every large output of devine-onnx.

Both large outputs, the correction table ``acceleration(angle, y, x)``... and the downscaled
wind ``wind_speed(time, y, x)``..., are datasets whose big variables share a leading *record*
dimension (``angle`` or ``time``) whose length and coordinate are known in advance. They are
written the same way:

1. :func:`create_writer` writes everything small (coordinates, grid mapping, elevation,
   attributes) from an xarray *template* and declares the record variables, chunked
   ``(chunk, ny, nx)``, float32, NaN as fill value;
2. :meth:`BlockWriter.write` stores records ``a:b`` of every record variable; a progress
   attribute (:meth:`BlockWriter.set_attrs`) lets an interrupted run resume;
3. :meth:`BlockWriter.finalize` sets the final attributes and removes the progress marker.

Writers in several processes at once (a dask.distributed table, one task per direction
batch, see :mod:`devine_onnx.tables.distributed`) cannot share one progress counter: a Zarr
output created with ``done_tiles=n`` holds a small marker variable ``done(record, tile)``
(uint8, one chunk per cell, so no two writers ever touch the same chunk), set by
:meth:`BlockWriter.mark_done` after a task's records are written and read back with
:meth:`BlockWriter.done_markers`; :meth:`BlockWriter.finalize` deletes it.

Backends:

- NetCDF-4 (``.nc``): netCDF-C (via xarray and ``netCDF4``) creates the file; the record chunks
  are then shuffled and deflated in parallel threads (ISA-L where available) and written as
  they are with h5py (:class:`~devine_onnx.io.hdf5_chunks.ChunkAppender`). The file is an
  ordinary NetCDF-4 file with the standard filters.
- Zarr format 2 (``.zarr``): xarray writes the metadata (``compute=False``), records are
  assigned to their slices; chunks never written read as NaN.
- Memory (:class:`MemoryWriter`): the same interface, for results returned in memory.

Outputs are written under a temporary name by the callers (:mod:`devine_onnx.io.atomic`); a
failed write (disk full, permissions) is an :class:`~devine_onnx.errors.OutputError` naming
the output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr

from devine_onnx.errors import OutputError
from devine_onnx.io._dask_probe import no_distributed_probe

__all__ = [
    "DONE_VARIABLE",
    "OUTPUT_FORMATS",
    "BlockWriter",
    "MemoryWriter",
    "create_writer",
    "hdf5_lock",
    "inspect_output",
    "open_writer",
    "output_format",
    "writing",
]

#: Output suffixes and their formats (the one list for tables and winds).
OUTPUT_FORMATS = {".nc": "netcdf", ".nc4": "netcdf", ".netcdf": "netcdf", ".zarr": "zarr"}
#: Per-(record, tile) done markers of a Zarr output written by several processes.
DONE_VARIABLE = "done"
_DONE_ATTRS = {
    "long_name": "1 when the records of this tile are completely written (progress marker)",
    "comment": "removed when the output is complete",
}


def output_format(path: str | os.PathLike) -> str:
    """``"netcdf"`` or ``"zarr"`` from the suffix of ``path``; :class:`OutputError` otherwise."""
    suffix = Path(path).suffix.lower()
    fmt = OUTPUT_FORMATS.get(suffix)
    if fmt is None:
        raise OutputError(
            f"{path}: unknown output format {suffix or '(no suffix)'!r}; name the output .nc "
            "(NetCDF-4) or .zarr (Zarr)"
        )
    return fmt


@contextmanager
def writing(label):
    """Turn a failed write (disk full, permissions, I/O error) into an OutputError naming it."""
    try:
        yield
    except OSError as exc:
        raise OutputError(
            f"{label}: writing failed ({exc.strerror or exc}); check the free disk space and "
            "the permissions of its folder, then run again"
        ) from exc


def hdf5_lock():
    """The lock xarray's netCDF4 backend holds around HDF5 calls (HDF5 is not thread-safe)."""
    try:
        from xarray.backends.netCDF4_ import NETCDF4_PYTHON_LOCK

        return NETCDF4_PYTHON_LOCK
    except ImportError:  # pragma: no cover - xarray internals moved
        import threading

        return threading.Lock()


def _zarr_kwargs() -> dict:
    import zarr

    # Zarr format 2 everywhere: readable by every netCDF/zarr tool of today.
    return {"zarr_format": 2} if int(zarr.__version__.split(".")[0]) >= 3 else {}


def _plain(value):
    """Attribute values as netCDF/zarr-compatible Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


class BlockWriter:
    """Write records ``a:b`` of the record variables of a created output.

    Use :func:`create_writer` to create an output, :func:`open_writer` to reopen a partial one.

    Attributes
    ----------
    path : pathlib.Path
        The file or store being written (a temporary name, see :mod:`devine_onnx.io.atomic`).
    names : tuple of str
        The record variables, in the order :meth:`write` expects them when given a sequence.
    """

    def __init__(self, path, names, label=None):
        self.path = Path(path)
        self.names = tuple(names)
        self.label = label or self.path

    def write(self, a: int, b: int, arrays) -> None:
        """Store records ``a:b``: ``arrays`` maps each name (or is a sequence in order)."""
        raise NotImplementedError

    def write_region(self, a: int, b: int, y0: int, x0: int, arrays) -> None:
        """Store ``[a:b, y0:y0 + h, x0:x0 + w]`` of every record variable (spatial blocks).

        ``arrays`` as in :meth:`write`, each ``(b - a, h, w)``. Regions aligned on the chunks
        (``spatial_chunks`` of :func:`create_writer`) write whole chunks only.
        """
        raise NotImplementedError

    def set_attrs(self, attrs: Mapping) -> None:
        """Set global attributes now (e.g. a progress marker) and make them durable."""
        raise NotImplementedError

    def finalize(self, attrs: Mapping, remove=()) -> None:
        """Set the final global attributes and delete those named in ``remove`` (and the
        done markers, if any)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def mark_done(self, a: int, b: int, tile: int = 0) -> None:
        """Mark records ``a:b`` of ``tile`` as completely written (outputs with done markers)."""
        raise NotImplementedError(f"{type(self).__name__} has no done markers")

    def done_markers(self) -> np.ndarray | None:
        """Done markers as a bool array ``(records, tiles)``; None without markers."""
        return None

    def _as_list(self, arrays) -> list[np.ndarray]:
        if isinstance(arrays, Mapping):
            return [arrays[n] for n in self.names]
        return list(arrays)


class MemoryWriter(BlockWriter):
    """The writer interface over numpy arrays; :meth:`result` returns the dataset."""

    def __init__(self, template: xr.Dataset, record_dim: str, variables: Mapping[str, dict]):
        super().__init__("<memory>", variables, label="memory")
        self.template = template
        self.record_dim = record_dim
        self.variables = dict(variables)
        n = template.sizes[record_dim]
        ny, nx = template.sizes["y"], template.sizes["x"]
        self.arrays = {name: np.full((n, ny, nx), np.nan, np.float32) for name in self.names}

    def write(self, a, b, arrays):
        for name, arr in zip(self.names, self._as_list(arrays), strict=True):
            self.arrays[name][a:b] = arr

    def write_region(self, a, b, y0, x0, arrays):
        for name, arr in zip(self.names, self._as_list(arrays), strict=True):
            h, w = np.shape(arr)[1:]
            self.arrays[name][a:b, y0 : y0 + h, x0 : x0 + w] = arr

    def set_attrs(self, attrs):
        pass

    def finalize(self, attrs, remove=()):
        self.template.attrs.update(attrs)
        for key in remove:
            self.template.attrs.pop(key, None)

    def close(self):
        pass

    def result(self) -> xr.Dataset:
        ds = self.template.copy()
        dims = (self.record_dim, "y", "x")
        for name in self.names:
            ds[name] = xr.Variable(dims, self.arrays[name], dict(self.variables[name]))
        return ds


class _NetCDFWriter(BlockWriter):
    def __init__(self, path, names, label=None, threads: int = 2):
        import h5py

        from devine_onnx.io.hdf5_chunks import ChunkAppender

        super().__init__(path, names, label)
        with writing(self.label):
            self.h5 = h5py.File(self.path, "r+")
        self.appender = ChunkAppender(self.h5, self.names, threads=threads)

    @staticmethod
    def create(
        path, template, record_dim, variables, chunk, complevel, threads, label, spatial=None
    ):
        import netCDF4

        ny, nx = template.sizes["y"], template.sizes["x"]
        cy, cx = (ny, nx) if spatial is None else (min(spatial[0], ny), min(spatial[1], nx))
        cy, cx = max(1, cy), max(1, cx)
        encoding = {}
        for name in template.variables:
            var = template[name]
            if name in template.coords and var.ndim <= 1:
                encoding[name] = {"_FillValue": None}
            elif var.ndim >= 2:
                encoding[name] = {"zlib": True, "complevel": 1, "_FillValue": _fill_value(var)}
                if var.chunks:  # dask-backed (e.g. lat/lon): stored in its own blocks
                    encoding[name]["chunksizes"] = tuple(c[0] for c in var.chunks)
        with writing(label):
            with no_distributed_probe():  # xarray would import dask.distributed (0.3-0.8 s)
                template.to_netcdf(path, engine="netcdf4", format="NETCDF4", encoding=encoding)
            nc = netCDF4.Dataset(str(path), "a")
            try:
                for name, attrs in variables.items():
                    v = nc.createVariable(
                        name,
                        "f4",
                        (record_dim, "y", "x"),
                        zlib=complevel > 0,
                        complevel=max(complevel, 1),
                        shuffle=complevel > 0,
                        chunksizes=(chunk, cy, cx),
                        fill_value=np.float32(np.nan),
                    )
                    v.setncatts({k: _plain(val) for k, val in attrs.items()})
            finally:
                nc.close()
        return _NetCDFWriter(path, tuple(variables), label, threads)

    def write(self, a, b, arrays):
        with writing(self.label):
            self.appender.append(a, b, [np.asarray(x) for x in self._as_list(arrays)])
            self.h5.flush()

    def write_region(self, a, b, y0, x0, arrays):
        with writing(self.label):
            self.appender.write_region(a, b, y0, x0, [np.asarray(x) for x in self._as_list(arrays)])
            self.h5.flush()

    def set_attrs(self, attrs):
        with writing(self.label):
            for key, value in attrs.items():
                self.h5.attrs[key] = _h5_attr(value)
            self.h5.flush()

    def finalize(self, attrs, remove=()):
        with writing(self.label):
            for key, value in attrs.items():
                self.h5.attrs[key] = _h5_attr(value)
            for key in remove:
                if key in self.h5.attrs:
                    del self.h5.attrs[key]

    def close(self):
        if self.h5 is not None:
            with writing(self.label):
                self.h5.close()
            self.h5 = None


def _h5_attr(value):
    """An HDF5 attribute value that netCDF-C reads back as the same netCDF attribute."""
    import h5py

    if isinstance(value, str):
        # Fixed-length UTF-8 strings read back as NC_CHAR text, like netCDF-C's own.
        return np.array(value.encode(), dtype=h5py.string_dtype("utf-8", len(value.encode()) or 1))
    if isinstance(value, bool):
        return np.int8(value)
    if isinstance(value, int):
        return np.int64(value)
    return value


class _ZarrWriter(BlockWriter):
    def __init__(self, path, names, label=None):
        import zarr

        super().__init__(path, names, label)
        with writing(self.label):
            self.group = zarr.open_group(str(self.path), mode="r+")

    @staticmethod
    def create(path, template, record_dim, variables, chunk, label, spatial=None, done_tiles=0):
        import dask.array as dsa

        n, ny, nx = template.sizes[record_dim], template.sizes["y"], template.sizes["x"]
        cy, cx = (ny, nx) if spatial is None else (min(spatial[0], ny), min(spatial[1], nx))
        cy, cx = max(1, cy), max(1, cx)
        ds = template.copy()
        encoding = {}
        for name, attrs in variables.items():
            # Placeholders never computed (compute=False): no chunk exists until written.
            ph = dsa.full((n, ny, nx), np.nan, dtype=np.float32, chunks=(chunk, cy, cx))
            ds[name] = ((record_dim, "y", "x"), ph, dict(attrs))
            encoding[name] = {"_FillValue": np.float32(np.nan), "chunks": (chunk, cy, cx)}
        for name in template.data_vars:
            if template[name].ndim >= 2:
                encoding[name] = {"_FillValue": _fill_value(template[name])}
                if spatial is not None and template[name].dims[-2:] == ("y", "x"):
                    encoding[name]["chunks"] = (*template[name].shape[:-2], cy, cx)
        with writing(label):
            ds.to_zarr(
                str(path),
                mode="w",
                compute=False,
                encoding=encoding,
                consolidated=False,  # attributes change while writing; consolidated at the end
                **_zarr_kwargs(),
            )
        writer = _ZarrWriter(path, tuple(variables), label)
        if done_tiles:
            writer.add_done_markers(done_tiles, record_dim)
        return writer

    def add_done_markers(self, tiles: int, record_dim: str, done=None) -> None:
        """Create the ``done(record_dim, tile)`` markers; ``done``: records already written
        (bool per record, e.g. from a single-process run's counter)."""
        n = self.group[self.names[0]].shape[0]
        with writing(self.label):
            arr = _create_array(
                self.group,
                DONE_VARIABLE,
                shape=(n, int(tiles)),
                chunks=(1, 1),
                dtype="uint8",
                fill_value=0,
                attrs={"_ARRAY_DIMENSIONS": [record_dim, "tile"], **_DONE_ATTRS},
            )
            if done is not None:
                for i in np.flatnonzero(np.asarray(done, dtype=bool)):
                    arr[int(i), :] = 1

    def mark_done(self, a, b, tile=0):
        with writing(self.label):
            self.group[DONE_VARIABLE][a:b, tile] = 1

    def done_markers(self):
        if DONE_VARIABLE not in self.group:
            return None
        with writing(self.label):
            return np.asarray(self.group[DONE_VARIABLE][:]) != 0

    def write(self, a, b, arrays):
        with writing(self.label):
            self._write(a, b, self._as_list(arrays))

    def write_region(self, a, b, y0, x0, arrays):
        with writing(self.label):
            for name, arr in zip(self.names, self._as_list(arrays), strict=True):
                h, w = np.shape(arr)[1:]
                self.group[name][a:b, y0 : y0 + h, x0 : x0 + w] = np.asarray(arr, np.float32)

    def _write(self, a, b, arrays):
        for name, arr in zip(self.names, arrays, strict=True):
            self.group[name][a:b] = np.asarray(arr, dtype=np.float32)

    def set_attrs(self, attrs):
        with writing(self.label):
            self.group.attrs.update({k: _plain(v) for k, v in attrs.items()})

    def finalize(self, attrs, remove=()):
        import zarr

        with writing(self.label):
            self.group.attrs.update({k: _plain(v) for k, v in attrs.items()})
            for key in remove:
                if key in self.group.attrs:
                    del self.group.attrs[key]
            if DONE_VARIABLE in self.group:
                del self.group[DONE_VARIABLE]
            zarr.consolidate_metadata(str(self.path))

    def close(self):
        self.group = None


def _fill_value(var):
    """NaN for float variables; none for flags (e.g. a table's uint8 ``edge_influence``)."""
    return np.float32(np.nan) if np.issubdtype(var.dtype, np.floating) else None


def _create_array(group, name, *, shape, chunks, dtype, fill_value, attrs):
    """A new array in a Zarr group (zarr-python 2 and 3)."""
    if hasattr(group, "create_array"):  # zarr-python >= 3
        return group.create_array(
            name=name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value,
            attributes=attrs,
        )  # fmt: skip
    arr = group.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value)
    arr.attrs.update(attrs)
    return arr


def create_writer(
    path,
    template: xr.Dataset,
    record_dim: str,
    variables: Mapping[str, dict],
    *,
    fmt: str | None = None,
    chunk: int = 1,
    complevel: int = 1,
    threads: int = 2,
    label=None,
    spatial_chunks: tuple[int, int] | None = None,
    done_tiles: int = 0,
) -> BlockWriter:
    """Create an output from ``template`` and declare its record variables.

    Parameters
    ----------
    path
        File (``.nc``) or store (``.zarr``) to create (overwritten; a symbolic link is
        refused, never followed).
    template : xarray.Dataset
        Everything small: coordinates (the record coordinate with all its values), grid
        mapping, 2-D variables, global attributes. The ``y``/``x`` sizes give the shape.
    record_dim : str
        The leading dimension of the record variables (``"angle"``, ``"time"``).
    variables : mapping
        Record variable name -> attributes. Stored as float32, NaN fill value.
    fmt : {"netcdf", "zarr"}, optional
        Default: from the suffix of ``label`` or ``path``.
    chunk : int
        Records per chunk (the spatial chunk is the whole grid).
    complevel : int
        NetCDF deflate level 0-9 (0: uncompressed); Zarr uses its default compressor.
    threads : int
        Threads compressing NetCDF chunks in parallel.
    label
        Name used in error messages (the final output name rather than the temporary one).
    spatial_chunks : (int, int), optional
        Chunk rows and columns (default: the whole grid), for outputs written or read by
        spatial blocks (:meth:`BlockWriter.write_region`).
    done_tiles : int
        Zarr only: > 0 creates the done markers ``done(record_dim, tile)`` with that many tiles
        (see :meth:`BlockWriter.mark_done`), for outputs written by several processes.
    """
    from devine_onnx.io.atomic import note_created

    label = label or path
    fmt = fmt or output_format(label)
    chunk = max(1, int(chunk))
    if os.path.islink(path):  # never write through a link (e.g. a planted OUTPUT.partial)
        raise OutputError(
            f"{label}: {path} is a symbolic link (not made by devine-onnx); delete the link "
            "(what it points to is not touched) and run again"
        )
    if fmt == "zarr":
        writer = _ZarrWriter.create(
            path, template, record_dim, variables, chunk, label, spatial_chunks, int(done_tiles)
        )
    else:
        if done_tiles:
            raise ValueError("done_tiles applies to Zarr outputs only")
        netcdf_args = (chunk, int(complevel), threads, label, spatial_chunks)
        writer = _NetCDFWriter.create(path, template, record_dim, variables, *netcdf_args)
    note_created(path)  # the partial this run may rename (devine_onnx.io.atomic)
    return writer


def open_writer(path, names, *, fmt: str, threads: int = 2, label=None) -> BlockWriter:
    """Reopen a partial output made by :func:`create_writer` to write more records."""
    if fmt == "zarr":
        return _ZarrWriter(path, names, label)
    return _NetCDFWriter(path, names, label, threads)


def inspect_output(path, record_dim: str, variable: str, fmt: str) -> dict | None:
    """Global attributes, record coordinate and grid shape of a partial output, or None.

    ``"done"`` is the done markers (bool ``(records, tiles)``, see :meth:`BlockWriter.mark_done`)
    of a Zarr output that has them, else None. None means unreadable (e.g. a file cut short by
    a crash): the caller starts over.
    """
    try:
        if fmt == "zarr":
            import zarr

            g = zarr.open_group(str(path), mode="r")
            done = np.asarray(g[DONE_VARIABLE][:]) != 0 if DONE_VARIABLE in g else None
            return {
                "attrs": {k: _plain(v) for k, v in g.attrs.items()},
                "records": np.asarray(g[record_dim][:]),
                "shape": tuple(g[variable].shape[1:]),
                "done": done,
            }
        import netCDF4

        with hdf5_lock(), netCDF4.Dataset(str(path), "r") as nc:
            return {
                "attrs": {k: _plain(nc.getncattr(k)) for k in nc.ncattrs()},
                "records": np.asarray(nc.variables[record_dim][:]),
                "shape": tuple(nc.variables[variable].shape[1:]),
                "done": None,
            }
    except Exception:  # noqa: BLE001 - anything unreadable is started over
        return None
