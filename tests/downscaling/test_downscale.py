"""Downscaling NWP wind with a correction table: conventions, output files, caching, dask."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import devine_onnx.downscaling.kernel as dsmod
from devine_onnx.downscaling.api import (
    CoarsenRemainderWarning,
    NWPNaNWarning,
    downscale,
)
from devine_onnx.downscaling.lookup import CoarseTableWarning
from devine_onnx.errors import (
    NWPError,
    OptionError,
    OutputError,
    TableError,
    WeightsMismatchError,
)
from devine_onnx.io.atomic import partial_path
from devine_onnx.regrid.cache import build_weights, default_cache_dir
from devine_onnx.regrid.weights import OutsideHullWarning, RegridWeights
from devine_onnx.sample_data import sample_dem, sample_nwp
from devine_onnx.tables.table import open_table
from devine_onnx.wind import meridian_convergence, uv_to_speed_dir

rioxarray = pytest.importorskip("rioxarray")

SHAPE = (61, 81)
ALPHA = 0.1  # radians, > 0 turns the flow to the left
S = 5.0


def make_table(shape=SHAPE, n_angles=360, comment="synthetic model weights (test table)"):
    dem = sample_dem(shape=shape)
    k = np.arange(n_angles)
    acc = np.broadcast_to((1 + k / 1000)[:, None, None], (n_angles, *shape))
    ds = xr.Dataset(
        {
            "acceleration": (("angle", "y", "x"), acc.astype(np.float32)),
            "alpha": (("angle", "y", "x"), np.full((n_angles, *shape), ALPHA, np.float32)),
        },
        coords={"angle": k.astype(np.float64), "y": dem.y.values, "x": dem.x.values},
        attrs={"model_sha256": "0123abcd", "valid_radius": 30.0, "comment": comment},
    )
    ds["alpha"].attrs["units"] = "radian"
    return ds.rio.write_crs("EPSG:2154")


@pytest.fixture(scope="module")
def table():
    return make_table()


def uniform_nwp(u0, v0, n_times=6, lon_range=(6.0, 6.3), lat_range=(45.1, 45.3)):
    lon = np.linspace(*lon_range, 9)
    lat = np.linspace(lat_range[1], lat_range[0], 7)
    time = pd.date_range("2026-01-01", periods=n_times, freq="h")
    shape = (n_times, lat.size, lon.size)
    return xr.Dataset(
        {
            "u10": (("time", "latitude", "longitude"), np.full(shape, u0, np.float32)),
            "v10": (("time", "latitude", "longitude"), np.full(shape, v0, np.float32)),
        },
        coords={"time": time, "latitude": lat, "longitude": lon},
    )


def gamma_of(table):
    return meridian_convergence(table.x.values[None, :], table.y.values[:, None], "EPSG:2154")


def run(nwp, table, **kw):
    kw.setdefault("cache_dir", False)
    kw.setdefault("quiet", True)
    return downscale(nwp, table, **kw)


# --------------------------------------------------------------------------- conventions
def test_westerly_uses_meridian_convergence(table):
    gamma = gamma_of(table)
    assert np.all((gamma > 2.2) & (gamma < 2.4))  # Lambert-93 at 6.15E: ~2.29 degrees
    # By hand: from 270 (true) -> 270 - gamma (grid) ~ 267.7 -> k = 268.
    k = np.mod(np.floor(270 - gamma + 0.5), 360)
    assert np.all(k == 268)
    out = run(uniform_nwp(S, 0.0), table)
    assert set(out.data_vars) == {
        "wind_speed",
        "wind_from_direction",
        "eastward_wind",
        "northward_wind",
    }
    np.testing.assert_allclose(out.wind_speed.values, S * 1.268, rtol=1e-5)
    # Direction from grid north is turned to the left by alpha, then back to true north.
    expected_dir = (270 - gamma - np.degrees(ALPHA)) + gamma
    np.testing.assert_allclose(
        out.wind_from_direction.values,
        np.broadcast_to(expected_dir, out.wind_speed.shape),
        atol=2e-4,
    )
    d = np.radians(out.wind_from_direction.values)
    np.testing.assert_allclose(
        out.eastward_wind.values, -out.wind_speed.values * np.sin(d), atol=1e-5
    )
    np.testing.assert_allclose(
        out.northward_wind.values, -out.wind_speed.values * np.cos(d), atol=1e-5
    )
    # alpha > 0 turns the eastward-blowing flow to the left, i.e. toward the north.
    assert np.all(out.northward_wind.values > 0)


def test_westerly_grid_relative_uses_k270(table):
    out = run(uniform_nwp(S, 0.0), table, grid_relative=True)
    assert {"x_wind", "y_wind"} <= set(out.data_vars)
    assert "eastward_wind" not in out.data_vars
    assert out.x_wind.attrs["standard_name"] == "x_wind"
    assert "grid north" in out.wind_from_direction.attrs["long_name"]
    assert "standard_name" not in out.wind_from_direction.attrs
    np.testing.assert_allclose(out.wind_speed.values, S * 1.270, rtol=1e-5)
    np.testing.assert_allclose(out.wind_from_direction.values, 270 - np.degrees(ALPHA), atol=2e-4)
    np.testing.assert_allclose(out.y_wind.values, S * 1.27 * np.sin(ALPHA), rtol=1e-4)


def test_southerly_k178_or_180(table):
    gamma = gamma_of(table)
    assert np.all(np.mod(np.floor(180 - gamma + 0.5), 360) == 178)
    out = run(uniform_nwp(0.0, S), table)
    np.testing.assert_allclose(out.wind_speed.values, S * 1.178, rtol=1e-5)
    np.testing.assert_allclose(
        out.wind_from_direction.values,
        np.broadcast_to(180 - np.degrees(ALPHA), out.wind_speed.shape),
        atol=2e-4,
    )
    out = run(uniform_nwp(0.0, S), table, grid_relative=True)
    np.testing.assert_allclose(out.wind_speed.values, S * 1.180, rtol=1e-5)


def test_linear_angular_interpolation(table):
    gamma = gamma_of(table)
    out = run(uniform_nwp(S, 0.0), table, angular_interpolation="linear")
    expected = S * (1 + (270 - gamma) / 1000)
    np.testing.assert_allclose(
        out.wind_speed.values, np.broadcast_to(expected, out.wind_speed.shape), rtol=1e-5
    )


def test_calm_wind_speed_zero_direction_nan(table):
    out = run(uniform_nwp(0.0, 0.0, n_times=2), table)
    assert np.all(out.wind_speed.values == 0)
    assert np.all(np.isnan(out.wind_from_direction.values))
    assert np.all(out.eastward_wind.values == 0)
    assert np.all(out.northward_wind.values == 0)
    assert "calm" in out.wind_from_direction.attrs["comment"]


def test_pixels_outside_hull_are_nan_with_warning(table):
    centre_lon = 6.15
    nwp = uniform_nwp(S, 0.0, lon_range=(6.0, centre_lon))
    with pytest.warns(OutsideHullWarning, match=r"\d+ of 4941 table pixels") as rec:
        out = run(nwp, table)
    (hull,) = [w for w in rec if issubclass(w.category, OutsideHullWarning)]  # not synthetic
    n_out = int(str(hull.message).split(" of ")[0])
    nan = np.isnan(out.wind_speed.values[0])
    assert 0 < n_out < nan.size
    assert nan.sum() == n_out
    assert nan[:, -1].all() and not nan[:, 0].any()  # the eastern part is outside


def test_projected_nwp_grid(table):
    from pyproj import Transformer

    x0, y0 = Transformer.from_crs(4326, 2154, always_xy=True).transform(6.15, 45.2)
    x = x0 + 2500.0 * (np.arange(8) - 3.5)
    y = y0 - 2500.0 * (np.arange(6) - 2.5)
    shape = (3, y.size, x.size)
    nwp = xr.Dataset(
        {
            "u": (("time", "y", "x"), np.full(shape, S, np.float32)),
            "v": (("time", "y", "x"), np.zeros(shape, np.float32)),
        },
        coords={"time": pd.date_range("2026-01-01", periods=3, freq="h"), "y": y, "x": x},
    )
    # u/v on a projected grid: relative to true north or to the grid? The file must say.
    with pytest.raises(NWPError, match="nwp_wind_frame='earth' or nwp_wind_frame='grid'"):
        run(nwp, table, nwp_crs="EPSG:2154")
    out = run(nwp, table, nwp_crs="EPSG:2154", nwp_wind_frame="earth")
    np.testing.assert_allclose(out.wind_speed.values, S * 1.268, rtol=1e-5)
    assert "earth-relative" in out.attrs["nwp_wind_frame"]
    # A westerly along the Lambert-93 grid's x axis is a grid direction of 270 on the table
    # (also Lambert-93): k = 270, as with grid_relative.
    out = run(nwp, table, nwp_crs="EPSG:2154", nwp_wind_frame="grid")
    np.testing.assert_allclose(out.wind_speed.values, S * 1.270, rtol=1e-5)
    ref = run(nwp, table, nwp_crs="EPSG:2154", grid_relative=True)
    np.testing.assert_allclose(out.wind_speed.values, ref.wind_speed.values, rtol=1e-6)
    assert "meridian convergence" in out.attrs["nwp_wind_frame"]
    with pytest.raises(OptionError, match="grid_relative .* nwp_wind_frame"):
        run(nwp, table, nwp_crs="EPSG:2154", nwp_wind_frame="grid", grid_relative=True)


def test_speed_and_direction_input_equals_components(table):
    nwp = sample_nwp(n_times=5)
    speed, direction = uv_to_speed_dir(nwp["u10"].values, nwp["v10"].values)
    sd = xr.Dataset(
        {
            "wind_speed": (nwp["u10"].dims, speed, {"units": "m s-1"}),
            "wind_from_direction": (nwp["u10"].dims, direction, {"units": "degree"}),
        },
        coords=nwp.coords,
    )
    ref = run(nwp, table)
    got = run(sd, table)
    assert "variables wind_speed/wind_from_direction" in got.attrs["history"]
    for name in ref.data_vars:
        np.testing.assert_allclose(got[name].values, ref[name].values, rtol=1e-4, atol=1e-4)


def test_nan_in_the_forecast_is_counted_once(tmp_path, table):
    nwp = sample_nwp(n_times=6)
    clean = run(nwp, table)
    bad = nwp.copy(deep=True)
    bad["u10"][1, 4, 5] = np.nan  # one NWP value at one step
    bad["v10"][4, 5, 6] = np.nan  # another at another step
    blanked = np.isnan(clean.wind_speed.values) != np.isnan(run(bad, table).wind_speed.values)
    n = int(blanked.sum())
    assert n > 0 and blanked[[0, 2, 3, 5]].sum() == 0
    for kw in ({}, {"output": tmp_path / "w.nc", "chunk_time": 2}):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            run(bad, table, **kw)
        nan_warnings = [w for w in rec if issubclass(w.category, NWPNaNWarning)]
        assert len(nan_warnings) == 1  # one per run, whatever the number of chunks
        msg = str(nan_warnings[0].message)
        assert f"blanked {n} output pixel-steps" in msg and "in 2 of 6 time steps" in msg
    # With block averaging: the output blocks left NaN.
    coarse_clean = run(nwp, table, coarsen=3)
    with pytest.warns(NWPNaNWarning) as rec:
        coarse = run(bad, table, coarsen=3)
    n3 = int((np.isnan(coarse.wind_speed.values) & ~np.isnan(coarse_clean.wind_speed.values)).sum())
    assert f"blanked {n3} output pixel-steps" in str(
        next(w for w in rec if issubclass(w.category, NWPNaNWarning)).message
    )
    # No NaN, no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", NWPNaNWarning)
        run(nwp, table)


def test_nwp_not_covering_table_is_an_error(table):
    nwp = uniform_nwp(S, 0.0, lon_range=(7.0, 7.3))
    with pytest.raises(NWPError, match="does not cover the table"):
        run(nwp, table)


# --------------------------------------------------------------------------- output files
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_output_file_is_cf(tmp_path, table, suffix):
    nwp = sample_nwp(n_times=7)
    ref = run(nwp, table)
    out_path = tmp_path / f"wind{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutsideHullWarning)
        res = run(nwp, table, output=out_path, chunk_time=3)
    assert out_path.exists() and not partial_path(out_path).exists()
    assert res.wind_speed.chunks is not None  # the file, opened lazily
    if suffix == ".nc":
        back = xr.open_dataset(out_path, decode_coords="all")
    else:
        back = xr.open_zarr(out_path, decode_coords="all")
    expected = {
        "wind_speed": ("m s-1", "wind_speed"),
        "wind_from_direction": ("degree", "wind_from_direction"),
        "eastward_wind": ("m s-1", "eastward_wind"),
        "northward_wind": ("m s-1", "northward_wind"),
    }
    for name, (units, sn) in expected.items():
        var = back[name]
        assert var.dims == ("time", "y", "x")
        assert var.dtype == np.float32
        assert var.attrs["units"] == units
        assert var.attrs["standard_name"] == sn
        assert (var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")) == "spatial_ref"
        np.testing.assert_array_equal(var.values, ref[name].values)
    assert "crs_wkt" in back["spatial_ref"].attrs
    assert back.rio.crs.to_epsg() == 2154
    np.testing.assert_array_equal(back.time.values, nwp.time.values)
    np.testing.assert_array_equal(back.x.values, table.x.values)
    np.testing.assert_array_equal(back.y.values, table.y.values)
    assert back.x.attrs["standard_name"] == "projection_x_coordinate"
    assert back.attrs["Conventions"] == "CF-1.8"
    assert back.attrs["table_model_sha256"] == "0123abcd"
    assert back.attrs["software"].startswith("devine-onnx ")
    assert "synthetic" in back.attrs["comment"]
    assert back.attrs["source"] == "in-memory Dataset"
    assert "downscale" in back.attrs["history"]
    back.close()
    res.close()


def test_no_file_left_when_failing_midway(tmp_path, table, monkeypatch):
    calls = []
    real = dsmod.downscale_chunk

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(dsmod, "downscale_chunk", flaky)
    for suffix in (".nc", ".zarr"):
        calls.clear()
        out = tmp_path / f"fail{suffix}"
        with pytest.raises(RuntimeError, match="boom"):
            run(sample_nwp(n_times=10), table, output=out, chunk_time=3)
        assert len(calls) == 2
        assert not out.exists()
        assert not partial_path(out).exists()


def test_bad_output_suffix(tmp_path, table):
    with pytest.raises(OutputError, match=r"\.tif.*\.nc.*\.zarr"):
        run(sample_nwp(n_times=2), table, output=tmp_path / "wind.tif")
    with pytest.raises(OutputError, match="does not exist"):
        run(sample_nwp(n_times=2), table, output=tmp_path / "missing" / "wind.nc")


# --------------------------------------------------------------------------- weights
def _count_builds(monkeypatch):
    calls = []
    real = RegridWeights.from_grids.__func__

    def counting(cls, *args, **kwargs):
        calls.append(1)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(RegridWeights, "from_grids", classmethod(counting))
    return calls


def test_two_outputs_reuse_one_cached_weights_file(tmp_path, table, monkeypatch):
    """An operational chain: one output per forecast, one weights file for all of them."""
    calls = _count_builds(monkeypatch)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEVINE_ONNX_CACHE_DIR", str(cache))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for day in ("2026112400", "2026112500"):
        downscale(sample_nwp(n_times=3), table, output=out_dir / f"wind_{day}.nc", quiet=True)
    assert len(calls) == 1  # built once, loaded the second time
    assert len(list(cache.glob("weights-*.nc"))) == 1
    assert sorted(p.name for p in out_dir.iterdir()) == ["wind_2026112400.nc", "wind_2026112500.nc"]
    # Another NWP grid: another cache file, the weights are built for it.
    downscale(sample_nwp(n_times=3, n_lon=13), table, output=out_dir / "other.nc", quiet=True)
    assert len(calls) == 2 and len(list(cache.glob("weights-*.nc"))) == 2
    # cache_dir=False: neither read nor written.
    downscale(
        sample_nwp(n_times=3), table, output=out_dir / "nocache.nc", quiet=True, cache_dir=False
    )
    assert len(calls) == 3 and len(list(cache.glob("weights-*.nc"))) == 2


def test_weights_cache_in_user_cache_dir(tmp_path, table, monkeypatch):
    calls = _count_builds(monkeypatch)
    monkeypatch.delenv("DEVINE_ONNX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    nwp = sample_nwp(n_times=2)
    a = downscale(nwp, table, quiet=True)
    files = list((tmp_path / "xdg" / "devine-onnx").glob("weights-*.nc"))
    assert len(files) == 1 and len(calls) == 1
    b = downscale(nwp, table, quiet=True)
    assert len(calls) == 1
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    downscale(nwp, table, quiet=True, cache_dir=tmp_path / "mine")
    assert len(list((tmp_path / "mine").glob("weights-*.nc"))) == 1
    # $DEVINE_ONNX_CACHE_DIR comes first.
    monkeypatch.setenv("DEVINE_ONNX_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"


def test_explicit_weights_object_and_file(tmp_path, table):
    nwp = sample_nwp(n_times=2)
    path = tmp_path / "w.nc"
    w = build_weights(nwp, table, output=path)
    assert path.is_file()
    ref = run(nwp, table)
    ref.attrs.pop("history")  # a timestamp: differs when a second boundary passes
    for given in (w, path, str(path)):
        got = run(nwp, table, weights=given)
        got.attrs.pop("history")
        xr.testing.assert_identical(got, ref)


def test_mismatched_weights_are_refused(tmp_path, table):
    nwp = sample_nwp(n_times=2)
    other = build_weights(nwp, make_table(shape=(41, 51), n_angles=4))
    with pytest.raises(WeightsMismatchError) as info:
        run(nwp, table, weights=other)
    msg = str(info.value)
    assert "(41, 51)" in msg and "(61, 81)" in msg and "(10, 12)" in msg
    path = tmp_path / "other.nc"
    other.to_netcdf(path)
    with pytest.raises(WeightsMismatchError, match="other.nc"):
        run(nwp, table, weights=path)


# --------------------------------------------------------------------------- options
def test_coarsen_block_means(table):
    nwp = sample_nwp(n_times=4)
    full = run(nwp, table)
    with pytest.warns(CoarsenRemainderWarning):
        out = run(nwp, table, coarsen=2)
    ny, nx = SHAPE[0] // 2, SHAPE[1] // 2
    assert out.wind_speed.shape == (4, ny, nx)

    def block(a):
        return a[:, : 2 * ny, : 2 * nx].reshape(4, ny, 2, nx, 2).mean(axis=(2, 4))

    ue = block(full.eastward_wind.values.astype(np.float64))
    ve = block(full.northward_wind.values.astype(np.float64))
    np.testing.assert_allclose(out.eastward_wind.values, ue, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.northward_wind.values, ve, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.wind_speed.values, np.hypot(ue, ve), rtol=1e-5)
    direction = np.mod(180 + np.degrees(np.arctan2(ue, ve)), 360)
    np.testing.assert_allclose(out.wind_from_direction.values, direction, atol=1e-3)
    np.testing.assert_allclose(out.x.values, table.x.values[: 2 * nx].reshape(nx, 2).mean(axis=1))
    np.testing.assert_allclose(out.y.values, table.y.values[: 2 * ny].reshape(ny, 2).mean(axis=1))
    with pytest.raises(OptionError, match="coarsen=0: expected a positive integer"):
        run(nwp, table, coarsen=0)
    with pytest.raises(OptionError, match=r"coarsen=62: larger than the table \(61 x 81"):
        run(nwp, table, coarsen=62)


def test_coarsen_remainder_is_a_warning(table):
    """61 x 81 pixels in blocks of 8: 5 rows and 1 column do not fill a block; said once."""
    nwp = sample_nwp(n_times=2)
    with pytest.warns(CoarsenRemainderWarning) as rec:
        out = run(nwp, table, coarsen=8)
    msgs = [str(w.message) for w in rec if issubclass(w.category, CoarsenRemainderWarning)]
    assert len(msgs) == 1 and "\n" not in msgs[0]
    assert "coarsen=8" in msgs[0] and "61 x 81" in msgs[0]
    assert "last 5 rows (south) and 1 column (east)" in msgs[0]
    assert out.wind_speed.shape == (2, 7, 10)
    # A block size dividing both sides: no warning.
    table60 = make_table(shape=(60, 80), n_angles=360)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoarsenRemainderWarning)
        assert run(nwp, table60, coarsen=4).wind_speed.shape == (2, 15, 20)
    # Also suggested by the warning when it is given.
    with pytest.warns(CoarsenRemainderWarning, match=r"dividing both \(2, 4, 5, 10, 20\)"):
        run(nwp, table60, coarsen=3)


def test_chunked_equals_unchunked(tmp_path, table):
    nwp = sample_nwp(n_times=12)
    whole = run(nwp, table, chunk_time=24)
    run(nwp, table, chunk_time=5, output=tmp_path / "a.nc")
    with xr.open_dataset(tmp_path / "a.nc") as chunked:
        for name in whole.data_vars:
            np.testing.assert_array_equal(chunked[name].values, whole[name].values)
    small = run(nwp, table, chunk_time=1)
    xr.testing.assert_identical(small.drop_attrs(), whole.drop_attrs())


def test_bad_options(table):
    nwp = sample_nwp(n_times=2)
    with pytest.raises(OptionError, match="chunk_time=0: expected a positive integer"):
        run(nwp, table, chunk_time=0)
    with pytest.raises(OptionError, match="angular_interpolation='cubic': use one of"):
        run(nwp, table, angular_interpolation="cubic")
    with pytest.raises(OptionError, match="complevel=12: expected an integer from 0"):
        run(nwp, table, complevel=12)


@pytest.mark.parametrize("n_angles", [4, 36])
def test_coarse_table_warns_and_suggests_linear(n_angles):
    """A table with fewer than 360 directions snaps winds with the nearest lookup: said."""
    coarse = make_table(n_angles=n_angles)
    coarse["angle"] = np.arange(n_angles) * (360.0 / n_angles)
    nwp = sample_nwp(n_times=2)
    with pytest.warns(CoarseTableWarning) as rec:
        run(nwp, coarse)
    msgs = [str(w.message) for w in rec if issubclass(w.category, CoarseTableWarning)]
    assert len(msgs) == 1 and "\n" not in msgs[0]
    step = 360 // n_angles
    assert f"{n_angles} directions up to {step}° apart" in msgs[0]
    assert "angular_interpolation='linear'" in msgs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoarseTableWarning)
        run(nwp, coarse, angular_interpolation="linear")  # blends: nothing to say
        run(nwp, make_table(n_angles=360))  # 1° steps: nothing to say


# --------------------------------------------------------------------------- table
def test_open_table_validation(tmp_path, table):
    path = tmp_path / "table.nc"
    table.to_netcdf(path)
    back = open_table(path)
    assert back["acceleration"].dims == ("angle", "y", "x")
    back.close()
    bad = tmp_path / "bad.nc"
    table.drop_vars("alpha").to_netcdf(bad)
    with pytest.raises(TableError, match=r"bad\.nc: not a correction table, missing alpha"):
        open_table(bad)
    nocrs = tmp_path / "nocrs.nc"
    table.drop_vars("spatial_ref").to_netcdf(nocrs)
    with pytest.raises(TableError, match=r"nocrs\.nc: no CRS"):
        open_table(nocrs)
    with pytest.raises(TableError, match="not found"):
        open_table(tmp_path / "absent.nc")
    text = tmp_path / "text.nc"
    text.write_text("hello")
    with pytest.raises(TableError, match=r"text\.nc: cannot be read"):
        open_table(text)


def test_table_and_nwp_from_files(tmp_path, table):
    tpath = tmp_path / "table.nc"
    table.to_netcdf(tpath)
    npath = tmp_path / "nwp.nc"
    sample_nwp(n_times=5).to_netcdf(npath)
    ref = run(sample_nwp(n_times=5), table)
    res = run(npath, tpath)  # a path input gives a lazy result
    assert res.wind_speed.chunks is not None
    assert res.attrs["source"] == "nwp.nc" and res.attrs["table_source"] == "table.nc"
    for name in ref.data_vars:
        np.testing.assert_array_equal(res[name].values, ref[name].values)


# --------------------------------------------------------------------------- dask
def test_lazy_result_computes_only_on_demand(table, monkeypatch):
    calls = []
    real = dsmod.downscale_chunk

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dsmod, "downscale_chunk", counting)
    nwp = sample_nwp(n_times=10)
    eager = run(nwp, table)
    calls.clear()
    lazy = run(nwp.chunk(time=4), table)
    assert calls == []
    for name in lazy.data_vars:
        assert lazy[name].chunks is not None
        assert lazy[name].chunks[0] == (4, 4, 2)
    computed = lazy.compute(scheduler="threads")
    assert len(calls) == 3  # one call per time chunk, all variables at once
    xr.testing.assert_identical(computed.drop_attrs(), eager.drop_attrs())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning")
def test_distributed_cluster_matches_memory(tmp_path, table):
    distributed = pytest.importorskip("distributed")
    nwp = sample_nwp(n_times=8)
    eager = run(nwp, table)
    lazy = run(nwp.chunk(time=3), table, coarsen=3)
    eager_coarse = run(nwp, table, coarsen=3)
    # Files: the workers read the NWP and the table themselves.
    npath, tpath = tmp_path / "nwp.nc", tmp_path / "table.nc"
    nwp.to_netcdf(npath)
    table.to_netcdf(tpath)
    lazy_files = run(npath, tpath, chunk_time=3)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        got = client.compute(run(nwp.chunk(time=3), table)).result()
        got_coarse = client.compute(lazy).result()
        got_files = client.compute(lazy_files).result()
    xr.testing.assert_identical(got.drop_attrs(), eager.drop_attrs())
    for name in eager.data_vars:
        np.testing.assert_array_equal(got_files[name].values, eager[name].values)
    xr.testing.assert_identical(got_coarse.drop_attrs(), eager_coarse.drop_attrs())


def test_complevel_zero_writes_same_values_uncompressed(tmp_path, table):
    """Every level writes the in-memory numbers; 1-9 with HDF5's shuffle + deflate filters."""
    import netCDF4

    nwp = sample_nwp(n_times=30)  # 30 steps: whole chunks and a partial last one
    memory = run(nwp, table, chunk_time=8)
    for level in (0, 1, 6):
        path = tmp_path / f"wind{level}.nc"
        run(nwp, table, output=path, complevel=level, chunk_time=8).close()
        with netCDF4.Dataset(path) as nc:
            assert len(nc.dimensions["time"]) == 30
            for name in memory.data_vars:
                filters = nc[name].filters()
                assert filters["zlib"] is (level > 0)
                assert filters["shuffle"] is (level > 0)
                if level:
                    assert filters["complevel"] == level
        with xr.open_dataset(path) as got:
            for name in memory.data_vars:
                np.testing.assert_array_equal(got[name].values, memory[name].values)
            np.testing.assert_array_equal(got["time"].values, memory["time"].values)
    with pytest.raises(OptionError, match="complevel"):
        run(nwp, table, output=tmp_path / "x.nc", complevel=12)


# --------------------------------------------------------------------------- GRIB
def _write_grib2(path, nwp: xr.Dataset) -> None:
    """``nwp`` (time, latitude, longitude) as GRIB2 10 m winds: one analysis, hourly steps."""
    eccodes = pytest.importorskip("eccodes")
    lat, lon = nwp["latitude"].values, nwp["longitude"].values
    assert lat[0] > lat[-1]  # written north to south, as GRIB scans by default
    times = pd.DatetimeIndex(nwp["time"].values)
    with open(path, "wb") as fh:
        for i, t in enumerate(times):
            hours = int((t - times[0]) / pd.Timedelta("1h"))
            for short, var in (("10u", "u10"), ("10v", "v10")):
                h = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
                keys = {
                    "shortName": short,
                    "dataDate": int(times[0].strftime("%Y%m%d")),
                    "dataTime": int(times[0].strftime("%H%M")),
                    "stepUnits": 1,
                    "forecastTime": hours,
                    "Ni": lon.size,
                    "Nj": lat.size,
                    "latitudeOfFirstGridPointInDegrees": float(lat[0]),
                    "latitudeOfLastGridPointInDegrees": float(lat[-1]),
                    "longitudeOfFirstGridPointInDegrees": float(lon[0]),
                    "longitudeOfLastGridPointInDegrees": float(lon[-1]),
                    "iDirectionIncrementInDegrees": float(abs(lon[1] - lon[0])),
                    "jDirectionIncrementInDegrees": float(abs(lat[0] - lat[1])),
                    "jScansPositively": 0,
                    "bitsPerValue": 24,
                }
                eccodes.codes_set_key_vals(h, keys)
                eccodes.codes_set_values(h, nwp[var].values[i].astype(float).ravel())
                eccodes.codes_write(h, fh)
                eccodes.codes_release(h)


def test_grib_input_gives_the_netcdf_result(tmp_path, table):
    """A GRIB2 forecast (analysis time + steps, via cfgrib) = the same winds from NetCDF."""
    pytest.importorskip("cfgrib")
    nwp = sample_nwp(n_times=6)
    # Fields linear in lon/lat: GRIB's coordinates differ from ours by ~1e-15 degrees, enough
    # to flip diagonals of the regular grid's (cocircular) Delaunay triangulation; linear
    # fields are interpolated the same by any triangulation.
    lon, lat = np.meshgrid(nwp["longitude"].values, nwp["latitude"].values)
    for i in range(nwp.sizes["time"]):
        turn = np.deg2rad(60.0 * i)
        nwp["u10"][i] = 4 * np.cos(turn) + 20 * (lon - 6.15) - 10 * (lat - 45.2)
        nwp["v10"][i] = 4 * np.sin(turn) - 15 * (lon - 6.15) + 25 * (lat - 45.2)
    grib = tmp_path / "arome.grib2"
    _write_grib2(grib, nwp)
    nc = tmp_path / "arome.nc"
    nwp.to_netcdf(nc)
    got = run(grib, table, output=tmp_path / "from_grib.nc")
    ref = run(nc, table, output=tmp_path / "from_nc.nc")
    # Steps are flattened to valid times.
    np.testing.assert_array_equal(got["time"].values, nwp["time"].values)
    # GRIB packing (24 bits) may move a direction across a table bin edge: k differs by
    # one, i.e. acceleration by 0.1 % in this table; anything else is a reading error.
    np.testing.assert_allclose(got["wind_speed"], ref["wind_speed"], rtol=2e-3)
    d = np.mod(got["wind_from_direction"] - ref["wind_from_direction"] + 180, 360) - 180
    assert float(np.abs(d).max()) < 0.01  # degrees (float32 round-off)
    got.close()
    ref.close()
