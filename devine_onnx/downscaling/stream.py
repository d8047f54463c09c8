"""Stream driver: the whole table in memory, the forecast streamed through it over time.

Memory does not grow with the number of time steps: one chunk of wind lives at a time, the
kernel works on sub-chunks of at most
:data:`~devine_onnx.downscaling.kernel.MAX_BLOCK_ELEMENTS` pixel-steps, and the table
(``acceleration`` and ``alpha``, ``(n_angles, ny, nx)``) is held once in memory as float32
(2 x 360 MB for a 500 x 500 table with 360 angles; measured peak RSS of a whole run ≈ 1.2 GB,
the same for 240 and 8760 hourly steps). float16 would halve the table, but the lookup would
then compute ``degrees(alpha)`` in float16 (errors up to 0.03°), so it is not used. Tables
that do not fit in memory go to the block driver (:mod:`.blocks`) instead.
"""

from __future__ import annotations

from .timeloop import stream

__all__ = ["run_stream"]


def run_stream(downscaler, nwp, writer, nan_count=None, *, quiet: bool = False) -> None:
    """Downscale the whole series ``nwp`` into ``writer`` with a
    :class:`~devine_onnx.downscaling.downscaler.TableDownscaler`, chunk by chunk of
    ``downscaler.options.chunk_time`` steps.

    The table is read once (:meth:`~.TableDownscaler.load`) and the table file closed (when
    the downscaler opened it) before the loop; ``nan_count`` (a
    :class:`~devine_onnx.downscaling.kernel.NaNCount`) sums the pixel-steps that NaN in the
    forecast blanked.
    """
    compute = downscaler.stream_kernel(nan_count)
    downscaler.table.close()  # read: release the file and its HDF5 chunk caches
    try:
        stream(nwp, compute, writer, downscaler.options.chunk_time, quiet)
    finally:
        downscaler.release()
