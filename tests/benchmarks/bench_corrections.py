"""Correction-table benchmarks (issue 3): per-direction split, ORT vs TF, peak RSS.

Run from the repository root:

- ``python -m tests.benchmarks.bench_corrections split [SIZE]``: time per direction on a
  SIZE x SIZE DEM (default 1001), split into numpy kernels (rotation + sliding mean + crop,
  post-processing + back-rotation) and the UNet (ONNX Runtime), plus TensorFlow on the same
  crop and weights (needs the ``convert`` extra).
- ``python -m tests.benchmarks.bench_corrections rss [SIZE] [N_DIRECTIONS]``: runs
  ``compute_corrections`` to a NetCDF file in a subprocess and reports its peak RSS
  (default 2001, 360 directions).

- ``python -m tests.benchmarks.bench_corrections kernels [SIZE] [BATCH]``: the numpy side of
  the devine engine (rotation + sliding mean + crop, back-rotation) per direction for a batch
  of directions, on 1 thread and on all cores (the UNet is not run): what a GPU would wait for.

Prints markdown rows for docs/benchmarks.md.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import best_of, machine

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "models" / "devine-demo-synthetic.onnx"


def split(size: int = 1001) -> None:
    from devine_onnx.engines.devine.geometry import CropGeometry
    from devine_onnx.engines.devine.model import DevineModel
    from devine_onnx.engines.devine.postprocess import finish_output, prepare_input
    from devine_onnx.sample_data import sample_dem

    dem = sample_dem((size, size)).values
    geom = CropGeometry(*dem.shape)
    model = DevineModel(DEMO_MODEL, device="cpu")
    k = 37
    x = prepare_input(dem, k, model.sigma, geom)
    uvw = model.predict(x)
    t_pre = best_of(lambda: prepare_input(dem, k, model.sigma, geom), repeat=5)
    t_unet = best_of(lambda: model.predict(x), repeat=3)
    t_post = best_of(lambda: finish_output(uvw[..., 0], uvw[..., 1], k), repeat=5)
    print(f"Machine: {machine()}\n")
    print(f"DEM {size}x{size}, crop {geom.s}x{geom.s}, one direction (best of 3-5):\n")
    print("| step | time (s) | share of UNet time |")
    print("|---|---|---|")
    print(f"| rotation + sliding mean + crop | {t_pre:.4f} | {100 * t_pre / t_unet:.1f} % |")
    print(f"| speed/alpha + back-rotation | {t_post:.4f} | {100 * t_post / t_unet:.1f} % |")
    print(f"| UNet, ONNX Runtime CPU | {t_unet:.3f} | 100 % |")
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from devine_onnx_convert.synthetic import synthetic_weights
        from devine_onnx_convert.unet import build_unet_function
    except ImportError:
        print("\n(TensorFlow not installed: no comparison)")
        return
    fn = build_unet_function(synthetic_weights(2023))
    h, w = x.shape
    xp = np.zeros((1, -(-h // 8) * 8, -(-w // 8) * 8, 1), np.float32)
    xp[0, :h, :w, 0] = x
    t_tf = best_of(lambda: fn(xp).numpy(), repeat=3)
    print(
        f"| UNet, TensorFlow 2.21 CPU (same crop, padded) | {t_tf:.3f} | "
        f"{100 * t_tf / t_unet:.0f} % (TF/ORT = {t_tf / t_unet:.2f}) |"
    )


def _rss_child(size: int, n: int, out: str) -> None:
    from devine_onnx.sample_data import sample_dem
    from devine_onnx.tables.build import compute_corrections

    dem = sample_dem((size, size))
    t0 = time.perf_counter()
    ds = compute_corrections(
        dem,
        DEMO_MODEL,
        angles=range(0, 360, max(1, 360 // n))[:n],
        output=out,
        device="cpu",
        quiet=True,
    )
    ds.close()
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"{peak:.2f} {elapsed:.0f} {Path(out).stat().st_size / 2**30:.2f}")


def rss(size: int = 2001, n: int = 360) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "table.nc")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.benchmarks.bench_corrections",
                "_child",
                str(size),
                str(n),
                out,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
    peak, elapsed, gib = proc.stdout.split()[-3:]
    print(f"Machine: {machine()}\n")
    print("| DEM | directions | peak RSS (GiB) | wall time (s) | table file (GiB) |")
    print("|---|---|---|---|---|")
    print(f"| {size}x{size} | {n} | {peak} | {elapsed} | {gib} |")


def kernels(size: int = 1601, batch: int = 8) -> None:
    from devine_onnx.engines.devine import engine as eng
    from devine_onnx.sample_data import sample_dem

    dem = sample_dem((size, size))
    e = eng.DevineEngine(DEMO_MODEL, device="cpu", method="crop")
    dem = e.prepare_dem(dem, [])
    e.bind(dem, e.coverage(dem))
    ks = np.arange(0, 360, 360 // batch)[:batch]
    rows = []
    for threads in (1, os.cpu_count() or 1):
        eng.KERNEL_THREADS = threads
        eng._KERNEL_POOL = None

        def run():
            x, roi, _ = e._prepare(ks)
            out = np.zeros(x.shape + (3,), np.float32)
            out[..., 0] = 3.0
            e._finish(out, ks, roi)

        rows.append((threads, best_of(run, repeat=3, warmup=1) / batch))
    print(f"machine: {machine()}")
    print("| DEM | batch | threads | numpy kernels per direction (s) |")
    print("|---|---|---|---|")
    for threads, t in rows:
        print(f"| {size}x{size} | {batch} | {threads} | {t:.3f} |")


if __name__ == "__main__":
    args = sys.argv[1:] or ["split"]
    if args[0] == "split":
        split(*map(int, args[1:]))
    elif args[0] == "kernels":
        kernels(*map(int, args[1:]))
    elif args[0] == "rss":
        rss(*map(int, args[1:]))
    elif args[0] == "_child":
        _rss_child(int(args[1]), int(args[2]), args[3])
    else:
        sys.exit(__doc__)
