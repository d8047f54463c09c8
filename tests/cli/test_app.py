"""The command line itself: help, parsing, one-line errors, exit statuses, real processes."""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import xarray as xr

from devine_onnx.cli import parse_angles, parse_target
from devine_onnx.io.atomic import partial_path
from tests.cli.helpers import (
    COMMANDS,
    assert_refused,
    click_group,
    corrections_args,
    invoke,
    run_main,
)


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


# ---------------------------------------------------------------------------- 80 columns, flags


@pytest.mark.parametrize("command", [None, *click_group().commands])
def test_help_at_80_columns_shows_whole_option_names(command):
    """Option names are never cut (``--angular-interpola…``); flags show no value."""
    import re

    group = click_group()
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


# ---------------------------------------------------------------------------- real process


def test_process_exits_cleanly_after_reading_netcdf(tmp_path, wind_nc):
    """A whole process (not CliRunner) exits 0: with the ecCodes wheel of the GRIB extra
    installed, xarray's backend search used to abort the process at exit ("double free")."""
    png = tmp_path / "map.png"
    proc = run_main("plot", wind_nc, "-o", png)
    assert proc.returncode == 0, proc.stderr
    assert png.is_file() and "double free" not in proc.stderr


def test_process_error_is_one_line(tmp_path, demo_model_file):
    missing = tmp_path / "missing.tif"
    out = tmp_path / "t.nc"
    proc = run_main("corrections", missing, "-m", demo_model_file, "-o", out)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(missing) in lines[0]
    assert proc.stdout == ""
    assert not out.exists()


def test_process_debug_anywhere_gives_traceback(tmp_path, demo_model_file):
    proc = run_main(
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
    proc = run_main(
        "corrections", tmp_path / "dem.tif", "-o", tmp_path / "t.nc", "--angles", "north"
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--angles" in proc.stderr


def test_process_version():
    proc = run_main("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("devine-onnx ")


def test_main_freezes_the_collector_only_after_the_output_is_complete(
    tmp_path, dem_tif, monkeypatch
):
    """``main`` ends with ``gc.freeze()`` (the interpreter's last cycle walk is skipped): by
    then the table is finished, renamed from its partial name and readable."""
    import gc

    from devine_onnx.cli import main

    out = tmp_path / "table.nc"
    seen = []

    def freeze():
        complete = out.exists() and not partial_path(out).exists()
        if complete:
            with xr.open_dataset(out) as ds:
                complete = "directions_done" not in ds.attrs and ds.sizes["angle"] == 2
        seen.append(complete)

    monkeypatch.setattr(gc, "freeze", freeze)
    args = ["corrections", dem_tif, "--engine", "micromet", "-o", out, "--angles", "0,90", "-q"]
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert not exc.code, exc
    assert seen == [True]
