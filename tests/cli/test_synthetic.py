"""Synthetic (untrained) weights are announced BEFORE the work, by every command (issue 21 #3).

The session fixtures' table (``table_nc``) and wind file (``wind_nc``) come from the shipped
demonstration model, whose weights are synthetic; ``torch_model`` is a devine-torch model
converted from a synthetic folder (tests/feature_models.py). A MicroMet table is the
counter-example: no model, nothing to warn about.
"""

from __future__ import annotations

import warnings

import pytest
import xarray as xr

import devine_onnx as dv
from devine_onnx.sample_data import sample_dem, sample_nwp
from devine_onnx.synthetic import SyntheticWeightsWarning, synthetic_message
from tests.cli.helpers import invoke, write_tif

MARK = "synthetic (untrained)"


class Stop(Exception):
    """Raised in place of the computation: what was said before it is what the user saw."""


def _stop(*args, **kwargs):
    raise Stop


def synthetic_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if MARK in line]


def one_warning(result, *needles) -> str:
    lines = synthetic_lines(result)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("warning: "), lines[0]
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory):
    from tests.feature_models import convert_folder

    return convert_folder(tmp_path_factory.mktemp("synthetic_torch"), seed=5)[1]


@pytest.fixture(scope="module")
def small_dem_tif(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic_dem")
    return write_tif(sample_dem((83, 89), 30.0), folder / "dem.tif")


@pytest.fixture(scope="module")
def micromet_table(tmp_path_factory, dem_tif):
    out = tmp_path_factory.mktemp("micromet") / "mm.nc"
    result = invoke(["corrections", dem_tif, "--engine", "micromet", "-o", out, "-q"])
    assert result.exit_code == 0, result.output
    return out


# ------------------------------------------------------------------------------ wording
def test_one_wording_names_the_right_converter():
    devine = synthetic_message("m.onnx", made="this table", model=True)
    torch = synthetic_message("t.nc", made="the map", engine="features")
    assert devine.startswith("m.onnx has synthetic (untrained) weights: this table will be")
    assert "NOT physical" in devine
    assert "official DEVINE weights" in devine and "devine-torch" not in devine
    assert torch.startswith("t.nc was computed with synthetic (untrained) model weights")
    assert "devine-torch model folder" in torch and "official DEVINE" not in torch


# ------------------------------------------------------------------------------ corrections
def test_corrections_warns_before_the_run(tmp_path, dem_tif, demo_model_file, monkeypatch):
    """The warning came after the whole run; now it precedes the first direction."""
    from devine_onnx.tables import build

    monkeypatch.setattr(build._BatchFeeder, "run", _stop)
    out = tmp_path / "t.nc"
    args = ["corrections", dem_tif, "-m", demo_model_file, "-o", out, "--angles", "0"]
    result = invoke([*args, "--device", "cpu", "-q"])
    assert result.exit_code == 1  # the run was stopped ...
    one_warning(result, demo_model_file, "this table", "official DEVINE weights")  # ... told


def test_corrections_of_demo_names_the_file(tmp_path, dem_tif):
    out = tmp_path / "t.nc"
    args = ["corrections", dem_tif, "-m", "demo", "-o", out, "--angles", "0", "--device", "cpu"]
    result = invoke([*args, "-q"])
    assert result.exit_code == 0, result.output
    one_warning(result, "devine-demo-synthetic.onnx has synthetic")


def test_corrections_with_a_devine_torch_model_names_its_converter(
    tmp_path, small_dem_tif, torch_model
):
    out = tmp_path / "t.nc"
    args = ["corrections", small_dem_tif, "--engine", "features", "-m", torch_model, "-o", out]
    result = invoke([*args, "--angles", "0,180", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    line = one_warning(result, torch_model, "devine-torch model folder", "devine-onnx convert")
    assert "official" not in line


def test_corrections_api_warns_before_computing(tmp_path, dem_tif, demo_model_file, monkeypatch):
    from devine_onnx.tables import build

    monkeypatch.setattr(build._BatchFeeder, "run", _stop)
    with pytest.warns(
        SyntheticWeightsWarning, match="this table will be a demonstration only, NOT physical"
    ):
        with pytest.raises(Stop):
            dv.compute_corrections(dem_tif, demo_model_file, angles=[0], device="cpu", quiet=True)


# ------------------------------------------------------------------------------ downscale
def test_downscale_of_a_synthetic_table_warns(tmp_path, nwp_nc, table_nc):
    """downscale printed nothing about a table computed with synthetic weights."""
    out = tmp_path / "w.nc"
    result = invoke(["downscale", nwp_nc, "--table", table_nc, "-o", out, "-q"])
    assert result.exit_code == 0, result.output
    one_warning(result, f"{table_nc} was computed with", "the downscaled wind")
    with xr.open_dataset(out) as ds:
        assert "NOT physical" in ds.attrs["comment"]


def test_downscale_warns_before_the_run(tmp_path, nwp_nc, table_nc, monkeypatch):
    from devine_onnx.downscaling import api

    monkeypatch.setattr(api, "run_stream", _stop)
    monkeypatch.setattr(api._blocks, "run_blocks", _stop, raising=False)
    with pytest.warns(
        SyntheticWeightsWarning, match="the downscaled wind will be a demonstration only"
    ):
        with pytest.raises(Stop):
            dv.downscale(nwp_nc, table_nc, output=tmp_path / "w.nc", quiet=True)


def test_downscale_per_step_warns_with_the_devine_torch_converter(
    tmp_path, small_dem_tif, torch_model
):
    nwp = tmp_path / "nwp.nc"
    sample_nwp(n_times=2).to_netcdf(nwp)
    out = tmp_path / "w.nc"
    args = ["downscale", nwp, "--per-step", "-m", torch_model, "--dem", small_dem_tif, "-o", out]
    result = invoke([*args, "--device", "cpu", "--no-cache", "-q"])
    assert result.exit_code == 0, result.output
    one_warning(result, torch_model, "devine-torch model folder")


def test_micromet_table_is_not_synthetic(tmp_path, nwp_nc, micromet_table):
    out = tmp_path / "w.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SyntheticWeightsWarning)
        result = invoke(["downscale", nwp_nc, "--table", micromet_table, "-o", out, "-q"])
        assert result.exit_code == 0, result.output
        assert not synthetic_lines(result)
        result = invoke(["plot", micromet_table, "--angle", "90", "-o", tmp_path / "t.png"])
        assert result.exit_code == 0, result.output
        assert not synthetic_lines(result)


# ------------------------------------------------------------------------------ plot, export
def test_plot_of_a_synthetic_table_and_wind_warns(tmp_path, table_nc, wind_nc):
    result = invoke(["plot", table_nc, "--angle", "90", "-o", tmp_path / "t.png"])
    assert result.exit_code == 0, result.output
    one_warning(result, table_nc, "the map")
    result = invoke(["plot", wind_nc, "-o", tmp_path / "w.png"])
    assert result.exit_code == 0, result.output
    one_warning(result, wind_nc, "the map")


def test_export_of_a_synthetic_wind_warns(tmp_path, wind_nc):
    result = invoke(["export", wind_nc, "-o", tmp_path / "gis", "--format", "asc"])
    assert result.exit_code == 0, result.output
    one_warning(result, wind_nc, "the exported files")


# ------------------------------------------------------------------------------ evaluate
def test_evaluate_of_a_synthetic_output_warns(tmp_path, wind_nc):
    from tests.evaluation.synthetic import observations, wind_dataset

    with xr.open_dataset(wind_nc) as real:  # the attributes downscale wrote
        attrs = {k: real.attrs[k] for k in ("comment", "table_engine") if k in real.attrs}
    assert "comment" in attrs
    wind = tmp_path / "syn_wind.nc"
    wind_dataset(attrs=attrs).to_netcdf(wind)
    obs = tmp_path / "obs.csv"
    observations().to_csv(obs, index=False)
    result = invoke(["evaluate", obs, wind, "-o", tmp_path / "m.csv", "-q"])
    assert result.exit_code == 0, result.output
    one_warning(result, wind, "scored against the stations")


# ------------------------------------------------------------------------------ demo
def test_demo_keeps_its_own_notice(tmp_path, capsys):
    """The demo's NOTICE before and after replaces the commands' warnings (no repeats)."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        dv.run_demo(tmp_path, model="demo", angle_step=90, device="cpu")
    assert not [w for w in record if issubclass(w.category, SyntheticWeightsWarning)]
    err = capsys.readouterr().err
    assert len([x for x in err.splitlines() if x.startswith("NOTICE")]) == 2
