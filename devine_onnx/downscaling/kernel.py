"""The per-chunk kernel of table downscaling: a function of arrays (docs/method.md §4-§5).

:func:`downscale_chunk` takes one chunk of NWP wind ``(t, *source_shape)`` and the table
arrays, and returns the output arrays ``(t, ny_out, nx_out)``: regrid (fixed Delaunay
weights), rotate into grid components by the meridian convergence ``gamma``, look the table up
by FROM direction, rotate back, optionally block-average over ``coarsen x coarsen`` pixels.
Every driver (the time stream, spatial blocks, dask and cluster tasks) calls this one function
through :class:`ChunkKernel` or :class:`StreamKernel`; nothing here reads or writes files.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from devine_onnx.coarsen import coarsen_any, coarsen_mean
from devine_onnx.errors import DevineWarning, option
from devine_onnx.wind import uv_to_speed_dir

from . import lookup as _lookup

__all__ = [
    "DEFAULT_MAX_SPEED",
    "MAX_BLOCK_ELEMENTS",
    "ChunkKernel",
    "ImplausibleSpeedWarning",
    "KernelParams",
    "NWPNaNWarning",
    "NaNCount",
    "StreamKernel",
    "coarsen_any",
    "coarsen_mean",
    "downscale_chunk",
    "warn_nan",
]

#: Pixel-steps processed per call of the lookup (bounds its temporaries to ~50 MB).
MAX_BLOCK_ELEMENTS = 1_000_000


class NWPNaNWarning(DevineWarning):
    """NaN (or infinite values) in the NWP wind blanked output pixel-steps (the warning gives
    their number)."""


class ImplausibleSpeedWarning(DevineWarning):
    """Downscaled wind speeds above ``max_speed`` (wrong units or variables in the forecast?)."""


#: Default ``max_speed`` (m/s): downscaled speeds above it are reported as implausible (the
#: strongest 10 m gusts ever measured are about 113 m/s; hourly winds stay far below).
DEFAULT_MAX_SPEED = 100.0


# --------------------------------------------------------------------------- coarsening
# --------------------------------------------------------------------------- NaN count
class NaNCount:
    """Output pixel-steps blanked by NaN in the NWP wind, summed over the chunks of a run.

    ``steps`` counts the time steps with any blanked pixel once, however many spatial blocks
    saw them. Infinite NWP values count as NaN (the kernel blanks them). Also counts the
    output pixel-steps whose downscaled speed exceeds ``max_speed`` (m/s): ``fast``, and the
    largest speed seen, ``fastest``.
    """

    def __init__(
        self,
        acc: np.ndarray | None,
        alpha: np.ndarray | None,
        n_times: int = 0,
        *,
        max_speed: float = DEFAULT_MAX_SPEED,
    ):
        self._tables = (acc, alpha)
        self._has_data: np.ndarray | None = None
        self.blanked = 0
        self._hit = np.zeros(n_times, dtype=bool)
        self.max_speed = float(max_speed)
        self.fast = 0
        self.fastest = 0.0

    def state(self) -> tuple:
        """What :meth:`merge` adds to another count (sent back by cluster workers)."""
        return self.blanked, self._hit, self.fast, self.fastest

    def add_speed(self, speed: np.ndarray) -> None:
        """Count the output pixel-steps of ``speed`` (m/s) above :attr:`max_speed`."""
        with np.errstate(invalid="ignore"):
            over = speed > self.max_speed
        n = int(np.count_nonzero(over))
        if n:
            self.fast += n
            self.fastest = max(self.fastest, float(np.max(speed[over])))

    @property
    def steps(self) -> int:
        """Time steps with at least one blanked output pixel."""
        return int(np.count_nonzero(self._hit))

    @property
    def hit_steps(self) -> np.ndarray:
        """``(n_times,)`` bool: the time steps with a blanked output pixel."""
        return self._hit

    def merge(self, blanked: int, hit_steps, fast: int = 0, fastest: float = 0.0) -> None:
        """Add the count of another run over other pixels (a block on a cluster worker):
        the values of its :meth:`state`."""
        self.blanked += int(blanked)
        self.fast += int(fast)
        self.fastest = max(self.fastest, float(fastest))
        hit = np.asarray(hit_steps, dtype=bool)
        if hit.size > self._hit.size:
            self._hit = np.concatenate([self._hit, np.zeros(hit.size - self._hit.size, bool)])
        self._hit[: hit.size] |= hit

    def set_table(self, acc: np.ndarray | None, alpha: np.ndarray | None) -> None:
        """The table (block) that the following chunks use."""
        self._tables = (acc, alpha)
        self._has_data = None

    def has_data(self) -> np.ndarray | bool:
        """``(ny, nx)`` True where the table has values for some direction (computed once);
        True without a table (per-step mode: the network gives every pixel a value)."""
        if self._has_data is None:
            acc, alpha = self._tables
            if acc is None:
                return True
            self._has_data = (np.isfinite(acc) & np.isfinite(alpha)).any(axis=0)
        return self._has_data

    def add(self, ur, vr, valid, coarsen, out_u, t0: int = 0) -> None:
        """Count the pixel-steps of ``out_u`` (time steps ``t0``...) NaN because ``ur``/``vr`` are.

        ``valid``: ``(ny, nx)`` True where the regridding reaches the pixel.
        """
        hit = np.isnan(ur) | np.isnan(vr)
        hit &= (valid & self.has_data())[None]
        if coarsen:
            hit = coarsen_any(hit, coarsen) & np.isnan(out_u)
        n = hit.reshape(hit.shape[0], -1).sum(axis=1)
        self.blanked += int(n.sum())
        end = t0 + n.size
        if end > self._hit.size:
            self._hit = np.concatenate([self._hit, np.zeros(end - self._hit.size, dtype=bool)])
        self._hit[t0:end] |= n > 0


def blank_nonfinite(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(u, v, blanked)``: NWP components with every non-finite value (and the other
    component of it) set to NaN, and whether any was. An infinite speed has no direction: it
    is blanked like a missing value, and counted with them (:meth:`NaNCount.add`)."""
    finite = np.isfinite(u) & np.isfinite(v)
    if finite.all():
        return u, v, False
    u = np.where(finite, u, np.nan).astype(u.dtype, copy=False)
    v = np.where(finite, v, np.nan).astype(v.dtype, copy=False)
    return u, v, True


def warn_nan(nan_count: NaNCount, source, u_name, v_name, n_times: int, shape) -> None:
    """One warning per run: how many output pixel-steps NaN (or infinite values) in the
    forecast blanked; one more when downscaled speeds exceed ``max_speed``."""
    total = n_times * int(np.prod(shape))
    if nan_count.fast:
        warnings.warn(
            f"{source}: {nan_count.fast} output pixel-steps "
            f"({100.0 * nan_count.fast / max(total, 1):.2g}% of {total}) have downscaled wind "
            f"speeds above {option('max_speed', nan_count.max_speed)} m/s (up to "
            f"{nan_count.fastest:.4g} m/s): check the units and variables of the forecast "
            f"({u_name}/{v_name}, expected m/s), or raise {option('max_speed')} if such "
            "speeds are real",
            ImplausibleSpeedWarning,
            stacklevel=3,
        )
    if nan_count.blanked:
        warnings.warn(
            f"{source}: NaN or infinite values in the NWP wind ({u_name}/{v_name}) blanked "
            f"{nan_count.blanked} output pixel-steps ({100.0 * nan_count.blanked / total:.2g}% "
            f"of {total}, in {nan_count.steps} of {n_times} time steps): each missing NWP "
            "value makes every table pixel of the triangles around it NaN; fill or mask the "
            "missing values in the forecast if that is not intended",
            NWPNaNWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------- kernel
@dataclass(frozen=True, eq=False)
class KernelParams:
    """Everything the kernel needs besides the data (picklable, sent to dask workers).

    Attributes
    ----------
    weights : RegridWeights or None
        NWP grid -> table grid (or block); None: the wind is already on the table grid.
    angles : numpy.ndarray
        Table directions, degrees FROM, clockwise from grid north (float64).
    gamma : numpy.ndarray or None
        ``(ny, nx)`` meridian convergence in degrees (float32); None for grid-relative wind.
    method : {"nearest", "linear"}
        Lookup between table directions.
    coarsen : int or None
        Block averaging of the outputs.
    out_shape : (int, int)
        Output grid shape.
    """

    weights: object
    angles: np.ndarray
    gamma: np.ndarray | None
    method: str
    coarsen: int | None
    out_shape: tuple[int, int]

    @classmethod
    def create(cls, weights, angles, gamma, method, coarsen, out_shape) -> KernelParams:
        """Parameters with the arrays in the kernel's dtypes."""
        return cls(
            weights,
            np.asarray(angles, dtype=np.float64),
            None if gamma is None else np.asarray(gamma, dtype=np.float32),
            method,
            coarsen,
            tuple(int(s) for s in out_shape),
        )


def downscale_chunk(
    u, v, acc, alpha, params: KernelParams, nan_count=None, vertical=None, t0: int = 0
) -> tuple[np.ndarray, ...]:
    """Downscale one chunk of NWP wind: regrid, lookup, optional coarsening.

    Parameters
    ----------
    u, v : numpy.ndarray
        ``(..., *source_shape)`` NWP wind in m/s (earth-relative, or grid-relative if
        ``params.gamma`` is None); with ``params.weights`` None, ``(..., ny, nx)`` wind already
        on the table grid.
    acc, alpha : numpy.ndarray
        ``(n_angles, ny, nx)`` table (ratio; radians, > 0 turns the flow to the left).
    params : KernelParams
    nan_count : NaNCount, optional
        Counts the output pixel-steps that NaN in ``u``/``v`` blanked (checked only when the
        chunk has NaN).
    vertical : numpy.ndarray, optional
        ``(n_angles, ny, nx)`` table of w / inflow speed: adds ``upward_air_velocity``.
    t0 : int
        Time index of the first step of ``u``/``v`` in the series (for ``nan_count``).

    Returns
    -------
    tuple of numpy.ndarray
        ``(speed, from_dir, u_out, v_out)`` (and ``w_out`` with ``vertical``), float32, shape
        ``(..., ny_out, nx_out)``; directions FROM, degrees clockwise from true north (grid
        north when ``params.gamma`` is None).
    """
    w = params.weights
    grid_shape = tuple(acc.shape[1:])
    src_shape = tuple(w.source_shape) if w is not None else grid_shape
    n_target = w.n_target if w is not None else int(np.prod(grid_shape))
    nsrc = len(src_shape)
    u = np.asarray(u)
    v = np.asarray(v)
    lead = u.shape[: u.ndim - nsrc]
    u = u.reshape((-1,) + src_shape)
    v = v.reshape((-1,) + src_shape)
    n = u.shape[0]
    out_shape = params.out_shape
    n_out = 4 if vertical is None else 5
    outs = tuple(np.empty((n,) + out_shape, dtype=np.float32) for _ in range(n_out))
    table = _lookup.TableLookup(acc, alpha, params.angles, params.method)
    step = max(1, MAX_BLOCK_ELEMENTS // max(1, n_target))
    u, v, blanked = blank_nonfinite(u, v)
    # NaN in the (small) NWP chunk: count what it blanks in the output.
    count = nan_count if blanked else None
    if count is not None:
        valid = w.valid.reshape(w.target_shape) if w is not None else np.ones(grid_shape, bool)
    for a in range(0, n, step):
        b = min(n, a + step)
        if w is not None:
            ur = w.apply(np.asarray(u[a:b], dtype=np.float32))
            vr = w.apply(np.asarray(v[a:b], dtype=np.float32))
        else:
            ur = np.asarray(u[a:b], dtype=np.float32)
            vr = np.asarray(v[a:b], dtype=np.float32)
        if vertical is not None:
            # Same interpolated components as the horizontal wind: interpolated once.
            wv = _lookup.vertical_wind(vertical, params.angles, params.method, ur, vr, params.gamma)
            outs[4][a:b] = coarsen_mean(wv, params.coarsen) if params.coarsen else wv
        if not params.coarsen:
            # Straight into the outputs: no result arrays to allocate and copy.
            table.downscale_uv(ur, vr, params.gamma, out=tuple(o[a:b] for o in outs[:4]))
            if count is not None:
                count.add(ur, vr, valid, None, outs[2][a:b], t0 + a)
            if nan_count is not None:
                nan_count.add_speed(outs[0][a:b])
            continue
        _, _, uo, vo = table.downscale_uv(ur, vr, params.gamma)
        uo = coarsen_mean(np.asarray(uo, dtype=np.float32), params.coarsen)
        vo = coarsen_mean(np.asarray(vo, dtype=np.float32), params.coarsen)
        if count is not None:
            count.add(ur, vr, valid, params.coarsen, uo, t0 + a)
        del ur, vr
        speed, dirs = uv_to_speed_dir(uo, vo)
        for o, r in zip(outs[:4], (speed, dirs, uo, vo), strict=True):
            o[a:b] = r
        if nan_count is not None:
            nan_count.add_speed(outs[0][a:b])
    return tuple(o.reshape(lead + out_shape) for o in outs)


class ChunkKernel:
    """Picklable ``f(u, v, acc, alpha[, vertical])`` applied blockwise by ``xarray.apply_ufunc``."""

    def __init__(self, params: KernelParams):
        self.params = params

    def __call__(self, u, v, acc, alpha, vertical=None):
        return downscale_chunk(u, v, acc, alpha, self.params, vertical=vertical)


class StreamKernel:
    """``compute(u, v)`` of the time loop: one table (or block), time chunks in order."""

    def __init__(self, acc, alpha, params: KernelParams, nan_count=None, vertical=None):
        self.args = (acc, alpha, params, nan_count)
        self.vertical = vertical
        self.t0 = 0

    def __call__(self, u, v):
        t0 = self.t0
        self.t0 += u.shape[0]
        return downscale_chunk(u, v, *self.args, vertical=self.vertical, t0=t0)
