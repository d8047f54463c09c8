"""Bounds of optional contiguous regions (used by the rotation and sliding-mean kernels)."""

from __future__ import annotations


def slice_bounds(region: slice | None, n: int) -> tuple[int, int]:
    """``(start, stop)`` of ``region`` within ``range(n)``; the whole range for None.

    Raises ValueError for a slice with a step other than 1 (only contiguous windows are
    computed).
    """
    if region is None:
        return 0, n
    start, stop, step = region.indices(n)
    if step != 1:
        raise ValueError("only contiguous regions (slice step 1) are supported")
    return start, max(start, stop)
