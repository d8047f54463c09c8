"""Bad input is refused in one line naming the file or option, leaving no output behind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from devine_onnx.sample_data import sample_dem, sample_nwp
from tests.cli.helpers import (
    SMALL,
    assert_refused,
    corrections_args,
    invoke,
    write_tif,
)


# ---------------------------------------------------------------------------- DEM refusals
def test_missing_dem(tmp_path, demo_model_file):
    out = tmp_path / "t.nc"
    dem = tmp_path / "nope.tif"
    assert_refused(invoke(corrections_args(dem, out, demo_model_file)), dem, outputs=[out])


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_dem(tmp_path, dem_tif, demo_model_file):
    dem = tmp_path / "locked.tif"
    dem.write_bytes(dem_tif.read_bytes())
    dem.chmod(0)
    out = tmp_path / "t.nc"
    try:
        assert_refused(invoke(corrections_args(dem, out, demo_model_file)), dem, outputs=[out])
    finally:
        dem.chmod(0o644)


def test_corrupt_dem(tmp_path, demo_model_file):
    dem = tmp_path / "corrupt.tif"
    dem.write_bytes(b"II*\x00" + os.urandom(2000))
    out = tmp_path / "t.nc"
    assert_refused(invoke(corrections_args(dem, out, demo_model_file)), dem, outputs=[out])


def test_text_file_named_tif(tmp_path, demo_model_file):
    dem = tmp_path / "notes.tif"
    dem.write_text("this is not a raster\n")
    out = tmp_path / "t.nc"
    assert_refused(invoke(corrections_args(dem, out, demo_model_file)), dem, outputs=[out])


def test_geographic_dem(tmp_path, demo_model_file):
    n = 200
    lon = 6.0 + np.arange(n) * 0.0003
    lat = 45.3 - np.arange(n) * 0.0003
    z = (1000 + 300 * np.sin(np.arange(n)[:, None] / 20.0) * np.ones(n)).astype(np.float32)
    da = xr.DataArray(z, dims=("y", "x"), coords={"y": lat, "x": lon}).rio.write_crs("EPSG:4326")
    dem = write_tif(da, tmp_path / "geographic.tif")
    out = tmp_path / "t.nc"
    result = invoke(corrections_args(dem, out, demo_model_file))
    assert_refused(result, dem, outputs=[out])
    assert "geographic" in result.stderr or "longitude" in result.stderr


def test_dem_with_holes(tmp_path, demo_model_file):
    da = sample_dem(SMALL)
    da.values[40:50, 60:75] = np.nan
    dem = write_tif(da, tmp_path / "holes.tif")
    out = tmp_path / "t.nc"
    result = invoke(corrections_args(dem, out, demo_model_file))
    assert_refused(result, dem, outputs=[out])
    assert "--fill-nodata" in result.stderr or "fill_nodata" in result.stderr


def test_dem_too_small(tmp_path, demo_model_file):
    dem = write_tif(sample_dem((41, 41)), tmp_path / "small.tif")
    out = tmp_path / "t.nc"
    assert_refused(invoke(corrections_args(dem, out, demo_model_file)), dem, outputs=[out])


# ---------------------------------------------------------------------------- model refusals
def test_no_model(tmp_path, dem_tif):
    out = tmp_path / "t.nc"
    result = invoke(["corrections", dem_tif, "-o", out, "--angles", "0"])
    assert_refused(result, "--engine micromet", outputs=[out])
    # Useful after a pip install: the engines and the shipped demo model, no repository paths.
    msg = result.stderr
    assert "--model demo" in msg and "devine-onnx convert" in msg and "models/" not in msg


def test_missing_model(tmp_path, dem_tif):
    out = tmp_path / "t.nc"
    model = tmp_path / "missing.onnx"
    assert_refused(invoke(corrections_args(dem_tif, out, model)), model, outputs=[out])


def test_not_an_onnx_model(tmp_path, dem_tif):
    model = tmp_path / "model.onnx"
    model.write_text("definitely not protobuf\n")
    out = tmp_path / "t.nc"
    assert_refused(invoke(corrections_args(dem_tif, out, model)), model, outputs=[out])


def test_onnx_model_that_is_not_devine(tmp_path, dem_tif):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = tmp_path / "identity.onnx"
    onnx.save(proto, model)
    out = tmp_path / "t.nc"
    result = invoke(corrections_args(dem_tif, out, model))
    assert_refused(result, model, outputs=[out])
    assert "DEVINE" in result.stderr


# ---------------------------------------------------------------------------- NWP refusals
def test_nwp_without_wind(tmp_path, table_nc):
    ds = sample_nwp(n_times=2)
    ds = ds.rename({"u10": "t2m"}).drop_vars("v10")
    ds["t2m"].attrs = {"units": "K", "standard_name": "air_temperature"}
    nwp = tmp_path / "temperature.nc"
    ds.to_netcdf(nwp)
    out = tmp_path / "wind.nc"
    result = invoke(["downscale", nwp, "--table", table_nc, "-o", out, "-q"])
    assert_refused(result, nwp, outputs=[out])
    out_w = tmp_path / "w.nc"
    result = invoke(["regrid", nwp, "--table", table_nc, "-o", out_w])
    assert_refused(result, nwp, outputs=[out_w])


def test_nwp_not_covering_table(tmp_path, table_nc):
    nwp = tmp_path / "paris.nc"
    sample_nwp(center_lonlat=(2.35, 48.85), n_times=2).to_netcdf(nwp)
    out = tmp_path / "wind.nc"
    result = invoke(["downscale", nwp, "--table", table_nc, "-o", out, "-q"])
    assert_refused(result, outputs=[out])
    assert "cover" in result.stderr
    out_w = tmp_path / "w.nc"
    result = invoke(["regrid", nwp, "--table", table_nc, "-o", out_w])
    assert_refused(result, outputs=[out_w])


def test_weights_for_another_nwp_grid(tmp_path, table_nc, weights_nc):
    nwp = tmp_path / "other_grid.nc"
    sample_nwp(n_lon=14, n_times=2).to_netcdf(nwp)
    out = tmp_path / "wind.nc"
    result = invoke(
        ["downscale", nwp, "--table", table_nc, "--weights", weights_nc, "-o", out, "-q"]
    )
    assert_refused(result, weights_nc, outputs=[out])


def test_weights_for_another_table(tmp_path, nwp_nc, table_nc, weights_nc):
    other = tmp_path / "other_table.nc"
    with xr.open_dataset(table_nc) as ds:
        ds.isel(x=slice(0, 80), y=slice(0, 90)).load().to_netcdf(other)
    out = tmp_path / "wind.nc"
    result = invoke(
        ["downscale", nwp_nc, "--table", other, "--weights", weights_nc, "-o", out, "-q"]
    )
    assert_refused(result, weights_nc, outputs=[out])


def test_weights_file_is_not_weights(tmp_path, nwp_nc, table_nc):
    bad = tmp_path / "weights.nc"
    bad.write_text("nope")
    out = tmp_path / "wind.nc"
    result = invoke(["downscale", nwp_nc, "--table", table_nc, "--weights", bad, "-o", out])
    assert_refused(result, bad, outputs=[out])


def test_table_is_not_a_table(tmp_path, nwp_nc):
    bad = tmp_path / "table.nc"
    sample_nwp(n_times=1).to_netcdf(bad)
    out = tmp_path / "wind.nc"
    result = invoke(["downscale", nwp_nc, "--table", bad, "-o", out, "-q"])
    assert_refused(result, bad, outputs=[out])


# ---------------------------------------------------------------------------- outputs
def _unwritable_cases(tmp_path, dem_tif, nwp_nc, table_nc, wind_nc, model, out_dir):
    return {
        "corrections": [
            "corrections",
            dem_tif,
            "-m",
            model,
            "-o",
            out_dir / "t.nc",
            "--angles",
            "0",
            "--device",
            "cpu",
        ],
        "regrid": ["regrid", nwp_nc, "--table", table_nc, "-o", out_dir / "w.nc"],
        "downscale": ["downscale", nwp_nc, "--table", table_nc, "-o", out_dir / "o.nc", "-q"],
        "plot": ["plot", wind_nc, "-o", out_dir / "map.png"],
    }


@pytest.mark.parametrize("command", ["corrections", "regrid", "downscale", "plot"])
def test_output_folder_is_created(
    tmp_path, dem_tif, nwp_nc, table_nc, wind_nc, demo_model_file, command
):
    """One rule for every output (issue 21 #5): missing folders are created, as --plots and
    demo --out always did."""
    folder = tmp_path / "no" / "such" / "folder"
    args = _unwritable_cases(tmp_path, dem_tif, nwp_nc, table_nc, wind_nc, demo_model_file, folder)[
        command
    ]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert [p.name for p in folder.iterdir()] == [Path(args[args.index("-o") + 1]).name]


def test_output_folder_rule_is_documented():
    text = " ".join(invoke(["--help"], terminal_width=200).stdout.split())
    assert "folders that do not exist" in text and "creates them" in text


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write into read-only folders"
)
@pytest.mark.parametrize("command", ["corrections", "regrid", "downscale", "plot"])
def test_output_folder_read_only(
    tmp_path, dem_tif, nwp_nc, table_nc, wind_nc, demo_model_file, command
):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        args = _unwritable_cases(
            tmp_path, dem_tif, nwp_nc, table_nc, wind_nc, demo_model_file, folder
        )[command]
        assert_refused(invoke(args), folder)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_bad_output_suffix(tmp_path, dem_tif, demo_model_file):
    out = tmp_path / "table.txt"
    result = invoke(corrections_args(dem_tif, out, demo_model_file))
    assert_refused(result, out, outputs=[out])


def test_demo_out_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    assert_refused(invoke(["demo", "--out", target, "-q"]), target)


# ---------------------------------------------------------------------------- plot refusals
def test_plot_bad_time_lists_range(tmp_path, wind_nc):
    png = tmp_path / "map.png"
    result = invoke(["plot", wind_nc, "--time", "2030-01-01T00:00", "-o", png])
    assert_refused(result, "--time", "2026-01-15T00:00:00", "2026-01-15T03:00:00", outputs=[png])


def test_plot_bad_angle_lists_angles(tmp_path, table_nc):
    png = tmp_path / "t.png"
    result = invoke(["plot", table_nc, "--angle", "45", "-o", png])
    assert_refused(result, "--angle", "0 to 270 every 90", outputs=[png])


def test_plot_not_a_result(tmp_path, nwp_nc):
    png = tmp_path / "x.png"
    assert_refused(invoke(["plot", nwp_nc, "-o", png]), nwp_nc, outputs=[png])


def test_plot_missing_file(tmp_path):
    png = tmp_path / "x.png"
    missing = tmp_path / "missing.nc"
    assert_refused(invoke(["plot", missing, "-o", png]), missing, outputs=[png])


def test_engine_options_are_checked_by_the_engine(tmp_path, dem_tif, demo_model_file):
    """The CLI passes engine options as given; the engine refuses those it does not take."""
    out = tmp_path / "t.nc"
    base = ["corrections", dem_tif, "-m", demo_model_file, "-o", out, "--angles", "0"]
    result = invoke([*base, "--engine", "devine", "--length-scale", "500"])
    assert_refused(result, "--length-scale 500", "devine engine", outputs=[out])
    result = invoke([*base, "--slope-weight", "0.5"])  # the model's engine: devine
    assert_refused(result, "--slope-weight 0.5", "devine engine", outputs=[out])
