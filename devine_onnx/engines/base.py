"""The engine interface: one way of computing correction-table values for a DEM.

A correction table (see :mod:`devine_onnx.tables.table`) stores, for every inflow direction
``angle`` (FROM direction, degrees clockwise from the DEM's grid north) and table pixel, the
speed ratio ``acceleration`` (1) and the deflection ``alpha`` (radians, > 0 = flow turned to
the left, i.e. downscaled FROM direction = inflow direction - degrees(alpha)), optionally the
vertical ratio ``vertical`` (w / inflow speed, 1). NaN is the only "no data" marker.

Every engine fills that one format. The engine-neutral loop
(:func:`devine_onnx.tables.build.compute_corrections`) reads and validates the DEM, asks
the engine which part of the DEM the table covers, restricts it to an optional target,
calls :meth:`TableEngine.batches` and hands each batch to the incremental writer. Engines never
read files nor write tables themselves.

Life cycle: ``engine = SomeEngine(**options)`` (validates the options, cheap, picklable) ->
``dem = engine.prepare_dem(dem, notes)`` -> ``window = engine.coverage(dem)`` (or
:meth:`TableEngine.target_window`) -> ``engine.bind(dem, window)`` -> ``engine.batches(angles,
batch)``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xarray as xr

from devine_onnx.errors import OptionError, option

__all__ = ["TableEngine", "TableWindow"]


@dataclass(frozen=True)
class TableWindow:
    """Rows and columns of the (prepared) DEM that the table covers.

    Attributes
    ----------
    rows, cols : slice
        Half-open index ranges into the DEM array (row 0 = north).
    """

    rows: slice
    cols: slice

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start


def dem_extent(dem: xr.DataArray) -> str:
    """``"x a to b, y c to d (lon .. to .., lat .. to ..)"``: the DEM's pixel edges in its CRS
    (metres), then in longitude/latitude (degrees, WGS 84) when its CRS is known."""
    from devine_onnx.io.cf import lonlat_extent, read_crs

    xs, ys = np.asarray(dem.x.values, np.float64), np.asarray(dem.y.values, np.float64)
    half = abs(float(xs[1] - xs[0])) / 2 if xs.size > 1 else 0.0
    x0, x1, y0, y1 = xs.min() - half, xs.max() + half, ys.min() - half, ys.max() + half
    text = f"x {x0:.1f} to {x1:.1f}, y {y0:.1f} to {y1:.1f}"
    try:
        crs = read_crs(dem, strict=False)
    except Exception:  # noqa: BLE001 - a message helper never fails the caller
        crs = None
    lonlat = lonlat_extent([x0, x1], [y0, y1], crs)
    return text + (f" ({lonlat})" if lonlat else "")


class TableEngine(abc.ABC):
    """Base class of the table engines.

    Subclasses set the class attributes and implement :meth:`coverage`, :meth:`bind`,
    :meth:`batches` and :meth:`attrs`.
    """

    #: Registry name (``--engine NAME``).
    name: ClassVar[str]
    #: One line describing the method, for titles, ``info`` and attributes.
    title: ClassVar[str]
    #: Reference to cite.
    citation: ClassVar[str]
    #: Variables produced by :meth:`batches`, in this order.
    variables: ClassVar[tuple[str, ...]] = ("acceleration", "alpha")
    #: True when the values do not depend on the inflow direction (``acceleration`` the same
    #: for every direction, ``alpha`` = 0), e.g. the ``helbig`` engine.
    direction_independent: ClassVar[bool] = False

    def prepare_dem(self, dem: xr.DataArray, notes: list[str]) -> xr.DataArray:
        """Adapt or refuse a validated DEM (e.g. trim, minimum size); append notes.

        The default returns the DEM unchanged.
        """
        return dem

    def coverage(self, dem: xr.DataArray) -> TableWindow:
        """The part of ``dem`` the table covers when no target is given.

        The default is the whole DEM (engines whose network leaves a frame override it).
        """
        ny, nx = dem.shape[-2:]
        return TableWindow(slice(0, int(ny)), slice(0, int(nx)))

    def target_window(
        self, dem: xr.DataArray, bounds: tuple[float, float, float, float]
    ) -> TableWindow:
        """The pixels of :meth:`coverage` whose centres lie in ``bounds`` (DEM CRS, metres).

        Engines whose values near the edge of their coverage are unreliable override this to
        refuse targets too close to it.
        """
        return self.pixels_in(dem, bounds, self.coverage(dem))

    @staticmethod
    def pixels_in(dem: xr.DataArray, bounds, cov: TableWindow) -> TableWindow:
        """The pixels of ``cov`` whose centres lie in ``bounds`` (:class:`OptionError` if none)."""
        xmin, ymin, xmax, ymax = bounds
        res = abs(float(dem.x.values[1] - dem.x.values[0]))
        tol = 1e-3 * res
        xs = dem.x.values[cov.cols]
        ys = dem.y.values[cov.rows]
        ci = np.flatnonzero((xs >= xmin - tol) & (xs <= xmax + tol))
        ri = np.flatnonzero((ys >= ymin - tol) & (ys <= ymax + tol))
        if ci.size == 0 or ri.size == 0:
            raise OptionError(
                f"{option('target')} ({xmin:.1f}, {ymin:.1f}, {xmax:.1f}, {ymax:.1f}): contains "
                f"no pixel centre of the table grid (the DEM spans {dem_extent(dem)}); give "
                f"bounds inside the DEM and at least one pixel ({res:g} m) wide"
            )
        r0, c0 = cov.rows.start, cov.cols.start
        return TableWindow(
            slice(r0 + int(ri[0]), r0 + int(ri[-1]) + 1),
            slice(c0 + int(ci[0]), c0 + int(ci[-1]) + 1),
        )

    @abc.abstractmethod
    def bind(self, dem: xr.DataArray, window: TableWindow) -> None:
        """Precompute what does not depend on the direction (geometry, references...)."""

    def static_variables(self) -> dict[str, np.ndarray]:
        """Direction-independent ``(y, x)`` variables of the bound window (after :meth:`bind`),
        written with the table's ``elevation``, e.g. ``edge_influence`` (docs/method.md §9.1).

        The default has none.
        """
        return {}

    @abc.abstractmethod
    def batches(self, angles: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, dict]]:
        """Yield ``(ks, {variable: float32 array (len(ks), ny, nx)})`` over ``angles``.

        ``angles`` are whole degrees (int64, ascending); ``batch`` is a hint for how many
        directions to compute per step. Arrays cover the bound window exactly.
        """

    @abc.abstractmethod
    def attrs(self) -> dict:
        """Engine attributes recorded in the table (flat netCDF-compatible values).

        Must include ``engine``, ``engine_title``, ``engine_citation`` and one attribute per
        parameter; :attr:`resume_keys` name those that must match to resume a partial table.
        """

    #: Attributes of :meth:`attrs` that must be equal to resume a partial table.
    resume_keys: ClassVar[tuple[str, ...]] = ()
