"""Issue 20 #5: infinite and implausible forecast values are reported, never made up.

Before: +-inf in the forecast gave infinite speeds with made-up directions and 1e6 m/s gave
1.29e6 m/s outputs, all without a word.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from devine_onnx.cli import app
from devine_onnx.downscaling.api import downscale
from devine_onnx.downscaling.kernel import ImplausibleSpeedWarning, NWPNaNWarning
from devine_onnx.downscaling.options import DownscaleOptions
from devine_onnx.errors import OptionError
from devine_onnx.sample_data import sample_dem

SHAPE = (40, 50)
ACC = 1.3


@pytest.fixture(scope="module")
def table():
    dem = sample_dem(shape=SHAPE)
    n = 36
    ds = xr.Dataset(
        {
            "acceleration": (("angle", "y", "x"), np.full((n, *SHAPE), ACC, np.float32)),
            "alpha": (("angle", "y", "x"), np.zeros((n, *SHAPE), np.float32), {"units": "rad"}),
        },
        coords={"angle": np.arange(n) * 10.0, "y": dem.y.values, "x": dem.x.values},
    )
    return ds.rio.write_crs("EPSG:2154")


def nwp(u0=5.0, v0=0.0, n_times=4):
    lon = np.linspace(5.9, 6.5, 13)
    lat = np.linspace(45.5, 45.0, 11)
    time = pd.date_range("2026-01-01", periods=n_times, freq="h")
    shape = (n_times, lat.size, lon.size)
    return xr.Dataset(
        {
            "u10": (("time", "latitude", "longitude"), np.full(shape, u0, np.float32)),
            "v10": (("time", "latitude", "longitude"), np.full(shape, v0, np.float32)),
        },
        coords={"time": time, "latitude": lat, "longitude": lon},
    )


def run(wind, table, **kw):
    kw.setdefault("angular_interpolation", "linear")
    return downscale(wind, table, cache_dir=False, quiet=True, **kw).load()


def first(record, category):
    return str(next(w.message for w in record if issubclass(w.category, category)))


@pytest.mark.parametrize("value", [np.inf, -np.inf])
@pytest.mark.parametrize("blocks", [None, 16])
def test_infinite_forecast_values_are_blanked_like_nan(table, value, blocks):
    wind = nwp()
    ref = nwp()
    wind["u10"][1, 6, 5] = value  # one value of step 1, at the table (6.15E 45.2N)
    ref["u10"][1, 6, 5] = np.nan
    kw = {} if blocks is None else {"block_size": blocks, "output": None}
    with pytest.warns(NWPNaNWarning, match="NaN or infinite values") as rec:
        out = run(wind, table, **kw)
    assert not np.isinf(out.wind_speed.values).any()
    speed = out.wind_speed.values
    assert np.isnan(speed[1]).any() and not np.isnan(speed[[0, 2, 3]]).any()
    with pytest.warns(NWPNaNWarning) as rec_ref:
        expected = run(ref, table, **kw)
    np.testing.assert_array_equal(speed, expected.wind_speed.values)
    np.testing.assert_array_equal(out.wind_from_direction.values, expected.wind_from_direction)
    count = first(rec, NWPNaNWarning).split(" blanked ")[1].split()[0]
    assert count == first(rec_ref, NWPNaNWarning).split(" blanked ")[1].split()[0]
    assert int(count) > 0


@pytest.mark.parametrize("blocks", [None, 16])
def test_implausible_speeds_are_reported(table, blocks):
    wind = nwp()
    wind["u10"][2, :, :] = 1e6  # a damaged step: every output pixel 1.3e6 m/s
    kw = {} if blocks is None else {"block_size": blocks, "output": None}
    with pytest.warns(ImplausibleSpeedWarning) as rec:
        out = run(wind, table, **kw)
    msg = first(rec, ImplausibleSpeedWarning)
    n = SHAPE[0] * SHAPE[1]
    assert f"{n} output pixel-steps" in msg and "max_speed=100.0 m/s" in msg
    assert "up to 1.3e+06 m/s" in msg
    np.testing.assert_allclose(out.wind_speed.values[2], 1.3e6, rtol=1e-6)  # values kept
    # A threshold the user sets: none above it, no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplausibleSpeedWarning)
        run(wind, table, max_speed=2e6, **kw)
        run(wind, table, max_speed=math.inf, **kw)
        run(nwp(), table, **kw)  # 6.5 m/s: nothing to say


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "fast", True])
def test_max_speed_must_be_a_positive_speed(value):
    with pytest.raises(OptionError, match="max_speed.*expected a wind speed in m/s"):
        DownscaleOptions(max_speed=value)
    assert DownscaleOptions().max_speed == 100.0
    assert DownscaleOptions(max_speed="150").max_speed == 150.0


def test_cli_max_speed(tmp_path, table):
    table.to_netcdf(tmp_path / "t.nc")
    wind = nwp()
    wind["u10"][0, :, :] = 60.0  # 78 m/s downscaled
    wind.to_netcdf(tmp_path / "nwp.nc")
    base = ["downscale", str(tmp_path / "nwp.nc"), "-t", str(tmp_path / "t.nc"), "-q",
            "--angular-interpolation", "linear"]  # fmt: skip
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "a.nc"), "--max-speed", "50"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "above --max-speed 50.0 m/s" in line]
    assert len(lines) == 1 and f"{SHAPE[0] * SHAPE[1]} output pixel-steps" in lines[0]
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "b.nc")])
    assert result.exit_code == 0 and "max-speed" not in result.stderr, result.stderr
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "c.nc"), "--max-speed", "0"])
    assert result.exit_code == 1 and "--max-speed 0.0" in result.stderr, result.output


def test_station_input_checks_max_speed_too(tmp_path):
    """Station winds (issue 19) go through the same option: a speed in km/h is reported."""
    from tests.downscaling import test_stations as st

    n = len(st.PIXELS)
    speed = [[5.0] * n for _ in st.TIMES]
    speed[1][2] = 180.0  # km/h written as m/s
    obs = st.write_obs(tmp_path, st.observations(speed, [[270.0] * n for _ in st.TIMES]))
    table = st.make_table()
    with pytest.warns(ImplausibleSpeedWarning, match=r"1 of 16 station speeds are above"):
        downscale(obs, table, quiet=True, max_speed=150)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplausibleSpeedWarning)
        downscale(obs, table, quiet=True, max_speed=200)
    with pytest.raises(OptionError, match="max_speed"):
        downscale(obs, table, quiet=True, max_speed=-1)
