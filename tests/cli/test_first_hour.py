"""What a new user hit in the first hour (issue 21 #5, #6): consistent options and help."""

from __future__ import annotations

import pytest

from tests.cli.helpers import (
    assert_refused,
    click_group,
    invoke,
)


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
    (dem,) = [p for p in click_group().commands["corrections"].params if p.name == "dem"]
    assert ".asc" in dem.help and "GeoTIFF" in dem.help
