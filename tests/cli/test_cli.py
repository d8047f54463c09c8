"""The ``devine-onnx`` command line: help, success paths and clean refusals of bad input.

Every refusal must exit 1 (2 for usage errors) with exactly one ``error: ...`` line on stderr
naming the file or option, no traceback, and no output file (nor ``.partial``) left behind.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from devine_onnx.cli import app, parse_angles, parse_target
from devine_onnx.io.atomic import partial_path
from devine_onnx.sample_data import sample_dem, sample_nwp

COMMANDS = ["convert", "corrections", "regrid", "downscale", "demo", "plot", "evaluate", "info"]
SMALL = (185, 185)  # table of 131 x 131 pixels
ANGLES = "0,90,180,270"

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_default_model(monkeypatch):
    monkeypatch.delenv("DEVINE_ONNX_MODEL", raising=False)
    monkeypatch.delenv("DEVINE_ONNX_DEBUG", raising=False)


def invoke(args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def assert_refused(result, *needles, code: int = 1, outputs=()):
    """Exit ``code``; one ``error:`` line containing ``needles``; nothing left behind."""
    detail = f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert result.exit_code == code, detail
    assert "Traceback" not in result.output, detail
    if code == 1:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1, detail
        assert all(line.startswith(("error:", "warning:", "note:")) for line in lines), detail
        assert "unexpected" not in errors[0], detail
        for needle in needles:
            assert str(needle) in errors[0], detail
    else:
        for needle in needles:
            assert str(needle) in result.output, detail
    for out in outputs:
        out = Path(out)
        assert not out.exists(), f"{out} left behind"
        assert not partial_path(out).exists(), f"{partial_path(out)} left behind"


def write_tif(da, path):
    da.rio.to_raster(path, driver="GTiff")
    return path


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def dem_tif(work) -> Path:
    return write_tif(sample_dem(SMALL), work / "dem.tif")


@pytest.fixture(scope="module")
def nwp_nc(work) -> Path:
    path = work / "nwp.nc"
    sample_nwp(n_times=4).to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def table_nc(work, dem_tif, demo_model_file) -> Path:
    out = work / "table.nc"
    result = invoke(
        [
            "corrections",
            dem_tif,
            "-m",
            demo_model_file,
            "-o",
            out,
            "--angles",
            ANGLES,
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def weights_nc(work, nwp_nc, table_nc) -> Path:
    out = work / "weights.nc"
    result = invoke(["regrid", nwp_nc, "--table", table_nc, "-o", out])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    return out


@pytest.fixture(scope="module")
def wind_nc(work, nwp_nc, table_nc, weights_nc) -> Path:
    out = work / "wind.nc"
    result = invoke(
        ["downscale", nwp_nc, "--table", table_nc, "--weights", weights_nc, "-o", out, "-q"]
    )
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------------------- help & info
def test_version():
    from devine_onnx import __version__

    result = invoke(["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_no_arguments_shows_help():
    result = invoke([])
    assert "corrections" in result.output and "downscale" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_example(command):
    result = invoke([command, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    assert "devine-onnx " + command in " ".join(result.stdout.split())


def test_convert_help_names_the_extra():
    result = invoke(["convert", "--help"], terminal_width=120)
    assert "devine-onnx[convert]" in result.stdout


def test_info_runs():
    result = invoke(["info"])
    assert result.exit_code == 0, result.output
    for key in (
        "ONNX Runtime",
        "providers",
        "NVIDIA GPU seen",
        "CUDA usable",
        "DEVINE_ONNX_MODEL",
        "TensorFlow",
    ):
        assert key in result.stdout


def test_info_json(monkeypatch, tmp_path):
    import json

    monkeypatch.setenv("DEVINE_ONNX_MODEL", str(tmp_path / "m.onnx"))
    result = invoke(["info", "--json"])
    data = json.loads(result.stdout)
    assert data["default_model"] == str(tmp_path / "m.onnx")
    assert data["default_model_exists"] is False
    assert isinstance(data["providers"], list) and "CPUExecutionProvider" in data["providers"]
    assert isinstance(data["nvidia_gpu"], bool) and isinstance(data["cuda_usable"], bool)


# ---------------------------------------------------------------------------- parsing
def test_parse_angles():
    assert parse_angles("270,0, 90") == [0, 90, 270]
    assert parse_angles(None) is None
    import typer

    for bad in ("", "a", "0,,90", "360", "-1", "1.5", "10,10", "0;90"):
        with pytest.raises(typer.BadParameter):
            parse_angles(bad)


def test_parse_target(tmp_path):
    import typer

    assert parse_target("1,2,3,4") == (1.0, 2.0, 3.0, 4.0)
    assert parse_target(str(tmp_path / "t.tif")) == tmp_path / "t.tif"
    for bad in ("1,2,3", "a,b,c,d", "3,2,1,4"):
        with pytest.raises(typer.BadParameter):
            parse_target(bad)


@pytest.mark.parametrize("angles", ["abc", "0,,90", "360", "-5", "10,10", "1.5"])
def test_malformed_angles_is_usage_error(tmp_path, dem_tif, demo_model_file, angles):
    out = tmp_path / "t.nc"
    result = invoke(["corrections", dem_tif, "-m", demo_model_file, "-o", out, "--angles", angles])
    assert_refused(result, "--angles", code=2, outputs=[out])


def test_angles_and_angle_step_exclusive(tmp_path, dem_tif, demo_model_file):
    out = tmp_path / "t.nc"
    result = invoke(
        [
            "corrections",
            dem_tif,
            "-m",
            demo_model_file,
            "-o",
            out,
            "--angles",
            "0",
            "--angle-step",
            "10",
        ]
    )
    assert_refused(result, "--angle-step", code=2, outputs=[out])


@pytest.mark.parametrize(
    "option", [["--device", "tpu"], ["--dtype", "int8"], ["--angle-step", "0"], ["--target", "1,2"]]
)
def test_bad_option_values_are_usage_errors(tmp_path, dem_tif, demo_model_file, option):
    out = tmp_path / "t.nc"
    result = invoke(["corrections", dem_tif, "-m", demo_model_file, "-o", out, *option])
    assert result.exit_code == 2, result.output
    assert not out.exists()


# ---------------------------------------------------------------------------- success path
def test_corrections_table(table_nc):
    with xr.open_dataset(table_nc) as ds:
        assert list(ds["angle"].values) == [0, 90, 180, 270]
        assert ds["acceleration"].dims == ("angle", "y", "x")
    assert not partial_path(table_nc).exists()


def test_corrections_summary_and_synthetic_warning(tmp_path, dem_tif, demo_model_file):
    out = tmp_path / "t.nc"
    result = invoke(
        [
            "corrections",
            dem_tif,
            "-m",
            demo_model_file,
            "-o",
            out,
            "--angles",
            "270",
            "--device",
            "cpu",
            "--no-resume",
        ]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: devine engine, 1 direction on a" in result.stdout
    # The summary says where the table has values and where they are reliable.
    assert "values within" in result.stdout and "reliable within" in result.stdout
    assert "synthetic" in result.stderr and "NOT physical" in result.stderr


def test_corrections_model_from_environment(tmp_path, dem_tif, demo_model_file, monkeypatch):
    monkeypatch.setenv("DEVINE_ONNX_MODEL", str(demo_model_file))
    out = tmp_path / "t.nc"
    result = invoke(["corrections", dem_tif, "-o", out, "--angles", "90", "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.is_file()


def test_downscale_output(wind_nc):
    with xr.open_dataset(wind_nc) as ds:
        assert {"wind_speed", "wind_from_direction", "eastward_wind", "northward_wind"} <= set(
            ds.data_vars
        )
        assert ds["wind_speed"].attrs["units"] == "m s-1"
        assert ds.sizes["time"] == 4


def test_plot_commands(tmp_path, wind_nc, table_nc):
    import matplotlib.image as mpimg

    png = tmp_path / "map.png"
    result = invoke(["plot", wind_nc, "--table", table_nc, "--time", "2026-01-15T01:00", "-o", png])
    assert result.exit_code == 0, result.output
    assert "wind map" in result.stdout
    assert mpimg.imread(png).ndim == 3
    png2 = tmp_path / "table.png"
    result = invoke(["plot", table_nc, "--angle", "90", "-o", png2, "-q"])
    assert result.exit_code == 0, result.output
    assert png2.stat().st_size > 1000


# ---------------------------------------------------------------------------- DEM refusals
def corrections_args(dem, out, model):
    return ["corrections", dem, "-m", model, "-o", out, "--angles", "270", "--device", "cpu"]


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


# ---------------------------------------------------------------------------- convert
def test_convert_without_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        if name.split(".")[0] in ("tensorflow", "tf2onnx"):
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    out = tmp_path / "m.onnx"
    result = invoke(["convert", tmp_path / "official", "-o", out])
    assert_refused(result, 'pip install "devine-onnx[convert]"', "tensorflow", outputs=[out])


def test_convert_missing_source(tmp_path):
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("the convert extra is not installed")
    out = tmp_path / "m.onnx"
    src = tmp_path / "no_such_model_folder"
    assert_refused(invoke(["convert", src, "-o", out, "--quiet"]), src, outputs=[out])


# ---------------------------------------------------------------------------- error plumbing
def test_keyboard_interrupt(tmp_path, dem_tif, demo_model_file, monkeypatch):
    import devine_onnx.tables.build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(devine_onnx.tables.build, "compute_corrections", interrupted)
    result = invoke(corrections_args(dem_tif, tmp_path / "t.nc", demo_model_file))
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted"


def test_keyboard_interrupt_keeps_partial_and_resumes(tmp_path, dem_tif, monkeypatch):
    from devine_onnx.engines.micromet import MicroMetEngine

    real = MicroMetEngine.batches

    def first_then_interrupt(self, angles, batch):
        for i, item in enumerate(real(self, angles, batch)):
            if i == 2:
                raise KeyboardInterrupt
            yield item

    out = tmp_path / "t.nc"
    args = ["corrections", dem_tif, "--engine", "micromet", "-o", out, "--angles", "0,90,180,270"]
    monkeypatch.setattr(MicroMetEngine, "batches", first_then_interrupt)
    result = invoke(args)
    assert result.exit_code == 130
    partial = partial_path(out)
    assert partial.exists() and not out.exists()
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("interrupted: the partial table") and str(partial) in lines[-1]
    assert "rerun the same command to resume" in lines[-1]
    monkeypatch.setattr(MicroMetEngine, "batches", real)
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert out.exists() and not partial.exists()
    assert "resuming" in result.stderr and "2 of 4 directions already done" in result.stderr


def test_micromet_bad_options_write_nothing(tmp_path, dem_tif):
    out = tmp_path / "t.nc"
    base = ["corrections", dem_tif, "--engine", "micromet", "-o", out, "--angles", "0"]
    assert_refused(invoke([*base, "--length-scale", "-5"]), "--length-scale -5", outputs=[out])
    assert_refused(invoke([*base, "--slope-weight", "1.5"]), "--slope-weight 1.5", outputs=[out])
    result = invoke([*base, "-m", "demo"])
    assert_refused(result, "--model demo", "needs no model", outputs=[out])
    assert invoke([*base[:3], "--engine", "nope", "-o", out]).exit_code == 2  # not a choice
    assert not partial_path(out).exists()


def test_target_outside_the_dem(tmp_path, dem_tif, demo_model_file):
    out = tmp_path / "t.nc"
    result = invoke([*corrections_args(dem_tif, out, demo_model_file), "--target", "0,0,100,100"])
    assert_refused(result, "--target", "lies outside the DEM", outputs=[out])
    assert "extend the DEM" not in result.stderr


def test_warnings_are_one_line(tmp_path, dem_tif, demo_model_file, monkeypatch):
    import devine_onnx.tables.build
    from devine_onnx.regrid.weights import OutsideHullWarning

    def warns(*args, **kwargs):
        warnings.warn("first line\nsecond line", OutsideHullWarning, stacklevel=2)
        warnings.warn("invalid value encountered in divide", RuntimeWarning, stacklevel=2)
        warnings.warn("cannot cache the weights", RuntimeWarning, stacklevel=2)
        warnings.warn("old API", FutureWarning, stacklevel=2)
        return xr.Dataset()

    monkeypatch.setattr(devine_onnx.tables.build, "compute_corrections", warns)
    result = invoke(corrections_args(dem_tif, tmp_path / "t.nc", demo_model_file))
    assert result.exit_code == 0, result.output
    assert "warning: first line second line" in result.stderr.splitlines()
    assert "warning: cannot cache the weights" in result.stderr.splitlines()
    assert "encountered" not in result.stderr
    assert "old API" not in result.stderr


def test_debug_shows_the_exception(tmp_path, demo_model_file):
    from devine_onnx.errors import DEMError

    out = tmp_path / "t.nc"
    result = invoke(["--debug", *corrections_args(tmp_path / "nope.tif", out, demo_model_file)])
    assert result.exit_code == 1
    assert isinstance(result.exception, DEMError)


def test_unexpected_exception_is_one_line(tmp_path, dem_tif, demo_model_file, monkeypatch):
    import devine_onnx.tables.build

    def bug(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(devine_onnx.tables.build, "compute_corrections", bug)
    result = invoke(corrections_args(dem_tif, tmp_path / "t.nc", demo_model_file))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: unexpected ZeroDivisionError: oops (rerun with --debug for the traceback and "
        "report it)"
    ]


# ---------------------------------------------------------------------------- real process
def _run_main(*args, **kwargs):
    code = "from devine_onnx.cli import main; main()"
    env = {k: v for k, v in os.environ.items() if k != "DEVINE_ONNX_MODEL"}
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        **kwargs,
    )


def test_process_exits_cleanly_after_reading_netcdf(tmp_path, wind_nc):
    """A whole process (not CliRunner) exits 0: with the ecCodes wheel of the GRIB extra
    installed, xarray's backend search used to abort the process at exit ("double free")."""
    png = tmp_path / "map.png"
    proc = _run_main("plot", wind_nc, "-o", png)
    assert proc.returncode == 0, proc.stderr
    assert png.is_file() and "double free" not in proc.stderr


def test_process_error_is_one_line(tmp_path, demo_model_file):
    missing = tmp_path / "missing.tif"
    out = tmp_path / "t.nc"
    proc = _run_main("corrections", missing, "-m", demo_model_file, "-o", out)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(missing) in lines[0]
    assert proc.stdout == ""
    assert not out.exists()


def test_process_debug_anywhere_gives_traceback(tmp_path, demo_model_file):
    proc = _run_main(
        "corrections",
        tmp_path / "missing.tif",
        "-m",
        demo_model_file,
        "-o",
        tmp_path / "t.nc",
        "--debug",
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "DEMError" in proc.stderr


def test_process_usage_error_exit_2(tmp_path):
    proc = _run_main(
        "corrections", tmp_path / "dem.tif", "-o", tmp_path / "t.nc", "--angles", "north"
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--angles" in proc.stderr


def test_process_version():
    proc = _run_main("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("devine-onnx ")


def test_downscale_options_and_plot(tmp_path, nwp_nc, table_nc):
    out = tmp_path / "wind_grid.nc"
    result = invoke(
        [
            "downscale",
            nwp_nc,
            "--table",
            table_nc,
            "-o",
            out,
            "--no-cache",
            "--coarsen",
            "3",
            "--grid-relative",
            "--angular-interpolation",
            "linear",
            "--chunk-time",
            "3",
            "-q",
        ]
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no cached weights
    with xr.open_dataset(out) as ds:
        assert {"x_wind", "y_wind", "wind_speed"} <= set(ds.data_vars)
        assert ds.sizes["x"] == 131 // 3
    png = tmp_path / "grid.png"
    result = invoke(["plot", out, "--table", table_nc, "-o", png, "--time", "2026-01-15T03"])
    assert result.exit_code == 0, result.output
    assert png.is_file()


def test_downscale_caches_weights_by_default(tmp_path, nwp_nc, table_nc):
    out = tmp_path / "wind.nc"
    cache = tmp_path / "cache"
    cache.mkdir()
    result = invoke(
        ["downscale", nwp_nc, "--table", table_nc, "-o", out, "--cache-dir", cache, "-q"]
    )
    assert result.exit_code == 0, result.output
    assert list(cache.iterdir())


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_downscale_write_failure_is_one_line(tmp_path, nwp_nc, table_nc, suffix, monkeypatch):
    """A disk that fills up mid-series: one line naming the output, nothing left behind."""
    import errno

    from devine_onnx.io.hdf5_chunks import ChunkAppender

    calls = []

    def full_disk(real):
        def write(*args, **kwargs):
            calls.append(1)
            if len(calls) > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        return write

    if suffix == ".nc":
        monkeypatch.setattr(ChunkAppender, "append", full_disk(ChunkAppender.append))
    else:
        from devine_onnx.io import writers

        monkeypatch.setattr(writers._ZarrWriter, "_write", full_disk(writers._ZarrWriter._write))
    out = tmp_path / f"wind{suffix}"
    result = invoke(
        ["downscale", nwp_nc, "--table", table_nc, "-o", out, "--chunk-time", "3", "-q"]
    )
    assert len(calls) == 2
    assert_refused(result, str(out), "No space left on device", "free disk space", outputs=[out])


# ---------------------------------------------------------------------------- 80 columns, flags
def _click_group():
    import typer.main

    return typer.main.get_command(app)


@pytest.mark.parametrize("command", [None, *_click_group().commands])
def test_help_at_80_columns_shows_whole_option_names(command):
    """Option names are never cut (``--angular-interpola…``); flags show no value."""
    import re

    group = _click_group()
    cmd = group if command is None else group.commands[command]
    names = {
        name
        for param in cmd.params
        if param.param_type_name == "option" and not getattr(param, "hidden", False)
        for name in (*param.opts, *param.secondary_opts)
        if name.startswith("--")
    }
    result = invoke([command, "--help"] if command else ["--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    shown = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", out))
    assert names <= shown, f"cut or missing: {sorted(names - shown)}"
    assert "<bool>" not in out and "BOOLEAN" not in out


# ---------------------------------------------------------------------------- option spelling
@pytest.fixture(scope="module")
def projected_nwp_nc(work, table_nc) -> Path:
    """u/v on a Lambert-93 grid (with its grid mapping) covering the table; no standard names."""
    with xr.open_dataset(table_nc) as t:
        x0, x1 = float(t.x.min()), float(t.x.max())
        y0, y1 = float(t.y.min()), float(t.y.max())
    x = np.linspace(x0 - 5000, x1 + 5000, 8)
    y = np.linspace(y1 + 5000, y0 - 5000, 7)
    shape = (3, y.size, x.size)
    time = np.datetime64("2026-01-15T00", "ns") + np.arange(3) * np.timedelta64(1, "h")
    ds = xr.Dataset(
        {
            "u": (("time", "y", "x"), np.full(shape, 5.0, np.float32)),
            "v": (("time", "y", "x"), np.zeros(shape, np.float32)),
        },
        coords={"time": time, "y": y, "x": x},
    ).rio.write_crs("EPSG:2154")  # grid_mapping = spatial_ref on u and v
    path = work / "projected_nwp.nc"
    ds.to_netcdf(path)
    return path


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--coarsen", "100000"], ["--coarsen 100000: larger than the table ("]),
        (["--coarsen", "0"], ["--coarsen 0: expected a positive integer"]),
        (["--chunk-time", "0"], ["--chunk-time 0: expected a positive integer"]),
        (["--complevel", "12"], ["--complevel 12: expected an integer from 0"]),
        (["--u-var", "u10"], ["give both --u-var and --v-var (got only --u-var u10)"]),
        (["--nwp-crs", "EPSG:999999"], ["--nwp-crs EPSG:999999: not a CRS"]),
    ],
)
def test_downscale_messages_name_the_option_typed(tmp_path, nwp_nc, table_nc, extra, needles):
    out = tmp_path / "wind.nc"
    result = invoke(["downscale", nwp_nc, "--table", table_nc, "-o", out, "-q", *extra])
    assert_refused(result, *needles, outputs=[out])
    for api in ("coarsen=", "chunk_time", "complevel=", "u_var", "v_var", "nwp_crs"):
        assert api not in result.stderr


def test_projected_nwp_needs_the_wind_frame(tmp_path, projected_nwp_nc, table_nc):
    out = tmp_path / "wind.nc"
    args = ["downscale", projected_nwp_nc, "--table", table_nc, "-o", out, "-q", "--no-cache"]
    result = invoke(args)
    assert_refused(
        result,
        projected_nwp_nc,
        "say which with --nwp-wind-frame earth or --nwp-wind-frame grid",
        outputs=[out],
    )
    assert "nwp_wind_frame" not in result.stderr
    result = invoke([*args, "--nwp-wind-frame", "earth"])
    assert result.exit_code == 0, result.output
    with xr.open_dataset(out) as ds:
        assert "earth-relative (--nwp-wind-frame earth)" in ds.attrs["nwp_wind_frame"]
    result = invoke([*args, "--nwp-wind-frame", "sideways"])
    assert result.exit_code == 2
    # The same grid without its CRS: the message names --nwp-crs, not nwp_crs.
    bare = tmp_path / "bare.nc"
    with xr.open_dataset(projected_nwp_nc) as ds:
        ds.drop_vars("spatial_ref").load().to_netcdf(bare)
    assert_refused(invoke(["downscale", bare, "--table", table_nc, "-o", out]), "--nwp-crs")


def test_regrid_refuses_a_non_nc_weights_file(tmp_path, nwp_nc, table_nc):
    out = tmp_path / "w.zarr"
    result = invoke(["regrid", nwp_nc, "--table", table_nc, "-o", out])
    assert_refused(result, out, "written as NetCDF", "w.nc", outputs=[out])
    assert list(tmp_path.iterdir()) == []


def test_downscale_warnings_are_one_line_and_name_options(tmp_path, nwp_nc, table_nc):
    """table_nc has 4 directions; blocks of n pixels that do not divide the table's sides."""
    with xr.open_dataset(table_nc) as t:
        ny, nx = t.sizes["y"], t.sizes["x"]
    n = next(k for k in range(3, 50) if ny % k and nx % k)
    out = tmp_path / "wind.nc"
    args = ["downscale", nwp_nc, "--table", table_nc, "-o", out, "-q", "--no-cache"]
    result = invoke([*args, "--coarsen", n])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    coarse = [line for line in lines if "directions up to 90° apart" in line]
    assert len(coarse) == 1 and coarse[0].startswith("warning: ")
    assert "use --angular-interpolation linear" in coarse[0]
    rest = [line for line in lines if f"--coarsen {n}" in line]
    assert len(rest) == 1 and rest[0].startswith(f"warning: --coarsen {n}: ")
    assert f"the last {ny % n} row" in rest[0] and f"and {nx % n} column" in rest[0]
    result = invoke([*args, "--angular-interpolation", "linear"])
    assert result.exit_code == 0, result.output
    assert "directions up to" not in result.stderr


# ---------------------------------------------------------------------------- issue 21 #5, #6
def test_table_mode_refuses_a_model(tmp_path, nwp_nc, table_nc, demo_model_file):
    """-m with --table was silently ignored: the table already holds the model's corrections."""
    out = tmp_path / "wind.nc"
    args = ["downscale", nwp_nc, "--table", table_nc, "-m", demo_model_file, "-o", out, "-q"]
    assert_refused(invoke(args), "per-step", outputs=[out])


def test_table_mode_ignores_the_model_of_the_environment(tmp_path, nwp_nc, table_nc):
    """$DEVINE_ONNX_MODEL is a default for --per-step and corrections, not an error with --table."""
    out = tmp_path / "wind.nc"
    args = ["downscale", nwp_nc, "--table", table_nc, "-o", out, "-q"]
    result = invoke(args, env={"DEVINE_ONNX_MODEL": str(tmp_path / "missing.onnx")})
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_per_step_takes_demo_like_corrections(tmp_path, nwp_nc, dem_tif):
    """-m demo means the shipped model everywhere; per-step then says it needs a feature network."""
    out = tmp_path / "wind.nc"
    args = ["downscale", nwp_nc, "--per-step", "-m", "demo", "--dem", dem_tif, "-o", out]
    result = invoke([*args, "--device", "cpu", "--no-cache", "-q"])
    assert_refused(result, "feature network", outputs=[out])
    assert "not found" not in result.stderr


@pytest.mark.parametrize("command", ["corrections", "downscale"])
def test_model_from_environment_is_named_when_missing(tmp_path, dem_tif, nwp_nc, command):
    missing = tmp_path / "missing.onnx"
    out = tmp_path / "out.nc"
    args = {
        "corrections": ["corrections", dem_tif, "-o", out, "--angles", "0", "--device", "cpu"],
        "downscale": ["downscale", nwp_nc, "--per-step", "--dem", dem_tif, "-o", out, "-q"],
    }[command]
    result = invoke(args, env={"DEVINE_ONNX_MODEL": str(missing)})
    assert_refused(result, missing, "DEVINE_ONNX_MODEL", outputs=[out])


def test_top_level_help_describes_the_demo():
    text = " ".join(invoke(["--help"], terminal_width=200).stdout.split())
    assert "synthetic data" not in text
    assert "real terrain" in text and "MicroMet" in text


def test_corrections_help_names_ascii_grids():
    """The DEM argument lists the formats read, ESRI ASCII grids (.asc) included."""
    (dem,) = [p for p in _click_group().commands["corrections"].params if p.name == "dem"]
    assert ".asc" in dem.help and "GeoTIFF" in dem.help
