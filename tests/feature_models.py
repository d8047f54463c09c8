"""Helpers for the devine-torch (feature network) tests.

PyTorch is only reached through ``pytest.importorskip("torch")``. Models are converted from
synthetic folders (seeded weights, devine-torch's layout): nothing computed is physical.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest


def torch_module():
    """Import torch (skip without it)."""
    return pytest.importorskip("torch")


def convert_folder(tmp: Path, seed: int = 3, name: str = "syn-devine", **folder_kwargs):
    """Write a synthetic devine-torch folder and convert it; return (folder, onnx path)."""
    torch_module()
    pytest.importorskip("onnx")
    from devine_onnx_convert.torch_export import convert_torch_model
    from devine_onnx_convert.torch_fixture import write_torch_folder

    folder = write_torch_folder(tmp / name, seed=seed, **folder_kwargs)
    out = tmp / f"{name}.onnx"
    convert_torch_model(folder, out)
    return folder, out


def torch_net(folder: Path):
    """The PyTorch reference network of a folder (the converter's module, eval mode)."""
    torch_module()
    from devine_onnx_convert.torch_export import build_module
    from devine_onnx_convert.torch_folder import read_torch_folder

    return build_module(read_torch_folder(folder))


def torch_run(module, x: np.ndarray) -> np.ndarray:
    torch = torch_module()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def norm_of(folder: Path):
    data = json.loads((folder / "norm.json").read_text())
    return np.asarray(data["mean"]), np.asarray(data["std"])


def constant_model(path: Path, uvw, *, kind: str = "features", extra_meta: dict | None = None):
    """An ONNX model whose output is the constant vector ``uvw`` at every pixel.

    Built with onnx.helper (no PyTorch): ``out = features * 0 + uvw`` with the feature-network
    signature (N, 3, H, W) -> (N, 3, H, W) and devine-onnx metadata.
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    zero = numpy_helper.from_array(np.zeros((1, 3, 1, 1), np.float32), "zero")
    const = numpy_helper.from_array(np.asarray(uvw, np.float32).reshape(1, 3, 1, 1), "const")
    nodes = [
        helper.make_node("Mul", ["features", "zero"], ["scaled"]),
        helper.make_node("Add", ["scaled", "const"], ["uvw"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("uvw", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        initializer=[zero, const],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "devine.format": "devine-onnx/1",
        "devine.kind": kind,
        "devine.channels": "deflLis,reldem,ydsc",
        "devine.norm_mean": json.dumps([0.0, 0.0, 0.0]),
        "devine.norm_std": json.dumps([1.0, 1.0, 1.0]),
        "devine.inflow_speed": "3.0",
        "devine.frame": "2",
        "devine.model_id": "constant",
        "devine.synthetic_weights": "true",
    }
    meta.update(extra_meta or {})
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))
    return path
