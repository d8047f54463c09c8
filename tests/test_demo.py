"""``devine-onnx demo``: the whole chain on real terrain (fewer directions to stay fast)."""

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


def test_demo_cli_default_is_physical_micromet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--quiet", "--angle-step", str(STEP)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    # MicroMet needs no weights: nothing says "synthetic" or "NOT physical".
    assert "NOTICE" not in result.stderr and "synthetic" not in result.stderr.lower()
    out = tmp_path / "demo"  # the default folder, not the current one
    assert not list(tmp_path.glob("demo_*"))
    _check_outputs(out)
    with xr.open_dataset(out / "demo_table.nc") as table:
        assert table.attrs["engine"] == "micromet"
        assert "Liston & Elder 2006" in table.attrs["engine_title"]
        text = " ".join(str(v) for v in table.attrs.values()).lower()
        assert "synthetic" not in text and "not physical" not in text
    with xr.open_dataset(out / "demo_wind.nc") as wind:
        assert wind.attrs["table_engine"] == "micromet"
        assert "Liston & Elder 2006" in wind.attrs["table_engine_title"]
        assert "Liston" in wind.attrs["references"]
        text = " ".join(str(v) for v in wind.attrs.values()).lower()
        assert "synthetic" not in text and "not physical" not in text


def test_demo_summary_lists_files(tmp_path):
    res = run_demo(tmp_path, angle_step=STEP, quiet=True)
    assert res.engine == "micromet" and res.model is None and not res.synthetic
    summary = res.summary()
    for path in res.files:
        assert str(path) in summary


def test_demo_api_synthetic_model_notices_before_and_after(tmp_path, capsys):
    res = run_demo(tmp_path, model="demo", angle_step=STEP)
    assert isinstance(res, DemoResult)
    assert res.engine == "devine" and res.synthetic and res.angles == 360 // STEP
    assert all(p.is_file() for p in res.files)
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if line.startswith("NOTICE")]
    assert len(notices) == 2
    assert err.index(notices[0]) < err.index("[2/5]") < err.index(notices[1])
    assert "demo_wind.png" in res.summary()
    _check_outputs(tmp_path)
    with xr.open_dataset(tmp_path / "demo_wind.nc") as wind:
        assert wind.attrs["table_engine"] == "devine"
        assert "NOT physical" in wind.attrs["comment"]


def test_demo_missing_model(tmp_path, monkeypatch):
    # The environment's model does not change the demo's default engine ...
    monkeypatch.setenv("DEVINE_ONNX_MODEL", str(tmp_path / "elsewhere.onnx"))
    # ... but a missing --model is one line naming it, and nothing is written.
    result = CliRunner().invoke(
        app, ["demo", "--out", str(tmp_path), "-q", "-m", str(tmp_path / "missing.onnx")]
    )
    assert result.exit_code == 1
    assert "missing.onnx" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("demo_*"))


def test_demo_uses_all_directions_by_default():
    assert inspect.signature(run_demo).parameters["angle_step"].default == 1


def test_demo_bad_angle_step(tmp_path):
    from devine_onnx.errors import OptionError

    with pytest.raises(OptionError):
        run_demo(tmp_path, angle_step=0)
