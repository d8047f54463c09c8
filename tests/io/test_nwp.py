"""Reading NWP wind files: variable detection, time flattening, coordinates, CRS, errors."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import CRS

from devine_onnx.errors import MissingDependencyError, NWPError, OptionError
from devine_onnx.io.nwp import NWPWinds, open_nwp
from devine_onnx.sample_data import sample_nwp
from devine_onnx.wind import meridian_convergence, uv_to_speed_dir

LON = 6.15 + (np.arange(6) - 2.5) * 0.05
LAT = 45.2 - (np.arange(5) - 2.0) * 0.05
TIMES = pd.date_range("2026-01-01", periods=4, freq="h")


def _field(shape, seed=0):
    return np.random.default_rng(seed).normal(0, 5, shape).astype(np.float32)


def _latlon_ds(u_name="u10", v_name="v10", attrs_u=None, attrs_v=None):
    shape = (TIMES.size, LAT.size, LON.size)
    return xr.Dataset(
        {
            u_name: (("time", "latitude", "longitude"), _field(shape, 1), attrs_u or {}),
            v_name: (("time", "latitude", "longitude"), _field(shape, 2), attrs_v or {}),
            "t2m": (("time", "latitude", "longitude"), _field(shape, 3), {"units": "K"}),
        },
        coords={"time": TIMES, "latitude": LAT, "longitude": LON},
    )


@pytest.mark.parametrize(
    ("u_name", "v_name"),
    [
        ("u10", "v10"),
        ("u", "v"),
        ("U", "V"),
        ("U10", "V10"),
        ("UGRD", "VGRD"),
        ("ugrd10m", "vgrd10m"),
        ("10u", "10v"),
        ("uas", "vas"),
    ],
)
def test_detects_wind_variable_names(u_name, v_name):
    ds = _latlon_ds(u_name, v_name)
    nwp = open_nwp(ds)
    assert isinstance(nwp, NWPWinds)
    assert (nwp.u_name, nwp.v_name) == (u_name, v_name)
    np.testing.assert_array_equal(nwp.u.values, ds[u_name].values)
    np.testing.assert_array_equal(nwp.v.values, ds[v_name].values)
    assert nwp.u.dims == ("time", "latitude", "longitude")
    assert nwp.spatial_dims == ("latitude", "longitude")
    assert nwp.crs == CRS.from_epsg(4326)
    np.testing.assert_array_equal(nwp.lon_or_x, LON)
    np.testing.assert_array_equal(nwp.lat_or_y, LAT)
    assert nwp.source_shape == (LAT.size, LON.size)
    assert nwp.n_times == TIMES.size


def test_detects_cf_standard_names():
    ds = _latlon_ds(
        "wind_e",
        "wind_n",
        {"standard_name": "eastward_wind", "units": "m s-1"},
        {"standard_name": "northward_wind", "units": "m/s"},
    )
    nwp = open_nwp(ds)
    assert (nwp.u_name, nwp.v_name) == ("wind_e", "wind_n")


def test_ambiguous_standard_names_ask_for_flags():
    ds = _latlon_ds(
        "a", "b", {"standard_name": "eastward_wind"}, {"standard_name": "northward_wind"}
    )
    ds["c"] = ds["a"].assign_attrs(standard_name="eastward_wind")
    with pytest.raises(NWPError, match="u_var/v_var"):
        open_nwp(ds)


def test_flags_override_detection():
    ds = _latlon_ds()
    ds["u100"] = ds["u10"] * 2
    ds["v100"] = ds["v10"] * 2
    nwp = open_nwp(ds, u_var="u100", v_var="v100")
    assert (nwp.u_name, nwp.v_name) == ("u100", "v100")
    np.testing.assert_allclose(nwp.u.values, 2 * ds["u10"].values)
    with pytest.raises(OptionError, match=r"both u_var and v_var \(got only u_var='u100'\)"):
        open_nwp(ds, u_var="u100")
    with pytest.raises(NWPError, match="'nope' not found.*variables in the file: .*u10"):
        open_nwp(ds, u_var="nope", v_var="v10")


def test_missing_variables_error_names_file_and_lists_variables(tmp_path):
    ds = _latlon_ds().drop_vars(["u10", "v10"])
    path = tmp_path / "no_wind.nc"
    ds.to_netcdf(path)
    with pytest.raises(NWPError) as info:
        open_nwp(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert "t2m" in msg and "no wind variables" in msg


def test_text_file_named_nc_is_a_clean_error(tmp_path):
    path = tmp_path / "wind.nc"
    path.write_text("this is not a netCDF file\n")
    with pytest.raises(NWPError, match=r"wind\.nc: not a NetCDF, GRIB or Zarr file"):
        open_nwp(path)


def test_missing_file(tmp_path):
    with pytest.raises(NWPError, match="not found"):
        open_nwp(tmp_path / "absent.nc")


def test_grib_without_cfgrib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cfgrib", None)  # `import cfgrib` now fails
    path = tmp_path / "wind.grib2"
    path.write_bytes(b"GRIB" + b"\0" * 100)
    with pytest.raises(MissingDependencyError, match=r'pip install "devine-onnx\[grib\]"'):
        open_nwp(path)


def test_netcdf_file_is_lazy_and_chunked_along_time(tmp_path):
    path = tmp_path / "arome.nc"
    sample_nwp(n_times=10).to_netcdf(path)
    nwp = open_nwp(path, chunk_time=4)
    assert nwp.is_lazy
    assert nwp.u.chunks[0] == (4, 4, 2)
    assert nwp.source == "arome.nc"
    ref = sample_nwp(n_times=10)
    np.testing.assert_array_equal(nwp.u.values, ref["u10"].values)
    np.testing.assert_array_equal(nwp.time, ref["time"].values)
    # Default chunking for files: 24 steps.
    assert open_nwp(path).u.chunks[0] == (10,)


def test_zarr_store(tmp_path):
    path = tmp_path / "arome.zarr"
    sample_nwp(n_times=5).to_zarr(path, zarr_format=2, consolidated=True)
    nwp = open_nwp(path)
    np.testing.assert_array_equal(nwp.v.values, sample_nwp(n_times=5)["v10"].values)


def test_time_step_pair_is_flattened_to_valid_time():
    steps = pd.to_timedelta([0, 1, 2], unit="h")
    runs = pd.date_range("2026-01-01", periods=2, freq="12h")
    shape = (runs.size, steps.size, LAT.size, LON.size)
    u = _field(shape, 4)
    ds = xr.Dataset(
        {
            "u10": (("time", "step", "latitude", "longitude"), u),
            "v10": (("time", "step", "latitude", "longitude"), -u),
        },
        coords={"time": runs, "step": steps, "latitude": LAT, "longitude": LON},
    )
    nwp = open_nwp(ds)
    expected = (runs.values[:, None] + steps.values[None, :]).ravel()
    np.testing.assert_array_equal(nwp.time, expected)
    np.testing.assert_array_equal(nwp.u.values, u.reshape(-1, LAT.size, LON.size))
    # A valid_time coordinate, when present, is used as is.
    valid = expected.reshape(2, 3) + np.timedelta64(1, "m")
    nwp = open_nwp(ds.assign_coords(valid_time=(("time", "step"), valid)))
    np.testing.assert_array_equal(nwp.time, valid.ravel())
    # Also when dask-backed (the stacking stays lazy).
    nwp = open_nwp(ds, chunk_time=4)
    assert nwp.is_lazy
    np.testing.assert_array_equal(nwp.u.values, u.reshape(-1, LAT.size, LON.size))


def test_cfgrib_style_step_dimension_with_scalar_time():
    steps = pd.to_timedelta([1, 2, 3], unit="h")
    t0 = np.datetime64("2026-01-01T00:00", "ns")
    shape = (steps.size, LAT.size, LON.size)
    ds = xr.Dataset(
        {
            "u10": (("step", "latitude", "longitude"), _field(shape, 5), {"units": "m s**-1"}),
            "v10": (("step", "latitude", "longitude"), _field(shape, 6), {"units": "m s**-1"}),
        },
        coords={
            "time": t0,
            "step": steps,
            "heightAboveGround": 10.0,
            "latitude": LAT,
            "longitude": LON,
            "valid_time": ("step", t0 + steps.values),
        },
    )
    nwp = open_nwp(ds)
    np.testing.assert_array_equal(nwp.time, t0 + steps.values)
    assert nwp.u.dims == ("time", "latitude", "longitude")


def test_single_field_with_scalar_time_and_size1_level():
    ds = _latlon_ds().isel(time=0).expand_dims(height=[10.0], axis=0)
    nwp = open_nwp(ds)
    assert nwp.n_times == 1
    assert nwp.u.dims == ("time", "latitude", "longitude")
    np.testing.assert_array_equal(nwp.time, TIMES.values[:1])
    with pytest.raises(NWPError, match="no time dimension"):
        open_nwp(_latlon_ds().isel(time=0, drop=True))


def test_two_dimensional_lat_lon():
    ny, nx = 5, 6
    jj, ii = np.meshgrid(np.arange(nx), np.arange(ny))
    lon2 = 6.0 + 0.05 * jj + 0.01 * ii  # a slightly skewed curvilinear grid
    lat2 = 45.0 + 0.05 * ii - 0.01 * jj
    shape = (TIMES.size, ny, nx)
    ds = xr.Dataset(
        {"u": (("time", "y", "x"), _field(shape, 7)), "v": (("time", "y", "x"), _field(shape, 8))},
        coords={
            "time": TIMES,
            "lat": (("y", "x"), lat2, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": (("y", "x"), lon2, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )
    # A curvilinear grid is a projected model's grid: are u/v relative to it? Say it.
    with pytest.raises(NWPError, match="nwp_wind_frame='earth' or nwp_wind_frame='grid'"):
        open_nwp(ds)
    nwp = open_nwp(ds, nwp_wind_frame="earth")
    assert nwp.crs == CRS.from_epsg(4326)
    assert nwp.spatial_dims == ("y", "x")
    np.testing.assert_array_equal(nwp.lon_or_x, lon2)
    np.testing.assert_array_equal(nwp.lat_or_y, lat2)
    np.testing.assert_array_equal(nwp.u.values, ds["u"].values)
    assert "lat" not in nwp.u.coords  # 2-D coordinates travel separately
    # Its projection is unknown: grid-relative components cannot be rotated.
    with pytest.raises(NWPError, match="projection is unknown"):
        open_nwp(ds, nwp_wind_frame="grid")
    # 2-D arrays of a regular lat/lon grid: grid north is true north, nothing to say.
    lon_r, lat_r = np.meshgrid(LON, LAT)
    reg = ds.assign_coords(lat=(("y", "x"), lat_r[:, :6]), lon=(("y", "x"), lon_r[:, :6]))
    np.testing.assert_array_equal(open_nwp(reg).u.values, ds["u"].values)


def _projected_ds():
    x = 940_000.0 + 2500.0 * np.arange(6)
    y = 6_470_000.0 - 2500.0 * np.arange(5)
    shape = (TIMES.size, y.size, x.size)
    ds = xr.Dataset(
        {"u": (("time", "y", "x"), _field(shape, 9)), "v": (("time", "y", "x"), _field(shape, 10))},
        coords={"time": TIMES, "y": y, "x": x},
    )
    return ds, x, y


def test_projected_xy_with_crs():
    pytest.importorskip("rioxarray")
    ds, x, y = _projected_ds()
    ds = ds.rio.write_crs("EPSG:2154")
    ds["u"].attrs["grid_mapping"] = "spatial_ref"
    ds["v"].attrs["grid_mapping"] = "spatial_ref"
    nwp = open_nwp(ds, nwp_wind_frame="earth")
    assert nwp.crs.to_epsg() == 2154
    np.testing.assert_array_equal(nwp.lon_or_x, x)
    np.testing.assert_array_equal(nwp.lat_or_y, y)
    np.testing.assert_array_equal(nwp.u.values, ds["u"].values)


def test_projected_xy_without_crs_needs_nwp_crs():
    ds, x, _ = _projected_ds()
    with pytest.raises(NWPError, match="give it with nwp_crs, e.g. EPSG:2154"):
        open_nwp(ds)
    nwp = open_nwp(ds, nwp_crs="EPSG:2154", nwp_wind_frame="earth")
    assert nwp.crs.to_epsg() == 2154
    np.testing.assert_array_equal(nwp.lon_or_x, x)


def test_projected_grid_without_wind_frame_is_refused():
    """u/v on a projected grid, no standard names: earth- or grid-relative? Refused, one line."""
    ds, _, _ = _projected_ds()
    with pytest.raises(NWPError) as info:
        open_nwp(ds, nwp_crs="EPSG:2154")
    msg = str(info.value)
    assert "\n" not in msg and "'u'/'v'" in msg
    assert "nwp_wind_frame='earth' or nwp_wind_frame='grid'" in msg
    with pytest.raises(OptionError, match="nwp_wind_frame='north': expected 'earth'"):
        open_nwp(ds, nwp_crs="EPSG:2154", nwp_wind_frame="north")
    # Earth-relative standard names say it.
    ds["u"].attrs["standard_name"] = "eastward_wind"
    ds["v"].attrs["standard_name"] = "northward_wind"
    nwp = open_nwp(ds, nwp_crs="EPSG:2154")
    np.testing.assert_array_equal(nwp.u.values, ds["u"].values)
    assert "eastward_wind" in nwp.wind_frame


@pytest.mark.parametrize("how", ["option", "standard_name"])
def test_grid_relative_components_on_projected_grid_are_rotated(how):
    """Grid-relative u/v are turned by the NWP projection's meridian convergence."""
    ds, x, y = _projected_ds()
    kw = {"nwp_wind_frame": "grid"}
    if how == "standard_name":
        ds["u"].attrs["standard_name"] = "x_wind"
        ds["v"].attrs["standard_name"] = "y_wind"
        kw = {}
    nwp = open_nwp(ds, nwp_crs="EPSG:2154", **kw)
    gamma = meridian_convergence(x[None, :], y[:, None], "EPSG:2154")
    assert np.all((gamma > 2.0) & (gamma < 2.6))  # Lambert-93 around 6.15E
    g = np.radians(gamma)
    u, v = ds["u"].values, ds["v"].values
    np.testing.assert_allclose(nwp.u.values, u * np.cos(g) + v * np.sin(g), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nwp.v.values, v * np.cos(g) - u * np.sin(g), rtol=1e-5, atol=1e-5)
    # Same speed; the FROM direction from true north is the grid direction + gamma.
    s0, d0 = uv_to_speed_dir(u, v)
    s1, d1 = uv_to_speed_dir(nwp.u.values, nwp.v.values)
    np.testing.assert_allclose(s1, s0, rtol=1e-5)
    np.testing.assert_allclose(np.mod(d1 - d0 - gamma + 180, 360) - 180, 0, atol=1e-3)
    assert "meridian convergence" in nwp.wind_frame


def _wrf_ds(times_as="xtime"):
    """A WRF-like wrfout: U10/V10 (Time, south_north, west_east), COSALPHA/SINALPHA, XLAT."""
    ny, nx, nt = 3, 4, 2
    jj, ii = np.meshgrid(np.arange(nx), np.arange(ny))
    xlong = 6.0 + 0.03 * jj - 0.004 * ii  # curvilinear, as on a Lambert grid
    xlat = 45.0 + 0.03 * ii + 0.004 * jj
    cos_a = np.full((ny, nx), 0.8)
    sin_a = np.full((ny, nx), 0.6)
    cos_a[0, 0], sin_a[0, 0] = 0.6, -0.8
    cos_a[2, 3], sin_a[2, 3] = 1.0, 0.0
    shape = (nt, ny, nx)
    dims = ("Time", "south_north", "west_east")
    ds = xr.Dataset(
        {
            "U10": (dims, np.full(shape, 3.0, np.float32), {"units": "m s-1"}),
            "V10": (dims, np.full(shape, 4.0, np.float32), {"units": "m s-1"}),
            "COSALPHA": (dims, np.broadcast_to(cos_a, shape).astype(np.float32)),
            "SINALPHA": (dims, np.broadcast_to(sin_a, shape).astype(np.float32)),
        },
        coords={
            "XLAT": (dims, np.broadcast_to(xlat, shape)),
            "XLONG": (dims, np.broadcast_to(xlong, shape)),
        },
    )
    times = pd.date_range("2026-11-24", periods=nt, freq="h")
    if times_as == "xtime":
        ds = ds.assign_coords(XTIME=("Time", times))
    else:
        ds["Times"] = ("Time", np.array([t.strftime("%Y-%m-%d_%H:%M:%S") for t in times], "S19"))
    return ds, times


@pytest.mark.parametrize("times_as", ["xtime", "times"])
def test_wrf_winds_rotated_with_cosalpha_sinalpha(tmp_path, times_as):
    """WRF: u_earth = u cos(a) - v sin(a), v_earth = v cos(a) + u sin(a), by hand."""
    ds, times = _wrf_ds(times_as)
    path = tmp_path / "wrfout_d01.nc"
    ds.to_netcdf(path)
    nwp = open_nwp(path)
    assert (nwp.u_name, nwp.v_name) == ("U10", "V10")
    np.testing.assert_array_equal(nwp.time, times.values)
    assert nwp.spatial_dims == ("south_north", "west_east")
    np.testing.assert_array_equal(nwp.lat_or_y, ds["XLAT"].values[0])
    u, v = nwp.u.values, nwp.v.values
    # (3, 4) with cos 0.8, sin 0.6: (3*0.8 - 4*0.6, 4*0.8 + 3*0.6) = (0, 5)
    np.testing.assert_allclose(u[:, 1, 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(v[:, 1, 1], 5.0, rtol=1e-6)
    # cos 0.6, sin -0.8: (3*0.6 + 4*0.8, 4*0.6 - 3*0.8) = (5, 0)
    np.testing.assert_allclose(u[:, 0, 0], 5.0, rtol=1e-6)
    np.testing.assert_allclose(v[:, 0, 0], 0.0, atol=1e-6)
    # cos 1, sin 0: unchanged
    np.testing.assert_allclose(u[:, 2, 3], 3.0, rtol=1e-6)
    np.testing.assert_allclose(v[:, 2, 3], 4.0, rtol=1e-6)
    assert "COSALPHA" in nwp.wind_frame
    # Said to be earth-relative already: not rotated.
    np.testing.assert_array_equal(open_nwp(path, nwp_wind_frame="earth").u.values, 3.0)


def _write_lambert_grib2(path, u, v, lat0=45.9, lon0=2.0, first=(45.0, 5.9)):
    """Grid-relative (uvRelativeToGrid=1) 10 m winds on a GRIB2 Lambert grid (AROME-like)."""
    eccodes = pytest.importorskip("eccodes")
    ny, nx = u.shape
    with open(path, "wb") as fh:
        for short, field in (("10u", u), ("10v", v)):
            h = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
            try:
                eccodes.codes_set(h, "gridDefinitionTemplateNumber", 30)  # Lambert conformal
                keys = {
                    "shortName": short,
                    "Nx": nx,
                    "Ny": ny,
                    "latitudeOfFirstGridPointInDegrees": first[0],
                    "longitudeOfFirstGridPointInDegrees": first[1],
                    "LaDInDegrees": lat0,
                    "LoVInDegrees": lon0,
                    "Latin1InDegrees": lat0,
                    "Latin2InDegrees": lat0,
                    "DxInMetres": 2500,
                    "DyInMetres": 2500,
                    "iScansNegatively": 0,
                    "jScansPositively": 1,
                    "resolutionAndComponentFlags": 8,  # bit 5: u/v relative to the grid
                    "bitsPerValue": 24,
                }
                for key, value in keys.items():
                    eccodes.codes_set(h, key, value)
                assert eccodes.codes_get(h, "uvRelativeToGrid") == 1
                eccodes.codes_set_values(h, field.astype(float).ravel())
                eccodes.codes_write(h, fh)
            finally:
                eccodes.codes_release(h)


def test_grib_lambert_grid_relative_winds_are_rotated(tmp_path):
    """AROME-style GRIB: cfgrib's GRIB_uvRelativeToGrid=1 on a Lambert grid."""
    pytest.importorskip("cfgrib")
    ny, nx = 6, 8
    u = np.full((ny, nx), 3.0)
    v = np.full((ny, nx), 4.0)
    path = tmp_path / "arome.grib2"
    _write_lambert_grib2(path, u, v)
    nwp = open_nwp(path)
    assert nwp.lon_or_x.shape == (ny, nx)
    # Tangent Lambert cone: gamma = sin(lat0) (lon - lon0), > 0 east of lon0 = 2E.
    gamma = np.sin(np.radians(45.9)) * (nwp.lon_or_x - 2.0)
    assert np.all((gamma > 2.5) & (gamma < 3.5))
    g = np.radians(gamma)
    np.testing.assert_allclose(nwp.u.values[0], 3 * np.cos(g) + 4 * np.sin(g), rtol=1e-5)
    np.testing.assert_allclose(nwp.v.values[0], 4 * np.cos(g) - 3 * np.sin(g), rtol=1e-5)
    assert "uvRelativeToGrid=1" in nwp.wind_frame
    # cfgrib calls them eastward_wind/northward_wind anyway; an explicit frame still wins.
    np.testing.assert_allclose(open_nwp(path, nwp_wind_frame="earth").u.values, 3.0)


def test_speed_and_direction_are_converted_to_components():
    ds = _latlon_ds()
    speed, direction = uv_to_speed_dir(ds["u10"].values, ds["v10"].values)
    speed[0, 0, 0] = 0.0  # calm: direction NaN
    direction[0, 0, 0] = np.nan
    dims = ("time", "latitude", "longitude")
    sd = xr.Dataset(
        {
            "ff": (dims, speed, {"standard_name": "wind_speed", "units": "m s-1"}),
            "dd": (dims, direction, {"standard_name": "wind_from_direction", "units": "degree"}),
        },
        coords=ds.coords,
    )
    nwp = open_nwp(sd)
    assert (nwp.u_name, nwp.v_name) == ("ff", "dd")
    expected_u = ds["u10"].values.copy()
    expected_v = ds["v10"].values.copy()
    expected_u[0, 0, 0] = expected_v[0, 0, 0] = 0.0
    np.testing.assert_allclose(nwp.u.values, expected_u, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nwp.v.values, expected_v, rtol=1e-5, atol=1e-5)
    assert nwp.u.dtype == np.float32
    # By name, in radians; other direction units are refused.
    by_name = sd.rename(ff="wind_speed", dd="wind_from_direction")
    by_name["wind_from_direction"] = by_name["wind_from_direction"].copy(data=np.radians(direction))
    by_name["wind_from_direction"].attrs = {"units": "radian"}
    np.testing.assert_allclose(open_nwp(by_name).v.values, expected_v, rtol=1e-5, atol=1e-5)
    by_name["wind_from_direction"].attrs = {"units": "gradians"}
    with pytest.raises(NWPError, match="units 'gradians', expected degrees"):
        open_nwp(by_name)


def test_nwp_crs_overrides_geographic_crs():
    nwp = open_nwp(_latlon_ds(), nwp_crs="EPSG:4258")
    assert nwp.crs.to_epsg() == 4258
    with pytest.raises(OptionError, match="nwp_crs='not a crs': not a CRS"):
        open_nwp(_latlon_ds(), nwp_crs="not a crs")


def test_units_other_than_m_per_s_are_refused():
    ds = _latlon_ds(attrs_u={"units": "km h-1"})
    with pytest.raises(NWPError, match="units 'km h-1'"):
        open_nwp(ds)


def test_cf_lambert_without_crs_name_is_named_by_its_projection():
    """Issue 21: a CF Lambert grid mapping without crs_wkt gave "meridian convergence of undefined"."""
    ds, x, y = _projected_ds()
    ds["lambert"] = xr.DataArray(
        np.int32(0),
        attrs={
            "grid_mapping_name": "lambert_conformal_conic",
            "standard_parallel": [49.0, 44.0],
            "latitude_of_projection_origin": 46.5,
            "longitude_of_central_meridian": 3.0,
            "false_easting": 700000.0,
            "false_northing": 6600000.0,
            "semi_major_axis": 6378137.0,
            "inverse_flattening": 298.257222101,
        },
    )
    for name in ("u", "v"):
        ds[name].attrs["grid_mapping"] = "lambert"
    nwp = open_nwp(ds, nwp_wind_frame="grid")
    assert "meridian convergence" in nwp.wind_frame
    assert "undefined" not in nwp.wind_frame and "Lambert" in nwp.wind_frame
