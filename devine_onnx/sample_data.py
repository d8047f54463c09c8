"""Sample inputs: real terrain shipped by matplotlib, a synthetic DEM, an AROME-like wind series.

Used by ``devine-onnx demo``, the tests and the benchmarks. :func:`real_dem` is real terrain
(the Jacksboro fault area, Tennessee, a 3 arc-second DEM that matplotlib ships);
:func:`sample_dem` and :func:`sample_nwp` are synthetic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

#: Lambert-93 (RGF93 v1), the projection of French DEMs (IGN RGE ALTI).
LAMBERT93 = "EPSG:2154"
#: Centre of the sample domain: 6.15°E, 45.2°N (Belledonne / Grandes Rousses area).
CENTER_LONLAT = (6.15, 45.2)


def sample_dem(
    shape: tuple[int, int] = (301, 301),
    resolution: float = 30.0,
    center_lonlat: tuple[float, float] = CENTER_LONLAT,
    crs: str = LAMBERT93,
    seed: int = 0,
) -> xr.DataArray:
    """A synthetic mountain DEM: two ridges and Gaussian hills over a sloping valley floor.

    Parameters
    ----------
    shape
        (rows, columns); row 0 is the northern edge (north-up raster).
    resolution
        Pixel size in metres (square pixels).
    center_lonlat
        Longitude and latitude (degrees, WGS 84) of the domain centre.

    Returns
    -------
    xarray.DataArray
        ``elevation(y, x)`` in metres, float32, with pixel-centre coordinates ``x``/``y`` in
        metres (``y`` decreasing) and the CRS written by rioxarray.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    from pyproj import Transformer

    ny, nx = shape
    x0, y0 = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(*center_lonlat)
    x = x0 + (np.arange(nx) - (nx - 1) / 2) * resolution
    y = y0 - (np.arange(ny) - (ny - 1) / 2) * resolution
    xx, yy = np.meshgrid((x - x0) / 1000.0, (y - y0) / 1000.0)  # km from the centre
    rng = np.random.default_rng(seed)
    z = 1200.0 + 40.0 * xx + 25.0 * yy
    # A north-south ridge and a NW-SE ridge, with a saddle.
    z += 900.0 * np.exp(-(((xx - 1.2) / 0.9) ** 2)) * (1 - 0.4 * np.exp(-((yy / 1.2) ** 2)))
    z += 600.0 * np.exp(-((((xx + yy) / np.sqrt(2) + 2.0) / 0.7) ** 2))
    for _ in range(12):
        cx, cy = rng.uniform(-4, 4, 2) * nx * resolution / 9000.0
        amp, width = rng.uniform(150, 500), rng.uniform(0.2, 0.8)
        z += amp * np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / width**2))
    da = xr.DataArray(
        z.astype(np.float32),
        dims=("y", "x"),
        coords={"y": y, "x": x},
        name="elevation",
        attrs={"units": "m", "long_name": "synthetic terrain elevation"},
    )
    da.x.attrs.update(units="m", standard_name="projection_x_coordinate")
    da.y.attrs.update(units="m", standard_name="projection_y_coordinate")
    return da.rio.write_crs(crs)


#: Centre of matplotlib's Jacksboro DEM (Cumberland Mountains, Tennessee), lon/lat degrees.
JACKSBORO_CENTER = (-84.2458, 36.5896)
#: UTM zone 16N (WGS 84), a metric projection for that area.
UTM16N = "EPSG:32616"


def real_dem(resolution: float = 60.0, size_km: float = 18.0) -> xr.DataArray:
    """Real terrain: the centre of matplotlib's Jacksboro fault DEM, reprojected to UTM 16N.

    The DEM ``jacksboro_fault_dem.npz`` ships with matplotlib (a 344 x 403 grid of 3 arc-second
    pixels, 236-1076 m, Cumberland Mountains near Jacksboro, Tennessee). It is reprojected
    (bilinear) to ``resolution`` m pixels and the central ``size_km`` x ``size_km`` km square
    is kept.

    Returns
    -------
    xarray.DataArray
        ``elevation(y, x)`` in metres, float32, north-up, CRS EPSG:32616.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    from matplotlib import cbook
    from pyproj import Transformer
    from rasterio.enums import Resampling

    with cbook.get_sample_data("jacksboro_fault_dem.npz") as data:
        z = np.asarray(data["elevation"], dtype=np.float32)
        dx, dy = float(data["dx"]), float(data["dy"])
        west = float(data["xmin"])
        # The file's "ymin" is the northern edge (row 0 is north).
        north = max(float(data["ymin"]), float(data["ymax"]))
    ny, nx = z.shape
    lon = west + dx * (np.arange(nx) + 0.5)
    lat = north - dy * (np.arange(ny) + 0.5)
    geo = xr.DataArray(z, dims=("y", "x"), coords={"y": lat, "x": lon}, name="elevation")
    geo = geo.rio.write_crs("EPSG:4326")
    utm = geo.rio.reproject(UTM16N, resolution=resolution, resampling=Resampling.bilinear)
    x0, y0 = Transformer.from_crs("EPSG:4326", UTM16N, always_xy=True).transform(*JACKSBORO_CENTER)
    half = size_km * 500.0
    utm = utm.sel(x=slice(x0 - half, x0 + half), y=slice(y0 + half, y0 - half))
    out = utm.astype(np.float32)
    out.attrs = {
        "units": "m",
        "long_name": "terrain elevation (Jacksboro fault DEM shipped with matplotlib)",
    }
    out.x.attrs.update(units="m", standard_name="projection_x_coordinate")
    out.y.attrs.update(units="m", standard_name="projection_y_coordinate")
    return out.rio.write_crs(UTM16N)


def sample_nwp(
    center_lonlat: tuple[float, float] = CENTER_LONLAT,
    n_lon: int = 12,
    n_lat: int = 10,
    step_deg: float = 0.025,
    n_times: int = 24,
    start: str = "2026-01-15T00:00",
    seed: int = 0,
    speed: float = 6.0,
) -> xr.Dataset:
    """An AROME-like 10 m wind series on a regular latitude/longitude grid (WGS 84).

    The wind turns steadily through all directions over the series (from-direction starts at
    270° and turns clockwise by 360°/n_times per hour), with a speed of about ``speed`` m/s
    and small spatial perturbations.

    Returns
    -------
    xarray.Dataset
        ``u10(time, latitude, longitude)`` and ``v10`` (m s-1, earth-relative eastward and
        northward components), latitude decreasing as in AROME files.
    """
    lon = center_lonlat[0] + (np.arange(n_lon) - (n_lon - 1) / 2) * step_deg
    lat = center_lonlat[1] - (np.arange(n_lat) - (n_lat - 1) / 2) * step_deg
    time = pd.date_range(start, periods=n_times, freq="h")
    rng = np.random.default_rng(seed)
    hours = np.arange(n_times)[:, None, None]
    direction = np.deg2rad(270.0 + 360.0 * hours / max(n_times, 1))
    llon, llat = np.meshgrid(lon, lat)
    pattern = 1.0 + 0.15 * np.sin(llon * 40.0) * np.cos(llat * 40.0)
    spd = speed * pattern[None] * (1.0 + 0.2 * np.sin(hours / 3.0))
    spd = spd + rng.normal(0.0, 0.2, spd.shape)
    u = -spd * np.sin(direction)
    v = -spd * np.cos(direction)
    attrs = {"units": "m s-1"}
    ds = xr.Dataset(
        {
            "u10": (
                ("time", "latitude", "longitude"),
                u.astype(np.float32),
                {**attrs, "standard_name": "eastward_wind", "long_name": "10 m eastward wind"},
            ),
            "v10": (
                ("time", "latitude", "longitude"),
                v.astype(np.float32),
                {**attrs, "standard_name": "northward_wind", "long_name": "10 m northward wind"},
            ),
        },
        coords={"time": time, "latitude": lat, "longitude": lon},
        attrs={"title": "synthetic AROME-like 10 m wind (devine-onnx sample data)"},
    )
    ds.latitude.attrs.update(units="degrees_north", standard_name="latitude")
    ds.longitude.attrs.update(units="degrees_east", standard_name="longitude")
    return ds
