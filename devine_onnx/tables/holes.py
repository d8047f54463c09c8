"""Cheap checks that a correction table is complete.

A table is *unfinished* when it still carries the progress marker of the run that wrote it:
the ``directions_done`` attribute (one process) or the ``done(angle, tile)`` variable (a
distributed run, :data:`devine_onnx.io.writers.DONE_VARIABLE`); both are removed when the run
completes, so a ``.partial`` renamed (or copied) by hand keeps them. It has *holes* when some
directions hold no value at all, or when some pixels are NaN for some directions but not for
the others: the engines give NaN for all directions or none (a pixel outside the valid disc
of DEVINE, a hole in the DEM), so such a mix means values were lost (chunk files deleted
from a Zarr table, chunks never written).

What :func:`find_holes` reads, so that large tables stay cheap to open:

- Zarr folders (format 2 or 3, unsharded) and NetCDF-4 files: only the storage metadata of
  ``acceleration`` (the list of chunk files, or HDF5's chunk index and sizes). A chunk that
  is missing is NaN. A stored chunk far smaller than its raw size (< 1/32: an all-NaN chunk
  compresses to almost nothing) is read to tell whether it is all NaN, up to
  :data:`VERIFY_BYTES` of raw values; beyond that budget small chunks count as holding values.
- A Dataset held in memory: every value (exact, per pixel).
- Contiguous (uncompressed) NetCDF variables: a regular sample of about 32 x 32 pixels of
  every direction (a direction whose sample is all NaN is read whole to confirm).
- Anything else (a lazy Dataset, e.g. a window of an opened table, a Zarr store object):
  nothing.

Holes are therefore found at the resolution of storage chunks (a whole direction for tables
written by one process, 1024 x 1024 pixel tiles for distributed ones): a chunk with a few
NaN pixels among values is not a hole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devine_onnx.errors import DevineWarning

__all__ = [
    "PROGRESS_ATTRIBUTE",
    "VERIFY_BYTES",
    "IncompleteTableWarning",
    "TableHoles",
    "find_holes",
    "progress",
]

#: Global attribute a table run sets while directions remain to compute (tables/build.py).
PROGRESS_ATTRIBUTE = "directions_done"
#: Raw bytes of small stored chunks read at most to check that they are all NaN.
VERIFY_BYTES = 256 << 20
#: A stored chunk whose size is below raw size / this ratio may be all NaN (it is read).
_SMALL_RATIO = 32


class IncompleteTableWarning(DevineWarning):
    """A correction table has directions without values, or pixels missing some directions."""


@dataclass(frozen=True)
class TableHoles:
    """What :func:`find_holes` found.

    Attributes
    ----------
    empty_directions : tuple of float
        Directions (degrees FROM, clockwise from grid north) with no value at all.
    pixels : int
        Pixels NaN for some of the other directions but not for all of them.
    total_pixels : int
        Pixels of the table grid.
    directions : int
        Directions of the table.
    checked : str
        What was read ("storage chunks", "values", "nothing").
    """

    empty_directions: tuple[float, ...] = ()
    pixels: int = 0
    total_pixels: int = 0
    directions: int = 0
    checked: str = "nothing"

    def __bool__(self) -> bool:
        return bool(self.empty_directions) or self.pixels > 0

    @property
    def all_empty(self) -> bool:
        """True when no direction holds any value."""
        return self.directions > 0 and len(self.empty_directions) == self.directions

    def describe(self) -> str:
        """``"3 of 36 directions have no value (10, 20, 30) and 1024 of 4096 pixels ..."``."""
        parts = []
        if self.empty_directions:
            shown = ", ".join(f"{a:g}" for a in self.empty_directions[:8])
            more = ", ..." if len(self.empty_directions) > 8 else ""
            parts.append(
                f"{len(self.empty_directions)} of {self.directions} directions have no value "
                f"({shown}{more})"
            )
        if self.pixels:
            about = "about " if self.checked.startswith("a sample") else ""
            parts.append(
                f"{about}{self.pixels} of {self.total_pixels} pixels "
                f"({100.0 * self.pixels / max(self.total_pixels, 1):.1f}%) are NaN for some "
                "directions but not for others"
            )
        return " and ".join(parts)


def progress(dataset) -> tuple[int, int] | None:
    """``(directions done, directions)`` when the table carries a progress marker, else None."""
    from devine_onnx.io.writers import DONE_VARIABLE

    n = int(dataset.sizes.get("angle", 0))
    if PROGRESS_ATTRIBUTE in dataset.attrs:
        try:
            return int(np.asarray(dataset.attrs[PROGRESS_ATTRIBUTE]).ravel()[0]), n
        except (TypeError, ValueError, IndexError):
            return 0, n
    if DONE_VARIABLE in dataset.variables:
        try:
            done = np.asarray(dataset[DONE_VARIABLE].values) != 0
            return int(done.reshape(done.shape[0], -1).all(axis=1).sum()), n
        except Exception:  # noqa: BLE001 - a damaged marker still marks the table unfinished
            return 0, n
    return None


def find_holes(table, variable: str = "acceleration") -> TableHoles:
    """Directions without values and pixels NaN for only some directions (module docstring).

    Parameters
    ----------
    table : devine_onnx.tables.table.CorrectionTable
        The opened table.
    variable : str
        The per-direction variable to inspect (``acceleration``: every engine writes it and
        writes the others where it writes it).
    """
    angles = np.asarray(table.angles, dtype=np.float64)
    ny, nx = table.shape
    base = {"total_pixels": ny * nx, "directions": angles.size}
    var = table.dataset[variable]
    if var.variable._in_memory:
        return _from_values(np.asarray(var.values), angles, base)
    path = table.path
    if path is None:
        return TableHoles(**base)
    grid = _storage_chunks(Path(path), variable, var.shape)
    if grid is None:
        return TableHoles(**base)
    if grid[0] == "contiguous":
        return _from_sample(Path(path), variable, angles, base)
    chunks, present, small = grid
    nan_chunk = ~present
    budget = VERIFY_BYTES
    raw = int(np.prod(chunks)) * 4
    for idx in zip(*np.nonzero(present & small), strict=True):
        if budget < raw:
            break
        budget -= raw
        sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, chunks, strict=True))
        if np.isnan(np.asarray(var[sl].values)).all():
            nan_chunk[idx] = True
    return _from_chunks(nan_chunk, chunks, (angles.size, ny, nx), angles, base)


def _from_values(values: np.ndarray, angles, base: dict) -> TableHoles:
    """Exact check of values in memory, one direction at a time (two (y, x) masks)."""
    empty = np.zeros(values.shape[0], dtype=bool)
    some = np.zeros(values.shape[1:], dtype=bool)
    every = np.ones(values.shape[1:], dtype=bool)
    for k in range(values.shape[0]):
        nan = np.isnan(values[k])
        if nan.all():
            empty[k] = True
            continue
        some |= nan
        every &= nan
    pixels = int((some & ~every).sum()) if not empty.all() else 0
    return TableHoles(tuple(float(a) for a in angles[empty]), pixels, checked="values", **base)


def _from_chunks(nan_chunk, chunks, shape, angles, base) -> TableHoles:
    ca, cy, cx = chunks
    n, ny, nx = shape
    # Per direction: every spatial chunk NaN.
    per_dir = np.repeat(nan_chunk.all(axis=(1, 2)), ca)[:n]
    rest = nan_chunk[~nan_chunk.all(axis=(1, 2))]
    pixels = 0
    if rest.size:
        mixed = rest.any(axis=0) & ~rest.all(axis=0)
        rows = np.minimum(cy, ny - np.arange(mixed.shape[0]) * cy)
        cols = np.minimum(cx, nx - np.arange(mixed.shape[1]) * cx)
        pixels = int((mixed * rows[:, None] * cols[None, :]).sum())
    return TableHoles(
        tuple(float(a) for a in angles[per_dir]), pixels, checked="storage chunks", **base
    )


def _from_sample(path: Path, variable: str, angles, base: dict) -> TableHoles:
    """Contiguous (uncompressed) NetCDF: a regular sample of about 32 x 32 pixels per
    direction (cheap hyperslab reads); a direction whose sample is all NaN is read whole to
    confirm it has no value. The pixel count is the sampled fraction times the grid size."""
    import h5py

    with h5py.File(path, "r") as f:
        dset = f[variable]
        n, ny, nx = dset.shape
        sy, sx = max(1, ny // 32), max(1, nx // 32)
        sample = np.asarray(dset[:, ::sy, ::sx], dtype=np.float32)
        nan = np.isnan(sample)
        empty = nan.all(axis=(1, 2))
        for k in np.flatnonzero(empty):
            empty[k] = bool(np.isnan(np.asarray(dset[k], dtype=np.float32)).all())
    rest = nan[~empty]
    pixels = 0
    if rest.size and not (rest.all() if empty.all() else False):
        mixed = rest.any(axis=0) & ~rest.all(axis=0)
        pixels = int(round(mixed.mean() * base["total_pixels"]))
    return TableHoles(
        tuple(float(a) for a in angles[empty]),
        pixels,
        checked=f"a sample of {sample.shape[1]} x {sample.shape[2]} pixels",
        **base,
    )


# ----------------------------------------------------------------------------- storage
def _storage_chunks(path: Path, variable: str, shape) -> tuple | None:
    """``(chunk shape, present, small)`` over the chunk grid of ``variable``, or None."""
    try:
        if path.is_dir():
            return _zarr_chunks(path / variable, tuple(shape))
        return _hdf5_chunks(path, variable, tuple(shape))
    except Exception:  # noqa: BLE001 - a check we cannot make is skipped, never an error
        return None


def _grid(shape, chunks):
    return tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))


def _zarr_chunks(folder: Path, shape) -> tuple | None:
    if (folder / ".zarray").is_file():
        meta = json.loads((folder / ".zarray").read_text())
        chunks = tuple(int(c) for c in meta["chunks"])
        sep = meta.get("dimension_separator") or "."
        prefix = ""
    elif (folder / "zarr.json").is_file():
        meta = json.loads((folder / "zarr.json").read_text())
        if any("sharding" in str(c.get("name", "")) for c in meta.get("codecs", [])):
            return None
        chunks = tuple(int(c) for c in meta["chunk_grid"]["configuration"]["chunk_shape"])
        enc = meta.get("chunk_key_encoding", {})
        sep = enc.get("configuration", {}).get("separator", "/")
        prefix = "c" + sep if enc.get("name", "default") == "default" else ""
    else:
        return None
    if tuple(meta["shape"]) != shape or len(chunks) != 3:
        return None
    grid = _grid(shape, chunks)
    present = np.zeros(grid, dtype=bool)
    small = np.zeros(grid, dtype=bool)
    raw = int(np.prod(chunks)) * np.dtype(str(meta.get("dtype", "<f4")).lstrip("|")).itemsize
    for root, _dirs, files in os.walk(folder):
        rel = os.path.relpath(root, folder)
        for name in files:
            key = name if rel == "." else os.path.join(rel, name).replace(os.sep, "/")
            if sep != "/":
                key = key.replace("/", sep)
            if prefix:
                if not key.startswith(prefix):
                    continue
                key = key[len(prefix) :]
            try:
                idx = tuple(int(k) for k in key.split(sep))
            except ValueError:
                continue  # .zattrs, zarr.json...
            if len(idx) != 3 or any(i >= g for i, g in zip(idx, grid, strict=True)):
                continue
            present[idx] = True
            small[idx] = os.path.getsize(os.path.join(root, name)) * _SMALL_RATIO < raw
    return chunks, present, small


def _hdf5_chunks(path: Path, variable: str, shape) -> tuple | None:
    import h5py

    with h5py.File(path, "r") as f:
        if variable not in f:
            return None
        dset = f[variable]
        if tuple(dset.shape) != shape or dset.ndim != 3:
            return None
        if dset.chunks is None:
            return ("contiguous",)
        chunks = tuple(int(c) for c in dset.chunks)
        grid = _grid(shape, chunks)
        present = np.zeros(grid, dtype=bool)
        small = np.zeros(grid, dtype=bool)
        raw = int(np.prod(chunks)) * dset.dtype.itemsize

        def visit(info) -> None:
            idx = tuple(o // c for o, c in zip(info.chunk_offset, chunks, strict=True))
            present[idx] = True
            small[idx] = info.size * _SMALL_RATIO < raw

        if hasattr(dset.id, "chunk_iter"):
            dset.id.chunk_iter(visit)
        else:  # pragma: no cover - HDF5 < 1.12.3
            for i in range(dset.id.get_num_chunks()):
                visit(dset.id.get_chunk_info(i))
    return chunks, present, small
