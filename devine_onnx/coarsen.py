"""Block aggregation of gridded arrays (``--coarsen``): pure numpy, shared by tables and outputs."""

from __future__ import annotations

import numpy as np

__all__ = ["coarsen_any", "coarsen_mean"]


def coarsen_mean(a: np.ndarray, n: int) -> np.ndarray:
    """Mean over ``n x n`` blocks of the last two axes, ignoring NaN; NaN where a block has none.

    The last rows/columns that do not fill a whole block are dropped. Same dtype as ``a``
    (summed in float64).
    """
    ny, nx = a.shape[-2] // n, a.shape[-1] // n
    b = a[..., : ny * n, : nx * n].reshape(a.shape[:-2] + (ny, n, nx, n))
    finite = np.isfinite(b)
    total = np.where(finite, b, 0).sum(axis=(-3, -1), dtype=np.float64)
    count = finite.sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return mean.astype(a.dtype, copy=False)


def coarsen_any(a: np.ndarray, n: int) -> np.ndarray:
    """Any over ``n x n`` blocks of the last two axes (trimmed like :func:`coarsen_mean`)."""
    ny, nx = a.shape[-2] // n, a.shape[-1] // n
    b = a[..., : ny * n, : nx * n].reshape(a.shape[:-2] + (ny, n, nx, n))
    return b.any(axis=(-3, -1))
