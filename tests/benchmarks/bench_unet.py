"""ONNX Runtime vs TensorFlow for the same UNet and crop, on this machine's CPU.

Run: ``python -m tests.benchmarks.bench_unet`` (needs the ``convert`` extra for TensorFlow).
Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ._common import best_of, machine


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from devine_onnx.engines.devine.model import DevineModel
    from devine_onnx_convert.export import convert_model
    from devine_onnx_convert.fixture import write_official_folder
    from devine_onnx_convert.synthetic import synthetic_weights
    from devine_onnx_convert.unet import build_unet_function

    weights = synthetic_weights(5)
    tf_fn = build_unet_function(weights)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_official_folder(Path(tmp) / "m", weights=weights, savedmodel=False)
        onnx_path = Path(tmp) / "m.onnx"
        convert_model(folder / "weights.h5", onnx_path, check=False)
        model = DevineModel(onnx_path, device="cpu", tile=None)
        print(f"Machine: {machine()}\n")
        print("| crop (px) | ONNX Runtime (s) | TensorFlow (s) | TF / ORT | ORT µs/pixel |")
        print("|---|---|---|---|---|")
        for size in (256, 512, 1024):
            x = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
            t_ort = best_of(lambda x=x: model.predict(x), repeat=3)
            t_tf = best_of(lambda x=x: tf_fn(x[None, :, :, None]).numpy(), repeat=3)
            print(
                f"| {size}x{size} | {t_ort:.3f} | {t_tf:.3f} | {t_tf / t_ort:.2f} | "
                f"{1e6 * t_ort / size**2:.2f} |"
            )


def layouts() -> None:
    """NCHW inside (tf2onnx's export) with and without ORT's NCHWc layout transformation."""
    import onnxruntime as ort

    path = Path(__file__).resolve().parents[2] / "models" / "devine-demo-synthetic.onnx"
    x = np.random.default_rng(0).normal(size=(1, 512, 512, 1)).astype(np.float32)
    print("| ORT graph optimisation | 512x512 (s) |")
    print("|---|---|")
    for name, level in (
        (
            "ORT_ENABLE_EXTENDED (plain NCHW convolutions)",
            ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        ),
        (
            "ORT_ENABLE_ALL (NCHWc layout, the default here)",
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        ),
    ):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        t = best_of(lambda s=session: s.run(None, {"dem": x}), repeat=3)
        print(f"| {name} | {t:.3f} |")


if __name__ == "__main__":
    main()
    print()
    layouts()
