"""CF details of the downscaled outputs (issue 18): lat/lon, height, and a time window.

References are independent of the output code: latitude/longitude of sample pixels are
transformed one by one with pyproj from the table's x/y; heights are the ones the test files
state; a time window is compared with the steps of the whole run.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import Transformer

import devine_onnx.downscaling.output as output_mod
from devine_onnx.downscaling.api import downscale
from devine_onnx.downscaling.downscaler import open_wind
from devine_onnx.downscaling.options import DownscaleOptions, parse_time
from devine_onnx.errors import OptionError
from devine_onnx.io.atomic import partial_path
from devine_onnx.io.nwp import open_nwp, wind_height
from devine_onnx.sample_data import sample_nwp

from .test_downscale import make_table

pytest.importorskip("rioxarray")

SHAPE = (61, 81)
TO_WGS84 = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)
WIND = ("wind_speed", "wind_from_direction", "eastward_wind", "northward_wind")


@pytest.fixture(scope="module")
def table():
    return make_table(SHAPE, n_angles=36)


@pytest.fixture(scope="module")
def files(tmp_path_factory, table):
    folder = tmp_path_factory.mktemp("cf_output")
    nwp = sample_nwp(n_times=12)
    nwp.to_netcdf(folder / "nwp.nc")
    table.to_netcdf(folder / "table.nc")
    return folder / "nwp.nc", folder / "table.nc"


def run(nwp, table, **kw):
    kw.setdefault("cache_dir", False)
    kw.setdefault("quiet", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic table, pixels outside the NWP hull
        return downscale(nwp, table, **kw)


def assert_lat_lon(ds: xr.Dataset, height: float | None = 10.0) -> None:
    """lat/lon are CF auxiliary coordinates equal to pyproj at sample pixels; ``height``."""
    assert {"lat", "lon"} <= set(ds.coords)
    assert ds["lat"].dims == ("y", "x") and ds["lat"].dtype == np.float64
    assert ds["lat"].attrs["standard_name"] == "latitude"
    assert ds["lat"].attrs["units"] == "degrees_north"
    assert ds["lon"].attrs["standard_name"] == "longitude"
    assert ds["lon"].attrs["units"] == "degrees_east"
    x, y = ds["x"].values, ds["y"].values
    lat, lon = ds["lat"].values, ds["lon"].values
    ny, nx = lat.shape
    for i, j in [(0, 0), (0, nx - 1), (ny - 1, 0), (ny - 1, nx - 1), (ny // 3, nx // 2)]:
        ref_lon, ref_lat = TO_WGS84.transform(x[j], y[i])
        assert lon[i, j] == pytest.approx(ref_lon, abs=1e-9)
        assert lat[i, j] == pytest.approx(ref_lat, abs=1e-9)
    if height is None:
        assert "height" not in ds.variables
    else:
        h = ds["height"]
        assert h.ndim == 0 and float(h) == height
        assert h.attrs["standard_name"] == "height"
        assert h.attrs["units"] == "m" and h.attrs["positive"] == "up"


def coordinates_of(ds: xr.Dataset, name: str) -> set[str]:
    """Names in the CF ``coordinates`` attribute of ``name`` as written in the file."""
    var = ds[name]
    return set((var.encoding.get("coordinates") or var.attrs.get("coordinates", "")).split())


# --------------------------------------------------------------------------- lat/lon
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_file_outputs_carry_lat_lon_and_height(tmp_path, table, suffix):
    out = tmp_path / f"wind{suffix}"
    run(sample_nwp(n_times=3), table, output=out)
    opener = xr.open_zarr if suffix == ".zarr" else xr.open_dataset
    with opener(out) as ds:
        assert_lat_lon(ds)
        for name in WIND:
            assert coordinates_of(ds, name) == {"lat", "lon", "height", "spatial_ref"}
            assert ds[name].attrs["grid_mapping"] == "spatial_ref"
        assert not {"lat", "lon", "height"} & set(ds.data_vars)


def test_in_memory_lazy_and_coarsened_results(files, table):
    nwp_nc, table_nc = files
    mem = run(sample_nwp(n_times=2), table)
    assert_lat_lon(mem)
    assert isinstance(mem["lat"].variable._data, np.ndarray)  # computed, not lazy
    lazy = run(nwp_nc, table_nc)  # a file and no output: a lazy (dask) result
    assert lazy["wind_speed"].chunks is not None and lazy["lat"].chunks is not None
    assert_lat_lon(lazy.compute())
    coarse = run(sample_nwp(n_times=2), table, coarsen=4)  # block centres
    assert coarse.sizes["x"] == SHAPE[1] // 4
    assert_lat_lon(coarse)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_blocks_compute_lat_lon_by_rows(tmp_path, table, monkeypatch, suffix):
    """Spatial blocks, and lat/lon written block of rows by block of rows (tiny blocks here)."""
    monkeypatch.setattr(output_mod, "LONLAT_BLOCK_PIXELS", 200)  # 2 rows of 81 pixels
    out = tmp_path / f"blocks{suffix}"
    got = run(sample_nwp(n_times=3), table, output=out, block_size=20)
    ref = run(sample_nwp(n_times=3), table)
    assert_lat_lon(got)
    np.testing.assert_array_equal(got["lat"].values, ref["lat"].values)
    np.testing.assert_array_equal(got["lon"].values, ref["lon"].values)
    if suffix == ".zarr":
        import zarr

        assert zarr.open_group(str(out), mode="r")["lat"].chunks == (2, SHAPE[1])


def test_lazy_lat_lon_in_blocks_of_rows(table):
    x, y = table["x"].values, table["y"].values
    lat, lon = output_mod.lazy_lonlat(x, y, table.rio.crs, block_pixels=5 * x.size)
    assert lat.chunks == (tuple([5] * 12 + [1]), (x.size,))
    one = output_mod.lonlat_block(y[7:9], x, table.rio.crs.to_wkt())
    np.testing.assert_array_equal(one[1], lat[7:9].compute())
    np.testing.assert_array_equal(one[0], lon[7:9].compute())


def test_cluster_output_carries_lat_lon(tmp_path, files):
    pytest.importorskip("distributed")
    nwp_nc, table_nc = files
    got = run(nwp_nc, table_nc, output=tmp_path / "cluster.zarr", workers=1, block_size=40)
    assert_lat_lon(got.load())


def test_station_driven_output_carries_lat_lon(tmp_path):
    from .test_stations import PIXELS, TIMES, make_table, observations, station_list

    obs = observations([[5.0] * len(PIXELS)] * len(TIMES), [[270.0] * len(PIXELS)] * len(TIMES))
    obs_csv = tmp_path / "obs.csv"
    obs.to_csv(obs_csv, index=False)
    stations_csv = tmp_path / "stations.csv"
    station_list().to_csv(stations_csv, index=False)
    out = tmp_path / "stations_wind.nc"
    run(obs_csv, make_table(), output=out, stations=stations_csv)
    with xr.open_dataset(out) as ds:
        assert_lat_lon(ds, height=None)  # station heights are not known
        assert coordinates_of(ds, "wind_speed") == {"lat", "lon", "spatial_ref"}


def test_per_step_output_carries_lat_lon(tmp_path):
    pytest.importorskip("torch")
    from devine_onnx.sample_data import sample_dem
    from tests.feature_models import convert_folder

    _, model = convert_folder(tmp_path, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = downscale(
            sample_nwp(n_times=2), per_step=True, model=model, dem=sample_dem((43, 47), 30.0),
            device="cpu", cache_dir=False, quiet=True, output=tmp_path / "per_step.nc",
        )  # fmt: skip
    assert_lat_lon(ds)
    assert coordinates_of(ds, "upward_air_velocity") == {"lat", "lon", "height", "spatial_ref"}


# --------------------------------------------------------------------------- height
def nwp_named(u: str, v: str, **coords) -> xr.Dataset:
    """The sample forecast with its winds named ``u``/``v`` and no long name (the sample's
    says "10 m")."""
    ds = sample_nwp(n_times=2).rename(u10=u, v10=v)
    for name, sn in ((u, "eastward_wind"), (v, "northward_wind")):
        ds[name].attrs = {"units": "m s-1", "standard_name": sn}
    return ds.assign_coords(**coords) if coords else ds


GRIB_HEIGHT = {"long_name": "height above the surface", "units": "m", "positive": "up",
               "standard_name": "height"}  # fmt: skip


@pytest.mark.parametrize(
    ("nwp", "height"),
    [
        (nwp_named("u10", "v10"), 10.0),
        (nwp_named("u100", "v100"), 100.0),
        (nwp_named("10u", "10v"), 10.0),  # ecCodes short names
        # GRIB through cfgrib: a scalar heightAboveGround coordinate says it, whatever the name
        (nwp_named("u", "v", heightAboveGround=((), 80.0, GRIB_HEIGHT)), 80.0),
        # the size-1 level dimension of a GRIB file read with several levels
        (nwp_named("u", "v").expand_dims(heightAboveGround=[100.0], axis=1), 100.0),
        (nwp_named("u", "v"), None),  # unknown level: no height coordinate
    ],
    ids=["u10", "u100", "10u", "grib-coordinate", "grib-level-dimension", "unknown"],
)
def test_height_from_the_forecast_variable(tmp_path, table, nwp, height):
    out = tmp_path / "wind.nc"
    run(nwp, table, output=out)
    with xr.open_dataset(out) as ds:
        assert_lat_lon(ds, height=height)
        expected = {"lat", "lon", "spatial_ref"} | ({"height"} if height else set())
        assert coordinates_of(ds, "wind_speed") == expected


def test_height_from_attributes():
    ds = nwp_named("u", "v")
    ds["u"].attrs["long_name"] = "10 metre U wind component"  # ERA5's long name
    ds["v"].attrs["long_name"] = "10 metre V wind component"
    assert wind_height(ds, "u", "v") == 10.0
    ds["u"].attrs = {"height": "2 m", "units": "m s-1"}
    ds["v"].attrs = {"height": 2.0, "units": "m s-1"}
    assert wind_height(ds, "u", "v") == 2.0
    km = nwp_named("u", "v", level=((), 0.05, {"standard_name": "height", "units": "km"}))
    assert wind_height(km, "u", "v") == 50.0
    # not a height: a speed in a long name, pressure levels, components that disagree
    ds["u"].attrs = ds["v"].attrs = {"long_name": "wind above 10 m s-1"}
    assert wind_height(ds, "u", "v") is None
    hpa = nwp_named("u", "v", isobaricInhPa=((), 850.0, {"units": "hPa"}))
    assert wind_height(hpa, "u", "v") is None
    assert wind_height(nwp_named("u10", "v100"), "u10", "v100") is None
    assert open_nwp(nwp_named("u10", "v10")).height == 10.0


# --------------------------------------------------------------------------- time window
def test_start_end_select_exactly_those_steps(files):
    nwp_nc, table_nc = files
    full = run(nwp_nc, table_nc).compute()
    times = full["time"].values
    part = run(nwp_nc, table_nc, start=str(times[3])[:16], end=str(times[7])[:16]).compute()
    np.testing.assert_array_equal(part["time"].values, times[3:8])  # both bounds included
    for name in WIND:
        np.testing.assert_array_equal(part[name].values, full[name].values[3:8])
    # an offset is converted to UTC; one bound alone; a datetime object
    east = (pd.Timestamp(times[5]) + pd.Timedelta(hours=1)).isoformat() + "+01:00"
    assert run(nwp_nc, table_nc, start=east).sizes["time"] == times.size - 5
    assert run(nwp_nc, table_nc, end=pd.Timestamp(times[0])).sizes["time"] == 1
    assert "start=" in part.attrs["history"] and "end=" in part.attrs["history"]


def test_start_end_with_an_output_file_and_blocks(tmp_path, files):
    nwp_nc, table_nc = files
    full = run(nwp_nc, table_nc, output=tmp_path / "full.nc")
    t = full["time"].values
    for kw in ({}, {"block_size": 30}):
        out = tmp_path / f"part{len(kw)}.zarr"
        part = run(nwp_nc, table_nc, output=out, start=str(t[10]), end=str(t[11]), **kw)
        np.testing.assert_array_equal(part["time"].values, t[10:12])
        np.testing.assert_array_equal(part["wind_speed"].values, full["wind_speed"].values[10:])


def test_a_window_uses_the_weights_of_the_whole_file(tmp_path, files):
    nwp_nc, table_nc = files
    cache = tmp_path / "cache"
    run(nwp_nc, table_nc, cache_dir=cache, output=tmp_path / "full.nc")
    run(nwp_nc, table_nc, cache_dir=cache, output=tmp_path / "part.nc", start="2026-01-15T05")
    assert len(list(cache.glob("weights-*.nc"))) == 1  # one pair of grids, one weights file


def test_start_end_also_for_per_step_inputs(files):
    nwp_nc, _ = files
    opts = DownscaleOptions(per_step=True, start="2026-01-15T02:00", end="2026-01-15T04:00")
    nwp = open_wind(nwp_nc, opts)
    assert nwp.n_times == 3 and str(nwp.time[0])[:16] == "2026-01-15T02:00"


def test_bad_windows_are_one_line_naming_the_options_and_the_file_range(tmp_path, files):
    nwp_nc, table_nc = files
    out = tmp_path / "never.nc"
    span = "nwp.nc has 12 steps from 2026-01-15T00:00 to 2026-01-15T11:00 UTC"
    with pytest.raises(OptionError) as info:
        run(nwp_nc, table_nc, output=out, start="2026-02-01", end="2026-02-02")
    msg = str(info.value)
    assert "start='2026-02-01T00:00'" in msg and "end='2026-02-02T00:00'" in msg
    assert span in msg
    assert "\n" not in msg
    with pytest.raises(OptionError, match="start is after the end.*" + span):
        run(nwp_nc, table_nc, output=out, start="2026-01-15T06:00", end="2026-01-15T05:00")
    with pytest.raises(OptionError, match="start=.*expected an ISO time"):
        run(nwp_nc, table_nc, output=out, start="yesterday")
    with pytest.raises(OptionError, match="end=.*expected an ISO time"):
        run(nwp_nc, table_nc, output=out, end=3)
    assert not out.exists() and not partial_path(out).exists()


def test_parse_time_is_utc():
    assert parse_time("2026-01-15T07:30+01:00", "start") == np.datetime64("2026-01-15T06:30")
    assert parse_time("2026-01-15 06:30Z", "start") == np.datetime64("2026-01-15T06:30")
    assert parse_time("2026-01-15", "end") == np.datetime64("2026-01-15T00:00")
    assert parse_time(None, "end") is None


def test_cli_start_end(tmp_path, files):
    from tests.cli.helpers import assert_refused, invoke

    nwp_nc, table_nc = files
    out = tmp_path / "window.nc"
    args = ["downscale", nwp_nc, "--table", table_nc, "--no-cache", "-q", "-o", out]
    result = invoke([*args, "--start", "2026-01-15T01:00", "--end", "2026-01-15T03:00"])
    assert result.exit_code == 0, result.output
    with xr.open_dataset(out) as ds:
        assert [str(t)[:16] for t in ds["time"].values] == [
            "2026-01-15T01:00", "2026-01-15T02:00", "2026-01-15T03:00"
        ]  # fmt: skip
    late = tmp_path / "late.nc"
    result = invoke([*args[:-1], late, "--start", "2027-01-01"])
    assert_refused(result, "--start", "2026-01-15T00:00 to 2026-01-15T11:00", outputs=[late])
