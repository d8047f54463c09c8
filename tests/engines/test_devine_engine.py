"""The devine engine's DEM preparation and the engine registry (choice, refusals)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from devine_onnx.engines import get_engine
from devine_onnx.engines.devine.engine import DevineEngine, ResolutionWarning
from devine_onnx.engines.micromet import MicroMetEngine
from devine_onnx.engines.runtime import MODEL_ENV
from devine_onnx.errors import DEMError, OptionError, cli_spelling


def grid(shape, res=30.0):
    ny, nx = shape
    rng = np.random.default_rng(0)
    da = xr.DataArray(
        (1000 + rng.normal(0, 20, shape)).astype(np.float32),
        dims=("y", "x"),
        coords={"y": 6_450_000.0 - res * np.arange(ny), "x": 900_000.0 + res * np.arange(nx)},
        attrs={"source": "dem.tif"},
    )
    return da.rio.write_crs("EPSG:2154")


@pytest.fixture(scope="module")
def engine(demo_model_file):
    return DevineEngine(demo_model_file, device="cpu")


def test_even_dimensions_trimmed(engine):
    da = grid((200, 220))
    notes = []
    dem = engine.prepare_dem(da, notes)
    assert dem.shape == (199, 219)
    np.testing.assert_array_equal(dem.values, da.values[:199, :219])  # last row/column dropped
    assert any("200 x 220 to 199 x 219" in n and "southernmost" in n for n in notes)


def test_too_small_refused(engine):
    with pytest.raises(DEMError, match="too small") as info:
        engine.prepare_dem(grid((78, 300)), [])
    assert "79 pixels" in str(info.value) and "2370 m" in str(info.value)


def test_resolution_far_from_training_warns(engine):
    with pytest.warns(ResolutionWarning, match="trained on 30 m") as record:
        engine.prepare_dem(grid((201, 201), res=50.0), [])
    assert "resample" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.prepare_dem(grid((201, 201), res=31.0), [])  # close enough: no warning


def test_registry_choices(demo_model_file, monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert isinstance(get_engine("micromet"), MicroMetEngine)
    assert get_engine(None, demo_model_file).name == "devine"
    assert get_engine("devine", "demo").name == "devine"
    assert get_engine("micromet", options={"length_scale": 300}).length_scale == 300


@pytest.mark.parametrize(
    ("engine", "model", "match", "cli"),
    [
        ("nope", None, "unknown engine", "--engine nope"),
        ("micromet", "demo", "needs no model", "--model demo"),
        (None, None, "no model and no --engine", "--engine micromet"),
        ("micromet", None, "no such option", "--tile-size 3"),
    ],
)
def test_registry_refusals(monkeypatch, engine, model, match, cli):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    options = {"tile_size": 3} if cli == "--tile-size 3" else None
    with cli_spelling(), pytest.raises(OptionError, match=match) as info:
        get_engine(engine, model, options=options)
    assert cli in str(info.value) and "\n" not in str(info.value)
