"""The one time loop of every downscaling driver: read a chunk, compute it, write it.

File writers run in one background thread, so that compressing and writing chunk ``k`` overlaps
the computation of chunk ``k + 1``, and the next chunk is read while this one is computed; at
most two chunks of output are alive at once. NetCDF output is written through h5py and the
input read through netCDF4: two separate HDF5 libraries, each serialising its own calls.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np

from devine_onnx.io.writers import MemoryWriter
from devine_onnx.progress import progress_bar

__all__ = ["read_inputs", "stream"]


def read_inputs(nwp, a: int, b: int, box=None) -> tuple[np.ndarray, np.ndarray]:
    """NWP ``u``/``v`` (m/s) of steps ``a:b`` as numpy arrays; ``box``: ``(rows, columns)``
    slices of the NWP grid."""
    sel = {"time": slice(a, b)}
    if box is not None:
        sel.update(zip(nwp.spatial_dims, box, strict=True))
    u_c = nwp.u.isel(sel)
    v_c = nwp.v.isel(sel)
    if u_c.chunks is not None:
        import dask

        from devine_onnx.io._dask_probe import local_scheduler

        # the local scheduler by function: dask does not import distributed to look for a client
        u_np, v_np = dask.compute(u_c.data, v_c.data, scheduler=local_scheduler())
        return np.asarray(u_np), np.asarray(v_np)
    return np.asarray(u_c.values), np.asarray(v_c.values)


def stream(
    nwp, compute, writer, chunk_time: int, quiet: bool, what: str = "", *, read=None, bar=None
) -> None:
    """Loop over time chunks of ``nwp``: read, ``compute(u, v) -> outputs``, ``writer.write``.

    ``read(a, b) -> (u, v)`` replaces the reading of steps ``a:b`` (default: the whole NWP
    grid, :func:`read_inputs`); ``bar``: an open progress bar to advance instead of a new one.
    A writer with a ``background`` attribute says itself whether it writes in the background
    thread (default: all but in-memory writers).
    """
    nt = nwp.n_times
    starts = list(range(0, nt, chunk_time))
    if read is None:

        def read(a, b):
            return read_inputs(nwp, a, b)

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
