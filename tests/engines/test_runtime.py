"""The ONNX session wrapper: signature checks, providers, padding and exact tiling."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from devine_onnx.engines.devine.model import DevineModel
from devine_onnx.engines.runtime import HALO, cuda_usable
from devine_onnx.errors import DeviceError, ModelError


@pytest.fixture(scope="module")
def model(demo_model_file):
    return DevineModel(demo_model_file, device="cpu")


def smooth_input(shape, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    z = 2.0 * np.sin(xx / 13.0) * np.cos(yy / 29.0) + rng.normal(0, 0.2, shape)
    return z.astype(np.float32)


def test_metadata(model):
    assert model.sigma == pytest.approx(141.1161085195641)
    assert model.multiple == 8
    assert model.synthetic is True
    assert model.device == "cpu" and model.providers == ["CPUExecutionProvider"]
    assert len(model.sha256) == 64


@pytest.mark.parametrize("shape", [(79, 69), (80, 72), (101, 37), (1, 9)])
def test_padding_to_multiple_then_crop(model, shape):
    x = smooth_input(shape)
    out = model.predict(x)
    assert out.shape == (*shape, 3) and out.dtype == np.float32
    # Reference: pad by hand to the multiple of 8 with zeros, run the raw session, crop.
    hp, wp = -(-shape[0] // 8) * 8, -(-shape[1] // 8) * 8
    xp = np.zeros((1, hp, wp, 1), np.float32)
    xp[0, : shape[0], : shape[1], 0] = x
    ref = model._session.run(None, {"dem": xp})[0][0, : shape[0], : shape[1]]
    np.testing.assert_array_equal(out, ref)


def test_batch_equals_single(model):
    xs = np.stack([smooth_input((96, 120), s) for s in range(3)])
    batch = model.predict(xs)
    for i in range(3):
        np.testing.assert_allclose(batch[i], model.predict(xs[i]), atol=1e-5)


@pytest.mark.parametrize("shape", [(300, 333), (257, 200)])
def test_tiled_equals_untiled(model, shape):
    x = smooth_input(shape, 3)
    whole = model.predict(x, tile=None)
    tiled = model.predict(x, tile=64)  # 64 px cores with 64 px halos: many tiles
    assert shape[0] > 64 + 2 * HALO
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)


def test_tile_must_be_multiple(demo_model_file):
    with pytest.raises(ModelError, match="multiple of 8"):
        DevineModel(demo_model_file, device="cpu", tile=100)


def test_cuda_refused_without_gpu(demo_model_file):
    if cuda_usable():
        pytest.skip("a usable CUDA device is present")
    with pytest.raises(DeviceError, match="--device cuda"):
        DevineModel(demo_model_file, device="cuda")


def test_auto_falls_back_to_cpu(demo_model_file, caplog, monkeypatch):
    import onnxruntime as ort

    from devine_onnx.engines import runtime as session

    if cuda_usable():
        pytest.skip("a usable CUDA device is present")
    monkeypatch.setattr(session, "_CPU_NOTED", False)
    with warnings.catch_warnings():
        # A machine without a GPU is the ordinary case: no warning ...
        warnings.simplefilter("error")
        with caplog.at_level(logging.INFO, logger="devine_onnx"):
            m = DevineModel(demo_model_file, device="auto")
            DevineModel(demo_model_file, device="auto")
    assert m.device == "cpu"
    # ... but one note per process where the GPU build is installed (it offers CUDA).
    notes = [r for r in caplog.records if "runs on CPU" in r.getMessage()]
    assert len(notes) == (1 if "CUDAExecutionProvider" in ort.get_available_providers() else 0)
    assert all(r.levelno == logging.INFO for r in notes)


def test_quiet_cpu_run_prints_nothing(tmp_path, demo_model_file):
    """-q on a CPU machine: no note about the CPU (the synthetic-weights warning stays)."""
    import subprocess
    import sys

    from devine_onnx.sample_data import sample_dem

    dem = tmp_path / "dem.tif"
    sample_dem((185, 185)).rio.to_raster(dem)
    code = "from devine_onnx.cli import main; main()"
    args = ["corrections", str(dem), "-m", str(demo_model_file), "-o", str(tmp_path / "t.nc")]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args, "--angles", "0", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "CPU" not in proc.stderr and "GPU" not in proc.stderr
    assert all(line.startswith("warning:") for line in proc.stderr.splitlines())


def test_bad_device_name(demo_model_file):
    with pytest.raises(DeviceError, match="auto, cpu or cuda"):
        DevineModel(demo_model_file, device="gpu")


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        DevineModel(tmp_path / "nope.onnx", device="cpu")


def test_not_onnx(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a model")
    with pytest.raises(ModelError, match="not a readable ONNX model") as err:
        DevineModel(bad, device="cpu")
    assert "\n" not in str(err.value)


def test_onnx_but_not_devine(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "relu.onnx"
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8  # readable by any ONNX Runtime of the last years
    onnx.save(proto, path)
    with pytest.raises(ModelError, match="not a DEVINE one"):
        DevineModel(path, device="cpu")


def test_env_variable(demo_model_file, monkeypatch):
    monkeypatch.setenv("DEVINE_ONNX_MODEL", str(demo_model_file))
    assert DevineModel(device="cpu").path == demo_model_file
    monkeypatch.delenv("DEVINE_ONNX_MODEL")
    with pytest.raises(ModelError, match="DEVINE_ONNX_MODEL"):
        DevineModel(device="cpu")


@pytest.mark.gpu
def test_cuda_matches_cpu(demo_model_file, model):
    if not cuda_usable():
        pytest.skip("no usable CUDA device")
    gpu = DevineModel(demo_model_file, device="cuda")
    assert gpu.device == "cuda"
    x = smooth_input((512, 512))
    np.testing.assert_allclose(gpu.predict(x), model.predict(x), atol=1e-3)
