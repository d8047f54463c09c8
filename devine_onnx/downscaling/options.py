"""The options of a downscaling run, checked once (:class:`DownscaleOptions`).

:func:`~devine_onnx.downscaling.api.downscale` and the ``downscale`` command both build one
:class:`DownscaleOptions`: every check of the options, alone and together (table vs per-step
mode, the cluster and block options), is made here, once, with the option spelled as the
caller gave it (:func:`devine_onnx.errors.option`). The drivers take the checked object.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from devine_onnx.errors import DevineWarning, OptionError, number_option, option

from .kernel import DEFAULT_MAX_SPEED
from .lookup import METHODS

__all__ = [
    "CoarsenRemainderWarning",
    "DownscaleOptions",
    "check_mode",
    "parse_block_size",
    "parse_memory",
    "parse_time",
]


class CoarsenRemainderWarning(DevineWarning):
    """The table size is not a multiple of ``coarsen``: the last rows/columns are dropped."""


def _is_int(value, low: int, high: int | None = None) -> bool:
    return (
        isinstance(value, int | np.integer)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def parse_memory(value) -> int | None:
    """Bytes from ``"2GB"``, ``"1.5 GiB"``, ``"500MB"``, ``"2e9"`` or an integer; None stays None.

    Decimal units are powers of 1000 (GB = 10⁹ bytes), binary ones powers of 1024 (GiB).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise OptionError(f"{option('max_memory', value)}: expected a size such as 2GB")
    if isinstance(value, int | np.integer | float):
        n = int(value)
    else:
        from dask.utils import parse_bytes

        try:
            n = int(parse_bytes(str(value).strip()))
        except (ValueError, TypeError):
            n = -1
    if n <= 0:
        raise OptionError(
            f"{option('max_memory', value)}: expected a positive size such as 2GB, 1.5GiB or 500MB"
        )
    return n


def parse_time(value, name: str) -> np.datetime64 | None:
    """A valid time in UTC (``datetime64[ns]``) from ISO text (``"2026-01-15T06:00"``,
    ``"2026-01-15 06:00Z"``, ``"2026-01-15T07:00+01:00"``; a date alone is its 00:00), a
    datetime or a numpy datetime64; None stays None. Times without an offset are UTC, those
    with one are converted to UTC. ``name``: the option, for the message."""
    if value is None:
        return None
    import pandas as pd

    try:
        if isinstance(value, bool | int | float | np.number):
            raise ValueError(value)
        stamp = pd.Timestamp(value)
        if stamp is pd.NaT:
            raise ValueError(value)
    except (ValueError, TypeError, OverflowError):
        raise OptionError(
            f"{option(name, value)}: expected an ISO time such as 2026-01-15T06:00 (UTC, or "
            "with an offset such as +01:00)"
        ) from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp.to_datetime64(), "ns")


def parse_block_size(value, coarsen: int | None = None) -> tuple[int, int] | None:
    """``(rows, columns)`` of a block in table pixels from ``512``, ``"512"``, ``"256x1024"``
    or a pair; None stays None. Both must be multiples of ``coarsen``."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            parts = value.lower().replace(" ", "").split("x")
            if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
                raise ValueError
            dims = [int(p) for p in parts]
        elif isinstance(value, int | np.integer) and not isinstance(value, bool):
            dims = [int(value)]
        else:
            dims = [int(v) for v in value]
            if len(dims) != 2 or any(isinstance(v, bool) for v in value):
                raise ValueError
    except (TypeError, ValueError):
        raise OptionError(
            f"{option('block_size', value)}: expected a block size in table pixels, N or "
            "ROWSxCOLUMNS (e.g. 512 or 256x1024)"
        ) from None
    if len(dims) == 1:
        dims = dims * 2
    if min(dims) < 1:
        raise OptionError(f"{option('block_size', value)}: expected positive sizes")
    c = coarsen or 1
    if dims[0] % c or dims[1] % c:
        raise OptionError(
            f"{option('block_size', value)}: blocks must be whole {option('coarsen', c)} "
            f"blocks; give multiples of {c}"
        )
    return dims[0], dims[1]


def check_mode(
    *, table, per_step: bool, model, dem, dem_crs=None, grid_relative=False, nwp_wind_frame=None
):
    """Table or per-step mode from what was given; True for per-step.

    Raises
    ------
    OptionError
        A table with per-step inputs (or the reverse), neither a table nor per-step inputs,
        per-step without a DEM, ``dem_crs`` without a DEM, or ``grid_relative`` with
        ``nwp_wind_frame``.
    """
    if dem_crs is not None and dem is None:
        raise OptionError(
            f"{option('dem_crs')} describes the {option('dem')} of per-step downscaling; give "
            f"the DEM too, or leave {option('dem_crs')} out"
        )
    is_per_step = bool(per_step) or model is not None or dem is not None
    # One spelling per run: per_step=True from Python, --per-step on the command line.
    flag = option("per_step")
    flag = flag if flag.startswith("-") else f"{flag}=True"
    if is_per_step and (not per_step or table is not None):
        raise OptionError(
            f"per-step downscaling ({flag}) takes a feature-network model "
            f"({option('model')}) and the DEM ({option('dem')}) instead of a table; table "
            f"mode takes only the table ({option('table')})"
        )
    if not is_per_step and table is None:
        raise OptionError(
            f"no correction table: give one ({option('table')}), or use per-step mode with a "
            f"feature-network model and the DEM ({flag}, {option('model')}, {option('dem')})"
        )
    if grid_relative and nwp_wind_frame is not None:
        raise OptionError(
            f"{option('grid_relative')} takes the NWP components as they are (relative to the "
            f"table's grid north): do not combine it with {option('nwp_wind_frame')}"
        )
    if is_per_step and dem is None:
        raise OptionError(
            f"per-step downscaling needs the DEM ({option('dem')}): its features drive the network"
        )
    return is_per_step


@dataclass(frozen=True)
class DownscaleOptions:
    """How to downscale, checked and normalised on creation.

    Attributes
    ----------
    chunk_time : int
        Time steps read, processed and written at once (>= 1).
    coarsen : int or None
        Block averaging of the outputs over ``coarsen x coarsen`` pixels; None (also for 1):
        none.
    grid_relative : bool
        NWP components relative to the table's grid north; outputs ``x_wind``/``y_wind``.
    angular_interpolation : {"nearest", "linear"}
        Table lookup between directions (tables only).
    complevel : int
        Deflate level 0-9 of NetCDF outputs.
    max_memory : int or None
        Bytes the run may use (given as ``"2GB"``, ``"1.5GiB"`` or an int): table blocks, or
        in per-step mode the network passes and the time chunk (default there
        :data:`~devine_onnx.downscaling.per_step.DEFAULT_MEMORY`).
    block_size : (int, int) or None
        Forced spatial blocks in table pixels, multiples of ``coarsen``; tables only.
    workers, scheduler
        dask.distributed local cluster size, or an existing scheduler; tables only.
    quiet : bool
        No progress bar.
    max_speed : float
        Downscaled speeds above it (m/s) are counted and reported once per run
        (:class:`~devine_onnx.downscaling.kernel.ImplausibleSpeedWarning`); ``inf``: no check.
    per_step : bool
        Per-step mode (a feature network, no table): the table-only options must be unset.
    start, end : numpy.datetime64 or None
        Time window of the forecast to downscale, both included, in UTC (given as ISO text,
        see :func:`parse_time`); None: from the first / to the last step.

    Raises
    ------
    OptionError
        One line naming the option and what is expected.
    """

    chunk_time: int = 24
    coarsen: int | None = None
    grid_relative: bool = False
    angular_interpolation: str = "nearest"
    complevel: int = 1
    max_memory: int | None = None
    block_size: tuple[int, int] | None = None
    workers: int | None = None
    scheduler: object = None
    quiet: bool = False
    per_step: bool = False
    start: object = None
    end: object = None
    max_speed: float = DEFAULT_MAX_SPEED

    def __post_init__(self):
        if self.per_step:
            if self.angular_interpolation != "nearest":
                raise OptionError("angular_interpolation applies to tables, not to per-step mode")
            if any(o is not None for o in (self.block_size, self.workers, self.scheduler)):
                raise OptionError(
                    f"{option('block_size')}, {option('workers')} and {option('scheduler')} "
                    "apply to tables (spatial blocks of the table), not to per-step mode"
                )
        if not _is_int(self.chunk_time, 1):
            raise OptionError(
                f"{option('chunk_time', self.chunk_time)}: expected a positive integer"
            )
        if self.coarsen is not None and not _is_int(self.coarsen, 1):
            raise OptionError(
                f"{option('coarsen', self.coarsen)}: expected a positive integer (block size "
                "in pixels)"
            )
        if self.angular_interpolation not in METHODS:
            raise OptionError(
                f"{option('angular_interpolation', self.angular_interpolation)}: use one of "
                f"{', '.join(METHODS)}"
            )
        if not _is_int(self.complevel, 0, 9):
            raise OptionError(
                f"{option('complevel', self.complevel)}: expected an integer from 0 (none) to 9"
            )
        max_speed = number_option(
            "max_speed",
            float("nan") if isinstance(self.max_speed, bool) else self.max_speed,
            f"expected a wind speed in m/s above 0 (default {DEFAULT_MAX_SPEED:g}; inf: no check)",
            finite=False,
            label=self.max_speed,
        )
        object.__setattr__(self, "max_speed", max_speed)
        coarsen = int(self.coarsen) if self.coarsen not in (None, 1) else None
        object.__setattr__(self, "chunk_time", int(self.chunk_time))
        object.__setattr__(self, "coarsen", coarsen)
        object.__setattr__(self, "complevel", int(self.complevel))
        object.__setattr__(self, "max_memory", parse_memory(self.max_memory))
        object.__setattr__(self, "block_size", parse_block_size(self.block_size, coarsen))
        object.__setattr__(self, "start", parse_time(self.start, "start"))
        object.__setattr__(self, "end", parse_time(self.end, "end"))

    @property
    def cluster(self) -> bool:
        """Blocks run as dask.distributed tasks."""
        return self.workers is not None or self.scheduler is not None

    def history(self) -> str:
        """The options as written in the output's ``history``."""
        method = "per-step" if self.per_step else self.angular_interpolation
        window = "".join(
            f", {name}={np.datetime_as_string(value, unit='s')}Z"
            for name, value in (("start", self.start), ("end", self.end))
            if value is not None
        )
        return (
            f"chunk_time={self.chunk_time}, coarsen={self.coarsen}, "
            f"grid_relative={self.grid_relative}, angular_interpolation={method}{window}"
        )

    def check_grid(self, ny: int, nx: int, what: str = "table", *, stacklevel: int = 2) -> None:
        """Check ``coarsen`` against a grid of ``ny x nx`` pixels.

        Raises :class:`OptionError` when it is larger than the grid; warns
        (:class:`CoarsenRemainderWarning`) about the rows/columns that do not fill a block,
        ``stacklevel`` frames above the caller.
        """
        c = self.coarsen
        if not c:
            return
        if c > ny or c > nx:
            raise OptionError(
                f"{option('coarsen', c)}: larger than the {what} ({ny} x {nx} pixels); give "
                "a smaller block size"
            )
        ry, rx = ny % c, nx % c
        if not (ry or rx):
            return
        common = [d for d in range(2, min(ny, nx) + 1) if ny % d == 0 and nx % d == 0][:6]
        hint = (
            f"use a block size dividing both ({', '.join(map(str, common))})"
            if common
            else "no block size > 1 divides both"
        )
        left = [
            f"{r} {side_what}{'' if r == 1 else 's'} ({side})"
            for r, side_what, side in ((ry, "row", "south"), (rx, "column", "east"))
            if r
        ]
        warnings.warn(
            f"{option('coarsen', c)}: the table's {ny} x {nx} pixels are not whole blocks: "
            f"the last {' and '.join(left)} {'is' if ry + rx == 1 else 'are'} left out of the "
            f"output; {hint} to keep every pixel",
            CoarsenRemainderWarning,
            stacklevel=stacklevel + 1,
        )
