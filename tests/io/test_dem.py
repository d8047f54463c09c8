"""load_dem: formats, orientation, trimming, and every refusal as a one-line DEMError."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from devine_onnx.errors import DEMError, cli_spelling
from devine_onnx.io.dem import dem_fingerprint, load_dem
from devine_onnx.sample_data import sample_dem


def grid(shape=(101, 121), res=(30.0, 30.0), crs="EPSG:2154", x0=900_000.0, y0=6_450_000.0):
    ny, nx = shape
    rng = np.random.default_rng(1)
    z = (1000 + rng.normal(0, 50, shape)).astype(np.float32)
    da = xr.DataArray(
        z,
        dims=("y", "x"),
        coords={"y": y0 - res[1] * np.arange(ny), "x": x0 + res[0] * np.arange(nx)},
        name="elevation",
    )
    return da.rio.write_crs(crs) if crs else da


def refused(source, match, **kwargs) -> str:
    with pytest.raises(DEMError, match=match) as info:
        load_dem(source, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_geotiff_round_trip(tmp_path):
    da = grid()
    path = tmp_path / "dem.tif"
    da.rio.to_raster(path)
    dem, notes = load_dem(path)
    assert notes == []
    assert dem.dims == ("y", "x") and dem.dtype == np.float32
    np.testing.assert_array_equal(dem.values, da.values)
    np.testing.assert_allclose(dem.x.values, da.x.values)
    np.testing.assert_allclose(dem.y.values, da.y.values)
    assert dem.rio.crs.to_epsg() == 2154
    assert dem.attrs["source"] == str(path)


def test_netcdf_input_and_variable_choice(tmp_path):
    da = grid()
    path = tmp_path / "dem.nc"
    da.to_dataset().to_netcdf(path)
    dem, _ = load_dem(path)
    np.testing.assert_array_equal(dem.values, da.values)
    assert dem.rio.crs.to_epsg() == 2154

    two = tmp_path / "two.nc"
    ds = da.to_dataset()
    ds["slope"] = da * 0 + 1
    ds.to_netcdf(two)
    msg = refused(two, "exactly one 2-D elevation variable")
    assert "elevation" in msg and "slope" in msg
    assert "var='elevation'" in msg
    # The command line has no option to choose the variable: no made-up option is named.
    with cli_spelling():
        msg = refused(two, "exactly one 2-D elevation variable")
    assert "--dem-var" not in msg and "--var" not in msg and "ncks -v" in msg
    dem, _ = load_dem(two, var="elevation")
    np.testing.assert_array_equal(dem.values, da.values)


def test_sample_dem_passes_unchanged():
    da = sample_dem((151, 171))
    dem, notes = load_dem(da)
    assert notes == []
    np.testing.assert_array_equal(dem.values, da.values)
    assert dem_fingerprint(dem) == dem_fingerprint(load_dem(da)[0])
    assert dem_fingerprint(dem) != dem_fingerprint(load_dem(da + 1)[0])


def test_missing_file(tmp_path):
    msg = refused(tmp_path / "nope.tif", "not found")
    assert "nope.tif" in msg


def test_text_file_named_tif(tmp_path):
    path = tmp_path / "fake.tif"
    path.write_text("this is not a raster\n")
    msg = refused(path, "not a readable raster")
    assert "fake.tif" in msg


def test_geographic_crs_refused(tmp_path):
    da = xr.DataArray(
        np.ones((100, 100), np.float32),
        dims=("y", "x"),
        coords={"y": 45.5 - 0.001 * np.arange(100), "x": 6.0 + 0.001 * np.arange(100)},
    ).rio.write_crs("EPSG:4326")
    path = tmp_path / "geo.tif"
    da.rio.to_raster(path)
    msg = refused(path, "geographic CRS")
    # The hint names the UTM zone of the DEM's own centre (6.05 E, 45.45 N: zone 32N).
    assert "gdalwarp -t_srs EPSG:32632" in msg and "geo.tif" in msg
    # A lon/lat grid without any CRS is refused as geographic too.
    plain = da.drop_vars("spatial_ref").rename(x="lon", y="lat")
    refused(plain, "longitude/latitude grid")


def test_no_crs_and_non_metric_units():
    refused(grid(crs=None), "no CRS")
    msg = refused(grid(crs="EPSG:2263"), "not metres")  # NY State Plane, US survey feet
    assert "US survey foot" in msg


def test_non_square_pixels(tmp_path):
    path = tmp_path / "rect.tif"
    grid(res=(30.0, 25.0)).rio.to_raster(path)
    msg = refused(path, "non-square pixels")
    assert "30" in msg and "25" in msg


def test_holes_refused_with_count_and_bbox(tmp_path):
    da = grid()
    z = da.values.copy()
    z[10:13, 20:24] = np.nan  # 12 pixels
    z[15, 30] = -9999.0  # nodata in the file below
    da = da.copy(data=z)
    path = tmp_path / "holes.tif"
    da.fillna(-9999.0).rio.write_nodata(-9999.0).rio.to_raster(path)
    msg = refused(path, "13 pixels without elevation")
    x, y = da.x.values, da.y.values
    assert f"x {x[20]:.1f} to {x[30]:.1f}" in msg
    assert f"y {y[15]:.1f} to {y[10]:.1f}" in msg
    assert "fill_nodata" in msg


def test_fill_nodata():
    da = grid()
    z = da.values.copy()
    z[10:13, 20:24] = np.nan
    dem, notes = load_dem(da.copy(data=z), fill_nodata=True)
    assert not np.isnan(dem.values).any()
    assert dem.values[10, 21] == z[9, 21]  # nearest valid pixel (north of the hole)
    assert dem.values[12, 22] == z[13, 22]  # nearest valid pixel (south of the hole)
    np.testing.assert_array_equal(dem.values[~np.isnan(z)], z[~np.isnan(z)])
    assert any("filled 12 nodata pixels" in n for n in notes)


def test_all_nodata_refused():
    da = grid()
    refused(da.copy(data=np.full(da.shape, np.nan, np.float32)), "no valid elevation")


def test_south_up_is_flipped():
    da = grid()
    south_up = da.isel(y=slice(None, None, -1))
    dem, notes = load_dem(south_up)
    np.testing.assert_array_equal(dem.values, da.values)
    np.testing.assert_array_equal(dem.y.values, da.y.values)
    assert any("north-up" in n for n in notes)


def test_even_dimensions_kept(tmp_path):
    # Trimming to odd dimensions is the devine engine's business, not the reader's.
    da = grid((100, 120))
    path = tmp_path / "even.tif"
    da.rio.to_raster(path)
    dem, notes = load_dem(path)
    assert dem.shape == (100, 120) and notes == []


def _asc(path, da):
    """An ESRI ASCII grid without .prj (no CRS), like a user's export."""
    ny, nx = da.shape
    res = float(da.x[1] - da.x[0])
    lines = [
        f"ncols {nx}",
        f"nrows {ny}",
        f"xllcorner {float(da.x[0]) - res / 2}",
        f"yllcorner {float(da.y[-1]) - res / 2}",
        f"cellsize {res}",
        "NODATA_value -9999",
    ]
    lines += [" ".join(f"{v:.3f}" for v in row) for row in da.values]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dem_without_crs_needs_dem_crs(tmp_path):
    da = grid((41, 51), res=(50.0, 50.0))
    path = _asc(tmp_path / "dem.asc", da)
    msg = refused(path, "no CRS")
    assert "dem_crs" in msg
    assert "gdal_edit" not in msg  # a pip-only user has no GDAL command-line tools
    dem, notes = load_dem(path, dem_crs="EPSG:2154")
    assert dem.rio.crs.to_epsg() == 2154
    np.testing.assert_allclose(dem.values, da.values, atol=1e-3)
    np.testing.assert_allclose(dem.x.values, da.x.values)
    assert any("dem_crs='EPSG:2154'" in n for n in notes)
    with cli_spelling():  # the command line names the option as typed
        assert "--dem-crs" in refused(path, "no CRS")


def test_dem_crs_conflicting_with_the_file_refused(tmp_path):
    msg = refused(grid(), "differs from dem_crs", dem_crs="EPSG:32631")
    assert "EPSG:32631" in msg
    refused(grid(crs=None), "not a CRS", dem_crs="EPSG:nope")


def test_resample_averages_blocks():
    da = grid((90, 60), res=(10.0, 10.0))
    dem, notes = load_dem(da, resample=30)
    assert dem.shape == (30, 20)
    # Independent reference: the mean of each 3 x 3 block of 10 m pixels.
    blocks = da.values.astype(np.float64).reshape(30, 3, 20, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(dem.values, blocks, rtol=1e-5)
    np.testing.assert_allclose(dem.x.values, da.x.values.reshape(20, 3).mean(axis=1))
    np.testing.assert_allclose(dem.y.values, da.y.values.reshape(30, 3).mean(axis=1))
    assert any("resampled the DEM from 10 m to 30 m" in n for n in notes)
    refused(da, "--resample|resample", resample=-5)


def test_irregular_grid_refused():
    da = grid()
    x = da.x.values.copy()
    x[50:] += 7.0
    refused(da.assign_coords(x=x), "irregular x")


# --------------------------------------------------------------------------- issue 21
def test_resample_makes_square_pixels_from_non_square(tmp_path):
    """Non-square pixels (common after reprojecting a lat/lon DEM) are accepted with resample."""
    path = tmp_path / "rect.tif"
    grid(res=(25.0, 31.0)).rio.to_raster(path)
    dem, notes = load_dem(path, resample=30.0)
    dx = np.diff(dem.x.values)
    dy = np.diff(dem.y.values)
    np.testing.assert_allclose(dx, 30.0)
    np.testing.assert_allclose(dy, -30.0)
    assert np.isfinite(dem.values).all()
    # 121 x 25 m = 3025 m -> 100 pixels; 101 x 31 m = 3131 m -> 104 pixels.
    assert dem.shape == (104, 100)
    assert any("25 m x 31 m to 30 m" in n for n in notes)
    # Resampling to one of the two sizes still resamples the other.
    dem, _ = load_dem(path, resample=25.0)
    np.testing.assert_allclose(np.diff(dem.y.values), -25.0)


def test_non_square_message_names_the_engine_and_the_remedy(tmp_path):
    path = tmp_path / "rect.tif"
    grid(res=(25.0, 31.0)).rio.to_raster(path)
    msg = refused(path, "non-square pixels", engine="MicroMet terrain parameterisation")
    assert "MicroMet terrain parameterisation needs square pixels" in msg
    assert "DEVINE model" not in msg
    assert "resample=31 " in msg
    with cli_spelling():
        msg = refused(path, "non-square pixels")
    assert "--resample 31 " in msg
    # Callers that handle dx != dy may accept them.
    dem, _ = load_dem(path, square_pixels=False)
    assert dem.shape == (101, 121)


def test_geographic_dem_hint_uses_its_own_utm_zone(tmp_path):
    """A DEM of Tennessee (Nashville, 86.8 W) is told its UTM zone (16N), not a French CRS."""
    da = xr.DataArray(
        np.ones((50, 60), np.float32),
        dims=("y", "x"),
        coords={"y": 36.0 - 0.001 * np.arange(50), "x": -86.8 + 0.001 * np.arange(60)},
    ).rio.write_crs("EPSG:4326")
    path = tmp_path / "tennessee.tif"
    da.rio.to_raster(path)
    msg = refused(path, "geographic CRS")
    assert "EPSG:32616" in msg and "2154" not in msg
    plain = da.drop_vars("spatial_ref").rename(x="lon", y="lat")
    msg = refused(plain, "longitude/latitude grid")
    assert "EPSG:32616" in msg and "2154" not in msg


def test_holes_message_spelling_and_lonlat(tmp_path):
    da = grid()
    z = da.values.copy()
    z[10:13, 20:24] = np.nan
    da = da.copy(data=z)
    msg = refused(da, "12 pixels without elevation")
    assert "fill_nodata=True" in msg and "--fill-nodata" not in msg
    assert "lon 5." in msg and "lat 45." in msg  # Lambert-93 near Grenoble
    with cli_spelling():
        msg = refused(da, "12 pixels without elevation")
    assert "--fill-nodata" in msg and "fill_nodata" not in msg
