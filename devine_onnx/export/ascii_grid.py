"""ESRI ASCII grids as WindNinja writes them, with an ESRI ``.prj`` next to each.

Per time step ``<stem>_<YYYYMMDDTHHMM>_vel.asc`` holds the wind speed (m/s) and
``<stem>_<YYYYMMDDTHHMM>_ang.asc`` the direction the wind blows FROM (degrees clockwise from
true north, as ``wind_from_direction`` in the NetCDF); other variables are written as
``_<variable>.asc``. The header is ``ncols``, ``nrows``, ``xllcorner``, ``yllcorner`` (the
lower-left corner of the lower-left cell), ``cellsize`` (``dx``/``dy`` when the cells are not
square, as GDAL writes them) and ``NODATA_value -9999``; rows run from north to south; values
have 9 significant digits, so float32 values are read back exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["NODATA", "SUFFIXES", "esri_wkt", "write_ascii_grid", "write_ascii_grids"]

#: No-data value of the grids (NaN in the NetCDF).
NODATA = -9999
#: File suffix of a variable (WindNinja's names for speed and direction).
SUFFIXES = {"wind_speed": "vel", "wind_from_direction": "ang"}


def esri_wkt(crs) -> str:
    """The ``.prj`` text of ``crs``: WKT1 in ESRI's dialect (what ArcGIS and WindNinja read)."""
    from pyproj.enums import WktVersion

    return crs.to_wkt(WktVersion.WKT1_ESRI)


def write_ascii_grid(path: Path, values: np.ndarray, src) -> None:
    """Write one north-up grid of ``src``'s geometry to ``path`` (ESRI ASCII)."""
    ny, nx = values.shape
    left, _, bottom, _ = src.extent
    dx, dy = src.spacing
    size = (
        f"cellsize     {dx:.10g}\n"
        if np.isclose(dx, dy, rtol=1e-9)
        else (f"dx           {dx:.10g}\ndy           {dy:.10g}\n")
    )
    header = (
        f"ncols        {nx}\nnrows        {ny}\nxllcorner    {left:.10f}\n"
        f"yllcorner    {bottom:.10f}\n{size}NODATA_value {NODATA}\n"
    )
    data = np.where(np.isfinite(values), np.asarray(values, dtype=np.float32), np.float32(NODATA))
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(header)
        np.savetxt(f, data, fmt="%.9g", delimiter=" ")


def write_ascii_grids(src, folder: Path, names, steps, pairs) -> None:
    """``.asc`` + ``.prj`` per variable and time step into ``folder``; appends (final, partial)."""
    from devine_onnx.io.atomic import temporary_file

    prj = esri_wkt(src.crs) if src.crs is not None else None
    stamps = src.times
    for i in steps:
        when = (
            f"_{stamps[i].strftime('%Y%m%dT%H%M')}" if i is not None and stamps is not None else ""
        )
        for var in names:
            stem = f"{src.stem}{when}_{SUFFIXES.get(var, var)}"
            final = folder / f"{stem}.asc"
            tmp = temporary_file(final)  # unique, O_EXCL: never a planted file or link
            pairs.append((final, tmp))
            write_ascii_grid(tmp, src.field(var, i), src)
            if prj is not None:
                final_prj = folder / f"{stem}.prj"
                tmp_prj = temporary_file(final_prj)
                pairs.append((final_prj, tmp_prj))
                tmp_prj.write_text(prj, encoding="ascii")
