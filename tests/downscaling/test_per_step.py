"""Per-step downscaling with a devine-torch network, and the vertical wind in table mode.

The reference for per-step mode is a direct PyTorch run of the same steps: the NWP wind is
interpolated with the public RegridWeights, rotated into the grid, the features of the local
direction field are computed, the PyTorch network runs, and u, v, w are scaled by speed / 3.
Synthetic weights: nothing here is physical.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import devine_onnx as dv
from devine_onnx.cli import app
from devine_onnx.engines.features import FeatureNetworkEngine
from devine_onnx.engines.terrain_features import direction_features, terrain_geometry
from devine_onnx.errors import ModelError, OptionError
from devine_onnx.regrid.weights import RegridWeights
from devine_onnx.sample_data import sample_dem, sample_nwp
from devine_onnx.wind import meridian_convergence
from tests.feature_models import convert_folder, norm_of, torch_net, torch_run

DEM_SHAPE = (83, 89)  # interior 79 x 85
CELL = 30.0


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return convert_folder(tmp_path_factory.mktemp("per_step"), seed=9)


@pytest.fixture(scope="module")
def dem():
    return sample_dem(DEM_SHAPE, CELL)


def varying_nwp(n_times=5):
    """NWP wind whose direction varies across the grid and in time."""
    ds = sample_nwp(n_times=n_times)
    lon, lat = np.meshgrid(ds.longitude.values, ds.latitude.values)
    hours = np.arange(n_times)[:, None, None]
    direction = np.radians(230.0 + 60.0 * np.sin(lon * 60.0) * np.cos(lat * 50.0) + 25.0 * hours)
    speed = 4.0 + 2.0 * np.cos(lat * 70.0 + hours)
    ds["u10"].values[:] = (-speed * np.sin(direction)).astype(np.float32)
    ds["v10"].values[:] = (-speed * np.cos(direction)).astype(np.float32)
    return ds


def uniform_nwp(from_dir=250.0, speed=5.0, n_times=2):
    ds = sample_nwp(n_times=n_times)
    rad = math.radians(from_dir)
    ds["u10"].values[:] = np.float32(-speed * math.sin(rad))
    ds["v10"].values[:] = np.float32(-speed * math.cos(rad))
    return ds


def reference(folder, dem, nwp):
    """u, v (earth-relative) and w from a direct PyTorch run of every step."""
    x = dem.x.values[2:-2]
    y = dem.y.values[2:-2]
    w8 = RegridWeights.from_grids(
        nwp.longitude.values, nwp.latitude.values, "EPSG:4326", x, y, dem.rio.crs
    )
    gamma = np.radians(meridian_convergence(x[None, :], y[:, None], dem.rio.crs))
    geom = terrain_geometry(dem.values.astype(np.float64), CELL)
    mean, std = norm_of(folder)
    net = torch_net(folder)
    out_u, out_v, out_w = [], [], []
    for t in range(nwp.sizes["time"]):
        ue = w8.apply(nwp.u10.values[t]).astype(np.float64)
        ve = w8.apply(nwp.v10.values[t]).astype(np.float64)
        ug = ue * np.cos(gamma) - ve * np.sin(gamma)  # earth -> grid
        vg = ve * np.cos(gamma) + ue * np.sin(gamma)
        speed = np.hypot(ug, vg)
        theta = np.mod(180.0 + np.degrees(np.arctan2(ug, vg)), 360.0)
        defl, ydsc = direction_features(geom, theta)
        feats = np.stack([defl, geom.reldem, ydsc])
        feats = ((feats - mean[:, None, None]) / std[:, None, None]).astype(np.float32)
        u, v, w = torch_run(net, feats[None])[0].astype(np.float64) * speed / 3.0
        out_u.append(u * np.cos(gamma) + v * np.sin(gamma))  # grid -> earth
        out_v.append(v * np.cos(gamma) - u * np.sin(gamma))
        out_w.append(w)
    return np.stack(out_u), np.stack(out_v), np.stack(out_w)


def test_per_step_matches_pytorch(model, dem):
    folder, onnx_path = model
    nwp = varying_nwp()
    res = dv.downscale(
        nwp, model=onnx_path, per_step=True, dem=dem, device="cpu", cache_dir=False, quiet=True,
        chunk_time=2,
    )  # fmt: skip
    ru, rv, rw = reference(folder, dem, nwp)
    np.testing.assert_allclose(res["eastward_wind"], ru, atol=1e-4)
    np.testing.assert_allclose(res["northward_wind"], rv, atol=1e-4)
    np.testing.assert_allclose(res["upward_air_velocity"], rw, atol=1e-4)
    np.testing.assert_allclose(res["wind_speed"], np.hypot(ru, rv), atol=1e-4)
    assert res.sizes == {"time": 5, "y": 79, "x": 85}
    np.testing.assert_array_equal(res.x, dem.x.values[2:-2])
    # the direction field matters: steps differ by more than the speed scaling
    assert np.std(res["wind_from_direction"].values[0]) > 1.0


def test_per_step_netcdf_output(model, dem, tmp_path):
    _, onnx_path = model
    nwp = varying_nwp(3)
    mem = dv.downscale(
        nwp, model=onnx_path, per_step=True, dem=dem, device="cpu", cache_dir=False, quiet=True
    )
    out = tmp_path / "wind.nc"
    dv.downscale(
        nwp, model=onnx_path, per_step=True, dem=dem, device="cpu", cache_dir=tmp_path,
        quiet=True, output=out, chunk_time=2,
    )  # fmt: skip
    with xr.open_dataset(out, engine="netcdf4") as back:
        w = back["upward_air_velocity"]
        assert w.attrs["standard_name"] == "upward_air_velocity"
        assert w.attrs["units"] == "m s-1" and w.attrs["grid_mapping"] == "spatial_ref"
        for name in ("wind_speed", "eastward_wind", "upward_air_velocity"):
            np.testing.assert_array_equal(back[name].values, mem[name].values)
        assert "per-step" in back.attrs["downscaling_mode"]
        assert "NOT physical" in back.attrs["comment"]
    assert list(tmp_path.glob("weights-*.nc"))  # the Delaunay weights were cached


def table_dataset(onnx_path, dem, angles):
    """A correction table of the feature engine (acceleration, alpha, vertical)."""
    engine = FeatureNetworkEngine(onnx_path, device="cpu")
    window = engine.coverage(dem)
    engine.bind(dem, window)
    parts = {name: [] for name in engine.variables}
    for _, values in engine.batches(np.asarray(angles), 8):
        for name, arr in values.items():
            parts[name].append(arr)
    inner = dem.isel(y=window.rows, x=window.cols)
    ds = xr.Dataset(
        {name: (("angle", "y", "x"), np.concatenate(arr)) for name, arr in parts.items()},
        coords={
            "angle": np.asarray(angles, dtype=np.float64),
            "y": inner.y.values,
            "x": inner.x.values,
        },
        attrs=engine.attrs(),
    )
    return ds.rio.write_crs(dem.rio.crs)


def test_table_mode_equals_per_step_for_uniform_wind(model, dem):
    """Grid-relative uniform wind on a table direction: both modes run the same features."""
    _, onnx_path = model
    nwp = uniform_nwp(250.0, 5.0)
    table = table_dataset(onnx_path, dem, [240, 250, 260])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 3-direction table is coarse: warned, on purpose
        tab = dv.downscale(nwp, table, grid_relative=True, cache_dir=False, quiet=True)
    step = dv.downscale(
        nwp, model=onnx_path, per_step=True, dem=dem, device="cpu", grid_relative=True,
        cache_dir=False, quiet=True,
    )  # fmt: skip
    assert "upward_air_velocity" in tab and tab["upward_air_velocity"].attrs["units"] == "m s-1"
    for name in ("wind_speed", "x_wind", "y_wind", "upward_air_velocity"):
        np.testing.assert_allclose(tab[name], step[name], atol=2e-4)
    np.testing.assert_allclose(
        tab["upward_air_velocity"].values[0], table["vertical"].values[1] * 5.0, atol=1e-5
    )


def test_table_vertical_lazy_and_file(model, dem, tmp_path):
    _, onnx_path = model
    table = table_dataset(onnx_path, dem, np.arange(0, 360, 30))
    tpath = tmp_path / "table.nc"
    table.to_netcdf(tpath)
    npath = tmp_path / "nwp.nc"
    varying_nwp(3).to_netcdf(npath)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy = dv.downscale(npath, tpath, cache_dir=False, quiet=True)
        assert lazy["upward_air_velocity"].chunks is not None
        eager = dv.downscale(xr.load_dataset(npath), tpath, cache_dir=False, quiet=True)
    np.testing.assert_allclose(lazy["upward_air_velocity"].values, eager["upward_air_velocity"])
    assert np.isfinite(eager["upward_air_velocity"].values).all()


# --------------------------------------------------------------------------- CLI and refusals
@pytest.fixture(scope="module")
def files(tmp_path_factory, dem):
    folder = tmp_path_factory.mktemp("cli_per_step")
    tif = folder / "dem.tif"
    dem.rio.to_raster(tif)
    nwp = folder / "nwp.nc"
    varying_nwp(2).to_netcdf(nwp)
    return folder, tif, nwp


def run(args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error(result, code=1):
    detail = f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert result.exit_code == code, detail
    assert "Traceback" not in result.output, detail
    if code == 1:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, detail
        return errors[0]
    return result.output


def test_cli_per_step(model, files, monkeypatch):
    monkeypatch.delenv("DEVINE_ONNX_MODEL", raising=False)
    _, onnx_path = model
    folder, tif, nwp = files
    out = folder / "wind.nc"
    result = run(
        ["downscale", nwp, "--per-step", "-m", onnx_path, "--dem", tif, "-o", out,
         "--device", "cpu", "--no-cache", "-q"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with xr.open_dataset(out, engine="netcdf4") as ds:
        assert ds["upward_air_velocity"].shape == (2, 79, 85)


def test_cli_per_step_refusals(files, demo_model_file, monkeypatch, model):
    monkeypatch.delenv("DEVINE_ONNX_MODEL", raising=False)
    folder, tif, nwp = files
    out = folder / "x.nc"
    base = ["downscale", nwp, "-o", out, "--device", "cpu", "--no-cache"]
    err = one_error(run(base + ["--per-step", "-m", demo_model_file, "--dem", tif]))
    assert "rotation model" in err and "feature network" in err
    err = one_error(run(base + ["--per-step", "-m", model[1]]))
    assert "--dem" in err
    assert "--table" in one_error(run(base), code=2)
    assert not out.exists()


def test_api_refusals(model, dem):
    _, onnx_path = model
    nwp = uniform_nwp()
    with pytest.raises(OptionError, match="per-step"):
        dv.downscale(nwp, "table.nc", model=onnx_path, per_step=True, dem=dem)
    with pytest.raises(OptionError, match="no correction table"):
        dv.downscale(nwp)
    with pytest.raises(ModelError, match="rotation model"):
        from devine_onnx.engines.runtime import demo_model_path

        dv.downscale(nwp, model=demo_model_path(), per_step=True, dem=dem, device="cpu")


def test_cli_per_step_dem_without_crs(model, files, dem, monkeypatch):
    """A DEM without CRS (NetCDF, no grid mapping) runs with --dem-crs, as in corrections."""
    monkeypatch.delenv("DEVINE_ONNX_MODEL", raising=False)
    _, onnx_path = model
    folder, tif, nwp = files
    bare = folder / "bare_dem.nc"
    dem.drop_vars("spatial_ref", errors="ignore").to_dataset(name="elevation").to_netcdf(bare)
    opts = ["--device", "cpu", "--no-cache", "-q"]
    out = folder / "wind_bare.nc"
    base = ["downscale", nwp, "--per-step", "-m", onnx_path, "--dem", bare, "-o", out, *opts]
    assert "--dem-crs" in one_error(run(base))
    assert not out.exists()
    assert run([*base, "--dem-crs", "EPSG:2154"]).exit_code == 0
    ref = folder / "wind_tif.nc"
    args = ["downscale", nwp, "--per-step", "-m", onnx_path, "--dem", tif, "-o", ref, *opts]
    assert run(args).exit_code == 0
    with xr.open_dataset(out, engine="netcdf4") as a, xr.open_dataset(ref, engine="netcdf4") as b:
        np.testing.assert_array_equal(a["wind_speed"].values, b["wind_speed"].values)


# --------------------------------------------------------------------------- memory budget
def test_chunk_follows_memory_budget(model, dem, monkeypatch):
    """The time chunk is what max_memory leaves after the baseline and one network pass;
    the result does not depend on it."""
    from devine_onnx.downscaling import per_step as ps
    from devine_onnx.engines.features import NETWORK_BYTES_PER_PIXEL

    _, onnx_path = model
    shape = (DEM_SHAPE[0] - 4, DEM_SHAPE[1] - 4)
    pixels = shape[0] * shape[1]
    base = ps.BASELINE_BYTES + ps.TERRAIN_BYTES_PER_PIXEL * pixels
    one_pass = NETWORK_BYTES_PER_PIXEL * pixels  # one step per pass
    step = ps.CHUNK_BYTES_PER_PIXEL * pixels
    for k in (1, 2, 3, 7):
        budget = base + one_pass + k * step + step // 2
        assert ps.plan_memory(shape, budget, chunk_time=24) == (one_pass, k)
    assert ps.plan_memory(shape, base + one_pass + 100 * step, chunk_time=24)[1] == 24
    assert ps.plan_memory(shape, base + one_pass + 100 * step, chunk_time=5)[1] == 5
    # a big budget: more steps per pass (up to DEFAULT_PASS_MEMORY), the chunk from the rest
    pass_memory, chunk = ps.plan_memory(shape, 4 * 10**9, chunk_time=10**6)
    per_pass = pass_memory // one_pass
    assert per_pass > 1
    assert base + per_pass * one_pass + chunk * step <= 4 * 10**9
    assert base + per_pass * one_pass + (chunk + 1) * step > 4 * 10**9
    # the default budget never refuses; an explicit one too small for one step does
    assert ps.plan_memory((4000, 4000))[1] == 1
    with pytest.raises(OptionError, match="max_memory"):
        ps.plan_memory(shape, base + one_pass)

    sizes = []
    call = ps.PerStepKernel.__call__

    def spy(self, u, v):
        sizes.append(np.shape(u)[0])
        return call(self, u, v)

    monkeypatch.setattr(ps.PerStepKernel, "__call__", spy)
    nwp = varying_nwp(5)
    kw = dict(model=onnx_path, per_step=True, dem=dem, device="cpu", cache_dir=False, quiet=True)
    small = dv.downscale(nwp, max_memory=base + one_pass + 2 * step, **kw)
    assert sizes == [2, 2, 1]
    sizes.clear()
    whole = dv.downscale(nwp, **kw)
    assert sizes == [5]
    for name in ("eastward_wind", "northward_wind", "upward_air_velocity"):
        np.testing.assert_array_equal(small[name].values, whole[name].values)


def test_per_step_coarsen_is_the_block_mean(model, dem):
    """coarsen in per-step mode (post-processed pass by pass): block means of u, v, w."""
    _, onnx_path = model
    nwp = varying_nwp(3)
    kw = dict(model=onnx_path, per_step=True, dem=dem, device="cpu", cache_dir=False, quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 79 x 85 leaves a remainder: warned, on purpose
        fine = dv.downscale(nwp, **kw)
        coarse = dv.downscale(nwp, coarsen=4, **kw)
    ny, nx = 79 // 4 * 4, 85 // 4 * 4
    for name in ("eastward_wind", "northward_wind", "upward_air_velocity"):
        a = fine[name].values[:, :ny, :nx].astype(np.float64)
        ref = a.reshape(3, ny // 4, 4, nx // 4, 4).mean(axis=(2, 4))
        np.testing.assert_allclose(coarse[name].values, ref, atol=1e-5)
    speed = np.hypot(coarse["eastward_wind"].values, coarse["northward_wind"].values)
    np.testing.assert_allclose(coarse["wind_speed"].values, speed, atol=1e-5)


def test_per_step_reports_implausible_speeds(model, dem):
    """As table mode: one ImplausibleSpeedWarning counting the output pixel-steps above
    max_speed, the values kept; none below the threshold the user sets."""
    from devine_onnx.downscaling.kernel import ImplausibleSpeedWarning

    _, onnx_path = model
    nwp = uniform_nwp(n_times=3)
    nwp["u10"][1] *= 1e4  # a damaged step (cm/s read as m/s, and more)
    kw = dict(
        model=onnx_path, per_step=True, dem=dem, device="cpu", cache_dir=False, quiet=True
    )  # fmt: skip
    with pytest.warns(ImplausibleSpeedWarning) as rec:
        res = dv.downscale(nwp, **kw)
    speed = res["wind_speed"].values
    over = int(np.count_nonzero(speed > 100.0))
    assert over > 0 and np.all(speed[[0, 2]] < 100.0)
    messages = [str(w.message) for w in rec if w.category is ImplausibleSpeedWarning]
    assert len(messages) == 1
    assert f"{over} output pixel-steps" in messages[0]
    assert f"up to {float(speed.max()):.4g} m/s" in messages[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplausibleSpeedWarning)
        dv.downscale(nwp, max_speed=2.0 * float(speed.max()), **kw)


def test_per_step_blanks_and_counts_missing_forecast_values(model, dem):
    """NaN and infinite NWP values blank the pixels whose interpolation uses them (never an
    infinite output), counted in one NWPNaNWarning, as table mode does."""
    from devine_onnx.downscaling.kernel import NWPNaNWarning

    _, onnx_path = model
    clean = varying_nwp(3)
    nwp = clean.copy(deep=True)
    j, i = nwp.sizes["latitude"] // 2, nwp.sizes["longitude"] // 2
    nwp["u10"][1, j, i] = np.nan
    nwp["v10"][2, j, i] = np.inf
    kw = dict(
        model=onnx_path, per_step=True, dem=dem, device="cpu", cache_dir=False, quiet=True,
        chunk_time=2,
    )  # fmt: skip
    with pytest.warns(NWPNaNWarning) as rec:
        res = dv.downscale(nwp, **kw)
    speed = res["wind_speed"].values
    assert np.isfinite(speed[0]).all() and not np.isinf(speed).any()
    blanked = np.isnan(speed)
    assert blanked[1].any() and blanked[2].any()
    messages = [str(w.message) for w in rec if w.category is NWPNaNWarning]
    assert len(messages) == 1
    assert f"blanked {int(blanked.sum())} output pixel-steps" in messages[0]
    assert "in 2 of 3 time steps" in messages[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = dv.downscale(clean, **kw)
    np.testing.assert_array_equal(speed[0], ref["wind_speed"].values[0])
