"""``devine-onnx demo``: the whole chain on synthetic data (fewer directions to stay fast)."""

from __future__ import annotations

import inspect

import pytest
import xarray as xr
from typer.testing import CliRunner

from devine_onnx.cli import app
from devine_onnx.demo import DemoResult, run_demo

STEP = 30  # 12 directions instead of 360: the pipeline is the same


@pytest.fixture(autouse=True)
def _no_default_model(monkeypatch):
    monkeypatch.delenv("DEVINE_ONNX_MODEL", raising=False)


def _check_outputs(folder):
    import matplotlib.image as mpimg

    names = {p.name for p in folder.iterdir()}
    assert {
        "demo_dem.tif",
        "demo_nwp.nc",
        "demo_table.nc",
        "demo_weights.nc",
        "demo_wind.nc",
        "demo_wind.png",
        "demo_table.png",
    } <= names
    assert not [n for n in names if n.endswith(".partial")]
    with xr.open_dataset(folder / "demo_wind.nc") as ds:
        assert ds.attrs.get("Conventions", "").startswith("CF-")
        assert ds["wind_speed"].attrs["units"] == "m s-1"
        assert ds["wind_speed"].attrs.get("standard_name") == "wind_speed"
        assert ds["wind_speed"].dims == ("time", "y", "x")
        assert float(ds["wind_speed"].max()) > 0
    for png in ("demo_wind.png", "demo_table.png"):
        img = mpimg.imread(folder / png)
        assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300


def test_demo_cli_quiet(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--quiet", "--angle-step", str(STEP)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    # Quiet: the not-physical notice is still printed once, after the run.
    assert result.stderr.count("NOTICE") == 1
    assert "NOT physical" in result.stderr and "README.md" in result.stderr
    _check_outputs(out)


def test_demo_api_notices_before_and_after(tmp_path, capsys):
    res = run_demo(tmp_path, angle_step=STEP)
    assert isinstance(res, DemoResult)
    assert res.synthetic and res.angles == 360 // STEP
    assert all(p.is_file() for p in res.files)
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if line.startswith("NOTICE")]
    assert len(notices) == 2
    assert err.index(notices[0]) < err.index("[2/5]") < err.index(notices[1])
    assert "demo_wind.png" in res.summary()
    _check_outputs(tmp_path)


def test_demo_model_from_environment(tmp_path, monkeypatch, demo_model_file):
    monkeypatch.setenv("DEVINE_ONNX_MODEL", str(tmp_path / "missing.onnx"))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "-q"])
    assert result.exit_code == 1
    assert "missing.onnx" in result.stderr
    assert not list(tmp_path.glob("demo_*"))


def test_demo_uses_all_directions_by_default():
    assert inspect.signature(run_demo).parameters["angle_step"].default == 1


def test_demo_bad_angle_step(tmp_path):
    from devine_onnx.errors import OptionError

    with pytest.raises(OptionError):
        run_demo(tmp_path, angle_step=0)
