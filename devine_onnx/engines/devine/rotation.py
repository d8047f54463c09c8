"""Nearest-neighbour image rotation, bit-compatible with TensorFlow (docs/method.md §3 steps 1, 6; §3.1).

The original DEVINE scripts rotate with ``tfa.image.rotate``, i.e. TensorFlow's
``ImageProjectiveTransformV3`` op with ``interpolation="NEAREST"`` and
``fill_mode="CONSTANT"``. This module reproduces that op in numpy, operation by operation in
float32, so that the rotated DEM (and hence the UNet input) is the same array TensorFlow gives.

Conventions
-----------
Arrays are indexed ``(row i, column j)``; row 0 is north, columns increase eastward. In the
op's pixel coordinates ``x = j`` (column) and ``y = i`` (row). A *positive* angle rotates the
image content counter-clockwise as displayed (row 0 at the top). Angles are in radians.

For output pixel ``(i, j)`` the op reads the source pixel at::

    x = (c*j + (-s)*i) + x_off        y = (s*j + c*i) + y_off

with ``c = cos(theta)``, ``s = sin(theta)`` in float32, every product and sum rounded to
float32 in that order, then rounds ``x`` and ``y`` to the nearest integer with ties *away
from zero* (C++ ``std::round``; exact ``.5`` ties are frequent, e.g. for multiples of 90° on
even sizes, so ``np.round``/``np.rint``, which round ties to even, would be wrong), and reads
the fill value where the rounded index falls outside the source array.

``c`` and ``s`` are the values TensorFlow's CPU kernel gives for a one-element float32 angle
tensor (the C library's ``cosf``/``sinf``): float64 cos/sin rounded to float32 plus a small
table of exceptions, so that all 720 table angles (forward and back) are bit-identical to
TensorFlow. numpy's own float32 ``np.cos``/``np.sin`` differ by one ulp for about a third of
them, which moves ~2.6e-5 of the pixels of a 2001 x 2001 rotation.
"""

from __future__ import annotations

import math

import numpy as np

from .slices import slice_bounds

__all__ = [
    "DEG_TO_RAD",
    "DEG_TO_RAD_F32",
    "rotate_nearest",
    "rotate_window",
    "rotation_angle",
    "rotation_offsets",
    "rotation_source_indices",
    "source_pixels",
]

#: The degree-to-radian factor written in the original scripts (not ``np.pi / 180``).
DEG_TO_RAD = 0.01745329
#: The same factor rounded to float32, as TensorFlow holds it.
DEG_TO_RAD_F32 = np.float32(DEG_TO_RAD)

_HALF_PI_F32 = np.float32(np.pi / 2)
_MINUS_HALF_PI_F32 = np.float32(-np.pi / 2)

# Output rows are processed in blocks of about this many pixels so that the float32/float64/
# int64 temporaries stay in the CPU cache instead of streaming whole-image arrays to memory.
_BLOCK_PIXELS = 1 << 15


def rotation_angle(k: int, inverse: bool = False) -> np.float32:
    """Rotation angle of table direction ``k``, rounded exactly as the original scripts do.

    Parameters
    ----------
    k : int
        Table index in degrees (0..359; any integer with ``|k| < 2**24`` is accepted).
    inverse : bool, optional
        False: the forward rotation of the DEM (docs/method.md §3 step 1),
        ``theta = f32(f32(pi/2) + f32(f32(k) * f32(0.01745329)))``, where the product is a
        float32 multiplication of two float32 operands.
        True: the back-rotation of the UNet output (docs/method.md §3 step 6),
        ``phi = f32(f32(-pi/2) - f32(k * 0.01745329))``, where ``k * 0.01745329`` is
        computed in float64 and rounded to float32 once.

    Returns
    -------
    numpy.float32
        The angle in radians (counter-clockwise positive, see the module docstring).

    Notes
    -----
    ``0.01745329`` is slightly less than pi/180 and everything is rounded to float32, so
    ``theta(k)`` is not exactly ``pi/2 + radians(k)`` (``theta(270)`` is about ``3.0e-7`` rad
    short of ``2*pi``: the rotation is the identity on any DEM smaller than ~10**6 pixels
    across), and ``phi(k)`` differs from ``-theta(k)`` by one float32 ulp for 83 of the 360
    directions (the two products are rounded differently). Both are reproduced on purpose.
    """
    k = int(k)
    if inverse:
        return np.float32(_MINUS_HALF_PI_F32 - np.float32(k * DEG_TO_RAD))
    return np.float32(_HALF_PI_F32 + np.float32(np.float32(k) * DEG_TO_RAD_F32))


# TensorFlow evaluates cos/sin of a one-element angle tensor with the C library's float32
# cosf/sinf (glibc on Linux; a tensor of many angles takes Eigen's vectorised polynomial
# instead, which differs by one ulp for ~1/4 of the table angles). Rounding the float64 cos/sin to float32 gives the same
# value for all 720 table angles but these, where glibc's result is the other neighbour:
# {float32 bits of the angle: (float32 bits of cos, float32 bits of sin)}, measured with
# glibc 2.36 and TensorFlow 2.21. (numpy's own float32 cos/sin differ from TF for about a
# third of the table angles, which moved ~2.6e-5 of the rotated pixels on 2001 x 2001.)
_TF_COS_SIN = {
    0x40396C7C: (0xBF78654C, 0x3E77BA6D),  # theta(76)
    0x403F0242: (0xBF7CD924, 0x3E20306A),  # theta(81)
    0x4051FF7E: (0xBF7D8235, 0xBE0E8366),  # theta(98)
    0x40C4090E: (0x3F7CD924, 0xBE203074),  # theta(261)
    0x40C52702: (0x3F7E1780, 0xBDF996EE),  # theta(263)
    0x40CCF8B1: (0x3F7E1782, 0x3DF9965E),  # theta(277)
    0x40E738A1: (0x3F16791D, 0x3F4F1BB9),  # theta(324)
    0x40F4111B: (0x3E6659C4, 0x3F79704E),  # theta(347)
    0xC0396C7C: (0xBF78654C, 0xBE77BA6D),  # phi(76)
    0xC03F0242: (0xBF7CD924, 0xBE20306A),  # phi(81)
    0xC06CCE66: (0xBF5919B2, 0x3F07A8C3),  # phi(122)
    0xC09CF0A3: (0x3E436348, 0x3F7B4BED),  # phi(191)
    0xC0C4090E: (0x3F7CD924, 0x3E203074),  # phi(261)
    0xC0C52702: (0x3F7E1780, 0x3DF996EE),  # phi(263)
    0xC0CCF8B1: (0x3F7E1782, 0xBDF9965E),  # phi(277)
    0xC0EC3F6C: (0x3EE87189, 0xBF6418FB),  # phi(333)
    0xC0F4111B: (0x3E6659C4, 0xBF79704E),  # phi(347)
}


def _f32_from_bits(bits: int) -> np.float32:
    return np.array(bits, dtype=np.uint32).view(np.float32)[()]


def _cos_sin(theta) -> tuple[np.float32, np.float32]:
    """float32 ``(cos, sin)`` of the float32 angle, as TensorFlow computes them on CPU.

    The float64 values rounded to float32, except for the table angles listed in
    ``_TF_COS_SIN``: bit-identical to TensorFlow for every ``rotation_angle(k, inverse)``,
    and within one float32 ulp of it for any other angle.
    """
    t = np.float32(theta)
    exact = _TF_COS_SIN.get(int(np.array(t).view(np.uint32)))
    if exact is not None:
        return _f32_from_bits(exact[0]), _f32_from_bits(exact[1])
    return np.float32(math.cos(float(t))), np.float32(math.sin(float(t)))


def rotation_offsets(shape: tuple[int, int], theta, center=None) -> tuple[np.float32, ...]:
    """Float32 coefficients ``(c, s, x_off, y_off)`` of the rotation transform.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of the image whose centre is the default rotation centre.
    theta : float
        Angle in radians (rounded to float32 first).
    center : (float, float), optional
        Rotation centre ``(x, y)`` = ``(column, row)`` in pixels. Default
        ``((W - 1) / 2, (H - 1) / 2)``, for which the offsets are computed exactly as
        ``tfa.image.rotate`` does, in float32::

            x_off = ((W-1) - (c*(W-1) - s*(H-1))) / 2
            y_off = ((H-1) - (s*(W-1) + c*(H-1))) / 2

        For an explicit centre ``(cx, cy)``: ``x_off = cx - (c*cx - s*cy)``,
        ``y_off = cy - (s*cx + c*cy)`` in float32 (not bit-identical to the default formula
        evaluated at the image centre, because the halving happens at a different step).

    Returns
    -------
    tuple of numpy.float32
        ``(c, s, x_off, y_off)``.
    """
    c, s = _cos_sin(theta)
    f = np.float32
    if center is None:
        h1 = f(int(shape[0]) - 1)
        w1 = f(int(shape[1]) - 1)
        x_off = f(f(w1 - f(f(c * w1) - f(s * h1))) / f(2))
        y_off = f(f(h1 - f(f(s * w1) + f(c * h1))) / f(2))
    else:
        cx, cy = f(center[0]), f(center[1])
        x_off = f(cx - f(f(c * cx) - f(s * cy)))
        y_off = f(cy - f(f(s * cx) + f(c * cy)))
    return c, s, x_off, y_off


def _source_xy(i0, i1, j0, j1, c, s, x_off, y_off, bufs=None):
    """Float32 source coordinates (x, y) of output rows i0..i1-1, columns j0..j1-1."""
    rows = np.arange(i0, i1, dtype=np.float32)
    cols = np.arange(j0, j1, dtype=np.float32)
    cj, sj = c * cols, s * cols  # float32 products, rounded as TF rounds them
    msi, ci = (-s) * rows, c * rows
    shape = (i1 - i0, j1 - j0)
    x = np.empty(shape, np.float32) if bufs is None else bufs[0][: shape[0] * shape[1]]
    y = np.empty(shape, np.float32) if bufs is None else bufs[1][: shape[0] * shape[1]]
    x = x.reshape(shape)
    y = y.reshape(shape)
    # IEEE addition is commutative, so (msi + cj) is bit-identical to TF's (c*j + (-s)*i).
    np.add(msi[:, None], cj[None, :], out=x)
    x += x_off
    np.add(ci[:, None], sj[None, :], out=y)
    y += y_off
    return x, y


def _round_index(v: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``floor(v + 0.5)`` evaluated exactly (v float32 -> float64 -> int64) into ``out``.

    Equal to rounding half away from zero for every ``v > -0.5``, which is all the caller uses
    it for (``v <= -0.5`` is out of bounds and masked separately). The +0.5 is added in float64,
    where it is exact: in float32, ``0.49999997 + 0.5`` would round up to 1.
    """
    tmp = np.add(v, 0.5, dtype=np.float64)
    np.floor(tmp, out=tmp)
    out[...] = tmp  # float -> int cast of integral values: exact
    return out


def rotation_source_indices(
    out_shape: tuple[int, int],
    src_shape: tuple[int, int],
    theta,
    center=None,
    *,
    rows: slice | None = None,
    cols: slice | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source pixel of every output pixel of a nearest-neighbour rotation (docs/method.md §3.1).

    Parameters
    ----------
    out_shape : (int, int)
        ``(H_out, W_out)`` of the output grid.
    src_shape : (int, int)
        ``(H, W)`` of the source image; bounds are checked against it, and the default
        rotation centre is its centre ``((W - 1) / 2, (H - 1) / 2)`` as in
        ``tfa.image.rotate`` (where both shapes are equal).
    theta : float
        Counter-clockwise angle in radians (rounded to float32), e.g. from
        :func:`rotation_angle`.
    center : (float, float), optional
        Rotation centre ``(x, y)`` = ``(column, row)``; see :func:`rotation_offsets`.
    rows, cols : slice, optional
        Evaluate only this contiguous window of the output grid (default: all of it).

    Returns
    -------
    src_rows, src_cols : numpy.ndarray of int64
        Source row and column of each output pixel (meaningless where ``valid`` is False).
    valid : numpy.ndarray of bool
        True where the rounded source index lies inside the source array.
    """
    h_out, w_out = (int(n) for n in out_shape)
    h, w = (int(n) for n in src_shape)
    c, s, x_off, y_off = rotation_offsets((h, w), theta, center)
    i0, i1 = slice_bounds(rows, h_out)
    j0, j1 = slice_bounds(cols, w_out)
    x, y = _source_xy(i0, i1, j0, j1, c, s, x_off, y_off)
    # In bounds after rounding half away from zero <=> -0.5 < v < n - 0.5 (exact float32
    # comparisons: -0.5 rounds to -1, n - 0.5 rounds to n).
    valid = (x > -0.5) & (x < w - 0.5) & (y > -0.5) & (y < h - 0.5)
    src_cols = _round_index(x, np.empty(x.shape, np.int64))
    src_rows = _round_index(y, np.empty(y.shape, np.int64))
    return src_rows, src_cols, valid


def _flat_source_blocks(out_shape, src_shape, theta, center, rows, cols):
    """Yield ``(r0, r1, index)`` for consecutive blocks of output rows ``r0:r1`` (relative to
    the requested window): ``index`` (flat, int) is ``row * W + col`` of each pixel's source,
    or ``H * W`` where it is out of bounds.

    Same mapping as :func:`rotation_source_indices`, computed block by block in reused
    buffers, so that the caller can gather each block while it is in the cache (this runs
    2 x 360 times per table on up to a few million pixels). The yielded array is overwritten
    by the next block.
    """
    h_out, w_out = (int(n) for n in out_shape)
    i0, i1 = slice_bounds(rows, h_out)
    j0, j1 = slice_bounds(cols, w_out)
    yield from _flat_source_range(src_shape, theta, center, i0, i1, j0, j1)


def _flat_source_range(src_shape, theta, center, i0, i1, j0, j1):
    """:func:`_flat_source_blocks` for output rows ``i0:i1`` and columns ``j0:j1`` given as
    plain integers, which may lie outside the source frame (negative, or beyond it): the
    transform is the same affine map evaluated at those pixel indices (the *extended* frame
    of docs/method.md §9.1)."""
    h, w = (int(n) for n in src_shape)
    c, s, x_off, y_off = rotation_offsets((h, w), theta, center)
    nw = j1 - j0
    if i1 <= i0 or nw <= 0:
        return
    block = max(1, _BLOCK_PIXELS // nw)
    n_buf = min(block, i1 - i0) * nw
    bufs = (np.empty(n_buf, np.float32), np.empty(n_buf, np.float32))
    f64 = np.empty(n_buf, np.float64)
    flat = np.empty(n_buf, np.intp)
    col_idx = np.empty(n_buf, np.intp)
    bad = np.empty(n_buf, bool)
    tmp = np.empty(n_buf, bool)
    lo_x, hi_x = np.float32(-0.5), np.float32(w - 0.5)
    lo_y, hi_y = np.float32(-0.5), np.float32(h - 0.5)
    fill_index = h * w
    for b0 in range(i0, i1, block):
        b1 = min(b0 + block, i1)
        n = (b1 - b0) * nw
        x, y = _source_xy(b0, b1, j0, j1, c, s, x_off, y_off, bufs)
        x, y = x.reshape(-1), y.reshape(-1)
        o, m, t, d, ci = flat[:n], bad[:n], tmp[:n], f64[:n], col_idx[:n]
        # Out of bounds after rounding half away from zero: v <= -0.5 or v >= n - 0.5.
        np.less_equal(x, lo_x, out=m)
        np.greater_equal(x, hi_x, out=t)
        m |= t
        np.less_equal(y, lo_y, out=t)
        m |= t
        np.greater_equal(y, hi_y, out=t)
        m |= t
        # floor(v + 0.5) in float64 (exact) == round half away from zero for in-bounds v.
        np.add(y, 0.5, out=d, dtype=np.float64)
        np.floor(d, out=d)
        o[...] = d
        o *= w
        np.add(x, 0.5, out=d, dtype=np.float64)
        np.floor(d, out=d)
        ci[...] = d
        o += ci
        np.copyto(o, fill_index, where=m)
        yield b0 - i0, b1 - i0, o


def rotate_window(
    image: np.ndarray,
    theta,
    fill=-1.0,
    *,
    rows: tuple[int, int],
    cols: tuple[int, int],
    center=None,
) -> np.ndarray:
    """Window ``rows x cols`` of the rotated 2-D image, in its *extended* frame.

    The same mapping as :func:`rotate_nearest` (TensorFlow's, rotation about the image
    centre by default), evaluated at output rows ``rows[0] .. rows[1] - 1`` and columns
    ``cols[0] .. cols[1] - 1``, which may lie outside ``[0, H) x [0, W)``: the rotated frame
    extended beyond the image, where every pixel whose source falls outside the image gets
    ``fill`` (docs/method.md §9.1). Inside the frame the result equals the same window of
    :func:`rotate_nearest` bit for bit.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W)
    theta : float
        Counter-clockwise angle in radians (rounded to float32).
    fill : scalar
        Value where the source lies outside the image.
    rows, cols : (int, int)
        Half-open ranges of output pixel indices (any integers).
    center : (float, float), optional
        Rotation centre ``(x, y)``; default the image centre, as TensorFlow computes it.

    Returns
    -------
    numpy.ndarray, shape (rows[1] - rows[0], cols[1] - cols[0])
        Same dtype as ``image``.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    h, w = image.shape
    i0, i1 = int(rows[0]), max(int(rows[0]), int(rows[1]))
    j0, j1 = int(cols[0]), max(int(cols[0]), int(cols[1]))
    out = np.empty((i1 - i0, j1 - j0), image.dtype)
    src = np.empty(h * w + 1, image.dtype)
    src[: h * w] = image.reshape(-1)
    src[h * w] = fill
    flat = out.reshape(-1)
    nw = j1 - j0
    for r0, r1, index in _flat_source_range((h, w), theta, center, i0, i1, j0, j1):
        np.take(src, index, out=flat[r0 * nw : r1 * nw])
    return out


def source_pixels(
    shape: tuple[int, int],
    theta,
    *,
    rows: tuple[int, int],
    cols: tuple[int, int],
    center=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest source pixel of every output pixel of a window, without bounds.

    The mapping of :func:`rotation_source_indices` (offsets from ``shape``), evaluated at
    output rows ``rows[0]:rows[1]`` and columns ``cols[0]:cols[1]`` (any integers) and
    rounded as ``floor(v + 0.5)`` (exact): equal to TensorFlow's rounding half away from
    zero for every in-frame source, and the extension of it to the whole lattice beyond.

    Returns
    -------
    src_rows, src_cols : numpy.ndarray of int64, shape (rows[1] - rows[0], cols[1] - cols[0])
    """
    c, s, x_off, y_off = rotation_offsets(shape, theta, center)
    i0, i1 = int(rows[0]), max(int(rows[0]), int(rows[1]))
    j0, j1 = int(cols[0]), max(int(cols[0]), int(cols[1]))
    x, y = _source_xy(i0, i1, j0, j1, c, s, x_off, y_off)
    src_cols = _round_index(x, np.empty(x.shape, np.int64))
    src_rows = _round_index(y, np.empty(y.shape, np.int64))
    return src_rows, src_cols


def rotate_nearest(
    image: np.ndarray,
    theta,
    fill=-1.0,
    center=None,
    *,
    rows: slice | None = None,
    cols: slice | None = None,
) -> np.ndarray:
    """Rotate a 2-D image (or a stack ``(..., H, W)``) counter-clockwise, nearest neighbour.

    Reproduces TensorFlow's ``ImageProjectiveTransformV3`` (``NEAREST``, ``CONSTANT``) as
    called by ``tfa.image.rotate`` (docs/method.md §3.1). The output has the input's shape; every
    image of a stack is rotated by the same angle.

    Parameters
    ----------
    image : numpy.ndarray, shape (..., H, W)
        Values to rotate (any dtype; the output has the same dtype, so ``fill`` must be
        representable in it, e.g. NaN needs a floating dtype).
    theta : float
        Counter-clockwise angle in radians (rounded to float32), e.g.
        ``rotation_angle(k)`` for the DEM or ``rotation_angle(k, inverse=True)`` for the
        back-rotation.
    fill : scalar, optional
        Value of output pixels whose source lies outside the image. The original uses -1.0
        (metres, for the DEM; counted by the sliding mean); use ``np.nan`` for the
        back-rotation.
    center : (float, float), optional
        Rotation centre ``(x, y)`` = ``(column, row)``; default ``((W-1)/2, (H-1)/2)``
        exactly as TensorFlow computes it.
    rows, cols : slice, optional
        Compute only this contiguous window of the output (default: the whole image); the
        result then has shape ``(..., len(rows), len(cols))`` and equals the same window of
        the full rotation.

    Returns
    -------
    numpy.ndarray
        The rotated image(s).
    """
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"expected an array of shape (..., H, W), got shape {image.shape}")
    h, w = image.shape[-2:]
    lead = image.shape[:-2]
    i0, i1 = slice_bounds(rows, h)
    j0, j1 = slice_bounds(cols, w)
    out = np.empty((*lead, i1 - i0, j1 - j0), image.dtype)
    n_img = math.prod(lead)
    # Source values followed by one fill slot, so that out-of-bounds pixels are a plain gather.
    src = np.empty((n_img, h * w + 1), image.dtype)
    src[:, : h * w] = image.reshape(n_img, h * w)
    src[:, h * w] = fill
    flat_out = out.reshape(n_img, (i1 - i0) * (j1 - j0))
    nw = j1 - j0
    for r0, r1, index in _flat_source_blocks((h, w), (h, w), theta, center, rows, cols):
        for n in range(n_img):
            np.take(src[n], index, out=flat_out[n, r0 * nw : r1 * nw])
    return out
