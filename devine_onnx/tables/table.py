"""The correction table: its variables, attributes, reading it back, and the rules to resume.

One format for every engine (docs/method.md §8):

- ``acceleration(angle, y, x)``: speed ratio (1), downscaled speed = acceleration x inflow speed;
- ``alpha(angle, y, x)``: deflection in radians, > 0 = flow turned to the left
  (downscaled FROM direction = inflow FROM direction - degrees(alpha));
- ``vertical(angle, y, x)`` (engines that give it): vertical wind / inflow speed (1);
- ``elevation(y, x)``: the DEM on the table grid (m);
- ``angle``: FROM direction of the uniform inflow, whole degrees clockwise from the DEM's
  **grid** north; ``x``/``y`` and a CF grid mapping ``spatial_ref`` for the DEM's CRS.

NaN is the only "no data" marker. Global attributes record the engine (``engine``,
``engine_title``, ``engine_citation`` and one attribute per parameter), the DEM
(``dem_source``, ``dem_fingerprint``, ``resolution``), ``software`` and ``history``.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr
from pyproj import CRS

from devine_onnx._version import __version__
from devine_onnx.coarsen import coarsen_any, coarsen_mean
from devine_onnx.errors import OptionError, TableError, first_line, option
from devine_onnx.io.cf import read_crs, write_grid_mapping
from devine_onnx.io.dem import dem_fingerprint
from devine_onnx.io.formats import guess_format
from devine_onnx.tables.holes import IncompleteTableWarning, TableHoles, find_holes, progress

__all__ = [
    "DIRECTION_VARIABLES",
    "VARIABLE_ATTRS",
    "CorrectionTable",
    "IncompleteTableWarning",
    "TableHoles",
    "angles_text",
    "alpha_in_degrees",
    "mismatches",
    "open_table",
    "synthetic_note",
    "table_crs",
    "table_template",
]

#: CF attributes of the table variables.
VARIABLE_ATTRS = {
    "acceleration": {
        "long_name": "wind speed ratio (downscaled speed / uniform inflow speed)",
        "units": "1",
        "comment": "downscaled speed = acceleration[k] * NWP wind speed, k = round(from-direction)",
        "grid_mapping": "spatial_ref",
    },
    "alpha": {
        "long_name": "wind direction deviation",
        "units": "radian",
        "comment": (
            "angle between the downscaled wind and the inflow; positive = flow turned to the "
            "left (counter-clockwise): downscaled from-direction = from-direction - "
            "degrees(alpha)"
        ),
        "grid_mapping": "spatial_ref",
    },
    "vertical": {
        "long_name": "vertical wind ratio (upward wind / uniform inflow speed)",
        "units": "1",
        "comment": "downscaled upward_air_velocity = vertical[k] * NWP wind speed",
        "grid_mapping": "spatial_ref",
    },
    # Direction-independent quality flag of the devine engine (docs/method.md §9.1).
    "edge_influence": {
        "long_name": "value influenced by the edge of the DEM or of the computed window",
        "units": "1",
        "flag_values": [0, 1],
        "flag_meanings": "clean edge_influenced",
        "comment": (
            "1 where, for at least one of the 360 directions, the value depended on terrain "
            "outside the DEM (the rotation fill, within the sliding-mean box and the UNet's "
            "receptive field) or on the zero padding at the edge of the crop, and where the "
            "table has no value; 0 where every direction's value depends on the DEM alone"
        ),
        "grid_mapping": "spatial_ref",
    },
}
_ANGLE_ATTRS = {
    "long_name": "inflow wind from-direction (table index k)",
    "units": "degree",
    "comment": (
        "meteorological FROM direction of the uniform inflow, in degrees clockwise from the "
        "DEM's grid north (+y axis); 270 = wind from the west (DEM not rotated). Grid north "
        "differs from true north by the meridian convergence of the projection"
    ),
}
#: Attributes (besides the engine's own) that must match to resume a partial table.
_RESUME_KEYS = ("engine", "dem_fingerprint", "value_precision", "target_bounds", "software")


def table_template(
    dem: xr.DataArray,
    window,
    angles: np.ndarray,
    engine_attrs: dict,
    *,
    dtype: str,
    notes: list[str],
    bounds=None,
    target=None,
    static: dict | None = None,
) -> xr.Dataset:
    """Everything of a table but its per-direction variables (see :mod:`.writers`).

    Parameters
    ----------
    dem : xarray.DataArray
        The prepared DEM (see :func:`devine_onnx.io.dem.load_dem`).
    window : devine_onnx.engines.base.TableWindow
        The DEM rows/columns the table covers.
    angles : numpy.ndarray
        Table directions (degrees).
    engine_attrs : dict
        :meth:`~devine_onnx.engines.base.TableEngine.attrs` of the engine.
    dtype : {"float32", "float16"}
        Value precision recorded in ``value_precision``.
    notes : list of str
        What was changed on the way (stored in ``notes``).
    bounds, target
        The target bounds and what the user gave for them, when given.
    static : dict, optional
        Direction-independent ``(y, x)`` arrays of the engine
        (:meth:`~devine_onnx.engines.base.TableEngine.static_variables`), written like
        ``elevation`` with the attributes of :data:`VARIABLE_ATTRS`, updated by those of the
        engine's DataArrays.
    """
    crop = dem.isel(y=window.rows, x=window.cols)
    ds = xr.Dataset(
        {"elevation": crop.drop_vars("spatial_ref", errors="ignore")},
        coords={"angle": ("angle", np.asarray(angles).astype(np.int32), dict(_ANGLE_ATTRS))},
    )
    ds["elevation"].attrs = {
        "long_name": "terrain elevation (the DEM on the table grid)",
        "standard_name": "surface_altitude",
        "units": "m",
        "grid_mapping": "spatial_ref",
    }
    ds.x.attrs = {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}
    ds.y.attrs = {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}
    ds = write_grid_mapping(ds, dem.rio.crs, variables=["elevation"])
    for name, values in (static or {}).items():
        # The engine's own attributes (e.g. what its edge_influence flag means) come last.
        attrs = {**VARIABLE_ATTRS.get(name, {}), **getattr(values, "attrs", {})}
        ds[name] = (("y", "x"), np.asarray(values), attrs)
    res = abs(float(dem.x.values[1] - dem.x.values[0]))
    attrs = {
        "title": f"Wind correction table ({engine_attrs.get('engine_title', '')})",
        "Conventions": "CF-1.8",
        "software": f"devine-onnx {__version__}",
        **engine_attrs,
        "dem_source": str(dem.attrs.get("source", "")),
        "dem_fingerprint": dem_fingerprint(dem),
        "dem_shape": [int(n) for n in dem.shape],
        "resolution": float(res),
        "value_precision": (
            "float16 (values rounded to float16 precision as the original, stored as float32)"
            if dtype == "float16"
            else "float32"
        ),
    }
    if bounds is not None:
        attrs["target_bounds"] = [float(b) for b in bounds]
        if target is not None and not isinstance(target, xr.DataArray | xr.Dataset):
            if isinstance(target, str) or hasattr(target, "__fspath__"):
                attrs["target_source"] = str(target)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs["history"] = (
        f"{now}: devine-onnx {__version__} compute_corrections "
        f"(engine={engine_attrs.get('engine')}, dem={attrs['dem_source'] or 'in memory'}, "
        f"{len(angles)} directions)"
    )
    attrs["notes"] = "\n".join(notes)
    ds.attrs = attrs
    return ds


def mismatches(state: dict, template: xr.Dataset, engine_keys=(), *, complete=False) -> list[str]:
    """What differs between an existing table (``state``) and the table about to be written.

    Parameters
    ----------
    state : dict
        :func:`devine_onnx.io.writers.inspect_output` of the existing output.
    template : xarray.Dataset
        :func:`table_template` of the run.
    engine_keys : sequence of str
        The engine's parameters that must match (``TableEngine.resume_keys``).
    complete : bool
        The existing output is a finished table (no progress marker expected).

    Returns
    -------
    list of str
        One short phrase per difference (empty: the partial table can be resumed, or the
        finished table is the one the run would write).
    """
    attrs = state["attrs"]
    out = []
    for key in (*_RESUME_KEYS, *engine_keys):
        a, b = attrs.get(key), template.attrs.get(key)
        if a is None and b is None:
            continue
        if a is None or b is None or not _equal(a, b):
            out.append(f"{key} ({_short(a)} there, {_short(b)} now)")
    if not np.array_equal(np.asarray(state["records"]), template.angle.values):
        out.append(
            f"angles ({len(state['records'])} there, {template.sizes['angle']} now)"
            if len(state["records"]) != template.sizes["angle"]
            else "angles (other directions)"
        )
    shape = (template.sizes["y"], template.sizes["x"])
    if tuple(state["shape"]) != shape:
        out.append(f"table shape ({state['shape']} there, {shape} now)")
    done = attrs.get("directions_done")
    if complete:
        return out
    if done is None or not 0 <= int(done) <= template.sizes["angle"]:
        out.append("no progress marker (not a partial table)")
    return out


def _equal(a, b) -> bool:
    if isinstance(b, list | tuple) or isinstance(a, list | tuple | np.ndarray):
        try:
            return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
        except (TypeError, ValueError):
            return False
    if isinstance(b, float):
        try:
            return float(a) == b
        except (TypeError, ValueError):
            return False
    return str(a) == str(b)


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:12] + "..." + text[-8:]


# --- reading a table -----------------------------------------------------------------------

#: The per-direction variables ``(angle, y, x)`` of a table, in reading order.
DIRECTION_VARIABLES = ("acceleration", "alpha", "vertical")
#: Bytes of one piece read at once by :meth:`CorrectionTable.read` (its decoded storage
#: chunks come on top, once).
PIECE_BYTES = 32 << 20
_RADIAN_UNITS = ("", "radian", "radians", "rad")


class CorrectionTable:
    """A correction table, opened and validated once.

    The only code that knows the table format (module docstring): its variables, the angle
    convention, the grid and its CRS, the engine attributes, the synthetic-weights flag,
    ``edge_influence``, ``vertical`` and how to read a window of it. Build it with
    :meth:`open`.

    Attributes
    ----------
    dataset : xarray.Dataset
        The lazy table (per-direction variables transposed to ``(angle, y, x)``, ``alpha`` as
        stored: use :meth:`read` or :meth:`at_angle` for radians).
    label : str
        How messages name the table (the path as given, or what the caller said).
    path : pathlib.Path or None
        The file or Zarr folder, None for a Dataset or a Zarr store object.
    holes : TableHoles
        Directions without values and pixels missing some directions, as found by
        :meth:`open` (:func:`devine_onnx.tables.holes.find_holes`).
    """

    def __init__(self, dataset: xr.Dataset, *, label: str, path: Path | None, owned: bool):
        self.dataset = dataset
        self.label = label
        self.path = path
        self._owned = owned
        self.holes = TableHoles()
        self._validate()

    # ----------------------------------------------------------------------- opening
    @classmethod
    def open(cls, source, *, label: str | None = None, check: bool = True) -> CorrectionTable:
        """Open and validate a correction table.

        Parameters
        ----------
        source : str, os.PathLike, xarray.Dataset, zarr store or CorrectionTable
            NetCDF file, Zarr folder (``.zarr`` or any folder), Zarr store object (a
            mapping or a :class:`zarr.abc.store.Store`), or a Dataset with
            ``acceleration(angle, y, x)`` (speed ratio, 1), ``alpha(angle, y, x)``
            (radians, > 0 = turned left; ``units`` "degree" is accepted and converted when
            read), optional ``vertical(angle, y, x)`` (1), 1-D ``angle`` (FROM direction,
            degrees clockwise from grid north, strictly ascending in [0, 360)), 1-D ``x``/``y``
            (metres of the CRS) and a CF grid mapping (``spatial_ref``). A CorrectionTable is
            returned as is.
        label : str, optional
            How messages name the table (default: the path, or the Dataset's
            ``encoding["source"]``).
        check : bool
            Look for holes (:mod:`devine_onnx.tables.holes`); False for pieces of a table
            already checked (e.g. a slice of its directions).

        Raises
        ------
        TableError
            Missing or unreadable file, missing or malformed variables, coordinates or CRS,
            a table still marked unfinished by the run that wrote it (a ``.partial`` renamed
            by hand), or a table without any value; the one-line message names the table.
        OptionError
            ``source`` of another type.

        Warns
        -----
        IncompleteTableWarning
            Directions without values, or pixels NaN for some directions only (found from
            the storage metadata, see :mod:`devine_onnx.tables.holes`; the result is kept
            in :attr:`holes`).
        """
        if isinstance(source, CorrectionTable):
            return source
        if isinstance(source, xr.Dataset):
            src = source.encoding.get("source")
            name = label or str(src or "correction table (in memory)")
            return cls(source, label=name, path=None, owned=False)._checked(check)
        if isinstance(source, str | os.PathLike):
            p = Path(source)
            name = label or str(p)
            if not p.exists():
                raise TableError(f"{name}: correction table not found; check the path")
            fmt = "zarr" if p.is_dir() else guess_format(p)
            if fmt not in ("zarr", "netcdf", None):
                raise TableError(
                    f"{name}: a {fmt} file, not a correction table (NetCDF or Zarr); give the "
                    "table written by 'devine-onnx corrections'"
                )
            is_zarr = fmt == "zarr"
            try:
                if is_zarr:
                    ds = xr.open_dataset(p, engine="zarr", chunks=None)
                else:
                    with small_hdf5_chunk_cache():
                        ds = xr.open_dataset(p, engine="netcdf4", chunks=None)
            except Exception as exc:  # noqa: BLE001 - any reader failure: not a table
                raise TableError(
                    f"{name}: cannot be read as a {'Zarr' if is_zarr else 'NetCDF'} correction "
                    f"table ({type(exc).__name__}: {first_line(exc)}); give a table written "
                    "by devine-onnx"
                ) from None
            ds.encoding.setdefault("source", str(p))
            try:
                return cls(ds, label=name, path=p, owned=True)._checked(check)
            except Exception:
                ds.close()
                raise
        if _is_zarr_store(source):
            name = label or "correction table (Zarr store)"
            try:
                ds = xr.open_dataset(source, engine="zarr", chunks=None)
            except Exception as exc:  # noqa: BLE001 - any reader failure: not a table
                raise TableError(
                    f"{name}: cannot be read as a Zarr correction table ({type(exc).__name__}: "
                    f"{first_line(exc)}); give a table written by devine-onnx"
                ) from None
            return cls(ds, label=name, path=None, owned=True)._checked(check)
        raise OptionError(
            f"table of type {type(source).__name__}: expected a file path, a Zarr store or an "
            "xarray.Dataset"
        )

    def _checked(self, check: bool = True) -> CorrectionTable:
        """Refuse a table without any value, warn about holes (:func:`.holes.find_holes`)."""
        if not check:
            return self
        found = find_holes(self)
        if found.all_empty:
            raise TableError(
                f"{self.label}: holds no value (all {found.directions} directions are NaN, "
                "e.g. computed by a model with broken metadata); compute it again with "
                "'devine-onnx corrections' (--overwrite) and a valid model"
            )
        if found:
            warnings.warn(
                f"{self.label}: incomplete correction table: {found.describe()}; winds there "
                "are downscaled to NaN (recompute the table with 'devine-onnx corrections' and "
                "--overwrite to fill it)",
                IncompleteTableWarning,
                stacklevel=3,
            )
        self.holes = found
        return self

    def _validate(self) -> None:
        ds, label = self.dataset, self.label
        missing = [n for n in ("acceleration", "alpha") if n not in ds.data_vars]
        missing += [n for n in ("angle", "y", "x") if n not in ds.coords]
        if missing:
            raise TableError(
                f"{label}: not a correction table, missing {', '.join(missing)} (variables: "
                f"{', '.join(map(str, ds.variables)) or 'none'}); give a table written by "
                "devine-onnx"
            )
        marker = progress(ds)
        if marker is not None:
            raise TableError(
                f"{label}: an unfinished correction table ({marker[0]} of {marker[1]} "
                "directions computed; it still carries the progress marker of the run that "
                "wrote it, so it was renamed or copied before that run finished); compute it "
                "with 'devine-onnx corrections' and the same options (add --overwrite to write "
                "it under this name), then use the new table"
            )
        names = [n for n in DIRECTION_VARIABLES if n in ds.data_vars]
        for name in names:
            if set(ds[name].dims) != {"angle", "y", "x"}:
                raise TableError(
                    f"{label}: {name} has dimensions {tuple(ds[name].dims)}, expected "
                    "(angle, y, x); give a table written by devine-onnx"
                )
        for name in ("angle", "y", "x"):
            if ds[name].ndim != 1:
                raise TableError(
                    f"{label}: coordinate {name} has dimensions {tuple(ds[name].dims)}, "
                    "expected 1-D; give a table written by devine-onnx"
                )
        try:
            angles = np.asarray(ds["angle"].values, dtype=np.float64)
            x = np.asarray(ds["x"].values, dtype=np.float64)
            y = np.asarray(ds["y"].values, dtype=np.float64)
        except (TypeError, ValueError):
            raise TableError(
                f"{label}: angle, x and y must be numbers; give a table written by devine-onnx"
            ) from None
        if (
            angles.size == 0
            or not np.all(np.isfinite(angles))
            or angles.min() < 0
            or angles.max() >= 360
            or (angles.size > 1 and not np.all(np.diff(angles) > 0))
        ):
            found = f"{angles.min():g}..{angles.max():g}, " if angles.size else ""
            raise TableError(
                f"{label}: angle coordinate must be strictly ascending in [0, 360) degrees "
                f"(found {found}{angles.size} values)"
            )
        for name, c in (("x", x), ("y", y)):
            d = np.diff(c)
            if c.size == 0 or not np.all(np.isfinite(c)) or not (np.all(d > 0) or np.all(d < 0)):
                raise TableError(
                    f"{label}: coordinate {name} must be finite and strictly monotonic "
                    f"({c.size} values); give a table written by devine-onnx"
                )
        units = str(ds["alpha"].attrs.get("units", "")).strip().lower()
        if not (units.startswith("deg") or units in _RADIAN_UNITS):
            raise TableError(
                f"{label}: alpha has units {units!r}, expected 'radian' or 'degree'; give a "
                "table written by devine-onnx"
            )
        self.crs = table_crs(ds, label)
        self.dataset = ds.assign({n: ds[n].transpose("angle", "y", "x") for n in names})
        self._angles, self._x, self._y = angles, x, y
        self._alpha_deg = units.startswith("deg")
        for a in (self._angles, self._x, self._y):
            a.flags.writeable = False

    # ----------------------------------------------------------------------- grid
    @property
    def angles(self) -> np.ndarray:
        """Table directions (float64, read-only): FROM, degrees clockwise from GRID north."""
        return self._angles

    @property
    def x(self) -> np.ndarray:
        """1-D x coordinates (float64, read-only), metres of :attr:`crs`."""
        return self._x

    @property
    def y(self) -> np.ndarray:
        """1-D y coordinates (float64, read-only), metres of :attr:`crs`."""
        return self._y

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the table grid."""
        return self._y.size, self._x.size

    @property
    def resolution(self) -> float | None:
        """Pixel size along x (m), None for a single column."""
        return float(abs(self._x[1] - self._x[0])) if self._x.size > 1 else None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Coverage of the grid: ``(xmin, ymin, xmax, ymax)`` of the pixel edges (m).

        Pixels are assumed centred on ``x``/``y`` with the spacing of their neighbours.
        """
        out = []
        for c in (self._x, self._y):
            half = abs(c[1] - c[0]) / 2 if c.size > 1 else 0.0
            out.append((float(c.min() - half), float(c.max() + half)))
        return out[0][0], out[1][0], out[0][1], out[1][1]

    @property
    def chunks(self) -> tuple[int, int] | None:
        """Rows and columns of the file's storage chunks; None for a table in memory."""
        ny, nx = self.shape
        enc = self.dataset["acceleration"].encoding
        if not enc.get("source") and "preferred_chunks" not in enc:
            return None
        pref = enc.get("preferred_chunks") or {}
        return int(pref.get("y", ny)), int(pref.get("x", nx))

    # ----------------------------------------------------------------------- metadata
    @property
    def attrs(self) -> dict:
        """A copy of the global attributes."""
        return dict(self.dataset.attrs)

    @property
    def engine(self) -> str:
        """Engine that computed the table (``devine`` for tables older than the attribute)."""
        return str(self.dataset.attrs.get("engine", "devine"))

    @property
    def engine_title(self) -> str:
        return str(self.dataset.attrs.get("engine_title", ""))

    @property
    def engine_citation(self) -> str:
        return str(self.dataset.attrs.get("engine_citation", ""))

    @property
    def synthetic_note(self) -> str | None:
        """The table's comment when it says the model weights are synthetic, else None."""
        return synthetic_note(self.dataset.attrs)

    @property
    def synthetic(self) -> bool:
        """True when the table was computed with synthetic (test) model weights."""
        return self.synthetic_note is not None

    @property
    def has_vertical(self) -> bool:
        """True when the table has ``vertical(angle, y, x)`` (w / inflow speed)."""
        return "vertical" in self.dataset.data_vars

    @property
    def variables(self) -> tuple[str, ...]:
        """The per-direction variables present: acceleration, alpha[, vertical]."""
        return tuple(n for n in DIRECTION_VARIABLES if n in self.dataset.data_vars)

    @property
    def elevation(self) -> xr.DataArray | None:
        """``elevation(y, x)`` (m), the DEM on the table grid, or None."""
        return self._static("elevation")

    @property
    def edge_influence(self) -> xr.DataArray | None:
        """``edge_influence(y, x)`` (1 = influenced by an edge, docs/method.md §9.1), or None."""
        return self._static("edge_influence")

    def _static(self, name: str) -> xr.DataArray | None:
        ds = self.dataset
        if name not in ds.variables or set(ds[name].dims) != {"y", "x"}:
            return None
        return ds[name].transpose("y", "x")

    # ----------------------------------------------------------------------- reading
    def read(self, region=None, dtype=np.float32, variables=None) -> dict[str, np.ndarray]:
        """Per-direction variables of a window as C-contiguous ``(angle, y, x)`` arrays.

        Parameters
        ----------
        region : (y0, y1, x0, x1) or (slice, slice), optional
            Rows ``y0:y1`` and columns ``x0:x1`` of the table grid (array indices, end
            excluded); default the whole grid.
        dtype
            Type of the arrays.
        variables : sequence of str, optional
            Default: acceleration, alpha and vertical when the table has it.

        Returns
        -------
        dict of str to numpy.ndarray
            ``acceleration`` (1), ``alpha`` (ALWAYS radians, > 0 = turned left),
            ``vertical`` (1). NaN where the table has no value.

        Notes
        -----
        The values are read in pieces of at most :data:`PIECE_BYTES` that follow the storage
        chunks (``encoding["preferred_chunks"]``: whole chunks along ``angle``, one chunk along
        ``y``/``x`` at a time), so that each chunk is decoded once and the memory beyond the
        result stays that of one piece and its chunks.
        """
        names = self.variables if variables is None else tuple(variables)
        for name in names:
            if name not in self.variables:
                raise OptionError(
                    f"{self.label}: no per-direction variable {name!r} (it has "
                    f"{', '.join(self.variables)})"
                )
        rows, cols = self._region(region)
        scale = {"alpha": np.deg2rad} if self._alpha_deg else {}
        return {
            name: _read_variable(self.dataset[name], dtype, rows, cols, scale.get(name))
            for name in names
        }

    def _region(self, region) -> tuple[tuple[int, int], tuple[int, int]]:
        ny, nx = self.shape
        if region is None:
            return (0, ny), (0, nx)
        if len(region) == 2 and all(isinstance(r, slice) for r in region):
            (y0, y1, sy), (x0, x1, sx) = region[0].indices(ny), region[1].indices(nx)
            if sy != 1 or sx != 1:
                raise OptionError(f"region {region!r}: steps are not supported")
        elif len(region) == 4:
            y0, y1, x0, x1 = (int(v) for v in region)
        else:
            raise OptionError(
                f"region {region!r}: expected (y0, y1, x0, x1) or (rows slice, columns slice)"
            )
        if not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
            raise OptionError(
                f"region {(y0, y1, x0, x1)}: outside the {ny} x {nx} table {self.label}, "
                "expected 0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx"
            )
        return (y0, y1), (x0, x1)

    def at_angle(self, angle) -> xr.Dataset:
        """The table for one inflow direction, in memory.

        Parameters
        ----------
        angle : float
            FROM direction (degrees clockwise from grid north, taken modulo 360); must be one
            of :attr:`angles`.

        Returns
        -------
        xarray.Dataset
            ``acceleration(y, x)``, ``alpha(y, x)`` in radians[, ``vertical(y, x)``], with the
            ``x``/``y`` coordinates, the scalar ``angle`` and the grid mapping.

        Raises
        ------
        OptionError
            ``angle`` is not a number or not in the table (the message lists its angles).
        """
        try:
            a = float(angle) % 360.0
        except (TypeError, ValueError):
            raise OptionError(f"{option('angle', angle)}: expected a number of degrees") from None
        d = np.abs(self._angles - a)
        hits = np.flatnonzero(np.isclose(np.minimum(d, 360.0 - d), 0.0, atol=1e-6))
        if hits.size == 0:
            raise OptionError(
                f"{option('angle', angle)}: not in {self.label}; it has angles "
                f"{angles_text(self._angles)}"
            )
        ds = self.dataset[list(self.variables)].isel(angle=int(hits[0])).load()
        if self._alpha_deg:
            attrs = {**ds["alpha"].attrs, "units": "radian"}
            ds["alpha"] = np.deg2rad(ds["alpha"]).assign_attrs(attrs)
        gm = _grid_mapping_name(self.dataset)
        if gm is not None and gm not in ds.variables:
            ds = ds.assign_coords({gm: self.dataset[gm]})
        return ds

    def static_variables(self, coarsen=1, grid_mapping: str = "spatial_ref") -> dict:
        """Direction-independent ``(y, x)`` variables for a downscaled output.

        Parameters
        ----------
        coarsen : int, optional
            Output block size in pixels: ``elevation`` becomes the NaN-ignoring block mean,
            ``edge_influence`` is 1 where any pixel of the block is (the last rows/columns that
            do not fill a block are dropped). 1 or None: the table grid.
        grid_mapping : str
            Name of the output's grid mapping variable.

        Returns
        -------
        dict of str to xarray.DataArray
            ``elevation`` (float32, m) and ``edge_influence`` (uint8, flag), each when the
            table has it, without coordinates.
        """
        return static_outputs(self.elevation, self.edge_influence, coarsen, grid_mapping)

    # ----------------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Release the file (only when :meth:`open` opened it; a Dataset given stays open)."""
        if self._owned:
            self.dataset.close()

    def __enter__(self) -> CorrectionTable:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        ny, nx = self.shape
        return (
            f"<CorrectionTable {self.label}: engine {self.engine}, {self._angles.size} "
            f"directions, {ny} x {nx} pixels, vertical={self.has_vertical}>"
        )


def _is_zarr_store(source) -> bool:
    from collections.abc import MutableMapping

    if isinstance(source, MutableMapping):
        return True
    try:
        from zarr.abc.store import Store
    except ImportError:  # zarr 2 or no zarr
        return False
    return isinstance(source, Store)


def _grid_mapping_name(ds: xr.Dataset) -> str | None:
    gm = ds["acceleration"].attrs.get("grid_mapping") or ds["acceleration"].encoding.get(
        "grid_mapping"
    )
    name = str(gm).split(":")[0].split()[0] if gm else "spatial_ref"
    return name if name in ds.variables else None


def _edges(start: int, stop: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` cut on the storage chunk grid (multiples of ``chunk``)."""
    cuts = [start] + list(range((start // chunk + 1) * chunk, stop, chunk)) + [stop]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _read_variable(var: xr.DataArray, dtype, rows, cols, scale=None) -> np.ndarray:
    """``var[:, y0:y1, x0:x1]`` (``(angle, y, x)``) read in pieces along its storage chunks."""
    n = var.shape[0]
    (y0, y1), (x0, x1) = rows, cols
    pref = var.encoding.get("preferred_chunks") or {}
    ca = max(1, int(pref.get("angle", 1)))
    cy = max(1, int(pref.get("y", y1)))
    cx = max(1, int(pref.get("x", x1)))
    out = np.empty((n, y1 - y0, x1 - x0), dtype=dtype)
    for ty0, ty1 in _edges(y0, y1, cy):
        for tx0, tx1 in _edges(x0, x1, cx):
            pixels = (ty1 - ty0) * (tx1 - tx0)
            slab = ca * max(1, PIECE_BYTES // max(1, ca * pixels * 8))
            for a in range(0, n, slab):
                piece = np.asarray(var[a : a + slab, ty0:ty1, tx0:tx1].values)
                if scale is not None:
                    piece = scale(piece)
                out[a : a + slab, ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0] = piece
                del piece
    return out


def static_outputs(elevation=None, edge_influence=None, coarsen=None, grid_mapping="spatial_ref"):
    """Time-independent outputs on the output grid, from ``(y, x)`` DataArrays (or None).

    ``elevation`` becomes the NaN-ignoring block mean with ``coarsen`` (which altitude each
    wind value stands for; m), ``edge_influence`` a flag set where any pixel of the block is
    (docs/method.md §9.1). Each is returned as a float32 / uint8 ``(y, x)`` DataArray without
    coordinates, with CF attributes naming ``grid_mapping``; a missing input is left out.
    """
    n = int(coarsen) if coarsen not in (None, 0, 1) else None
    out = {}
    if elevation is not None and tuple(elevation.dims) == ("y", "x"):
        z = np.asarray(elevation.values, dtype=np.float32)
        if n:
            z = coarsen_mean(z, n)
        attrs = {
            "standard_name": "surface_altitude",
            "long_name": "terrain elevation of the correction table"
            + (" (block mean)" if n else ""),
            "units": "m",
            "grid_mapping": grid_mapping,
        }
        out["elevation"] = xr.DataArray(z.astype(np.float32), dims=("y", "x"), attrs=attrs)
    if edge_influence is not None and tuple(edge_influence.dims) == ("y", "x"):
        flag = np.asarray(edge_influence.values) == 1
        if n:
            flag = coarsen_any(flag, n)
        attrs = {**edge_influence.attrs, "grid_mapping": grid_mapping}
        attrs["comment"] = (
            "1 where the correction table's value was influenced, for some direction, by "
            "the edge of its DEM or of its computed window (docs/method.md §9.1); the wind "
            "there is less reliable. " + str(attrs.get("comment", ""))
        ).strip()
        out["edge_influence"] = xr.DataArray(flag.astype(np.uint8), dims=("y", "x"), attrs=attrs)
    return out


def angles_text(angles) -> str:
    """Short description of table angles: ``0 to 350 every 10°``, or the list (cut after 10)."""
    a = np.asarray(angles, dtype=np.float64)
    if a.size == 0:
        return "none"
    if a.size > 2:
        steps = np.unique(np.diff(a))
        if steps.size == 1:
            return f"{a[0]:g} to {a[-1]:g} every {steps[0]:g}°"
    if a.size <= 12:
        return ", ".join(f"{v:g}" for v in a)
    return ", ".join(f"{v:g}" for v in a[:10]) + f", ... ({a.size} angles)"


def table_crs(table: xr.Dataset, label: str = "correction table") -> CRS:
    """CRS of a correction table Dataset (its CF grid mapping, ``spatial_ref``/``crs_wkt``).

    Raises
    ------
    TableError
        If the table has no readable CRS.
    """
    crs = read_crs(
        table,
        "acceleration",
        label=label,
        error=TableError,
        remedy="write it with devine_onnx.io.cf.write_grid_mapping or recompute the table",
    )
    if crs is None:
        raise TableError(
            f"{label}: no CRS (expected a spatial_ref grid mapping variable with crs_wkt); "
            "write it with ds.rio.write_crs(...) or recompute the table"
        )
    return crs


@contextmanager
def small_hdf5_chunk_cache(size: int = 1 << 20):
    """Open NetCDF files with a small HDF5 chunk cache (default 1 MB per variable).

    The table is read once, chunk by chunk, so a cache only costs memory. The setting is
    process-wide in netCDF-C and applies to the files opened meanwhile: it is restored on exit.
    """
    try:
        import netCDF4

        old = netCDF4.get_chunk_cache()
        netCDF4.set_chunk_cache(size, 31, 1.0)
    except Exception:  # noqa: BLE001 - optional optimisation
        yield
        return
    try:
        yield
    finally:
        netCDF4.set_chunk_cache(*old)


def open_table(source) -> xr.Dataset:
    """Open and validate a correction table (see :meth:`CorrectionTable.open`).

    Returns
    -------
    xarray.Dataset
        The table, lazily opened for files, with the per-direction variables transposed to
        ``(angle, y, x)`` and ``alpha`` as stored. ``encoding["source"]`` names the file. Use
        :class:`CorrectionTable` to read it with ``alpha`` in radians.

    Raises
    ------
    TableError
        Missing file, unreadable file, missing variables/coordinates or CRS; the message
        names the file.
    """
    return CorrectionTable.open(source).dataset


def alpha_in_degrees(table: xr.Dataset) -> bool:
    """True when a table Dataset stores ``alpha`` in degrees (``units`` starting "deg")."""
    return str(table["alpha"].attrs.get("units", "")).lower().startswith("deg")


def synthetic_note(attrs: dict) -> str | None:
    """The table's comment when it says the model weights are synthetic."""
    comment = str(attrs.get("comment", ""))
    flagged = any(
        "synthetic" in str(k).lower() and str(v).lower() not in ("0", "false", "no", "")
        for k, v in attrs.items()
    )
    if "synthetic" in comment.lower():
        return comment
    if flagged:
        return comment or "the correction table was computed with synthetic model weights"
    return None
