"""compute_corrections: the table against an independent TensorFlow reference, output files,
resume after an interruption, target areas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from devine_onnx.engines.devine.engine import minimum_dem_size
from devine_onnx.engines.devine.geometry import CropGeometry, trim_to_odd
from devine_onnx.engines.devine.model import DevineModel
from devine_onnx.errors import DEMError, OptionError, OutputError
from devine_onnx.io.atomic import partial_path, remove_path
from devine_onnx.io.dem import load_dem
from devine_onnx.tables.build import compute_corrections
from tests.conftest import ROOT

ANGLES = [0, 45, 90, 137, 180, 225, 270, 359]
RES = 30.0
X0, Y0 = 900_000.0, 6_450_000.0  # Lambert-93, near Grenoble


def terrain(shape, offset=(0, 0), res=RES) -> xr.DataArray:
    """Real terrain (matplotlib's Jacksboro DEM) on a Lambert-93 grid, north-up."""
    cbook = pytest.importorskip("matplotlib.cbook")
    z = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(np.float32)
    r0, c0 = offset
    z = z[r0 : r0 + shape[0], c0 : c0 + shape[1]]
    assert z.shape == tuple(shape)
    da = xr.DataArray(
        z,
        dims=("y", "x"),
        coords={"y": Y0 - res * np.arange(shape[0]), "x": X0 + res * np.arange(shape[1])},
        name="elevation",
    )
    return da.rio.write_crs("EPSG:2154")


@pytest.fixture(scope="module")
def model(demo_model_file) -> DevineModel:
    return DevineModel(demo_model_file, device="cpu")


@pytest.fixture(scope="module")
def dem185() -> xr.DataArray:
    return terrain((185, 185), offset=(100, 150))


@pytest.fixture(scope="module")
def table185(model, dem185) -> xr.Dataset:
    """In-memory table of dem185 for ANGLES (the reference for file and resume tests)."""
    return compute_corrections(dem185, model, ANGLES, quiet=True)


def _alpha_match(a, b):
    half_pi = np.pi / 2 - 1e-3
    return (np.abs(a - b) <= 1e-4) | ((np.abs(a) >= half_pi) & (np.abs(b) >= half_pi))


@pytest.mark.parametrize(
    "shape, offset",
    [((186, 202), (20, 30)), ((185, 185), (100, 150))],
    ids=["185x201-trimmed", "185x185"],
)
def test_table_matches_tensorflow_reference(model, shape, offset):
    pytest.importorskip("tensorflow")
    from devine_onnx_convert.demo_model import DEMO_SEED
    from devine_onnx_convert.synthetic import synthetic_weights
    from tests.tf_reference import reference_table

    dem = terrain(shape, offset)
    ds = compute_corrections(dem, model, ANGLES, quiet=True)
    loaded, _ = load_dem(dem)
    ht, wt = trim_to_odd(*loaded.shape)  # what the devine engine does (§6.6)
    trimmed = loaded.isel(y=slice(0, ht), x=slice(0, wt))
    geom = CropGeometry.from_shape(trimmed.shape)
    assert trimmed.shape == tuple(n - (1 - n % 2) for n in shape)  # odd dimensions
    assert ds.sizes == {"angle": len(ANGLES), "y": geom.s, "x": geom.s}
    np.testing.assert_array_equal(ds.x.values, trimmed.x.values[geom.cols])
    np.testing.assert_array_equal(ds.y.values, trimmed.y.values[geom.rows])

    ref_acc, ref_alpha = reference_table(
        trimmed.values, synthetic_weights(DEMO_SEED), model.sigma, ANGLES
    )
    acc, alpha = ds.acceleration.values, ds.alpha.values
    # The reference has -1 where the back-rotation leaves the crop; the table is NaN there
    # and, so that a pixel has values for every direction or none, outside the valid disc.
    outside = (ref_acc == -1) | ~geom.valid_disc()[None]
    assert (ref_acc[:, geom.valid_disc()] != -1).all()
    assert outside.any()  # the corners
    np.testing.assert_array_equal(np.isnan(acc), outside)
    np.testing.assert_array_equal(np.isnan(alpha), outside)
    valid = ~outside
    ok_acc = np.abs(acc[valid] - ref_acc[valid]) <= 1e-4
    ok_alpha = _alpha_match(alpha[valid], ref_alpha[valid])
    assert ok_acc.mean() >= 0.9999, f"acceleration: {ok_acc.mean():.6f} within 1e-4"
    assert ok_alpha.mean() >= 0.9999, f"alpha: {ok_alpha.mean():.6f} within 1e-4"


def test_in_memory_layout(table185, dem185, model):
    ds = table185
    geom = CropGeometry.from_shape(dem185.shape)
    assert set(ds.data_vars) == {"acceleration", "alpha", "vertical", "elevation", "edge_influence"}
    assert ds.attrs["engine"] == "devine"
    assert ds.acceleration.dims == ("angle", "y", "x")
    assert ds.acceleration.dtype == np.float32
    np.testing.assert_array_equal(ds.angle.values, ANGLES)
    assert "FROM direction" in ds.angle.attrs["comment"]
    np.testing.assert_array_equal(
        ds.elevation.values, dem185.values[geom.rows, geom.cols].astype(np.float32)
    )
    assert ds.rio.crs.to_epsg() == 2154
    assert ds.attrs["model_sha256"] == model.sha256
    assert ds.attrs["synthetic_weights"] == "true" and "NOT" in ds.attrs["comment"]
    assert ds.attrs["valid_radius"] == geom.valid_radius
    assert ds.attrs["valid_radius_m"] == geom.valid_radius * RES
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert ds.attrs["software"].startswith("devine-onnx ")
    # Valid for every direction inside the disc, NaN (never -1 or 0) in the corners at 45°.
    disc = geom.valid_disc()
    assert not np.isnan(ds.acceleration.values[:, disc]).any()
    assert not np.isnan(ds.alpha.values[:, disc]).any()
    assert not np.isnan(ds.vertical.values[:, disc]).any()
    # A pixel has values for every direction or for none (no holes that depend on the wind).
    for name in ("acceleration", "alpha", "vertical"):
        nan = np.isnan(ds[name].values)
        np.testing.assert_array_equal(nan.all(axis=0), nan.any(axis=0))
        np.testing.assert_array_equal(nan[0], ~disc)
    corner = ds.acceleration.sel(angle=0).values[0, 0]
    assert np.isnan(corner)
    assert np.nanmin(ds.acceleration.values) > 0
    assert not (ds.alpha.values == -1).any()


def test_trimmed_dem_notes(model):
    dem = terrain((186, 202), (20, 30))
    ds = compute_corrections(dem, model, [270], quiet=True)
    assert "trimmed the DEM from 186 x 202 to 185 x 201" in ds.attrs["notes"]
    geom = CropGeometry(185, 201)
    np.testing.assert_array_equal(ds.x.values, dem.x.values[:201][geom.cols])
    np.testing.assert_array_equal(ds.y.values, dem.y.values[:185][geom.rows])


def test_dem_without_reliable_part_refused(model):
    # 162 x 202: the valid disc (56 px) lies within the UNet's 64 px margin everywhere.
    with pytest.raises(DEMError, match="too small for a reliable DEVINE table") as info:
        compute_corrections(terrain((162, 202), (20, 30)), model, [270], quiet=True)
    assert "184 x 184" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_output_round_trip(tmp_path, model, dem185, table185, suffix):
    out = tmp_path / f"table{suffix}"
    angles = [45, 270]
    ds = compute_corrections(dem185, model, angles, output=out, quiet=True)
    assert out.exists() and not (tmp_path / f"table{suffix}.partial").exists()
    ref = table185.sel(angle=angles)
    for name in ("acceleration", "alpha", "elevation"):
        np.testing.assert_array_equal(ds[name].values, ref[name].values)
    ds.close()
    engine = "zarr" if suffix == ".zarr" else "netcdf4"
    with xr.open_dataset(out, engine=engine, decode_coords="all") as back:
        assert back.acceleration.dims == ("angle", "y", "x")
        np.testing.assert_array_equal(back.angle.values, angles)
        np.testing.assert_array_equal(back.x.values, table185.x.values)
        np.testing.assert_array_equal(back.y.values, table185.y.values)
        assert back.rio.crs.to_epsg() == 2154
        assert "crs_wkt" in back.spatial_ref.attrs
        for name in ("acceleration", "alpha", "elevation"):
            var = back[name]
            assert var.encoding.get("grid_mapping", var.attrs.get("grid_mapping")) == "spatial_ref"
        assert back.alpha.attrs["units"] == "radian"
        assert back.attrs["model_sha256"] == model.sha256
        assert back.attrs["synthetic_weights"] == "true"
        assert "directions_done" not in back.attrs
        acc = back.acceleration.values
        assert np.isnan(acc[0, 0, 0]) and np.isnan(acc[0, -1, -1])  # 45°: corners NaN
        assert not (acc == -1).any() and not (acc == 0).any()
    if suffix == ".nc":
        import netCDF4

        with netCDF4.Dataset(out) as nc:
            v = nc.variables["acceleration"]
            assert v.chunking() == [1, ds.sizes["y"], ds.sizes["x"]]
            assert v.filters()["zlib"]


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_interrupted_run_resumes(tmp_path, model, dem185, table185, suffix, monkeypatch):
    out = tmp_path / f"table{suffix}"
    partial = tmp_path / f"table{suffix}.partial"
    angles = [0, 45, 90, 137, 180]
    original = model.predict
    calls = []

    def failing(x, *args, **kwargs):
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        calls.append(x.shape[0])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(model, "predict", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        compute_corrections(dem185, model, angles, output=out, quiet=True)
    assert partial.exists() and not out.exists()

    calls.clear()

    def counting(x, *args, **kwargs):
        calls.append(x.shape[0])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(model, "predict", counting)
    ds = compute_corrections(dem185, model, angles, output=out, quiet=True)
    assert sum(calls) == len(angles) - 2  # only the missing directions
    assert out.exists() and not partial.exists()
    assert "resuming" in ds.attrs["notes"]
    ref = table185.sel(angle=angles)
    np.testing.assert_array_equal(ds.acceleration.values, ref.acceleration.values)
    np.testing.assert_array_equal(ds.alpha.values, ref.alpha.values)
    ds.close()


def test_partial_not_resumed_when_different_or_disabled(tmp_path, model, dem185, monkeypatch):
    out = tmp_path / "table.zarr"
    original = model.predict
    calls = []

    def failing(x, *args, **kwargs):
        if len(calls) == 1:
            raise RuntimeError("simulated crash")
        calls.append(x.shape[0])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(model, "predict", failing)
    with pytest.raises(RuntimeError):
        compute_corrections(dem185, model, [0, 90, 180], output=out, quiet=True)

    def counting(x, *args, **kwargs):
        calls.append(x.shape[0])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(model, "predict", counting)
    calls.clear()
    partial = partial_path(out)
    # Different angles: the partial does not match; it is kept and the run refused.
    with pytest.raises(OutputError, match="other settings") as info:
        compute_corrections(dem185, model, [0, 90], output=out, quiet=True)
    assert "angles (3 there, 2 now)" in str(info.value) and "--no-resume" in str(info.value)
    assert partial.exists() and sum(calls) == 0
    # Another precision: refused as well, naming it.
    with pytest.raises(OutputError, match="value_precision"):
        compute_corrections(dem185, model, [0, 90, 180], output=out, quiet=True, dtype="float16")
    # resume=False (--no-resume) starts over.
    ds = compute_corrections(dem185, model, [0, 90], output=out, quiet=True, resume=False)
    assert sum(calls) == 2 and "starting over" in ds.attrs["notes"]
    ds.close()
    # The finished [0, 90] table is not replaced by a run with other angles (issue 16 #5).
    calls.clear()
    with pytest.raises(OutputError, match=r"finished table computed with other settings"):
        compute_corrections(dem185, model, [0, 90, 180], output=out, quiet=True)
    assert sum(calls) == 0
    remove_path(out)
    # resume=False recomputes everything even when a matching partial exists.
    monkeypatch.setattr(model, "predict", failing)
    calls.clear()
    calls.append(0)  # fail on the second call
    with pytest.raises(RuntimeError):
        compute_corrections(dem185, model, [0, 90, 180], output=out, quiet=True)
    monkeypatch.setattr(model, "predict", counting)
    calls.clear()
    ds = compute_corrections(dem185, model, [0, 90, 180], output=out, quiet=True, resume=False)
    assert sum(calls) == 3
    ds.close()


def test_batch_and_float16(model, dem185, table185):
    ds = compute_corrections(dem185, model, ANGLES[:5], batch=3, quiet=True)
    ref = table185.sel(angle=ANGLES[:5])
    np.testing.assert_allclose(ds.acceleration.values, ref.acceleration.values, atol=1e-6)
    np.testing.assert_allclose(ds.alpha.values, ref.alpha.values, atol=1e-6)
    half = compute_corrections(dem185, model, [270], dtype="float16", quiet=True)
    assert half.acceleration.dtype == np.float32
    expected = table185.acceleration.sel(angle=[270]).values.astype(np.float16)
    np.testing.assert_array_equal(half.acceleration.values, expected.astype(np.float32))
    assert half.attrs["value_precision"].startswith("float16")


@pytest.fixture(scope="module")
def dem261() -> xr.DataArray:
    return terrain((261, 261), offset=(40, 60))


def test_target_bounds(model, dem261, tmp_path):
    geom = CropGeometry.from_shape(dem261.shape)  # d = 92: reliable within 28 px
    cy, cx = geom.center
    xc, yc = float(dem261.x[cx]), float(dem261.y[cy])
    bounds = (xc - 15 * RES, yc - 12 * RES, xc + 18 * RES, yc + 10 * RES)
    angles = [0, 45, 200]
    ds = compute_corrections(dem261, model, angles, target=bounds, quiet=True)
    assert ds.x.values[0] == bounds[0] and ds.x.values[-1] == bounds[2]
    assert ds.y.values[-1] == bounds[1] and ds.y.values[0] == bounds[3]
    assert ds.sizes["x"] == 34 and ds.sizes["y"] == 23
    assert list(ds.attrs["target_bounds"]) == list(bounds)
    # The UNet ran on a smaller window, with exactly the values of the full table.
    full = compute_corrections(dem261, model, angles, quiet=True)
    sub = full.sel(x=ds.x, y=ds.y)
    np.testing.assert_allclose(ds.acceleration.values, sub.acceleration.values, atol=1e-5)
    np.testing.assert_allclose(ds.alpha.values, sub.alpha.values, atol=1e-5)
    np.testing.assert_array_equal(ds.elevation.values, sub.elevation.values)
    assert not np.isnan(ds.acceleration.values).any()

    # A raster file as target: its extent (pixel edges) selects the same pixel centres.
    region = dem261.isel(y=slice(cy - 12, cy + 11), x=slice(cx - 15, cx + 19))
    path = tmp_path / "target.tif"
    region.rio.to_raster(path)
    from_file = compute_corrections(dem261, model, [45], target=path, quiet=True)
    np.testing.assert_array_equal(from_file.x.values, region.x.values)
    np.testing.assert_array_equal(from_file.y.values, region.y.values)


def test_target_outside_reliable_disc(model, dem261):
    geom = CropGeometry.from_shape(dem261.shape)
    cy, cx = geom.center
    xc, yc = float(dem261.x[cx]), float(dem261.y[cy])
    bounds = (xc - 40 * RES, yc - 40 * RES, xc + 40 * RES, yc + 40 * RES)
    with pytest.raises(OptionError, match="must extend at least") as info:
        compute_corrections(dem261, model, [0], target=bounds, quiet=True)
    assert "\n" not in str(info.value)
    m = minimum_dem_size(40 * np.sqrt(2))
    assert f"{m} x {m} pixels" in str(info.value)
    assert CropGeometry(m, m).d - 64 >= 40 * np.sqrt(2)
    assert CropGeometry(m - 1, m - 1).d - 64 < 40 * np.sqrt(2)
    with pytest.raises(OptionError, match="target"):
        compute_corrections(dem261, model, [0], target=(1, 2, 3), quiet=True)


def test_option_errors(model, dem185, tmp_path):
    with pytest.raises(OptionError, match="0..359"):
        compute_corrections(dem185, model, [0, 360], quiet=True)
    with pytest.raises(OptionError, match="duplicate"):
        compute_corrections(dem185, model, [10, 10], quiet=True)
    with pytest.raises(OptionError, match="dtype"):
        compute_corrections(dem185, model, [10], dtype="float64", quiet=True)
    with pytest.raises(OptionError, match="batch"):
        compute_corrections(dem185, model, [10], batch=0, quiet=True)
    with pytest.raises(OutputError, match=r"\.nc .* or \.zarr"):
        compute_corrections(dem185, model, [10], output=tmp_path / "t.csv", quiet=True)
    with pytest.raises(OutputError, match="does not exist"):
        compute_corrections(dem185, model, [10], output=tmp_path / "no" / "t.nc", quiet=True)


def test_runtime_does_not_import_tensorflow():
    code = (
        "import sys, devine_onnx, devine_onnx.tables.build, devine_onnx.io.dem, devine_onnx.engines.runtime; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
