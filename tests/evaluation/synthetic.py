"""Synthetic wind files and observations with known relations, shared by the evaluation tests.

The model wind file has speed 2..~9 m/s varying in time, y and x, and directions turning
through north, with one NaN pixel. Observations are built from it with observed speed =
model / ``scale`` and observed direction = model − ``shift``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS, Transformer

from devine_onnx.sample_data import CENTER_LONLAT, LAMBERT93

NY, NX, NT = 12, 16, 10
RES = 100.0
TIMES = pd.date_range("2026-01-15T00:00", periods=NT, freq="h")
X0, Y0 = Transformer.from_crs("EPSG:4326", LAMBERT93, always_xy=True).transform(*CENTER_LONLAT)
X = X0 + (np.arange(NX) - (NX - 1) / 2) * RES
Y = Y0 - (np.arange(NY) - (NY - 1) / 2) * RES  # decreasing, as downscale writes
TO_LONLAT = Transformer.from_crs(LAMBERT93, "EPSG:4326", always_xy=True)
NAN_PIXEL = (2, 3)  # (iy, ix): NaN at every time step
# Stations: name -> (iy, ix, dx, dy): pixel and offset of the station from its centre (m).
STATIONS = {
    "A": (5, 7, 40.0, -30.0),  # inside pixel (5, 7), not at its centre
    "B": (1, 14, 0.0, 0.0),
    "C": (9, 2, -45.0, 45.0),
}


def model_fields():
    """Speed (2..~9 m/s, varying in t, y, x) and direction turning through north."""
    t = np.arange(NT)[:, None, None]
    iy = np.arange(NY)[None, :, None]
    ix = np.arange(NX)[None, None, :]
    speed = 2.0 + 0.5 * t + 0.1 * iy + 0.2 * ix + 0.0 * (t + iy + ix)
    direction = np.mod(340.0 + 5.0 * t + 0.5 * iy + 1.0 * ix, 360.0)
    speed[:, NAN_PIXEL[0], NAN_PIXEL[1]] = np.nan
    direction[:, NAN_PIXEL[0], NAN_PIXEL[1]] = np.nan
    return speed, direction


def wind_dataset(speed=None, direction=None, attrs=None, elevation=None) -> xr.Dataset:
    """A CF wind file shaped like a 'devine-onnx downscale' output."""
    s, d = model_fields()
    speed = s if speed is None else speed
    direction = d if direction is None else direction
    crs = CRS.from_user_input(LAMBERT93)
    gm = {**crs.to_cf(), "crs_wkt": crs.to_wkt(), "spatial_ref": crs.to_wkt()}
    var = {"grid_mapping": "spatial_ref"}
    ds = xr.Dataset(
        {
            "wind_speed": (("time", "y", "x"), speed.astype(np.float32), {**var, "units": "m s-1"}),
            "wind_from_direction": (
                ("time", "y", "x"),
                direction.astype(np.float32),
                {**var, "units": "degree"},
            ),
        },
        coords={
            "time": TIMES,
            "y": ("y", Y, {"units": "m", "standard_name": "projection_y_coordinate"}),
            "x": ("x", X, {"units": "m", "standard_name": "projection_x_coordinate"}),
            "spatial_ref": ((), np.int32(0), gm),
        },
        attrs={"Conventions": "CF-1.8", "wind_frame": "earth-relative: test", **(attrs or {})},
    )
    if elevation is not None:
        ds["elevation"] = (("y", "x"), elevation.astype(np.float32), {"units": "m"})
    return ds


def station_lonlat(name):
    iy, ix, dx, dy = STATIONS[name]
    return TO_LONLAT.transform(X[ix] + dx, Y[iy] + dy)


def observations(names=("A", "B", "C"), times=TIMES, scale=1.25, shift=10.0, coords=True):
    """Observed = model / scale at the station's pixel, direction = model − shift."""
    speed, direction = model_fields()
    rows = []
    for name in names:
        iy, ix, _, _ = STATIONS[name]
        lon, lat = station_lonlat(name)
        for k, t in enumerate(times):
            row = {
                "station": name,
                "time": pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%S"),
                "wind_speed": speed[k % NT, iy, ix] / scale,
                "wind_direction": np.mod(direction[k % NT, iy, ix] - shift, 360.0),
            }
            if coords:
                row.update(latitude=lat, longitude=lon)
            rows.append(row)
    return pd.DataFrame(rows)
