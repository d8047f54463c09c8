"""Issue 20 #5: a model whose metadata would give a table of NaN is refused when opened.

The tampered models are written by the test: the demo DEVINE model with its ``devine.sigma``
replaced, and a constant feature network with broken normalisation statistics.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from devine_onnx.cli import app
from devine_onnx.engines.devine.model import DevineModel
from devine_onnx.errors import ModelError
from tests.feature_models import constant_model

onnx = pytest.importorskip("onnx")


def with_metadata(src, dst, **changes):
    model = onnx.load(str(src))
    for entry in model.metadata_props:
        if entry.key in changes:
            entry.value = changes[entry.key]
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("sigma", ["nan", "0", "-3.5", "inf"])
def test_devine_model_with_bad_sigma_is_refused(tmp_path, demo_model_file, sigma):
    bad = with_metadata(demo_model_file, tmp_path / "bad.onnx", **{"devine.sigma": sigma})
    with pytest.raises(ModelError, match=rf"devine.sigma={sigma}.*finite sigma > 0") as info:
        DevineModel(bad, device="cpu")
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_corrections_cli_refuses_a_model_with_nan_sigma(tmp_path, demo_model_file):
    """Before: exit 0 and a table 100 % NaN."""
    from devine_onnx.sample_data import sample_dem

    bad = with_metadata(demo_model_file, tmp_path / "bad.onnx", **{"devine.sigma": "nan"})
    dem = tmp_path / "dem.nc"
    sample_dem(shape=(200, 200)).to_netcdf(dem)
    out = tmp_path / "t.nc"
    result = CliRunner().invoke(
        app, ["corrections", str(dem), "-m", str(bad), "-o", str(out), "--angles", "0,90", "-q"]
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "devine.sigma=nan" in errors[0], result.stderr
    assert not out.exists()


def test_good_demo_model_still_opens(demo_model_file):
    model = DevineModel(demo_model_file, device="cpu")
    assert np.isfinite(model.sigma) and model.sigma > 0


@pytest.mark.parametrize(
    "meta",
    [
        {"devine.norm_std": json.dumps([1.0, 0.0, 1.0])},
        {"devine.norm_std": json.dumps([1.0, float("nan"), 1.0])},
        {"devine.norm_mean": json.dumps([float("inf"), 0.0, 0.0])},
        {"devine.inflow_speed": "0"},
    ],
)
def test_feature_network_with_bad_normalisation_is_refused(tmp_path, meta):
    from devine_onnx.engines.features import FeatureNetwork

    path = constant_model(tmp_path / "c.onnx", (1.0, 0.0, 0.0), extra_meta=meta)
    with pytest.raises(ModelError, match="expected finite values, std and inflow speed > 0"):
        FeatureNetwork(path, device="cpu")
    FeatureNetwork(constant_model(tmp_path / "ok.onnx", (1.0, 0.0, 0.0)), device="cpu")
