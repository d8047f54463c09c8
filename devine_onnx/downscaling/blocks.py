"""Downscaling by spatial blocks: tables larger than memory (docs/method.md §10).

:func:`~devine_onnx.downscaling.api.downscale` normally holds the whole table
``(n_angles, ny, nx)`` in memory and streams the forecast through it (:mod:`.stream`). When the table does not
fit in ``max_memory`` (or ``block_size`` asks for it), the grid is cut into blocks of whole
``coarsen`` blocks, and each block in turn:

1. reads its part of the table, ``[all angles, y0:y1, x0:x1]`` (acceleration, alpha and
   vertical);
2. takes the rows of the regridding weights of its pixels (the weights are per target
   pixel) and the box of NWP points those rows use;
3. streams the whole time range through the same kernel as the in-memory path
   (:func:`~devine_onnx.downscaling.kernel.downscale_chunk`, in the time loop of
   :mod:`.timeloop`), reading only that box of the forecast;
4. writes ``[time chunk, y0:y1, x0:x1]`` regions of the output, whose chunks are the blocks
   (NetCDF: whole chunks compressed in parallel and written directly; Zarr: region writes).

Blocks run one after the other, or as dask.distributed tasks (``workers``/``scheduler``, Zarr
output only): each task reads its block of the table and writes its own chunks, so no two
tasks touch the same chunk.

Each output value is computed by the same arithmetic as in the in-memory path, so the results
are identical. Memory is bounded by the block (its table values, its weights and one or two
time chunks of its output) plus fixed buffers; what still grows with the table is the
regridding weights object of the whole grid (about 37 bytes per pixel against 2,880 for a
360-direction table of two variables). Blocks without any table value or outside the NWP
grid are not computed: their output stays NaN (the fill value).

The table is read once when its chunks fit in the blocks (a table stored in spatial chunks,
e.g. a Zarr table). A table stored in larger chunks (one direction x the whole grid per
chunk, as ``corrections`` writes NetCDF) would have every chunk decompressed by every block
that touches it, i.e. be read about ``n_blocks`` times; such a table is first copied, a few
directions at a time, into a scratch Zarr store chunked ``(directions, block)`` next to
the output (deleted at the end; a note says so): one more pass over the table and about
its compressed size on disk, instead of ``n_blocks`` passes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devine_onnx._cluster import release_memory
from devine_onnx.errors import OptionError, option
from devine_onnx.io.writers import MemoryWriter
from devine_onnx.progress import progress_bar
from devine_onnx.regrid.weights import RegridWeights
from devine_onnx.tables.table import CorrectionTable

from . import kernel as _kernel
from .timeloop import read_inputs, stream

__all__ = [
    "BASELINE_BYTES",
    "PIXEL_BYTES",
    "WORK_BYTES",
    "CLUSTER_BLOCK",
    "BlockPlan",
    "block_weights",
    "check_cluster",
    "cluster_plan",
    "memory_need",
    "plan_blocks",
    "release_memory",
    "reorder_table",
    "run_block",
    "run_blocks",
]

LOGGER = logging.getLogger("devine_onnx")

#: The interpreter and its libraries (numpy, xarray, netCDF/HDF5, Zarr, dask, pyproj...),
#: not data: ≈ 210 MB measured after the imports of a ``downscale`` run.
BASELINE_BYTES = 256 << 20
#: Working memory that does not depend on the block size: lookup sub-chunks of
#: ``MAX_BLOCK_ELEMENTS`` pixel-steps with their temporaries (and block means), table pieces
#: of 32 MB and their decoded chunks, two time chunks of NWP wind, the readers' and writers'
#: buffers and caches (measured: ≈ 230 MB more after the first block than before it).
WORK_BYTES = 320 << 20
#: Per table pixel, besides its table values and outputs: meridian convergence (float64 and
#: float32), data mask, regridding weights of the block (rows, sparse matrices).
PIXEL_BYTES = 128
#: Output chunks alive at once, counted in raw bytes: the chunk being computed, the one
#: being written in the background, and its compressed (or padded) copies.
OUTPUT_COPIES = 3
#: Smallest block side considered sensible (pixels), unless the table is smaller.
MIN_BLOCK = 32
#: Reorder the table into a scratch store when blocks would read it this many times or more.
REORDER_FACTOR = 3.0
#: Block side (table pixels) of a cluster run without ``max_memory`` or ``block_size``.
CLUSTER_BLOCK = 1024


# --------------------------------------------------------------------------- options
def check_cluster(workers, scheduler, output) -> None:
    """Refuse what block downscaling on a dask cluster cannot do, before any work."""
    from devine_onnx._cluster import check_workers, import_distributed
    from devine_onnx.errors import OutputError
    from devine_onnx.io.writers import output_format

    check_workers(workers, scheduler)
    which = option("workers") if workers is not None else option("scheduler")
    if output is None or output_format(output) != "zarr":
        raise OutputError(
            f"{which}: the workers write their blocks into one Zarr store, which a NetCDF file "
            "or an in-memory result cannot be; give an output named .zarr"
        )
    import_distributed()


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class BlockPlan:
    """How the table grid is cut: blocks of ``block`` table pixels over ``extent``.

    ``extent`` is the part of the table the output covers (whole ``coarsen`` blocks);
    blocks at the south and east edges may be smaller.
    """

    block: tuple[int, int]
    extent: tuple[int, int]
    coarsen: int = 1
    #: Copy the table into a scratch store chunked by blocks first (its chunks are larger).
    reorder: bool = False

    @property
    def out_block(self) -> tuple[int, int]:
        """Output pixels of a (full) block: the spatial chunk of the output."""
        return self.block[0] // self.coarsen, self.block[1] // self.coarsen

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.extent[0] / self.block[0]) * math.ceil(self.extent[1] / self.block[1])

    def blocks(self) -> Iterator[tuple[int, int, int, int]]:
        """``(y0, y1, x0, x1)`` of each block in table pixels, row by row."""
        (by, bx), (ny, nx) = self.block, self.extent
        for y0 in range(0, ny, by):
            for x0 in range(0, nx, bx):
                yield y0, min(ny, y0 + by), x0, min(nx, x0 + bx)


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n < 1e11 else f"{n / 1e9:.0f} GB"


def _weights_bytes(w: RegridWeights) -> int:
    return int(w.indices.nbytes + w.weights.nbytes + w.valid.nbytes)


def memory_need(pixels: int, *, n_angles: int, n_tables: int, n_outputs: int, chunk_time: int,
                coarsen: int, weights_bytes: int) -> int:  # fmt: skip
    """Estimated peak memory (bytes) of downscaling ``pixels`` table pixels at once.

    The table values (``n_angles x n_tables`` float32 per pixel), :data:`PIXEL_BYTES` per
    pixel, :data:`OUTPUT_COPIES` time chunks of the ``n_outputs`` float32 outputs, the
    weights of the whole grid, :data:`WORK_BYTES` and :data:`BASELINE_BYTES`.
    """
    per_pixel = (
        n_angles * n_tables * 4
        + PIXEL_BYTES
        + OUTPUT_COPIES * chunk_time * n_outputs * 4 / (coarsen * coarsen)
    )
    return int(BASELINE_BYTES + WORK_BYTES + weights_bytes + pixels * per_pixel)


def _align(size: int, extent: int, unit: int, chunk: int) -> int:
    """``size`` rounded down to whole ``unit`` (and whole storage chunks when they fit)."""
    if size >= extent:
        return extent
    if chunk < extent:
        both = unit * chunk // math.gcd(unit, chunk)
        if both <= size:
            unit = both
    return max(unit, size // unit * unit)


def _read_factor(plan: BlockPlan, chunks: tuple[int, int]) -> float:
    """How many times the blocks read each storage chunk of the table, on average."""
    factor = 1.0
    for b, n, c in zip(plan.block, plan.extent, chunks, strict=True):
        n_chunks = math.ceil(n / c)
        touches = sum(
            (min(n, y0 + b) - 1) // c - y0 // c + 1 for y0 in range(0, n, b)
        )  # chunks each block overlaps, summed
        factor *= touches / n_chunks
    return factor


def plan_blocks(table, weights: RegridWeights, *, n_outputs: int, chunk_time: int, coarsen,
                max_memory: int | None, block_size: tuple[int, int] | None) -> BlockPlan | None:  # fmt: skip
    """The block plan of a run, or None to hold the whole table in memory.

    ``table``: a :class:`~devine_onnx.tables.table.CorrectionTable` (or what its ``open``
    accepts).

    ``block_size`` forces blocks; otherwise blocks are used when :func:`memory_need` of the
    whole table exceeds ``max_memory``, as large as ``max_memory`` allows (whole ``coarsen``
    blocks, aligned on the table's storage chunks where they fit). Says what it chose in a
    note (the ``devine_onnx`` logger).

    Raises
    ------
    OptionError
        ``max_memory`` too small for any block.
    """
    if max_memory is None and block_size is None:
        return None
    table = CorrectionTable.open(table)
    c = coarsen or 1
    n_angles, (ny, nx) = table.angles.size, table.shape
    n_tables = len(table.variables)
    extent = (ny // c * c, nx // c * c)
    stored = table.chunks
    chunks = stored or (ny, nx)
    table_bytes = n_angles * ny * nx * 4 * n_tables
    sizes = f"{_gb(table_bytes)}: {n_angles} directions x {ny} x {nx} pixels x {n_tables} variables"
    kw = dict(
        n_angles=n_angles,
        n_tables=n_tables,
        n_outputs=n_outputs,
        chunk_time=chunk_time,
        coarsen=c,
        weights_bytes=_weights_bytes(weights),
    )
    if block_size is not None:
        by, bx = min(block_size[0], extent[0]), min(block_size[1], extent[1])
        plan = BlockPlan((by, bx), extent, c)
        why = f"{option('block_size', f'{block_size[0]}x{block_size[1]}')}"
    else:
        need = memory_need(ny * nx, **kw)
        if need <= max_memory:
            return None
        room = max_memory - memory_need(0, **kw)
        per_pixel = (memory_need(10**6, **kw) - memory_need(0, **kw)) / 10**6
        pixels = int(room / per_pixel) if room > 0 else 0
        smallest = min(extent[0], max(c, MIN_BLOCK)) * min(extent[1], max(c, MIN_BLOCK))
        if pixels < smallest:
            floor = memory_need(smallest, **kw)
            raise OptionError(
                f"{option('max_memory', _gb(max_memory))}: too small to downscale this table "
                f"({sizes}) even by blocks: the libraries, the regridding weights of the "
                f"whole grid ({_gb(kw['weights_bytes'])}) and the working buffers need about "
                f"{_gb(floor)}; allow more memory"
            )
        side = math.isqrt(pixels)
        bx = _align(min(extent[1], side), extent[1], c, chunks[1])
        by = _align(min(extent[0], pixels // bx), extent[0], c, chunks[0])
        plan = BlockPlan((by, bx), extent, c)
        why = (
            f"the table ({sizes}) and its buffers need about {_gb(need)}, more than "
            f"{option('max_memory', _gb(max_memory))}"
        )
    LOGGER.info(
        "%s: downscaling by blocks of %d x %d table pixels (%d blocks), each over the whole "
        "time range (about %s in memory)",
        why,
        plan.block[0],
        plan.block[1],
        plan.n_blocks,
        _gb(memory_need(plan.block[0] * plan.block[1], **kw)),
    )
    factor = _read_factor(plan, chunks)
    if stored is not None and factor >= REORDER_FACTOR:
        plan = BlockPlan(plan.block, plan.extent, plan.coarsen, reorder=True)
        LOGGER.info(
            "the table is stored in chunks of %d x %d pixels, larger than the blocks (read "
            "block by block it would be decompressed about %.0f times): it is first copied "
            "into a scratch store chunked by blocks next to the output (about the size of the "
            "table file; deleted at the end)",
            chunks[0],
            chunks[1],
            factor,
        )
    return plan


# --------------------------------------------------------------------------- weights
def block_weights(
    w: RegridWeights, y0: int, y1: int, x0: int, x1: int
) -> tuple[RegridWeights, tuple[slice, slice] | None] | None:
    """The weights of the table pixels ``[y0:y1, x0:x1]``, on the box of NWP points they use.

    Returns
    -------
    (RegridWeights, box) or None
        Weights with ``target_shape (y1 - y0, x1 - x0)`` and ``source_shape`` the box
        ``(rows, columns)`` of the NWP grid (slices; None for a source grid that is not 2-D:
        then the whole grid); None when no pixel of the block is inside the NWP grid.
        Applied to the NWP field cut to the box, they give exactly the rows of ``w``.
    """
    ny, nx = w.target_shape
    rows = (np.arange(y0, y1)[:, None] * nx + np.arange(x0, x1)[None, :]).ravel()
    valid = w.valid[rows]
    if not valid.any():
        return None
    indices = w.indices[rows]
    box = None
    source_shape = w.source_shape
    if len(source_shape) == 2:
        sx = source_shape[1]
        iy, ix = np.divmod(indices, sx)
        used_y, used_x = iy[valid], ix[valid]
        i0, i1 = int(used_y.min()), int(used_y.max()) + 1
        j0, j1 = int(used_x.min()), int(used_x.max()) + 1
        indices = (iy - i0) * (j1 - j0) + (ix - j0)
        indices[~valid] = 0
        box = (slice(i0, i1), slice(j0, j1))
        source_shape = (i1 - i0, j1 - j0)
    sub = RegridWeights(
        indices.astype(w.indices.dtype, copy=False),
        w.weights[rows],
        valid,
        source_shape,
        (y1 - y0, x1 - x0),
        source_fingerprint=w.source_fingerprint,
        target_fingerprint=w.target_fingerprint,
    )
    return sub, box


# --------------------------------------------------------------------------- run
def cluster_plan(table, weights, *, n_outputs: int, chunk_time: int, coarsen) -> BlockPlan:
    """Blocks of :data:`CLUSTER_BLOCK` table pixels (whole ``coarsen`` blocks): the tasks of a
    cluster run whose table fits in memory."""
    side = CLUSTER_BLOCK // (coarsen or 1) * (coarsen or 1)
    return plan_blocks(table, weights, n_outputs=n_outputs, chunk_time=chunk_time,
                       coarsen=coarsen, max_memory=None, block_size=(side, side))  # fmt: skip


class _RegionWriter:
    """``write(a, b, arrays)`` of the time loop into one block region of a writer."""

    def __init__(self, writer, y0: int, x0: int):
        self.writer = writer
        self.y0, self.x0 = y0, x0
        self.background = not isinstance(writer, MemoryWriter)

    def write(self, a, b, arrays):
        self.writer.write_region(a, b, self.y0, self.x0, arrays)


class _Reader:
    """``read(a, b)`` of the time loop: steps ``a:b`` of the block's box of NWP points."""

    def __init__(self, nwp, box):
        self.nwp, self.box = nwp, box

    def __call__(self, a, b):
        return read_inputs(self.nwp, a, b, self.box)


def reorder_table(table, plan: BlockPlan, path, quiet: bool = True) -> CorrectionTable:
    """Copy the table's per-direction variables into a Zarr store at ``path`` chunked
    ``(k, *plan.block)``, with alpha in radians.

    Reads ``k`` directions at a time, about a third of a block's table values (at least one
    direction), so that the slab, its copies in the writer and their compressed bytes stay
    within the memory of a block, and writes them as whole chunks (few files: each block then
    reads ``n_angles / k`` chunks per variable); returns the store opened as a table.
    """
    import xarray as xr

    from devine_onnx.io.writers import create_writer

    table = CorrectionTable.open(table)
    names = table.variables
    n = table.angles.size
    ny, nx = table.shape
    wkt = table.crs.to_wkt()
    template = xr.Dataset(
        coords={
            "angle": ("angle", table.angles),
            "y": ("y", table.y),
            "x": ("x", table.x),
            "spatial_ref": ((), np.int32(0), {"crs_wkt": wkt, "spatial_ref": wkt}),
        },
        attrs=table.attrs,
    )
    variables = {name: {"grid_mapping": "spatial_ref"} for name in names}
    variables["alpha"]["units"] = "radian"
    step = max(1, (plan.block[0] * plan.block[1] * n) // (3 * ny * nx))
    step = math.ceil(n / math.ceil(n / step))  # equal slabs
    writer = create_writer(path, template, "angle", variables, fmt="zarr", chunk=step,
                           spatial_chunks=plan.block, label=path)  # fmt: skip
    try:
        with progress_bar(n, "reordering the table by blocks", quiet) as bar:
            for a in range(0, n, step):
                b = min(n, a + step)
                sub = table.dataset.isel(angle=slice(a, b))
                part = CorrectionTable.open(sub, label=table.label, check=False)
                arrays = [part.read(None, np.float32)[name] for name in names]
                writer.write(a, b, arrays)
                del arrays, part, sub
                release_memory()
                bar.advance(b - a)
        writer.finalize({})
    finally:
        writer.close()
    return CorrectionTable.open(path, label=f"{table.label} (reordered by blocks)", check=False)


def _has_values(*tables) -> bool:
    return any(t is not None and bool(np.isfinite(t).any()) for t in tables)


def run_blocks(downscaler, nwp, plan: BlockPlan, writer, *, nan_count, quiet=False,
               scratch=None, workers=None, scheduler=None) -> None:  # fmt: skip
    """Downscale block by block into ``writer`` (see the module docstring).

    ``downscaler``: a :class:`~devine_onnx.downscaling.downscaler.TableDownscaler` (table,
    weights, gamma, options); ``writer`` describes the whole output; ``nan_count`` (a
    :class:`~devine_onnx.downscaling.kernel.NaNCount`) sums over the blocks; ``scratch``: the
    folder of the reordered table (``plan.reorder``; default: the system's temporary folder).
    ``workers`` (a local cluster of that many processes) or ``scheduler`` (an address, cluster
    or ``distributed.Client``): the blocks are dask.distributed tasks that write their regions
    of the Zarr output themselves.
    """
    cluster = (workers, scheduler) if workers is not None or scheduler is not None else None
    if not plan.reorder:
        _run_blocks(downscaler, None, nwp, plan, writer, quiet, nan_count, cluster)
        return
    import shutil

    from devine_onnx.io.atomic import scratch_dir

    # Named with host and pid: the next run sweeps it if this one is killed.
    folder = scratch_dir("table", scratch)
    try:
        reordered = reorder_table(downscaler.table, plan, Path(folder) / "table.zarr", quiet)
        try:
            _run_blocks(downscaler, reordered, nwp, plan, writer, quiet, nan_count, cluster)
        finally:
            reordered.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_blocks(downscaler, source, nwp, plan, writer, quiet, nan_count, cluster) -> None:
    nt = nwp.n_times
    label = f"downscaling {nwp.source} ({plan.n_blocks} blocks)"
    with progress_bar(plan.n_blocks * nt, label, quiet) as bar:
        if cluster is not None:
            _run_on_cluster(downscaler, source, nwp, plan, writer, nan_count, bar, *cluster)
            return
        for bounds in plan.blocks():
            sub = block_weights(downscaler.weights, *bounds)
            if sub is not None:  # else outside the NWP grid: NaN (the fill value)
                run_block(downscaler, nwp, *sub, bounds, writer, nan_count, bar, source=source)
            else:
                bar.advance(nt)


def run_block(downscaler, nwp, wb, box, bounds, writer, nan_count, bar=None, *, source=None):
    """Downscale the block ``bounds = (y0, y1, x0, x1)`` (table pixels) over the whole time
    range into its region of ``writer``, with its weights ``wb`` on the ``box`` of NWP points
    (:func:`block_weights`). ``source``: a copy of the table to read instead of
    ``downscaler.table`` (:func:`reorder_table`)."""
    y0, y1, x0, x1 = bounds
    c = downscaler.coarsen or 1
    acc, alpha, vertical = downscaler.read_table(bounds, source)
    release_memory()
    if not _has_values(acc, vertical):  # no table value: NaN (the fill value)
        if bar is not None:
            bar.advance(nwp.n_times)
        return
    params = downscaler.params(bounds, wb)
    nan_count.set_table(acc, alpha)
    stream(
        nwp,
        _kernel.StreamKernel(acc, alpha, params, nan_count, vertical),
        _RegionWriter(writer, y0 // c, x0 // c),
        downscaler.options.chunk_time,
        True,
        read=_Reader(nwp, box),
        bar=bar,
    )
    nan_count.set_table(None, None)  # drop its references to this block's table
    del acc, alpha, vertical, params, wb
    release_memory()


# --------------------------------------------------------------------------- cluster
def _remote_block(downscaler, source, nwp, wb, box, bounds, path, names):
    """One block on a dask worker: writes its regions of the Zarr output, returns the NaN
    count (:meth:`~devine_onnx.downscaling.kernel.NaNCount.state`)."""
    from devine_onnx.io.writers import open_writer

    writer = open_writer(path, names, fmt="zarr")
    nan_count = _kernel.NaNCount(None, None, nwp.n_times, max_speed=downscaler.options.max_speed)
    try:
        run_block(downscaler, nwp, wb, box, bounds, writer, nan_count, source=source)
    finally:
        writer.close()
    return nan_count.state()


def _run_on_cluster(downscaler, source, nwp, plan, writer, nan_count, bar, workers,
                    scheduler) -> None:  # fmt: skip
    """Submit one task per block with values; stop at the first failure."""
    from devine_onnx._cluster import cluster_client, import_distributed

    distributed = import_distributed()
    nt = nwp.n_times
    with cluster_client(distributed, workers, scheduler) as client:
        nwp_f, ds_f, src_f = client.scatter([nwp, downscaler, source], broadcast=True, hash=False)
        futures = []
        for i, bounds in enumerate(plan.blocks()):
            sub = block_weights(downscaler.weights, *bounds)
            if sub is None:
                bar.advance(nt)
                continue
            futures.append(
                client.submit(
                    _remote_block,
                    ds_f,
                    src_f,
                    nwp_f,
                    *sub,
                    bounds,
                    str(Path(writer.path).resolve()),
                    writer.names,
                    pure=False,
                    priority=-i,
                )  # fmt: skip
            )
        completed = distributed.as_completed(futures, loop=client.loop)
        del futures[:]
        try:
            for fut in completed:
                if fut.status != "finished":
                    exc = fut.exception()
                    client.cancel(list(completed.futures))
                    raise exc
                nan_count.merge(*fut.result())
                fut.release()
                bar.advance(nt)
        except BaseException:
            client.cancel(list(completed.futures))
            raise
