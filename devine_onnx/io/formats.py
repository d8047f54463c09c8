"""File formats: the one table of suffixes, format detection and one opener for gridded files.

:data:`FORMATS` maps every file suffix devine-onnx knows to a format name; the readers (DEM,
NWP, tables, outputs, plots, evaluation) and the writers ask :func:`format_from_suffix` /
:func:`guess_format` instead of keeping their own lists, and open NetCDF, Zarr and GRIB files
with :func:`open_any`.

Format names: ``"netcdf"`` (NetCDF-3 and NetCDF-4/HDF5), ``"zarr"`` (a folder), ``"grib"``
(needs cfgrib), ``"geotiff"`` and ``"ascii_grid"`` (ESRI ASCII grid; both read with rasterio).
"""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

from devine_onnx.errors import InputFileError, MissingDependencyError, first_line

__all__ = [
    "FORMATS",
    "NETCDF_SUFFIXES",
    "RASTER_FORMATS",
    "ZARR_SUFFIXES",
    "format_from_suffix",
    "guess_format",
    "open_any",
    "sniff_format",
    "strip_suffix",
    "suffixes",
]

#: File suffix (lower case) -> format name: the one list of the package.
FORMATS: dict[str, str] = {
    ".nc": "netcdf",
    ".nc4": "netcdf",
    ".netcdf": "netcdf",
    ".cdf": "netcdf",
    ".h5": "netcdf",
    ".hdf5": "netcdf",
    ".zarr": "zarr",
    ".grib": "grib",
    ".grb": "grib",
    ".grib2": "grib",
    ".grb2": "grib",
    ".tif": "geotiff",
    ".tiff": "geotiff",
    ".asc": "ascii_grid",
}
#: Formats read with rasterio (through rioxarray) rather than xarray's own backends.
RASTER_FORMATS = ("geotiff", "ascii_grid")
#: xarray engine of each format :func:`open_any` opens.
_ENGINES = {"netcdf": "netcdf4", "zarr": "zarr", "grib": "cfgrib"}
_DISPLAY = {
    "netcdf": "NetCDF",
    "zarr": "Zarr",
    "grib": "GRIB",
    "geotiff": "GeoTIFF",
    "ascii_grid": "ESRI ASCII grid",
}
_ZARR_MARKERS = (".zgroup", "zarr.json", ".zmetadata", ".zarray")


def suffixes(fmt: str) -> tuple[str, ...]:
    """The suffixes of format ``fmt`` (e.g. ``suffixes("netcdf")`` -> ``(".nc", ...)``)."""
    return tuple(s for s, f in FORMATS.items() if f == fmt)


#: Suffixes of NetCDF files (``.nc``, ``.nc4``, ``.netcdf``, ``.cdf``, ``.h5``, ``.hdf5``).
NETCDF_SUFFIXES = suffixes("netcdf")
#: Suffixes of Zarr stores.
ZARR_SUFFIXES = suffixes("zarr")


def _format_names(formats) -> str:
    """``("netcdf", "grib", "zarr")`` -> ``"NetCDF, GRIB or Zarr"``."""
    names = [_DISPLAY.get(f, f) for f in formats]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def format_from_suffix(path: str | os.PathLike) -> str | None:
    """Format name from the suffix of ``path`` (case-insensitive), or None when unknown."""
    return FORMATS.get(Path(path).suffix.lower())


def strip_suffix(name: str | os.PathLike) -> str:
    """``name`` without a known suffix (``wind_30m.nc`` -> ``wind_30m``), else unchanged."""
    name = str(name)
    suffix = Path(name).suffix
    if suffix.lower() in FORMATS and len(name) > len(suffix):
        return name[: -len(suffix)]
    return name


def sniff_format(path: str | os.PathLike) -> str | None:
    """Format name from the content of ``path`` (magic bytes; Zarr markers of a folder).

    None when the content is not recognised or the file cannot be read.
    """
    p = Path(path)
    if p.is_dir():
        if any((p / m).exists() for m in _ZARR_MARKERS):
            return "zarr"
        return None
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if head[:3] == b"CDF" or head[:8] == b"\x89HDF\r\n\x1a\n":
        return "netcdf"
    if head[:4] == b"GRIB":
        return "grib"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "geotiff"
    if head.lstrip()[:5].lower() == b"ncols":
        return "ascii_grid"
    return None


def guess_format(path: str | os.PathLike) -> str | None:
    """Format of an existing file or folder: its content first, then its suffix.

    The content decides when it is recognised (a GRIB file named ``.nc`` is GRIB); a folder
    is Zarr when it has Zarr metadata or a ``.zarr`` suffix. For a path that does not exist
    yet (an output), only the suffix counts.
    """
    p = Path(path)
    if p.exists():
        sniffed = sniff_format(p)
        if sniffed is not None:
            return sniffed
        if p.is_dir():
            return "zarr" if format_from_suffix(p) == "zarr" else None
    return format_from_suffix(p)


def open_any(
    path: str | os.PathLike,
    *,
    label: str | None = None,
    what: str = "file",
    error: type[Exception] = InputFileError,
    formats: tuple[str, ...] = ("netcdf", "grib", "zarr"),
    **kwargs,
) -> xr.Dataset:
    """Open a NetCDF, Zarr or GRIB file lazily as an :class:`xarray.Dataset`.

    Parameters
    ----------
    path
        The file (or Zarr folder).
    label
        How to name it in messages (default: the path as given).
    what
        What the file is for, in messages ("NWP file", "correction table"...).
    error
        Error class raised when the file is missing, of another format or unreadable.
    formats
        Formats accepted (default: all that xarray opens; rasters go through the DEM reader).
    **kwargs
        Passed to :func:`xarray.open_dataset` (default ``chunks=None``).

    Raises
    ------
    error
        Missing file, folder that is no Zarr store, format not in ``formats``, unreadable file.
    MissingDependencyError
        A GRIB file without cfgrib installed.
    """
    p = Path(path)
    label = str(path) if label is None else label
    if not p.exists():
        raise error(f"{label}: {what} not found; check the path")
    # The content decides (a file named .nc holding GRIB is GRIB; garbage named .nc is refused).
    fmt = sniff_format(p)
    if fmt is None and p.is_dir() and format_from_suffix(p) == "zarr":
        fmt = "zarr"
    names = _format_names(formats)
    if fmt is None and p.is_dir():
        raise error(
            f"{label}: is a folder but not a Zarr store (no .zgroup or zarr.json); give a "
            f"{names} {what}"
        )
    if fmt not in formats:
        head = ""
        if p.is_file():
            try:
                with open(p, "rb") as fh:
                    head = f" (unrecognised content {fh.read(4)!r})"
            except OSError as exc:
                raise error(
                    f"{label}: cannot be read ({exc.strerror}); check the path and permissions"
                ) from None
        detail = head if fmt is None else f" (it looks like {_format_names((fmt,))})"
        raise error(f"{label}: not a {names} file{detail}; give a {what} in one of these formats")
    if fmt == "grib":
        try:
            import cfgrib  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                f"{label}: reading GRIB files needs cfgrib; install it with "
                '`pip install "devine-onnx[grib]"` (and the ecCodes library), or convert the '
                "file to NetCDF"
            ) from None
        kwargs.setdefault("backend_kwargs", {"indexpath": ""})
    kwargs.setdefault("chunks", None)
    try:
        return xr.open_dataset(p, engine=_ENGINES[fmt], **kwargs)
    except Exception as exc:  # noqa: BLE001 - any reader failure: an unreadable file
        if fmt == "grib":
            raise error(
                f"{label}: cfgrib cannot read this GRIB file as one dataset "
                f"({type(exc).__name__}: {first_line(exc)}); open it with "
                "cfgrib.open_datasets(...) and pass the Dataset you need"
            ) from None
        raise error(
            f"{label}: cannot be read as {fmt} ({type(exc).__name__}: {first_line(exc)}); "
            "check the file"
        ) from None
