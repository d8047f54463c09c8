"""Linear interpolation of NWP fields to the table grid with fixed Delaunay weights (docs/method.md §5).

:class:`RegridWeights` is a value object in the style of xESMF / pyresample: the weights are
computed once (Delaunay triangulation of the NWP points projected into the table CRS, three
vertex indices and three barycentric weights per table pixel), saved to a small NetCDF file,
validated against the grids of later NWP files with fingerprints, and applied to any number
of time steps with three gathers and a weighted sum.

Inside the convex hull of the NWP points the result equals
``scipy.interpolate.LinearNDInterpolator``; table pixels outside it get NaN (no
extrapolation, docs/method.md §6.4).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse
from pyproj import CRS, Transformer
from scipy.spatial import Delaunay, QhullError

from devine_onnx._version import __version__
from devine_onnx.errors import (
    DevineWarning,
    InputFileError,
    NWPError,
    OutputError,
    WeightsMismatchError,
    first_line,
)
from devine_onnx.io.atomic import atomic_output, check_writable

from .fingerprint import (
    source_grid_fingerprint,
    source_grid_shape,
    target_grid_fingerprint,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "OutsideHullWarning",
    "RegridWeights",
    "check_weights_path",
]

FORMAT_NAME = "devine-onnx regrid weights"
FORMAT_VERSION = 1

#: Tolerance of the checks on loaded weights: each within [-tol, 1 + tol], each row's sum
#: within tol of 1 (barycentric weights computed in float64 are off by ~1e-15).
WEIGHT_TOLERANCE = 1e-6
# Targets processed per block when computing barycentric weights (bounds temporary memory).
_BLOCK = 1 << 20
#: Suffixes of weights files (they are always NetCDF-4).
WEIGHTS_SUFFIXES = (".nc", ".nc4")


class OutsideHullWarning(DevineWarning):
    """Some table pixels lie outside the convex hull of the NWP points: they get NaN."""


def _warn_outside(n_out: int, n_target: int, where: str, stacklevel: int = 2) -> None:
    """The one warning about table pixels outside the NWP grid (``where``: extents or file)."""
    if n_out:
        warnings.warn(
            f"{n_out} of {n_target} table pixels ({100.0 * n_out / n_target:.2f}%) lie outside "
            f"the NWP grid ({where}); they get NaN",
            OutsideHullWarning,
            stacklevel=stacklevel + 1,
        )


def check_weights_path(path: str | os.PathLike) -> Path:
    """Refuse a weights output that is not a ``.nc`` file in a writable folder.

    Raises
    ------
    OutputError
        For another suffix (``w.zarr``...) or a missing/read-only folder.
    """
    p = Path(path)
    if p.suffix.lower() not in WEIGHTS_SUFFIXES:
        raise OutputError(
            f"{p}: regridding weights are written as NetCDF, not {p.suffix or 'without suffix'}; "
            f"give a .nc name (e.g. {p.with_suffix('.nc').name})"
        )
    return check_writable(p)


def _extent_lonlat(x, y, crs_wkt: str) -> str:
    """:func:`_extent` in CRS units, then in longitude/latitude when the CRS is known."""
    from devine_onnx.io.cf import lonlat_extent

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    lonlat = lonlat_extent(x[ok], y[ok], crs_wkt) if crs_wkt and ok.any() else None
    return _extent(x, y) + (f" ({lonlat})" if lonlat else "")


def _extent(x, y) -> str:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return "x ?, y ? (no finite coordinate)"
    xs, ys = x[ok], y[ok]
    return f"x {_fmt(xs.min())}..{_fmt(xs.max())}, y {_fmt(ys.min())}..{_fmt(ys.max())}"


def _fmt(value: float) -> str:
    """Coordinates: whole units for large (projected) values, 6 digits for degrees."""
    return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.6g}"


def _shape(value) -> tuple[int, ...]:
    return tuple(int(n) for n in np.atleast_1d(np.asarray(value, dtype=np.int64)))


class RegridWeights:
    """Fixed linear (Delaunay barycentric) interpolation weights from an NWP grid to a table grid.

    Build with :meth:`build` (points already projected into the table CRS) or
    :meth:`from_grids` (coordinates in the NWP CRS), apply with :meth:`apply` /
    :meth:`apply_xarray`, save with :meth:`to_netcdf`, load with :meth:`from_netcdf`,
    check against a grid with :meth:`validate`.

    Parameters
    ----------
    indices : numpy.ndarray
        ``(n_target, 3)`` int32/int64 indices of the triangle vertices in the flattened
        source grid (C order over ``source_shape``). 0 for invalid targets.
    weights : numpy.ndarray
        ``(n_target, 3)`` float64 barycentric weights (each valid row sums to 1, entries in
        [0, 1] up to rounding); NaN for targets outside the hull.
    valid : numpy.ndarray
        ``(n_target,)`` bool, True where the target lies inside the hull.
    source_shape, target_shape : tuple of int
        Shape of the source grid (the last axes of the fields to interpolate) and of the
        target grid (``(ny, nx)`` of the table).
    source_fingerprint, target_fingerprint : str, optional
        See :func:`grid_fingerprint`.
    source_crs_wkt, target_crs_wkt : str, optional
        WKT of the source and target CRS (informative).
    path : str or os.PathLike, optional
        File the weights were loaded from (named in error messages).
    """

    def __init__(
        self,
        indices: np.ndarray,
        weights: np.ndarray,
        valid: np.ndarray,
        source_shape: Sequence[int],
        target_shape: Sequence[int],
        *,
        source_fingerprint: str = "",
        target_fingerprint: str = "",
        source_crs_wkt: str = "",
        target_crs_wkt: str = "",
        path: str | os.PathLike | None = None,
    ):
        self.indices = np.asarray(indices)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.valid = np.asarray(valid, dtype=bool)
        self.source_shape = _shape(source_shape)
        self.target_shape = _shape(target_shape)
        self.source_fingerprint = str(source_fingerprint)
        self.target_fingerprint = str(target_fingerprint)
        self.source_crs_wkt = str(source_crs_wkt)
        self.target_crs_wkt = str(target_crs_wkt)
        self.path = None if path is None else Path(path)
        n_t = self.n_target
        if self.indices.shape != (n_t, 3) or self.weights.shape != (n_t, 3):
            raise ValueError(
                f"indices {self.indices.shape} and weights {self.weights.shape} must be "
                f"({n_t}, 3) for target shape {self.target_shape}"
            )
        if self.valid.shape != (n_t,):
            raise ValueError(f"valid {self.valid.shape} must be ({n_t},)")
        self._csr: dict[str, scipy.sparse.csr_matrix] = {}
        self._invalid: np.ndarray | None = None

    # ------------------------------------------------------------------ properties
    @property
    def n_source(self) -> int:
        """Number of source points (product of ``source_shape``)."""
        return int(np.prod(self.source_shape, dtype=np.int64))

    @property
    def n_target(self) -> int:
        """Number of target points (product of ``target_shape``)."""
        return int(np.prod(self.target_shape, dtype=np.int64))

    @property
    def n_outside(self) -> int:
        """Number of targets outside the hull of the source points (NaN when applied)."""
        return int(self.n_target - np.count_nonzero(self.valid))

    def warn_outside(self, where: str | None = None) -> None:
        """Emit :class:`OutsideHullWarning` if some targets are outside the hull.

        Parameters
        ----------
        where : str, optional
            Said in parentheses (default: the weights file, or "in memory").
        """
        _warn_outside(self.n_outside, self.n_target, where or f"weights {self._label()}")

    def __repr__(self) -> str:
        return (
            f"RegridWeights(source_shape={self.source_shape}, target_shape={self.target_shape}, "
            f"outside={self.n_outside}, source_fingerprint={self.source_fingerprint!r}, "
            f"target_fingerprint={self.target_fingerprint!r})"
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        src_x,
        src_y,
        tgt_x,
        tgt_y,
        *,
        source_shape: Sequence[int],
        target_shape: Sequence[int],
        source_fingerprint: str = "",
        target_fingerprint: str = "",
        source_crs_wkt: str = "",
        target_crs_wkt: str = "",
        warn: bool = True,
    ) -> RegridWeights:
        """Triangulate the source points and compute the barycentric weights of the targets.

        Parameters
        ----------
        src_x, src_y : array_like
            Source (NWP) point coordinates already projected into the target CRS, in its
            units (metres), flattened in C order over ``source_shape`` (any ordering of a
            1-D or 2-D NWP grid, as long as the fields are flattened the same way).
            Non-finite points (masked, or outside the projection's domain) are left out of
            the triangulation.
        tgt_x, tgt_y : array_like
            1-D target (table) axes, ``len(tgt_y), len(tgt_x) == target_shape``; or arrays
            with ``target_shape`` (or already flattened) giving every target point.
        source_shape, target_shape : sequence of int
            Shapes of the source grid and of the target grid ``(ny, nx)``.
        source_fingerprint, target_fingerprint, source_crs_wkt, target_crs_wkt : str
            Stored as given (see :func:`grid_fingerprint`).
        warn : bool
            Emit :class:`OutsideHullWarning` when some targets are outside the hull.

        Returns
        -------
        RegridWeights

        Raises
        ------
        NWPError
            If fewer than 3 usable source points, a degenerate (collinear) source grid, or no
            target inside the hull of the source points.

        Notes
        -----
        The four corners of a cell of a (nearly) regular grid are (nearly) cocircular, so
        either diagonal is a Delaunay edge and Qhull's choice depends on the last bits of
        the coordinates: two copies of one forecast whose coordinates differ by round-off
        (e.g. GRIB and NetCDF) can give different weights inside a cell, and fields that
        vary within a cell are then interpolated differently (linear fields never are). As
        in the original method and :class:`scipy.interpolate.LinearNDInterpolator`.
        """
        source_shape = _shape(source_shape)
        target_shape = _shape(target_shape)
        src_x = np.asarray(src_x, dtype=np.float64).ravel()
        src_y = np.asarray(src_y, dtype=np.float64).ravel()
        n_src = int(np.prod(source_shape, dtype=np.int64))
        if src_x.size != n_src or src_y.size != n_src:
            raise ValueError(
                f"source coordinates have {src_x.size} and {src_y.size} points, "
                f"expected {n_src} for source shape {source_shape}"
            )
        tx, ty = _target_points(tgt_x, tgt_y, target_shape)
        n_tgt = tx.size

        finite = np.isfinite(src_x) & np.isfinite(src_y)
        all_finite = bool(finite.all())
        src_ids = None if all_finite else np.flatnonzero(finite)
        points = (
            np.column_stack([src_x, src_y])
            if all_finite
            else np.column_stack([src_x[finite], src_y[finite]])
        )
        if points.shape[0] < 3:
            raise NWPError(
                f"NWP grid has {points.shape[0]} usable points (finite coordinates), at least "
                "3 are needed to interpolate; check the NWP file's coordinates"
            )
        try:
            tri = Delaunay(points)
        except QhullError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "QhullError"
            raise NWPError(
                f"NWP grid points ({_extent(src_x, src_y)} in the table CRS) cannot be "
                f"triangulated (collinear or duplicate points: {first}); check the NWP "
                "file's coordinates"
            ) from None

        index_dtype = np.int32 if n_src < np.iinfo(np.int32).max else np.int64
        indices = np.zeros((n_tgt, 3), dtype=index_dtype)
        weights = np.full((n_tgt, 3), np.nan, dtype=np.float64)
        valid = np.zeros(n_tgt, dtype=bool)
        for start in range(0, n_tgt, _BLOCK):
            stop = min(start + _BLOCK, n_tgt)
            xi = np.column_stack([tx[start:stop], ty[start:stop]])
            simplex = tri.find_simplex(xi)
            ok = simplex >= 0
            if not ok.any():
                continue
            s = simplex[ok]
            trans = tri.transform[s]  # (m, 3, 2): inverse affine map rows, then offset r_n
            bary = np.einsum("mij,mj->mi", trans[:, :2, :], xi[ok] - trans[:, 2, :])
            w = np.empty((s.size, 3), dtype=np.float64)
            w[:, :2] = bary
            w[:, 2] = 1.0 - bary.sum(axis=1)
            # Degenerate (zero-area) simplices have a NaN transform: treat as outside.
            good = np.isfinite(w).all(axis=1)
            verts = tri.simplices[s[good]]
            w = w[good]
            if src_ids is not None:
                verts = src_ids[verts]
            rows = np.arange(start, stop)[ok][good]
            indices[rows] = verts
            weights[rows] = w
            valid[rows] = True

        n_valid = int(np.count_nonzero(valid))
        if n_valid == 0:
            raise NWPError(
                f"the NWP grid does not cover the table: NWP points span "
                f"{_extent_lonlat(src_x, src_y, target_crs_wkt)}, table spans "
                f"{_extent_lonlat(tx, ty, target_crs_wkt)} (x, y in table CRS units); use an "
                "NWP file whose domain contains the table"
            )
        if warn:
            _warn_outside(
                n_tgt - n_valid,
                n_tgt,
                f"NWP {_extent(src_x, src_y)}, table {_extent(tx, ty)}",
                stacklevel=3,
            )
        return cls(
            indices,
            weights,
            valid,
            source_shape,
            target_shape,
            source_fingerprint=source_fingerprint,
            target_fingerprint=target_fingerprint,
            source_crs_wkt=source_crs_wkt,
            target_crs_wkt=target_crs_wkt,
        )

    @classmethod
    def from_grids(
        cls,
        src_lon_or_x,
        src_lat_or_y,
        src_crs,
        tgt_x,
        tgt_y,
        tgt_crs,
        *,
        scattered: bool = False,
        warn: bool = True,
    ) -> RegridWeights:
        """Build weights from NWP coordinates in their own CRS and the table's 1-D axes.

        Parameters
        ----------
        src_lon_or_x, src_lat_or_y : array_like
            NWP coordinates in ``src_crs`` (longitude/latitude in degrees for a geographic
            CRS). 1-D axes of a regular grid (meshgridded internally: ``source_shape`` is then
            ``(len(src_lat_or_y), len(src_lon_or_x))``, i.e. fields are ``(..., lat, lon)``),
            or 2-D arrays of equal shape (``source_shape`` is that shape), or, with
            ``scattered=True``, 1-D arrays of equal length listing every point
            (``source_shape = (n,)``).
        src_crs : pyproj.CRS or str or int
            CRS of the NWP coordinates; WGS 84 (``"EPSG:4326"``) for ordinary lat/lon
            files (the caller decides; docs/method.md §4).
        tgt_x, tgt_y : array_like
            1-D axes of the table grid (projected, CRS units), ``target_shape`` is
            ``(len(tgt_y), len(tgt_x))``.
        tgt_crs : pyproj.CRS or str or int
            CRS of the table.
        scattered : bool
            Interpret 1-D source arrays as a list of points instead of grid axes.
        warn : bool
            Emit :class:`OutsideHullWarning` when some table pixels are outside the hull.

        Returns
        -------
        RegridWeights
            With fingerprints from :func:`grid_fingerprint` of the arrays as given.

        Raises
        ------
        NWPError
            If the NWP grid does not cover the table at all, or cannot be triangulated.
        """
        src_crs = CRS.from_user_input(src_crs)
        tgt_crs = CRS.from_user_input(tgt_crs)
        sx = np.asarray(src_lon_or_x, dtype=np.float64)
        sy = np.asarray(src_lat_or_y, dtype=np.float64)
        tgt_x = np.asarray(tgt_x, dtype=np.float64)
        tgt_y = np.asarray(tgt_y, dtype=np.float64)
        if tgt_x.ndim != 1 or tgt_y.ndim != 1:
            raise ValueError("tgt_x and tgt_y must be the 1-D axes of the table grid")
        source_shape = source_grid_shape(sx, sy, scattered=scattered)
        if sx.ndim == 1 and sy.ndim == 1 and not scattered:
            gx, gy = np.meshgrid(sx, sy)
        else:
            gx, gy = sx, sy
        transformer = Transformer.from_crs(src_crs, tgt_crs, always_xy=True)
        px, py = transformer.transform(gx.ravel(), gy.ravel(), errcheck=False)
        return cls.build(
            np.asarray(px),
            np.asarray(py),
            tgt_x,
            tgt_y,
            source_shape=source_shape,
            target_shape=(tgt_y.size, tgt_x.size),
            source_fingerprint=source_grid_fingerprint(sx, sy, src_crs, scattered=scattered),
            target_fingerprint=target_grid_fingerprint(tgt_x, tgt_y, tgt_crs),
            source_crs_wkt=src_crs.to_wkt(),
            target_crs_wkt=tgt_crs.to_wkt(),
            warn=warn,
        )

    # ------------------------------------------------------------------ application
    def as_sparse(self) -> scipy.sparse.csr_matrix:
        """The weights as a sparse matrix.

        Returns
        -------
        scipy.sparse.csr_matrix
            ``(n_target, n_source)`` float64, three stored entries per valid row (explicit
            zero weights included, so NaN sources propagate as in :meth:`apply`), empty rows
            for targets outside the hull: ``M @ field_flat`` gives 0 there, not NaN; mask
            with :attr:`valid`.
        """
        nv = np.flatnonzero(self.valid)
        indptr = np.zeros(self.n_target + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(np.where(self.valid, 3, 0))
        return scipy.sparse.csr_matrix(
            (self.weights[nv].ravel(), self.indices[nv].ravel(), indptr),
            shape=(self.n_target, self.n_source),
        )

    def apply(self, field) -> np.ndarray:
        """Interpolate a field (any number of leading axes) to the target grid.

        Parameters
        ----------
        field : array_like
            Shape ``(..., *source_shape)``; e.g. ``(time, lat, lon)`` wind components in m/s.

        Returns
        -------
        numpy.ndarray
            Shape ``(..., *target_shape)``; float32 for a float32 field (computed with
            float32 weights), else float64. NaN outside the hull and at targets whose
            triangle has a NaN vertex (NaN sources reach only those targets). Computed as
            one sparse CSR mat-vec (:meth:`as_sparse`, 3 non-zeros per row) per leading
            index.

        Raises
        ------
        WeightsMismatchError
            If the trailing axes of ``field`` are not ``source_shape``.
        """
        field = np.asarray(field)
        nd = len(self.source_shape)
        if field.shape[field.ndim - nd :] != self.source_shape or field.ndim < nd:
            raise self._mismatch(
                f"a field of shape {field.shape}",
                found_source=field.shape[max(field.ndim - nd, 0) :],
            )
        lead = field.shape[: field.ndim - nd]
        dtype = np.float32 if field.dtype == np.float32 else np.float64
        matrix = self._sparse_as(dtype)
        flat = field.reshape(-1, self.n_source)
        out = np.empty((flat.shape[0], self.n_target), dtype=dtype)
        # One CSR mat-vec per leading row: measured faster than 3 fancy-index gathers per
        # row (~2x) and than one sparse @ dense product (which needs transposed copies).
        for m in range(flat.shape[0]):
            row = flat[m]
            if row.dtype != dtype:
                row = row.astype(dtype)
            out[m] = matrix @ row
        if self._invalid is None:
            self._invalid = np.flatnonzero(~self.valid)
        if self._invalid.size:
            out[:, self._invalid] = np.nan
        return out.reshape(lead + self.target_shape)

    def _sparse_as(self, dtype) -> scipy.sparse.csr_matrix:
        """Cached :meth:`as_sparse` matrix in ``dtype`` (float32 or float64)."""
        key = np.dtype(dtype).name
        if key not in self._csr:
            m = self.as_sparse()
            self._csr[key] = m if key == "float64" else m.astype(dtype)
        return self._csr[key]

    def apply_xarray(
        self,
        da,
        src_dims: Sequence[str],
        tgt_dims: Sequence[str] = ("y", "x"),
        tgt_coords=None,
    ):
        """Interpolate a DataArray; lazy (dask) input gives lazy output.

        Parameters
        ----------
        da : xarray.DataArray
            Field with the source dimensions ``src_dims`` (sizes ``source_shape``, in that
            order) and any other dimensions (e.g. ``time``, possibly dask-chunked). Chunks
            along ``src_dims`` are merged (one chunk per source grid).
        src_dims : sequence of str
            Source grid dimensions, e.g. ``("latitude", "longitude")``.
        tgt_dims : sequence of str
            Names of the output dimensions, ``("y", "x")`` by default.
        tgt_coords : mapping or sequence, optional
            Coordinates of the output: a mapping ``{name: values}`` or a pair of 1-D arrays
            ``(y, x)`` in the order of ``tgt_dims``.

        Returns
        -------
        xarray.DataArray
            Dimensions: the non-source dimensions of ``da`` then ``tgt_dims``; same attrs.

        Raises
        ------
        WeightsMismatchError
            If the sizes of ``src_dims`` are not ``source_shape``.
        """
        import xarray as xr

        src_dims = list(src_dims)
        tgt_dims = list(tgt_dims)
        found = tuple(int(da.sizes[d]) if d in da.sizes else -1 for d in src_dims)
        if found != self.source_shape:
            raise self._mismatch(
                f"DataArray {da.name!r} with dims {dict(da.sizes)}", found_source=found
            )
        if len(tgt_dims) != len(self.target_shape):
            raise ValueError(f"tgt_dims {tgt_dims} must have {len(self.target_shape)} names")
        if da.chunks is not None:
            da = da.chunk({d: -1 for d in src_dims})
        out_dtype = np.float32 if da.dtype == np.float32 else np.float64
        # Drop coordinates that live on the source dimensions (lat/lon 2-D arrays...).
        da = da.drop_vars([c for c in da.coords if set(da[c].dims) & set(src_dims)])
        result = xr.apply_ufunc(
            self.apply,
            da,
            input_core_dims=[src_dims],
            output_core_dims=[tgt_dims],
            exclude_dims=set(src_dims),
            dask="parallelized",
            dask_gufunc_kwargs={
                "output_sizes": dict(zip(tgt_dims, self.target_shape, strict=True))
            },
            output_dtypes=[out_dtype],
            keep_attrs=True,
        )
        if tgt_coords is not None:
            if isinstance(tgt_coords, dict):
                coords = dict(tgt_coords)
            else:
                coords = dict(zip(tgt_dims, tgt_coords, strict=True))
            result = result.assign_coords(coords)
        return result

    # ------------------------------------------------------------------ validation
    def _label(self) -> str:
        return str(self.path) if self.path is not None else "regridding weights (in memory)"

    def _mismatch(
        self,
        what: str,
        found_source=None,
        found_target=None,
        fingerprint_note: str = "",
    ) -> WeightsMismatchError:
        fs = tuple(found_source) if found_source is not None else "not given"
        ft = tuple(found_target) if found_target is not None else "not given"
        hint = (
            "delete the weights file to rebuild it, or give the weights built for this grid"
            if self.path is not None
            else "rebuild the weights for this grid"
        )
        return WeightsMismatchError(
            f"{self._label()}: weights built for source shape {self.source_shape} and target "
            f"shape {self.target_shape}, found {what} with source shape {fs} and target shape "
            f"{ft}{fingerprint_note}; {hint}"
        )

    def matches(
        self,
        *,
        source_fingerprint: str | None = None,
        target_fingerprint: str | None = None,
        source_shape: Sequence[int] | None = None,
        target_shape: Sequence[int] | None = None,
    ) -> bool:
        """True if :meth:`validate` (same arguments) passes.

        Fingerprints and shapes of grids given as to :meth:`from_grids` come from
        :func:`source_grid_fingerprint`, :func:`source_grid_shape` and
        :func:`target_grid_fingerprint`.
        """
        try:
            self.validate(
                source_fingerprint=source_fingerprint,
                target_fingerprint=target_fingerprint,
                source_shape=source_shape,
                target_shape=target_shape,
            )
        except WeightsMismatchError:
            return False
        return True

    def validate(
        self,
        *,
        source_fingerprint: str | None = None,
        target_fingerprint: str | None = None,
        source_shape: Sequence[int] | None = None,
        target_shape: Sequence[int] | None = None,
    ) -> None:
        """Check that the weights were built for the given grids.

        Parameters
        ----------
        source_fingerprint, target_fingerprint : str, optional
            Fingerprints of the grids at hand (:func:`grid_fingerprint`); not checked if None.
        source_shape, target_shape : sequence of int, optional
            Shapes of the grids at hand; not checked if None.

        Raises
        ------
        WeightsMismatchError
            One line naming the weights file, the expected and found shapes, and which
            fingerprint differs.
        """
        fs = _shape(source_shape) if source_shape is not None else None
        ft = _shape(target_shape) if target_shape is not None else None
        problems = []
        if fs is not None and fs != self.source_shape:
            problems.append("source shape differs")
        if ft is not None and ft != self.target_shape:
            problems.append("target shape differs")
        if source_fingerprint is not None and source_fingerprint != self.source_fingerprint:
            problems.append(
                f"source grid fingerprint {source_fingerprint} differs from the weights' "
                f"{self.source_fingerprint or '(none)'}"
            )
        if target_fingerprint is not None and target_fingerprint != self.target_fingerprint:
            problems.append(
                f"target grid fingerprint {target_fingerprint} differs from the weights' "
                f"{self.target_fingerprint or '(none)'}"
            )
        if problems:
            raise self._mismatch(
                "grids",
                found_source=fs,
                found_target=ft,
                fingerprint_note=" [" + "; ".join(problems) + "]",
            )

    # ------------------------------------------------------------------ I/O
    def to_dataset(self):
        """The weights as an :class:`xarray.Dataset` (the layout written by :meth:`to_netcdf`)."""
        import xarray as xr

        return xr.Dataset(
            {
                "indices": (("target", "vertex"), self.indices),
                "weights": (("target", "vertex"), self.weights),
                "valid": (("target",), self.valid.astype(np.int8)),
            },
            attrs={
                "format": FORMAT_NAME,
                "format_version": np.int32(FORMAT_VERSION),
                "software": "devine-onnx",
                "software_version": __version__,
                "source_shape": np.asarray(self.source_shape, dtype=np.int64),
                "target_shape": np.asarray(self.target_shape, dtype=np.int64),
                "source_fingerprint": self.source_fingerprint,
                "target_fingerprint": self.target_fingerprint,
                "source_crs_wkt": self.source_crs_wkt,
                "target_crs_wkt": self.target_crs_wkt,
                "description": (
                    "Delaunay barycentric interpolation weights: value at target t = "
                    "sum_j weights[t, j] * source_flat[indices[t, j]] (source flattened in C "
                    "order over source_shape); valid == 0 (weights NaN) outside the hull"
                ),
            },
        )

    def to_netcdf(self, path: str | os.PathLike) -> Path:
        """Write the weights to a NetCDF file atomically (temporary name, then rename).

        Parameters
        ----------
        path : str or os.PathLike
            Destination file, ``.nc`` (or ``.nc4``).

        Returns
        -------
        pathlib.Path
            ``path``.

        Raises
        ------
        OutputError
            Another suffix (weights are always NetCDF), or a missing or read-only folder.
        """
        check_weights_path(path)
        ds = self.to_dataset()
        enc = {name: {"zlib": True, "complevel": 1} for name in ("indices", "weights", "valid")}
        enc["weights"]["_FillValue"] = None
        with atomic_output(path) as tmp:
            ds.to_netcdf(tmp, engine="netcdf4", encoding=enc)
        return Path(path)

    @classmethod
    def from_netcdf(cls, path: str | os.PathLike) -> RegridWeights:
        """Read weights written by :meth:`to_netcdf`.

        Parameters
        ----------
        path : str or os.PathLike
            Weights file.

        Returns
        -------
        RegridWeights

        Raises
        ------
        InputFileError
            If the file is missing, unreadable, not a devine-onnx weights file, or holds
            weights :meth:`check_values` refuses (indices outside the source grid, weights
            not barycentric, ``valid`` inconsistent with the weights).
        """
        import xarray as xr

        p = Path(path)
        if not p.is_file():
            raise InputFileError(f"{p}: regridding weights file not found; check the path")
        try:
            with xr.open_dataset(p, engine="netcdf4", mask_and_scale=False) as ds:
                ds = ds.load()
        except Exception as exc:  # any reader failure means "not a weights file"
            raise InputFileError(
                f"{p}: cannot be read as a NetCDF regridding weights file "
                f"({type(exc).__name__}); delete it to rebuild the weights"
            ) from None
        if ds.attrs.get("format") != FORMAT_NAME or not {"indices", "weights", "valid"} <= set(
            ds.data_vars
        ):
            raise InputFileError(
                f"{p}: not a devine-onnx regridding weights file (no format={FORMAT_NAME!r} "
                "attribute or missing indices/weights/valid); give a weights file or delete it "
                "to rebuild"
            )
        version = int(ds.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise InputFileError(
                f"{p}: regridding weights format version {version}, expected {FORMAT_VERSION}; "
                "delete the file to rebuild the weights"
            )
        try:
            weights = cls(
                ds["indices"].values,
                ds["weights"].values,
                _valid_flags(ds["valid"].values),
                _shape(ds.attrs["source_shape"]),
                _shape(ds.attrs["target_shape"]),
                source_fingerprint=ds.attrs.get("source_fingerprint", ""),
                target_fingerprint=ds.attrs.get("target_fingerprint", ""),
                source_crs_wkt=ds.attrs.get("source_crs_wkt", ""),
                target_crs_wkt=ds.attrs.get("target_crs_wkt", ""),
                path=p,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InputFileError(
                f"{p}: damaged or tampered regridding weights: {first_line(exc)}; delete the "
                "file to rebuild the weights (or rebuild them with 'devine-onnx regrid')"
            ) from None
        weights.check_values()
        return weights

    def check_values(self) -> None:
        """Refuse weights that cannot come from :meth:`build` (damaged or tampered files).

        Checked for every row marked valid: the three vertex indices are integers inside the
        source grid (``0 <= index < n_source``), the three weights are finite, within
        ``[0, 1]`` and sum to 1, to :data:`WEIGHT_TOLERANCE` (barycentric weights of a point
        inside its triangle); for the other rows the weights are NaN (as written by
        :meth:`to_netcdf`), and at least one row is valid. Without this an index past the grid
        reads memory beyond the forecast array (or crashes the process) and scaled weights
        scale every wind speed. Costs a few passes over the ``(n_target, 3)`` arrays.

        Raises
        ------
        InputFileError
            One line naming the file, the first offending row and what to do (delete the
            file to rebuild the weights).
        """
        label = self._label()
        hint = (
            "delete the file to rebuild the weights (or rebuild them with 'devine-onnx regrid')"
            if self.path is not None
            else "rebuild the weights"
        )

        def refuse(what: str) -> InputFileError:
            return InputFileError(
                f"{label}: damaged or tampered regridding weights: {what}; {hint}"
            )

        if any(n <= 0 for n in self.source_shape + self.target_shape):
            raise refuse(
                f"source shape {self.source_shape} and target shape {self.target_shape} must "
                "be positive"
            )
        if not np.issubdtype(self.indices.dtype, np.integer):
            raise refuse(f"indices of type {self.indices.dtype}, expected integers")
        valid = self.valid
        n_valid = int(np.count_nonzero(valid))
        if n_valid == 0:
            raise refuse("no table pixel is marked valid")
        idx = self.indices[valid]
        bad = np.flatnonzero(((idx < 0) | (idx >= self.n_source)).any(axis=1))
        if bad.size:
            row = int(np.flatnonzero(valid)[bad[0]])
            raise refuse(
                f"{bad.size} rows have vertex indices outside the source grid of "
                f"{self.n_source} points (row {row}: {self.indices[row].tolist()})"
            )
        w = self.weights[valid]
        tol = WEIGHT_TOLERANCE
        with np.errstate(invalid="ignore"):
            bad_w = ~np.isfinite(w).all(axis=1) | (w < -tol).any(axis=1) | (w > 1 + tol).any(axis=1)
            bad_w |= np.abs(w.sum(axis=1) - 1.0) > tol
        bad = np.flatnonzero(bad_w)
        if bad.size:
            row = int(np.flatnonzero(valid)[bad[0]])
            raise refuse(
                f"{bad.size} rows have weights that are not finite, within [0, 1] and summing "
                f"to 1 (row {row}: {self.weights[row].tolist()})"
            )
        stray = np.isfinite(self.weights[~valid]).any(axis=1)
        if stray.any():
            row = int(np.flatnonzero(~valid)[np.flatnonzero(stray)[0]])
            raise refuse(
                f"{int(stray.sum())} rows marked invalid (outside the NWP grid) have weights "
                f"(row {row}: {self.weights[row].tolist()}); valid and weights disagree"
            )


def _valid_flags(values) -> np.ndarray:
    """The stored ``valid`` flags (0/1) as booleans; ValueError for anything else."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer) and values.dtype != bool:
        raise ValueError(f"valid of type {values.dtype}, expected 0/1 flags")
    if values.size and not np.isin(values, (0, 1)).all():
        raise ValueError("valid holds values other than 0 and 1")
    return values.astype(bool)


def _target_points(tgt_x, tgt_y, target_shape: tuple[int, ...]):
    """Flattened target coordinates (C order over ``target_shape``)."""
    tx = np.asarray(tgt_x, dtype=np.float64)
    ty = np.asarray(tgt_y, dtype=np.float64)
    n = int(np.prod(target_shape, dtype=np.int64))
    if (
        tx.ndim == 1
        and ty.ndim == 1
        and len(target_shape) == 2
        and (ty.size, tx.size) == tuple(target_shape)
        and not (tx.size == n and ty.size == n)
    ):
        gx, gy = np.meshgrid(tx, ty)
        return gx.ravel(), gy.ravel()
    if tx.size != n or ty.size != n:
        raise ValueError(
            f"target coordinates of shapes {tx.shape} and {ty.shape} do not match target "
            f"shape {tuple(target_shape)}"
        )
    return tx.ravel(), ty.ravel()
