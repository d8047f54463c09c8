"""Sliding box mean and input normalisation of the UNet (docs/method.md §3 step 2).

The original normalises the rotated DEM ``Zr`` as ``(Zr - M) / sigma`` where ``M`` is a
TensorFlow 'SAME' convolution with a 79 x 69 box kernel: zeros outside the frame, and always
divided by the full window area 5451, also near the edges where fewer pixels are inside. We
compute the same mean exactly with prefix sums in float64 (two cumulative sums, one per axis);
TensorFlow's own float32 convolution is off by up to ~0.06 m on real terrain (measured on the Jacksboro DEM, see docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np

from .slices import slice_bounds

__all__ = ["WINDOW", "normalise", "sliding_mean"]

#: Box window of the original normalisation: (rows, columns), the training patch size.
WINDOW = (79, 69)


def _window_sums(
    a: np.ndarray, axis: int, k: int, start: int, stop: int, offset: int = 0, n: int | None = None
) -> np.ndarray:
    """Sums of ``k`` consecutive values along ``axis`` (zeros outside), TF 'SAME' alignment.

    ``a`` holds elements ``[offset, offset + a.shape[axis])`` of a frame of ``n`` elements
    along ``axis`` (default: the whole frame). Output index ``i`` (``start <= i < stop``, frame
    coordinates) is the sum over ``[i - p, i - p + k)`` with ``p = (k - 1) // 2``: TensorFlow
    pads ``(k - 1) // 2`` before and the rest after. ``a`` must cover the part of that range
    inside the frame. Returns float64 with ``stop - start`` entries along ``axis``.
    """
    if n is None:
        n = a.shape[axis]
    p = (k - 1) // 2
    lo, hi = start - p, stop - p + k - 1  # inputs read, possibly outside [0, n)
    a0, a1 = max(lo, 0), max(min(hi, n), max(lo, 0))
    if a0 < offset or a1 > offset + a.shape[axis]:
        raise ValueError("the sub-array does not cover the window")

    def along(sl: slice) -> tuple:
        return (slice(None),) * axis + (sl,)

    # prefix[t] = sum of the zero-padded input over [lo, lo + t): zeros for the part before the
    # frame, then the cumulative sum, then its last value repeated for the part after it.
    shape = list(a.shape)
    shape[axis] = hi - lo + 1
    prefix = np.empty(shape, np.float64)
    head = a0 - lo + 1
    prefix[along(slice(0, head))] = 0.0
    tail = head + a1 - a0
    if a1 > a0:
        src = a[along(slice(a0 - offset, a1 - offset))]
        np.cumsum(src, axis=axis, dtype=np.float64, out=prefix[along(slice(head, tail))])
    prefix[along(slice(tail, None))] = prefix[along(slice(tail - 1, tail))]
    m = stop - start
    return prefix[along(slice(k, k + m))] - prefix[along(slice(0, m))]


def sliding_mean(
    z: np.ndarray,
    window: tuple[int, int] = WINDOW,
    *,
    rows: slice | None = None,
    cols: slice | None = None,
) -> np.ndarray:
    """Mean over a ``window`` (rows, columns) box around each pixel, TF 'SAME' convolution.

    Values outside the frame count as zeros and every sum is divided by the full window area
    (``79 * 69 = 5451`` by default), as TensorFlow's 'SAME' convolution with a box kernel
    ``ones / area`` does. For an odd size ``k`` the window is centred; for an even size it
    spans ``[i - (k-1)//2, i + k//2]`` (TF pads ``(k-1)//2`` before and the rest after).

    Parameters
    ----------
    z : numpy.ndarray, shape (H, W)
        Input values (e.g. the rotated DEM in metres, with its -1 fill). Any real dtype;
        sums are accumulated in float64.
    window : (int, int), optional
        Window size in pixels, (rows, columns). Default (79, 69).
    rows, cols : slice, optional
        Evaluate the mean only on this contiguous window of the output (default: all of
        it). The result equals the same window of the full computation; the values outside
        it that the box reads are still used.

    Returns
    -------
    numpy.ndarray of float64, shape (len(rows), len(cols))
        The box mean, in the units of ``z``.

    Notes
    -----
    Two prefix sums (along rows over the needed rows, then along columns over the needed
    window sums): O(1) per pixel. Accumulating along rows first keeps the second prefix sum
    bounded by ``79 * W * max|z|``, so the float64 rounding error stays far below 1e-9 of
    the values.
    """
    z = np.asarray(z)
    if z.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {z.shape}")
    kr, kc = (int(k) for k in window)
    if kr < 1 or kc < 1:
        raise ValueError(f"window sizes must be positive, got {window}")
    h, w = z.shape
    r0, r1 = slice_bounds(rows, h)
    c0, c1 = slice_bounds(cols, w)
    pc = (kc - 1) // 2
    # Only the columns that the requested output columns read are summed along rows.
    ca, cb = max(c0 - pc, 0), min(c1 - pc + kc - 1, w)
    row_sums = _window_sums(z[:, ca:cb], 0, kr, r0, r1)
    out = _window_sums(row_sums, 1, kc, c0, c1, offset=ca, n=w)
    out /= kr * kc
    return out


def normalise(
    z_rotated: np.ndarray,
    sigma: float,
    window: tuple[int, int] = WINDOW,
    *,
    rows: slice | None = None,
    cols: slice | None = None,
) -> np.ndarray:
    """UNet input ``(Zr - M) / sigma`` (docs/method.md §3 step 2), as float32.

    Parameters
    ----------
    z_rotated : numpy.ndarray, shape (H, W)
        The rotated DEM in metres, including its -1 fill outside the rotated frame.
    sigma : float
        Normalisation scale in metres (``train_std`` of ``dict_norm.csv``,
        141.1161085195641 for the official model).
    window : (int, int), optional
        Box window (rows, columns) of the local mean ``M``; default (79, 69).
    rows, cols : slice, optional
        Return only this window of the result (the mean still reads the whole frame).

    Returns
    -------
    numpy.ndarray of float32
        Dimensionless normalised elevations, computed in float64 and rounded once.
    """
    out = sliding_mean(z_rotated, window, rows=rows, cols=cols)
    z = np.asarray(z_rotated)
    r0, r1 = slice_bounds(rows, z.shape[0])
    c0, c1 = slice_bounds(cols, z.shape[1])
    np.subtract(z[r0:r1, c0:c1], out, out=out)
    out /= float(sigma)
    return out.astype(np.float32)


#: Largest window side (pixels) :func:`normalise_exact` accepts: with it and the scale of
#: :func:`fixed_point_bits`, every int64 partial sum stays below 2**62.
MAX_EXACT_SIDE = 1 << 17


def fixed_point_bits(max_abs: float, window: tuple[int, int] = WINDOW) -> int:
    """Binary digits after the point of the fixed-point sums of :func:`normalise_exact`.

    At most 24 (a quantum of 2**-24 m ~ 6e-8 m), fewer for values so large that a prefix sum
    over :data:`MAX_EXACT_SIDE` windows could reach 2**62. One value per table (from the
    DEM's largest absolute elevation), so that every window of it uses the same quantum.
    """
    import math

    span = math.ceil(math.log2(max(float(max_abs), 1.0) + 2.0))
    per_window = math.ceil(math.log2(max(window)))
    return max(0, min(24, 62 - span - per_window - MAX_EXACT_SIDE.bit_length() + 1))


def normalise_exact(
    z: np.ndarray, sigma: float, bits: int, window: tuple[int, int] = WINDOW
) -> np.ndarray:
    """UNet input ``(Zr - M) / sigma`` of the interior of ``z``, with exact, local box sums.

    ``z`` holds the rotated DEM on an output window plus the half box (39 rows, 34 columns
    for 79 x 69) on every side; the result covers the window (``z`` less that margin). The
    box sums are computed in int64 on the values scaled by ``2**bits`` and rounded
    (:func:`fixed_point_bits`): exact integer arithmetic, so the mean ``M`` of a pixel
    depends only on the ``79 x 69`` values around it, never on where the window starts or on
    values outside its box. That makes the frame method's input independent of the tile
    (docs/method.md §9.1). ``M`` differs from the float64 mean of :func:`normalise` by less
    than ``2**-(bits + 1)`` m (3e-8 m for bits = 24), far below float32 resolution of ``N``.

    Returns
    -------
    numpy.ndarray of float32, shape ``(H - 2 * 39, W - 2 * 34)`` for the default window.
    """
    kr, kc = (int(k) for k in window)
    if kr % 2 == 0 or kc % 2 == 0:
        raise ValueError(f"normalise_exact needs odd window sizes, got {window}")
    pr, pc = kr // 2, kc // 2
    z = np.asarray(z, dtype=np.float32)
    h, w = z.shape
    if h <= 2 * pr or w <= 2 * pc:
        raise ValueError(f"array {z.shape} smaller than the box window {window}")
    if max(h, w) > MAX_EXACT_SIDE:
        raise ValueError(f"array {z.shape} larger than {MAX_EXACT_SIDE} pixels on a side")
    scale = float(2**bits)
    q = np.rint(z.astype(np.float64) * scale).astype(np.int64)
    # Sums over kr consecutive rows: prefix sum along rows, then differences.
    cum = np.empty((h + 1, w), np.int64)
    cum[0] = 0
    np.cumsum(q, axis=0, out=cum[1:])
    del q
    rows = cum[kr:] - cum[: h + 1 - kr]  # (h - kr + 1, w)
    del cum
    cum = np.empty((rows.shape[0], w + 1), np.int64)
    cum[:, 0] = 0
    np.cumsum(rows, axis=1, out=cum[:, 1:])
    del rows
    box = cum[:, kc:] - cum[:, : w + 1 - kc]  # (h - 2 pr, w - 2 pc)
    del cum
    mean = box.astype(np.float64)  # < 2**53: exact
    mean /= scale
    mean /= kr * kc
    out = np.subtract(z[pr : h - pr, pc : w - pc], mean, dtype=np.float64)
    out /= float(sigma)
    return out.astype(np.float32)


#: Half sizes of the default box window: 39 rows and 34 columns on each side.
BOX_HALF_ROWS, BOX_HALF_COLS = WINDOW[0] // 2, WINDOW[1] // 2
