"""GeoTIFF export: one file per variable, one band per time step (or table direction).

Bands are float32, north-up, with the grid's CRS and affine transform, NaN as nodata, band
descriptions giving the time (ISO 8601 UTC, ``2026-01-15T12:00:00Z``) or the table direction
(``from 270 deg``), and tags with the variable's ``units``/``standard_name``/``long_name``.
Files are DEFLATE-compressed and tiled (512 x 512); where the GDAL of rasterio has the ``COG``
driver they are cloud-optimised GeoTIFFs (with overviews).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devine_onnx.errors import OutputError

__all__ = ["iso_utc", "write_geotiffs"]

#: Tile size of the GeoTIFFs (pixels).
BLOCK = 512


def iso_utc(stamp) -> str:
    """``2026-01-15T12:00:00Z`` of a naive-UTC (or time-zone aware) timestamp."""
    import pandas as pd

    ts = pd.Timestamp(stamp)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _has_cog() -> bool:
    import rasterio

    with rasterio.Env() as env:
        return "COG" in env.drivers()


def _tags(src, var: str) -> dict:
    attrs = src.dataset[var].attrs
    tags = {k: str(attrs[k]) for k in ("standard_name", "long_name") if k in attrs}
    units = src.units(var)
    if units:
        tags["units"] = units
    if src.kind == "table" and var == "alpha":
        tags["comment"] = "deviation of the flow in degrees, > 0 = turned left (counter-clockwise)"
    if var == "wind_from_direction":
        tags["comment"] = "direction the wind blows FROM, degrees clockwise from true north"
    tags["source"] = src.label
    return tags


def write_geotiff(path: Path, bands: list[np.ndarray], descriptions: list[str], src, tags) -> None:
    """Write ``bands`` (north-up float arrays of the grid of ``src``) to ``path``."""
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as rio_copy

    ny, nx = src.shape
    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": len(bands),
        "height": ny,
        "width": nx,
        "crs": src.crs.to_wkt() if src.crs is not None else None,
        "transform": src.transform,
        "nodata": np.nan,
    }
    tiled = {"compress": "DEFLATE", "predictor": 3, "blocksize": BLOCK}

    def fill(dst) -> None:
        for k, (band, text) in enumerate(zip(bands, descriptions, strict=True), start=1):
            dst.write(np.asarray(band, dtype=np.float32), k)
            if text:
                dst.set_band_description(k, text)
        dst.update_tags(**tags)

    try:
        if _has_cog():
            with MemoryFile() as mem:
                with mem.open(**profile) as tmp:
                    fill(tmp)
                with mem.open() as tmp:
                    rio_copy(tmp, str(path), driver="COG", **tiled)
        else:
            gtiff = {"compress": "DEFLATE", "predictor": 3, "tiled": True}
            gtiff.update(blockxsize=BLOCK, blockysize=BLOCK)
            with rasterio.open(path, "w", **profile, **gtiff) as dst:
                fill(dst)
    except rasterio.errors.RasterioError as exc:
        raise OutputError(f"{path}: cannot write the GeoTIFF ({exc})") from None


def write_geotiffs(src, folder: Path, single: Path | None, names, steps, angles, pairs) -> None:
    """One GeoTIFF per variable into ``folder`` (or ``single``); appends (final, partial)."""
    from devine_onnx.io.atomic import temporary_file

    stamps = src.times
    for var in names:
        final = single or folder / f"{src.stem}_{var}.tif"
        if src.kind == "table":
            bands = [src.field(var, angle=a) for a in angles]
            texts = [f"from {a:g} deg" for a in angles]
        else:
            idx = steps if src.has_time(var) else [None]
            bands = [src.field(var, i) for i in idx]
            texts = [
                iso_utc(stamps[i]) if i is not None and stamps is not None else "" for i in idx
            ]
        tmp = temporary_file(final)  # unique, O_EXCL: never a planted file or link
        pairs.append((final, tmp))
        write_geotiff(tmp, bands, texts, src, _tags(src, var))
