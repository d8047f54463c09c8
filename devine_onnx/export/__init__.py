"""Export downscaled wind and correction tables to the formats GIS tools read.

- ``geotiff``: one GeoTIFF per variable (default ``wind_speed`` and ``wind_from_direction``),
  one band per time step (band description = the UTC time in ISO 8601), the grid's CRS and
  transform, NaN as nodata, compressed and tiled (cloud-optimised GeoTIFF where the GDAL of
  rasterio has the COG driver). A correction table gives ``acceleration`` (1) and ``alpha``
  (degrees, > 0 = turned left) with one band per FROM direction.
- ``asc``: ESRI ASCII grids as WindNinja writes them: per time step
  ``<stem>_<YYYYMMDDTHHMM>_vel.asc`` (speed, m/s) and ``_ang.asc`` (FROM direction, degrees
  clockwise from true north), each with its ``.prj`` (ESRI WKT).
- ``kmz``: Google Earth: arrows coloured by speed, a legend, one folder per time step with a
  ``TimeSpan`` (the time slider plays the series).

Everything is checked before anything is written, and all files of one export are written
under temporary names and renamed together at the end: an error leaves no partial file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devine_onnx.errors import OptionError, OutputError

__all__ = ["FORMATS", "export_file"]

#: Export formats and the suffix of their files.
FORMATS = {"geotiff": ".tif", "asc": ".asc", "kmz": ".kmz"}
_ALIASES = {"tif": "geotiff", "tiff": "geotiff", "gtiff": "geotiff", "ascii": "asc", "kml": "kmz"}
#: Default variables of a downscaled output and of a table.
WIND_DEFAULT = ("wind_speed", "wind_from_direction")
TABLE_DEFAULT = ("acceleration", "alpha")


@contextmanager
def _all_or_nothing() -> Iterator[list]:
    """Collect ``(final, partial)`` paths; rename every partial at the end, or remove them all.

    The caller appends the pair before writing the partial file.
    """
    from devine_onnx.io.atomic import remove_path

    pairs: list[tuple[Path, Path]] = []
    try:
        yield pairs
    except BaseException:
        for _, tmp in pairs:
            remove_path(tmp)
        raise
    for final, tmp in pairs:
        remove_path(final)
        os.replace(tmp, final)


def _format(fmt: str) -> str:
    f = str(fmt).strip().lower().lstrip(".")
    f = _ALIASES.get(f, f)
    if f not in FORMATS:
        raise OptionError(f"--format {fmt}: unknown export format; use geotiff, asc or kmz")
    return f


def _folder_or_file(output, fmt: str, single: bool) -> tuple[Path, Path | None]:
    """(folder, file): ``output`` names the file when it has the format's suffix (one file),
    else the folder (created, with missing parents)."""
    out = Path(output)
    suffixes = {".tif", ".tiff"} if fmt == "geotiff" else {FORMATS[fmt]}
    if out.suffix.lower() in suffixes and not out.is_dir():
        if not single:
            raise OptionError(
                f"-o {out}: this export writes several files; give a folder instead of a "
                f"{out.suffix} name"
            )
        folder = out.parent if str(out.parent) else Path(".")
        return folder, out
    if out.exists() and not out.is_dir():
        raise OutputError(f"-o {out}: exists and is not a folder; give a folder for the files")
    return out, None


def export_file(
    source,
    output: str | os.PathLike,
    format: str = "geotiff",  # noqa: A002 - the CLI option's name
    *,
    var=None,
    time=None,
    angle=None,
    arrows: int = 25,
) -> list[Path]:
    """Export a downscaled output or a correction table to GeoTIFF, ESRI ASCII grids or KMZ.

    Parameters
    ----------
    source : str, os.PathLike or xarray.Dataset
        A file written by ``devine-onnx downscale`` (NetCDF or Zarr) or a correction table
        (GeoTIFF only).
    output : str or os.PathLike
        Folder for the files (created if missing), or, for one GeoTIFF variable or a KMZ, the
        file name (``.tif``/``.tiff``, ``.kmz``). Files in a folder are named after the input:
        ``<stem>_<variable>.tif``, ``<stem>_<YYYYMMDDTHHMM>_vel.asc``/``_ang.asc``,
        ``<stem>.kmz``.
    format : {"geotiff", "asc", "kmz"}
        See the module docstring.
    var : str or sequence of str, optional
        Map variables to export (GeoTIFF, ASCII grids); default ``wind_speed`` and
        ``wind_from_direction`` (a table: ``acceleration`` and ``alpha``). ASCII grids of other
        variables are named ``_<variable>.asc``.
    time : optional
        Time steps, as ``--time`` of ``devine-onnx plot``: ISO 8601 times of the file (naive =
        UTC), indices, ``"START/END"`` intervals or a list of them; default every step.
    angle : float or sequence of float, optional
        Table only: FROM directions (degrees clockwise from grid north) to export; default
        every direction of the table.
    arrows : int
        KMZ only: about this many arrows along the longer side of the grid per time step.

    Returns
    -------
    list of pathlib.Path
        The files written (``.prj`` files included).

    Raises
    ------
    InputFileError
        Missing or unreadable input, or neither a downscaled output nor a table.
    OptionError
        Unknown format or variable, a time or angle not in the file, a table exported to
        ASCII grids or KMZ, times for a table or angles for a wind file.
    OutputError
        The output cannot be written there.
    """
    from devine_onnx.export.source import open_source

    fmt = _format(format)
    src = open_source(source, "downscaled wind or correction table")
    try:
        src.warn_if_synthetic("the exported files", stacklevel=2)
        return _export(src, output, fmt, var, time, angle, arrows)
    finally:
        if isinstance(source, str | os.PathLike):  # opened here: closed here
            src.close()


def _export(src, output, fmt, variables, times, angles, arrows) -> list[Path]:
    import numpy as np

    if isinstance(variables, str):
        variables = [variables]
    if src.kind == "table":
        if fmt != "geotiff":
            raise OptionError(
                f"--format {fmt}: {src.label} is a correction table; tables export to GeoTIFF "
                "only (--format geotiff, with --angle for the directions); give a file written "
                "by 'devine-onnx downscale' for ASCII grids or KMZ"
            )
        if times is not None:
            raise OptionError(
                f"--time: {src.label} is a correction table, which has no time; use --angle"
            )
        names = [src.check_variable(v) for v in (variables or TABLE_DEFAULT)]
        if angles is None:
            chosen = [float(a) for a in src.table.angles]
        else:
            raw = list(np.atleast_1d(np.asarray(angles, dtype=object)))
            for a in raw:
                src.table.at_angle(a)  # raises OptionError naming the table's angles
            chosen = [float(a) % 360.0 for a in raw]
        steps = None
    else:
        if angles is not None:
            raise OptionError(
                f"--angle: {src.label} is a downscaled output, not a correction table; use "
                "--time to choose the steps"
            )
        if fmt == "kmz":
            if variables is not None:
                raise OptionError(
                    "--var: a KMZ shows the wind as arrows coloured by wind_speed; omit --var "
                    "(export other variables to GeoTIFF)"
                )
            variables = ["wind_speed"]
        names = [src.check_variable(v) for v in (variables or WIND_DEFAULT)]
        if fmt == "kmz" and src.grid_wind(None if src.times is None else 0) is None:
            raise OptionError(
                f"--format kmz: {src.label} has no wind components or direction to draw arrows"
            )
        steps = src.time_indices(times) if src.times is not None else [None]
        if not any(src.has_time(n) for n in names):
            steps = [None] if times is None else steps
        chosen = None

    if fmt == "geotiff":
        from devine_onnx.export.geotiff import write_geotiffs

        folder, single = _folder_or_file(output, fmt, len(names) == 1)
        return _write(
            folder, lambda pairs: write_geotiffs(src, folder, single, names, steps, chosen, pairs)
        )
    if fmt == "asc":
        from devine_onnx.export.ascii_grid import write_ascii_grids

        folder, _ = _folder_or_file(output, fmt, False)
        return _write(folder, lambda pairs: write_ascii_grids(src, folder, names, steps, pairs))
    from devine_onnx.export.kmz import write_kmz

    folder, single = _folder_or_file(output, fmt, True)
    return _write(folder, lambda pairs: write_kmz(src, folder, single, steps, arrows, pairs))


def _write(folder: Path, writer) -> list[Path]:
    from devine_onnx.io.atomic import check_writable

    created = not folder.exists()
    if created:
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise OutputError(f"-o {folder}: cannot create the folder ({exc.strerror})") from None
    check_writable(folder / "x")
    try:
        with _all_or_nothing() as pairs:
            writer(pairs)
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise
    return [final for final, _ in pairs]
