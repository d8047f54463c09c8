"""Apply a correction table to interpolated wind (docs/method.md §4).

At each pixel and time, the grid-relative wind (speed ``S`` in m/s, FROM direction ``D`` in
degrees clockwise from grid north) selects the table entry of its direction ``k`` and becomes

- ``speed_out = acceleration[k] * S``
- ``dir_out = mod(D - degrees(alpha[k]), 360)``: ``alpha > 0`` turns the flow to the LEFT
  (counter-clockwise, seen from above, looking downwind).

The lookup is one gather per chunk on the table reshaped to ``(n_angles, ny * nx)`` with flat
index ``k * (ny * nx) + pixel``; no loop over angles.

A table may also hold ``vertical(angle, y, x)`` = w / inflow speed (the networks output w for a
3 m/s inflow): :func:`vertical_wind` gives the downscaled upward wind ``vertical[k] * S``, with
``S`` the speed of the interpolated NWP wind and ``k`` the same table direction as the
horizontal lookup.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from devine_onnx.errors import DevineWarning, OptionError, TableError, option
from devine_onnx.wind import earth_to_grid, grid_to_earth, speed_dir_to_uv, uv_to_speed_dir, wrap360

__all__ = [
    "METHODS",
    "CoarseTableWarning",
    "TableLookup",
    "angular_step",
    "apply_table",
    "downscale_uv",
    "vertical_wind",
    "warn_if_coarse",
    "wrap_pi",
]

METHODS = ("nearest", "linear")


def wrap_pi(angle):
    """Angle in radians wrapped to ``[-pi, pi)``; NaN stays NaN."""
    return np.mod(angle + np.pi, 2 * np.pi) - np.pi


class CoarseTableWarning(DevineWarning):
    """The table's directions are more than 1° apart and the lookup snaps winds to them."""


def angular_step(angles) -> float:
    """Largest circular gap between consecutive table directions, in degrees.

    Parameters
    ----------
    angles : array_like
        Table directions in degrees, strictly ascending in ``[0, 360)``.

    Returns
    -------
    float
        ``360 / n`` for ``n`` equally spaced directions; 360 for a single direction.
    """
    a = np.asarray(angles, dtype=np.float64).ravel()
    if a.size < 2:
        return 360.0
    return float(np.max(np.diff(np.append(a, a[0] + 360.0))))


def warn_if_coarse(
    angles, method: str, label: str = "correction table", *, stacklevel: int = 2
) -> None:
    """Warn (:class:`CoarseTableWarning`) when a nearest lookup uses directions > 1° apart.

    The nearest lookup snaps each wind to the closest table direction: with a step of ``h``
    degrees the direction used can be off by ``h/2`` and the speed by the change of the
    table over that angle. The linear lookup blends the two neighbours instead.
    """
    step = angular_step(angles)
    if method != "nearest" or step <= 1.0 + 1e-9:
        return
    n = np.asarray(angles).size
    warnings.warn(
        f"{label}: {n} direction{'' if n == 1 else 's'} up to {step:g}° apart: the nearest "
        f"lookup snaps each wind to one of them (up to {step / 2:g}° off); use "
        f"{option('angular_interpolation', 'linear')} to blend the two nearest directions, or "
        "a table with all 360",
        CoarseTableWarning,
        stacklevel=stacklevel + 1,
    )


def _n_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: Pixels processed at once by the fused lookup: its temporaries then stay in the CPU cache.
CACHE_BLOCK = 65536

#: Threads used by :meth:`TableLookup.downscale_uv` (the machine's cores, at most 4).
LOOKUP_THREADS = max(1, min(4, _n_cores()))


class TableLookup:
    """A correction table ready to be applied to many chunks of wind.

    Parameters
    ----------
    acceleration : array_like
        ``(n_angles, ny, nx)`` speed ratios (dimensionless); NaN where the table has no data.
        Not copied when it is already a C-contiguous numpy array.
    alpha : array_like
        ``(n_angles, ny, nx)`` deviation angles in radians, ``alpha > 0`` turns the flow to
        the left (counter-clockwise); NaN where no data.
    angles : array_like, optional
        ``(n_angles,)`` table directions in degrees: FROM directions clockwise from the
        table's grid north, strictly ascending in ``[0, 360)`` (e.g. 0..359 step 1, or a
        subset such as 0, 10, ..., 350). Default: ``n_angles`` equal steps from 0
        (``0..359`` for 360 angles).
    method : {"nearest", "linear"}
        ``"nearest"``: the table angle closest to ``D`` circularly, ties going to the larger
        (clockwise) neighbour; for equally spaced angles from 0 with step ``h`` this is
        ``k = floor(D / h + 0.5) mod n_angles``, i.e. ``k = mod(floor(D + 0.5), 360)`` for the
        full 1° table (round half up: D = 10.5 uses 11, D = 359.6 uses 0).
        ``"linear"``: linear blend of the two circularly neighbouring table angles:
        ``acceleration`` as ``(1 - t) a_lo + t a_hi``, ``alpha`` along the shorter arc,
        ``alpha_lo + t * wrap_pi(alpha_hi - alpha_lo)`` (so 3.10 and -3.10 rad blend to
        about pi, not 0); NaN if either neighbour is NaN.

    Raises
    ------
    TableError
        If the shapes of ``acceleration``, ``alpha`` and ``angles`` disagree, or ``angles``
        is not strictly ascending within ``[0, 360)``.
    OptionError
        If ``method`` is unknown.
    """

    def __init__(self, acceleration, alpha, angles=None, method: str = "nearest"):
        acc = np.asarray(acceleration)
        alp = np.asarray(alpha)
        if acc.ndim != 3 or alp.shape != acc.shape:
            raise TableError(
                f"correction table: acceleration {acc.shape} and alpha {alp.shape} must both "
                "be (angle, y, x) arrays of the same shape; check the table file"
            )
        if method not in METHODS:
            raise OptionError(
                f"lookup method {method!r} is unknown; use one of {', '.join(METHODS)}"
            )
        n = acc.shape[0]
        if angles is None:
            ang = np.arange(n, dtype=np.float64) * (360.0 / n)
        else:
            ang = np.asarray(angles, dtype=np.float64).ravel()
        if ang.size != n:
            raise TableError(
                f"correction table: {ang.size} angles for {n} table directions (acceleration "
                f"{acc.shape}); the angle coordinate must match the first axis"
            )
        if (
            not np.all(np.isfinite(ang))
            or ang[0] < 0
            or ang[-1] >= 360
            or (n > 1 and not np.all(np.diff(ang) > 0))
        ):
            raise TableError(
                f"correction table: angles {_short(ang)} must be strictly ascending in "
                "[0, 360) degrees; sort the table by angle"
            )
        self.n_angles = n
        self.shape = acc.shape[1:]
        self.npix = int(acc.shape[1] * acc.shape[2])
        self.angles = ang
        self.method = method
        self._acc = acc.reshape(-1)
        self._alpha = alp.reshape(-1)
        step = 360.0 / n
        self._uniform = bool(np.array_equal(ang, np.arange(n, dtype=np.float64) * step))
        # Flat offset of table row (k mod n) for k + n in [0, 3n): see _nearest_block.
        self._row_offsets = (np.arange(3 * n, dtype=np.intp) % n) * self.npix
        self._pixels = np.arange(self.npix, dtype=np.intp)
        self._step = step

    def _check_grid(self, shape) -> None:
        if tuple(shape[-2:]) != self.shape:
            raise TableError(
                f"correction table of grid shape {self.shape} applied to wind of shape "
                f"{tuple(shape)}; the wind must be interpolated to the table grid (..., y, x)"
            )

    # ---------------------------------------------------------------- neighbours
    def _nearest(self, d: np.ndarray) -> np.ndarray:
        """Index of the nearest table angle (int64), -1 where ``d`` is NaN."""
        ok = np.isfinite(d)
        dd = np.where(ok, d, 0.0)
        if self._uniform:
            k = np.floor(dd / self._step + 0.5).astype(np.int64) % self.n_angles
        else:
            lo, hi, t = self._bracket(dd)
            k = np.where(t >= 0.5, hi, lo)
        return np.where(ok, k, -1)

    def _bracket(self, d: np.ndarray):
        """Circular lower/upper neighbours of ``d`` and fraction ``t`` in [0, 1] toward upper."""
        n = self.n_angles
        if self._uniform:
            pos = d / self._step
            j = np.floor(pos)
            t = pos - j
            lo = j.astype(np.int64) % n
            hi = (lo + 1) % n
            return lo, hi, t
        ang = self.angles
        j = np.searchsorted(ang, d, side="right") - 1  # -1 .. n-1
        lo = j % n
        hi = (j + 1) % n
        a_lo = np.where(j < 0, ang[-1] - 360.0, ang[lo])
        a_hi = np.where(j + 1 >= n, ang[0] + 360.0, ang[hi])
        # t >= 0.5 <=> upper is at least as close (ties to the larger angle).
        t = (d - a_lo) / (a_hi - a_lo)
        return lo, hi, t

    # ---------------------------------------------------------------- apply
    def __call__(self, speed, from_dir):
        """Apply the table to grid-relative wind.

        Parameters
        ----------
        speed : array_like
            ``(..., ny, nx)`` wind speed in m/s (grid-relative, i.e. the norm of the
            grid components); NaN where unknown (e.g. outside the NWP hull).
        from_dir : array_like
            ``(..., ny, nx)`` FROM direction in degrees clockwise from the table's GRID
            north; NaN for calm wind.

        Returns
        -------
        speed_out : numpy.ndarray
            ``acceleration[k] * speed`` in m/s. Calm wind (``speed == 0`` and direction NaN):
            0 where the table has data at that pixel for at least one angle, else NaN. NaN
            where ``speed``, ``from_dir`` or either table entry (acceleration or alpha) is NaN.
        dir_out : numpy.ndarray
            ``mod(from_dir - degrees(alpha[k]), 360)``: FROM direction in degrees clockwise
            from grid north, in ``[0, 360)``. NaN wherever ``speed_out`` is NaN, and for calm
            wind.
        """
        s = np.asarray(speed)
        d = np.asarray(from_dir)
        s, d = np.broadcast_arrays(s, d)
        self._check_grid(s.shape)
        lead = s.shape[:-2]
        s2 = s.reshape(-1, self.npix)
        d2 = wrap360(d.reshape(-1, self.npix))
        pix = np.arange(self.npix, dtype=np.int64)
        valid_d = np.isfinite(d2)
        if self.method == "nearest":
            k = self._nearest(d2)
            flat = np.where(valid_d, k * self.npix + pix, 0)
            acc = np.take(self._acc, flat)
            alp = np.take(self._alpha, flat)
        else:
            dd = np.where(valid_d, d2, 0.0)
            lo, hi, t = self._bracket(dd)
            flat_lo = lo * self.npix + pix
            flat_hi = hi * self.npix + pix
            t = t.astype(np.result_type(self._acc.dtype, np.float32), copy=False)
            acc = (1 - t) * np.take(self._acc, flat_lo) + t * np.take(self._acc, flat_hi)
            # alpha is an angle: blend along the shorter arc between the two neighbours
            # (3.10 and -3.10 rad are 0.08 rad apart, not 6.2), never across +-pi.
            a_lo = np.take(self._alpha, flat_lo)
            alp = a_lo + t * wrap_pi(np.take(self._alpha, flat_hi) - a_lo)
        speed_out = acc * s2
        dir_out = wrap360(d2 - np.degrees(alp))
        # No data (NaN speed, direction, acceleration or alpha): both outputs NaN.
        bad = np.isnan(speed_out) | np.isnan(dir_out)
        if bad.any():
            speed_out[bad] = np.nan
            dir_out[bad] = np.nan
            calm = (s2 == 0) & ~valid_d
            if calm.any():
                rows, cols = np.nonzero(calm)
                ucols, inv = np.unique(cols, return_inverse=True)
                table = self._acc.reshape(self.n_angles, self.npix)
                has_data = np.isfinite(table[:, ucols]).any(axis=0)
                speed_out[rows, cols] = np.where(has_data[inv], 0, np.nan)
        return speed_out.reshape(lead + self.shape), dir_out.reshape(lead + self.shape)

    def downscale_uv(self, u, v, gamma=None, threads: int | None = None, out=None):
        """Downscale wind components; see :func:`downscale_uv`.

        Parameters
        ----------
        u, v, gamma
            See :func:`downscale_uv`.
        threads : int, optional
            Threads sharing the work (numpy releases the GIL in these element-wise passes).
            Default: :data:`LOOKUP_THREADS`.
        out : tuple of 4 numpy.ndarray, optional
            C-contiguous arrays of the output shape and dtype (float32 for float32 input,
            else float64) that receive ``(speed, from_dir, u_out, v_out)``; avoids
            allocating (and copying) the results when the caller already has the buffers.

        Returns
        -------
        tuple of numpy.ndarray
            ``(speed, from_dir, u_out, v_out)``: ``out`` itself when given.
        """
        u, v = np.broadcast_arrays(np.asarray(u), np.asarray(v))
        f = np.result_type(u.dtype, v.dtype, np.float32).type
        shape = u.shape
        if out is None:
            out = tuple(np.empty(shape, dtype=f) for _ in range(4))
        else:
            out = tuple(out)
            if len(out) != 4 or any(
                o.shape != shape or o.dtype != f or not o.flags.c_contiguous for o in out
            ):
                raise OptionError(
                    f"out: expected 4 C-contiguous {np.dtype(f).name} arrays of shape {shape}"
                )
        threads = LOOKUP_THREADS if threads is None else max(1, int(threads))
        if not (self.method == "nearest" and self._uniform and u.ndim >= 2):
            for o, r in zip(out, self._downscale_uv_generic(u, v, gamma), strict=True):
                o[...] = r
            return out
        self._check_grid(shape)
        # Fused fast path: same result as _downscale_uv_generic up to float32 rounding, in
        # about half the passes. The speed is frame-independent, the grid direction is only
        # needed for the table index, and turning the wind by alpha is the same rotation in
        # the grid and the earth frame, so the generic path's two frame rotations cancel.
        # Cache-sized pixel blocks keep the temporaries in the CPU cache (2.5x faster than
        # whole chunks); results go straight into the outputs.
        u2 = np.asarray(u, dtype=f).reshape(-1, self.npix)
        v2 = np.asarray(v, dtype=f).reshape(-1, self.npix)
        g = None
        if gamma is not None:
            g = np.broadcast_to(np.asarray(gamma, dtype=f), self.shape).reshape(-1)
        out2 = tuple(o.reshape(-1, self.npix) for o in out)
        # Work items: cache-sized pixel blocks of each time step.
        items = [
            (t, p0, min(p0 + CACHE_BLOCK, self.npix))
            for t in range(u2.shape[0])
            for p0 in range(0, self.npix, CACHE_BLOCK)
        ]

        def work(span):
            for t, p0, p1 in items[span[0] : span[1]]:
                self._nearest_block(
                    u2[t, p0:p1],
                    v2[t, p0:p1],
                    None if g is None else g[p0:p1],
                    p0,
                    tuple(o[t, p0:p1] for o in out2),
                )

        if not items:  # no time steps
            return out
        n_threads = min(threads, len(items))
        cuts = np.linspace(0, len(items), n_threads + 1).astype(int)
        spans = list(zip(cuts[:-1], cuts[1:], strict=True))
        if n_threads <= 1:
            work(spans[0])
        else:
            with ThreadPoolExecutor(n_threads) as pool:
                list(pool.map(work, spans))  # list() re-raises a worker's exception
        return out

    def _nearest_block(self, u, v, g, p0, out):
        """Fused nearest lookup of pixels ``p0 .. p0 + len(u)`` of one time step into ``out``."""
        f = out[0].dtype.type
        speed_out, dir_out, u_out, v_out = out
        speed = np.sqrt(u * u + v * v)
        d_true = np.arctan2(u, v)  # radians; FROM direction = 180° + this
        d_true *= f(180.0 / np.pi)
        d_true += f(180.0)
        # Table index from the grid-relative direction, k = floor(D_grid / step + 0.5) mod n.
        x = d_true - g if g is not None else d_true.copy()
        if self._step != 1:
            x *= f(1.0 / self._step)
        x += f(0.5)
        valid = np.isfinite(x)
        np.copyto(x, 0, where=~valid)
        # floor(x) + n is in [0, 3n) for any |gamma| < 360: a tiny table (in L1 cache) maps
        # it to the row offset k·npix, cheaper than an integer modulo and a multiplication.
        k = np.floor(x, out=x).astype(np.intp)
        k += self.n_angles
        k = np.take(self._row_offsets, k, mode="clip")
        k += self._pixels[p0 : p0 + u.size]
        acc = np.take(self._acc, k).astype(f, copy=False)
        alp = np.take(self._alpha, k).astype(f, copy=False)
        np.multiply(acc, speed, out=speed_out)
        np.multiply(alp, f(-180.0 / np.pi), out=dir_out)
        dir_out += d_true
        _wrap360_inplace(dir_out, x)
        ca, sa = np.cos(alp), np.sin(alp)
        # alpha > 0 turns the wind vector counter-clockwise (to the left), in any frame.
        np.multiply(u, ca, out=u_out)
        np.multiply(v, sa, out=x)
        u_out -= x
        u_out *= acc
        np.multiply(u, sa, out=v_out)
        np.multiply(v, ca, out=x)
        v_out += x
        v_out *= acc
        bad = ~valid
        bad |= np.isnan(speed_out)
        bad |= np.isnan(dir_out)
        calm = speed == 0
        if bad.any() or calm.any():
            # Calm wind: no direction, speed 0 where the pixel has data (see __call__).
            bad &= ~calm
            for o in out:
                o[bad] = np.nan
            if calm.any():
                cols = np.flatnonzero(calm)
                table = self._acc.reshape(self.n_angles, self.npix)
                has_data = np.isfinite(table[:, p0 + cols]).any(axis=0)
                fill = np.where(has_data, 0, np.nan).astype(f)
                speed_out[cols] = fill
                u_out[cols] = fill
                v_out[cols] = fill
                dir_out[cols] = np.nan

    def _downscale_uv_generic(self, u, v, gamma=None):
        if gamma is not None:
            u, v = earth_to_grid(u, v, gamma)
        speed, from_dir = uv_to_speed_dir(u, v)
        speed_out, dir_out = self(speed, from_dir)
        u_out, v_out = speed_dir_to_uv(speed_out, dir_out)
        if gamma is not None:
            u_out, v_out = grid_to_earth(u_out, v_out, gamma)
            dir_out = wrap360(dir_out + np.asarray(gamma, dtype=dir_out.dtype))
        return speed_out, dir_out, u_out, v_out


def _wrap360_inplace(a: np.ndarray, tmp: np.ndarray) -> None:
    """:func:`~devine_onnx.wind.wrap360` in place, with ``tmp`` as scratch space."""
    np.multiply(a, a.dtype.type(1 / 360), out=tmp)
    np.floor(tmp, out=tmp)
    tmp *= 360
    a -= tmp
    # Rounding can only give exactly 360 or a tiny negative: both mean 0.
    np.copyto(a, 0, where=(a >= 360) | (a < 0))


def _short(a: np.ndarray) -> str:
    if a.size <= 6:
        return np.array2string(a, separator=", ")
    return f"[{a[0]:g}, {a[1]:g}, {a[2]:g}, ..., {a[-1]:g}] ({a.size} values)"


def apply_table(
    speed,
    from_dir,
    acceleration,
    alpha,
    angles: Sequence[float] | np.ndarray | None = None,
    method: str = "nearest",
):
    """Apply a correction table to grid-relative speed and FROM direction.

    Shorthand for ``TableLookup(acceleration, alpha, angles, method)(speed, from_dir)``;
    see :class:`TableLookup` for the parameters, the rounding rule and the NaN rules.

    Returns
    -------
    speed_out : numpy.ndarray
        Downscaled speed in m/s, shape of ``speed``.
    dir_out : numpy.ndarray
        Downscaled FROM direction in degrees clockwise from grid north, in ``[0, 360)``.
    """
    return TableLookup(acceleration, alpha, angles, method)(speed, from_dir)


def downscale_uv(
    u_earth,
    v_earth,
    acceleration,
    alpha,
    angles: Sequence[float] | np.ndarray | None,
    gamma=None,
    method: str = "nearest",
):
    """Downscale wind components with a correction table (one chunk, pure numpy).

    Chains: earth-relative -> grid-relative components (rotation by ``gamma``), speed and
    FROM direction, table lookup (:class:`TableLookup`), components, grid-relative ->
    earth-relative.

    Parameters
    ----------
    u_earth, v_earth : array_like
        ``(..., ny, nx)`` eastward and northward wind in m/s on the table grid (any leading
        shape, e.g. time). If ``gamma`` is None they are taken as grid-relative (x/y) wind.
    acceleration, alpha : array_like
        ``(n_angles, ny, nx)`` table (dimensionless ratio; radians, > 0 turns the flow to
        the left).
    angles : array_like or None
        Table directions in degrees from grid north, strictly ascending in [0, 360); None
        for ``n_angles`` equal steps from 0.
    gamma : array_like or None
        Meridian convergence in degrees (:func:`devine_onnx.wind.meridian_convergence`),
        broadcastable to ``(ny, nx)``; None skips both rotations (grid-relative input/output).
    method : {"nearest", "linear"}
        See :class:`TableLookup`.

    Returns
    -------
    speed : numpy.ndarray
        Downscaled wind speed in m/s.
    from_dir : numpy.ndarray
        Downscaled FROM direction in degrees clockwise from TRUE north (grid north if
        ``gamma`` is None), in ``[0, 360)``; NaN for calm wind.
    u_out, v_out : numpy.ndarray
        Downscaled eastward and northward components in m/s (grid x/y components if ``gamma``
        is None); 0 for calm wind.
    """
    return TableLookup(acceleration, alpha, angles, method).downscale_uv(u_earth, v_earth, gamma)


def vertical_wind(vertical, angles, method, u, v, gamma=None) -> np.ndarray:
    """Upward wind ``vertical[k] * S`` (float32) for interpolated NWP components ``u, v``.

    Parameters
    ----------
    vertical : numpy.ndarray
        ``(n_angles, ny, nx)`` table of w / inflow speed (dimensionless).
    angles : array_like
        Table directions in degrees (FROM, clockwise from grid north).
    method : {"nearest", "linear"}
        As the horizontal lookup.
    u, v : numpy.ndarray
        ``(..., ny, nx)`` wind components on the table grid in m/s, earth-relative (rotated
        into the grid with ``gamma``) or grid-relative (``gamma`` None).
    gamma : numpy.ndarray, optional
        Meridian convergence in degrees of each table pixel.

    Returns
    -------
    numpy.ndarray
        ``(..., ny, nx)`` float32 m/s; 0 for calm wind where the table has data, NaN where the
        wind or the table is unknown.
    """
    u = np.asarray(u, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    if gamma is not None:
        u, v = earth_to_grid(u, v, np.asarray(gamma, dtype=np.float32))
    speed, from_dir = uv_to_speed_dir(u, v)
    # The lookup scales its first table by the speed: with vertical as that table, its first
    # result is vertical[k] * S (the second table only sets the direction, unused here).
    w, _ = TableLookup(vertical, vertical, angles, method)(speed, from_dir)
    return np.asarray(w, dtype=np.float32)
