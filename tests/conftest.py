"""Shared fixtures. TensorFlow is only ever imported through pytest.importorskip."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = ROOT.parent / "shared" / "upstream_model"
DEMO_MODEL = ROOT / "models" / "devine-demo-synthetic.onnx"


@pytest.fixture(scope="session", autouse=True)
def _private_weights_cache(tmp_path_factory):
    """Weights cached by downscale go to a temporary folder, never to the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEVINE_ONNX_CACHE_DIR", str(tmp_path_factory.mktemp("weights_cache")))
        yield


@pytest.fixture(scope="session")
def demo_model_file() -> Path:
    """The shipped demonstration model (weights = convert.synthetic.synthetic_weights(2023))."""
    if not DEMO_MODEL.is_file():
        pytest.skip("models/devine-demo-synthetic.onnx is missing")
    return DEMO_MODEL


@pytest.fixture(scope="session")
def official_folder(tmp_path_factory) -> Path:
    """A model folder in the official layout (SavedModel + weights.h5 + dict_norm.csv)."""
    pytest.importorskip("tf_keras")
    from devine_onnx_convert.fixture import write_official_folder

    return write_official_folder(tmp_path_factory.mktemp("official") / "model_UNet", seed=7)
