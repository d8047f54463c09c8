"""Delaunay barycentric regridding weights (docs/method.md §5)."""

from __future__ import annotations

import warnings

import dask
import dask.array
import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer
from scipy.interpolate import LinearNDInterpolator

from devine_onnx.errors import InputFileError, NWPError, OutputError, WeightsMismatchError
from devine_onnx.regrid import (
    OutsideHullWarning,
    RegridWeights,
    cache_file,
    check_weights_path,
    grid_fingerprint,
    load_or_build,
    source_grid_fingerprint,
    source_grid_shape,
    target_grid_fingerprint,
)

# A regular lat/lon grid around Grenoble (AROME-like spacing) and a Lambert-93 table grid.
LON = np.linspace(5.6, 6.8, 25)
LAT = np.linspace(44.8, 45.6, 21)
TX = 930000.0 + np.arange(40) * 500.0
TY = 6440000.0 + np.arange(30) * 500.0


@pytest.fixture(scope="module")
def l93_weights():
    return RegridWeights.from_grids(LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")


def _scattered(seed=0, n_src=300, n=25):
    rng = np.random.default_rng(seed)
    sx = rng.uniform(0, 1000, n_src)
    sy = rng.uniform(0, 800, n_src)
    tx = np.linspace(-50, 1050, n)  # some targets outside the hull
    ty = np.linspace(-40, 840, n + 3)
    return sx, sy, tx, ty


def _build_scattered(seed=0, **kw):
    sx, sy, tx, ty = _scattered(seed, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutsideHullWarning)
        w = RegridWeights.build(
            sx, sy, tx, ty, source_shape=(sx.size,), target_shape=(ty.size, tx.size)
        )
    return w, sx, sy, tx, ty


def test_linear_field_exact_scattered():
    w, sx, sy, tx, ty = _build_scattered()
    a, b, c = 3.0, 0.02, -0.013
    field = np.stack([a + b * sx + c * sy, 2 * (a + b * sx + c * sy)])
    out = w.apply(field)
    assert out.shape == (2, ty.size, tx.size) and out.dtype == np.float64
    gx, gy = np.meshgrid(tx, ty)
    expected = a + b * gx + c * gy
    inside = w.valid.reshape(ty.size, tx.size)
    assert 0 < inside.sum() < inside.size
    np.testing.assert_allclose(out[0][inside], expected[inside], rtol=1e-9)
    np.testing.assert_allclose(out[1][inside], 2 * expected[inside], rtol=1e-9)
    assert np.all(np.isnan(out[:, ~inside]))


def test_linear_field_exact_latlon_to_lambert93(l93_weights):
    w = l93_weights
    assert w.source_shape == (LAT.size, LON.size) and w.target_shape == (TY.size, TX.size)
    assert w.valid.all()
    glon, glat = np.meshgrid(LON, LAT)
    px, py = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True).transform(glon, glat)
    a, b, c = 7.0, 2e-5, -3e-5
    out = w.apply(a + b * px + c * py)
    gx, gy = np.meshgrid(TX, TY)
    np.testing.assert_allclose(out, a + b * gx + c * gy, rtol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_linear_nd_interpolator(seed):
    w, sx, sy, tx, ty = _build_scattered(seed)
    rng = np.random.default_rng(10 + seed)
    values = rng.normal(size=sx.size)
    gx, gy = np.meshgrid(tx, ty)
    ref = LinearNDInterpolator(np.column_stack([sx, sy]), values)(gx, gy)
    out = w.apply(values)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isnan(out).ravel(), ~w.valid)
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(out[ok], ref[ok], rtol=0, atol=1e-10)


def test_equals_linear_nd_interpolator_projected_grid(l93_weights):
    glon, glat = np.meshgrid(LON, LAT)
    px, py = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True).transform(glon, glat)
    values = np.random.default_rng(3).normal(size=glon.shape)
    gx, gy = np.meshgrid(TX, TY)
    ref = LinearNDInterpolator(np.column_stack([px.ravel(), py.ravel()]), values.ravel())(gx, gy)
    np.testing.assert_allclose(l93_weights.apply(values), ref, rtol=0, atol=1e-10)


def test_weights_barycentric(l93_weights):
    for w in (l93_weights, _build_scattered()[0]):
        ww = w.weights[w.valid]
        np.testing.assert_allclose(ww.sum(axis=1), 1.0, atol=1e-12)
        assert ww.min() >= -1e-12 and ww.max() <= 1 + 1e-12
        assert np.all(np.isnan(w.weights[~w.valid]))
        assert w.indices.dtype in (np.int32, np.int64) and w.indices.shape == (w.n_target, 3)
        assert w.indices.min() >= 0 and w.indices.max() < w.n_source


def test_sparse_matches_apply():
    w, sx, *_ = _build_scattered()
    m = w.as_sparse()
    assert m.shape == (w.n_target, w.n_source) and m.format == "csr"
    assert np.all(np.diff(m.indptr)[w.valid] == 3) and np.all(np.diff(m.indptr)[~w.valid] == 0)
    values = np.random.default_rng(5).normal(size=(3, sx.size))
    out = w.apply(values).reshape(3, -1)
    via_sparse = (m @ values.T).T
    np.testing.assert_allclose(via_sparse[:, w.valid], out[:, w.valid], atol=1e-12)
    np.testing.assert_array_equal(via_sparse[:, ~w.valid], 0)


def test_nan_source_reaches_only_its_triangles():
    w, sx, *_ = _build_scattered()
    values = np.ones(sx.size)
    bad = 17
    values[bad] = np.nan
    out = w.apply(values).ravel()
    uses = w.valid & np.any(w.indices == bad, axis=1)
    assert uses.any()
    assert np.all(np.isnan(out[uses]))
    np.testing.assert_allclose(out[w.valid & ~uses], 1.0, rtol=1e-12)


def test_float32_and_leading_axes(l93_weights):
    field = np.random.default_rng(4).normal(size=(2, 3, LAT.size, LON.size))
    out64 = l93_weights.apply(field)
    out32 = l93_weights.apply(field.astype(np.float32))
    assert out64.shape == (2, 3, TY.size, TX.size) and out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, atol=1e-5)
    with pytest.raises(WeightsMismatchError, match=r"\(21, 25\)"):
        l93_weights.apply(field[..., :-1])


def test_nonfinite_source_points_are_skipped():
    sx, sy, tx, ty = _scattered(2)
    sx = sx.copy()
    sx[[3, 50]] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutsideHullWarning)
        w = RegridWeights.build(
            sx, sy, tx, ty, source_shape=(sx.size,), target_shape=(ty.size, tx.size)
        )
    assert not np.isin(w.indices[w.valid], [3, 50]).any()
    a = 1.0 + 0.01 * np.nan_to_num(sx) - 0.02 * sy
    out = w.apply(a).ravel()
    gx, gy = np.meshgrid(tx, ty)
    exp = (1.0 + 0.01 * gx - 0.02 * gy).ravel()
    np.testing.assert_allclose(out[w.valid], exp[w.valid], rtol=1e-9)


def test_round_trip_netcdf(tmp_path, l93_weights):
    p = tmp_path / "weights.nc"
    assert l93_weights.to_netcdf(p) == p
    assert not (tmp_path / "weights.nc.partial").exists()
    w2 = RegridWeights.from_netcdf(p)
    assert w2.path == p
    np.testing.assert_array_equal(w2.indices, l93_weights.indices)
    np.testing.assert_array_equal(w2.weights, l93_weights.weights)
    np.testing.assert_array_equal(w2.valid, l93_weights.valid)
    assert w2.valid.dtype == bool
    assert w2.source_shape == l93_weights.source_shape
    assert w2.target_shape == l93_weights.target_shape
    assert w2.source_fingerprint == l93_weights.source_fingerprint != ""
    assert w2.target_fingerprint == l93_weights.target_fingerprint != ""
    assert w2.target_crs_wkt == l93_weights.target_crs_wkt
    ds = xr.open_dataset(p)
    assert ds.attrs["software_version"]
    ds.close()
    field = np.random.default_rng(6).normal(size=(2, LAT.size, LON.size))
    np.testing.assert_array_equal(w2.apply(field), l93_weights.apply(field))


def test_round_trip_with_outside_targets(tmp_path):
    w, sx, *_ = _build_scattered()
    p = tmp_path / "w.nc"
    w.to_netcdf(p)
    w2 = RegridWeights.from_netcdf(p)
    np.testing.assert_array_equal(np.isnan(w2.weights), np.isnan(w.weights))
    np.testing.assert_array_equal(w2.valid, w.valid)
    v = np.random.default_rng(0).normal(size=sx.size)
    np.testing.assert_array_equal(w2.apply(v), w.apply(v))


def test_validate(tmp_path, l93_weights):
    l93_weights.validate(
        source_fingerprint=l93_weights.source_fingerprint,
        target_fingerprint=l93_weights.target_fingerprint,
        source_shape=(21, 25),
        target_shape=(30, 40),
    )
    p = tmp_path / "w.nc"
    l93_weights.to_netcdf(p)
    w = RegridWeights.from_netcdf(p)
    with pytest.raises(WeightsMismatchError) as exc:
        w.validate(source_shape=(22, 25), target_shape=(30, 40))
    msg = str(exc.value)
    assert "\n" not in msg and str(p) in msg
    assert "(21, 25)" in msg and "(22, 25)" in msg and "(30, 40)" in msg
    fp = grid_fingerprint(LON + 0.01, LAT, "EPSG:4326")
    with pytest.raises(WeightsMismatchError, match="source grid fingerprint") as exc:
        w.validate(source_fingerprint=fp, source_shape=(21, 25), target_shape=(30, 40))
    assert "(21, 25)" in str(exc.value) and "(30, 40)" in str(exc.value)
    with pytest.raises(WeightsMismatchError, match="target grid fingerprint"):
        w.validate(target_fingerprint=grid_fingerprint(TX, TY, "EPSG:27572"))
    assert not w.matches(target_shape=(30, 41))
    assert w.matches(target_shape=(30, 40))


def test_fingerprints():
    f = grid_fingerprint(LON, LAT, "EPSG:4326")
    assert len(f) == 16
    assert grid_fingerprint(LON + 1e-9, LAT, "EPSG:4326") == f  # below rounding
    assert grid_fingerprint(LON + 1e-4, LAT, "EPSG:4326") != f
    assert grid_fingerprint(LON, LAT, "EPSG:4258") != f  # other CRS
    from pyproj import CRS

    assert grid_fingerprint(LON, LAT, CRS.from_epsg(4326).to_wkt()) == f  # same CRS as WKT
    assert grid_fingerprint(TX, TY, "EPSG:2154") != grid_fingerprint(TX, TY[:-1], "EPSG:2154")


def test_not_a_weights_file(tmp_path):
    other = tmp_path / "other.nc"
    xr.Dataset({"u": (("y", "x"), np.zeros((2, 3)))}).to_netcdf(other)
    with pytest.raises(InputFileError, match="not a devine-onnx regridding weights file") as exc:
        RegridWeights.from_netcdf(other)
    assert str(other) in str(exc.value) and "\n" not in str(exc.value)
    junk = tmp_path / "junk.nc"
    junk.write_text("hello")
    with pytest.raises(InputFileError, match="junk.nc"):
        RegridWeights.from_netcdf(junk)
    with pytest.raises(InputFileError, match="not found"):
        RegridWeights.from_netcdf(tmp_path / "missing.nc")


def test_outside_hull_warning_counts():
    # Regular 11 x 11 source grid on [0, 100]^2: its hull is the square.
    sx, sy = np.meshgrid(np.linspace(0, 100, 11), np.linspace(0, 100, 11))
    tx = np.arange(-15.0, 120.0, 10.0)  # -15 .. 115
    ty = np.arange(5.0, 130.0, 10.0)  # 5 .. 125
    inside = ((tx >= 0) & (tx <= 100))[None, :] & ((ty >= 0) & (ty <= 100))[:, None]
    n_out = int((~inside).sum())
    with pytest.warns(OutsideHullWarning) as rec:
        w = RegridWeights.build(
            sx.ravel(), sy.ravel(), tx, ty, source_shape=(11, 11), target_shape=(ty.size, tx.size)
        )
    assert w.n_outside == n_out
    np.testing.assert_array_equal(w.valid.reshape(ty.size, tx.size), inside)
    msg = str(rec[0].message)
    assert f"{n_out} of {tx.size * ty.size}" in msg
    assert f"{100 * n_out / (tx.size * ty.size):.2f}%" in msg


def test_from_grids_warns_when_partially_covered():
    tx = np.concatenate([TX, 3e6 + np.arange(10) * 500.0])  # 10 columns far east
    with pytest.warns(OutsideHullWarning, match=f"{10 * TY.size} of {tx.size * TY.size}"):
        RegridWeights.from_grids(LON, LAT, "EPSG:4326", tx, TY, "EPSG:2154")


def test_no_target_inside_raises():
    far_x = 200000.0 + np.arange(5) * 100.0  # Brittany, far from the Alps grid
    far_y = 6800000.0 + np.arange(4) * 100.0
    with pytest.raises(NWPError, match="does not cover the table") as exc:
        RegridWeights.from_grids(LON, LAT, "EPSG:4326", far_x, far_y, "EPSG:2154")
    msg = str(exc.value)
    assert "\n" not in msg and "200000" in msg and "x 9" in msg  # both extents named


def test_collinear_source_raises():
    with pytest.raises(NWPError, match="triangulated"):
        RegridWeights.build(
            np.arange(5.0), np.arange(5.0), np.arange(3.0), np.arange(2.0),
            source_shape=(5,), target_shape=(2, 3),
        )  # fmt: skip


def test_from_grids_2d_source_equals_1d(l93_weights):
    glon, glat = np.meshgrid(LON, LAT)
    w2 = RegridWeights.from_grids(glon, glat, "EPSG:4326", TX, TY, "EPSG:2154")
    assert w2.source_shape == l93_weights.source_shape
    field = np.random.default_rng(8).normal(size=glon.shape)
    np.testing.assert_allclose(w2.apply(field), l93_weights.apply(field), atol=1e-12)
    w3 = RegridWeights.from_grids(
        glon.ravel(), glat.ravel(), "EPSG:4326", TX, TY, "EPSG:2154", scattered=True
    )
    assert w3.source_shape == (glon.size,)
    np.testing.assert_allclose(w3.apply(field.ravel()), l93_weights.apply(field), atol=1e-12)


def test_apply_xarray_lazy(l93_weights):
    rng = np.random.default_rng(9)
    data = rng.normal(size=(6, LAT.size, LON.size)).astype(np.float32)
    calls = {"n": 0}

    def produce(block):
        calls["n"] += 1
        return block

    base = dask.array.from_array(data, chunks=(2, -1, -1))
    lazy = base.map_blocks(produce, dtype=np.float32, meta=np.array((), dtype=np.float32))
    da = xr.DataArray(
        lazy,
        dims=("time", "latitude", "longitude"),
        coords={"time": np.arange(6), "latitude": LAT, "longitude": LON},
        name="u",
        attrs={"units": "m s-1"},
    )
    res = l93_weights.apply_xarray(da, ("latitude", "longitude"), tgt_coords=(TY, TX))
    assert isinstance(res.data, dask.array.Array)
    assert calls["n"] == 0  # nothing computed yet
    assert res.dims == ("time", "y", "x") and res.shape == (6, TY.size, TX.size)
    assert res.dtype == np.float32 and res.attrs["units"] == "m s-1"
    assert res.data.chunks[0] == (2, 2, 2)
    np.testing.assert_array_equal(res["x"].values, TX)
    with dask.config.set(scheduler="synchronous"):
        out = res.compute()
    assert calls["n"] == 3
    np.testing.assert_array_equal(out.values, l93_weights.apply(data))

    eager = l93_weights.apply_xarray(da.compute(), ("latitude", "longitude"))
    assert isinstance(eager.data, np.ndarray)
    np.testing.assert_array_equal(eager.values, out.values)

    # Chunks along the source grid are merged; wrong source sizes are refused.
    chunked = xr.DataArray(dask.array.from_array(data, chunks=(3, 7, 9)), dims=da.dims)
    res2 = l93_weights.apply_xarray(chunked, ("latitude", "longitude"))
    np.testing.assert_array_equal(res2.values, out.values)
    with pytest.raises(WeightsMismatchError):
        l93_weights.apply_xarray(da.isel(longitude=slice(1, None)), ("latitude", "longitude"))


def test_load_or_build_keys_the_cache_on_both_grids(tmp_path):
    cache = tmp_path / "cache"  # created on first use
    w1 = load_or_build(cache, LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")
    p = cache_file(cache, w1.source_fingerprint, w1.target_fingerprint)
    assert p.is_file() and w1.path == p
    assert [f.name for f in cache.iterdir()] == [p.name]  # no temporary file left
    mtime = p.stat().st_mtime_ns
    w2 = load_or_build(cache, LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")
    assert p.stat().st_mtime_ns == mtime  # loaded, not rebuilt
    np.testing.assert_array_equal(w2.weights, w1.weights)
    # Another table grid: another file, the first one is kept.
    w3 = load_or_build(cache, LON, LAT, "EPSG:4326", TX[:-1], TY, "EPSG:2154")
    assert w3.target_shape == (TY.size, TX.size - 1)
    assert len(list(cache.iterdir())) == 2 and p.stat().st_mtime_ns == mtime
    # A corrupt cache file is rebuilt.
    p.write_text("garbage")
    w4 = load_or_build(cache, LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")
    assert RegridWeights.from_netcdf(p).target_fingerprint == w4.target_fingerprint
    # No cache folder: built, nothing written.
    assert load_or_build(None, LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154").path is None


def test_load_or_build_warns_outside_once_from_cache_too(tmp_path):
    tx = np.concatenate([TX, TX[-1] + 200_000.0 + TX[:5] - TX[0]])  # 5 columns far east
    with pytest.warns(OutsideHullWarning, match=f"{5 * TY.size} of {tx.size * TY.size} table"):
        load_or_build(tmp_path, LON, LAT, "EPSG:4326", tx, TY, "EPSG:2154")
    with pytest.warns(OutsideHullWarning, match=r"lie outside the NWP grid \(cached weights"):
        load_or_build(tmp_path, LON, LAT, "EPSG:4326", tx, TY, "EPSG:2154")


def test_unwritable_cache_is_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.warns(RuntimeWarning, match="cannot cache the regridding weights"):
        w = load_or_build(blocker / "cache", LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")
    assert w.path is None and w.n_target == TX.size * TY.size


def test_matches_with_grid_fingerprints(l93_weights):
    w = l93_weights
    assert w.source_fingerprint == source_grid_fingerprint(LON, LAT, "EPSG:4326")
    assert w.target_fingerprint == target_grid_fingerprint(TX, TY, "EPSG:2154")
    assert source_grid_shape(LON, LAT) == (21, 25)
    same = {
        "source_fingerprint": source_grid_fingerprint(LON, LAT, "EPSG:4326"),
        "target_fingerprint": target_grid_fingerprint(TX, TY, "EPSG:2154"),
        "source_shape": (21, 25),
        "target_shape": (30, 40),
    }
    w.validate(**same)
    assert w.matches(**same)
    with pytest.raises(WeightsMismatchError, match=r"\(21, 25\).*\(21, 24\)"):
        w.validate(source_shape=source_grid_shape(LON[:-1], LAT))
    # Same shapes, shifted NWP grid: only the fingerprint tells.
    assert not w.matches(source_fingerprint=source_grid_fingerprint(LON + 0.01, LAT, "EPSG:4326"))
    assert not w.matches(target_fingerprint=target_grid_fingerprint(TX + 10, TY, "EPSG:2154"))
    glon, glat = np.meshgrid(LON, LAT)
    assert source_grid_shape(glon.ravel(), glat.ravel(), scattered=True) == (glon.size,)
    ws = RegridWeights.from_grids(
        glon.ravel(), glat.ravel(), "EPSG:4326", TX, TY, "EPSG:2154", scattered=True
    )
    assert ws.matches(
        source_fingerprint=source_grid_fingerprint(
            glon.ravel(), glat.ravel(), "EPSG:4326", scattered=True
        ),
        source_shape=(glon.size,),
    )


@pytest.mark.parametrize("name", ["w.zarr", "w.txt", "w"])
def test_weights_are_written_as_nc_only(tmp_path, l93_weights, name):
    with pytest.raises(OutputError, match=r"written as NetCDF.*give a \.nc name") as exc:
        l93_weights.to_netcdf(tmp_path / name)
    assert "\n" not in str(exc.value) and name in str(exc.value)
    assert list(tmp_path.iterdir()) == []
    assert check_weights_path(tmp_path / "w.nc") == tmp_path / "w.nc"
