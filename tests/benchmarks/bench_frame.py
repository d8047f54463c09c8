"""The devine engine's two methods, crop and frame (issue 11 item 1, docs/method.md §9.1).

Run from the repository root:

- ``python -m tests.benchmarks.bench_frame fractions``: pixels with values and pixels free of
  edge influence, as a share of the DEM, for both methods and several DEM sizes (geometry
  only, no network), and what ``auto`` chooses.
- ``python -m tests.benchmarks.bench_frame time [SIZE] [N]``: seconds per direction of both
  methods on a SIZE x SIZE DEM (default 1001, N = 4 directions), with the demonstration
  model on CPU, split into numpy kernels and UNet.
- ``python -m tests.benchmarks.bench_frame tasks``: the largest UNet window of one task
  (over the 360 directions) for several tile sizes, on two DEM sizes: the memory of a task
  follows the tile size, not the DEM.

Prints markdown rows for docs/benchmarks.md.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from ._common import machine

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "models" / "devine-demo-synthetic.onnx"
ANGLES = (0, 45, 137, 270)


def _valid_disc(d: int) -> int:
    """Pixels ``a² + b² <= d²``: the crop method's pixels with values."""
    return sum(2 * math.isqrt(d * d - a * a) + 1 for a in range(-d, d + 1))


def fractions() -> None:
    from devine_onnx.engines.devine.frame import FrameGeometry
    from devine_onnx.engines.devine.geometry import trim_to_odd

    shapes = [(185, 185), (301, 301), (357, 357), (359, 359), (501, 501), (1001, 1001)]
    shapes += [(2001, 2001), (4000, 4000), (8000, 10000), (301, 1001)]
    print("Shares of the DEM's pixels (after trimming to odd dimensions, relative to the DEM):\n")
    print("| DEM | crop: values | crop: clean | frame: values | frame: clean | auto |")
    print("|---|---|---|---|---|---|")
    for h, w in shapes:
        fg = FrameGeometry(*trim_to_odd(h, w))
        n = h * w
        crop_values = _valid_disc(fg.crop.d) / n
        row = (
            f"| {h} x {w} | {100 * crop_values:.1f} % | "
            f"{100 * fg.clean_count('crop') / n:.1f} % | {100 * fg.height * fg.width / n:.1f} % | "
            f"{100 * fg.clean_count('frame') / n:.1f} % | {fg.auto_method()} |"
        )
        print(row)


def _engine_time(model, dem, method: str, angles) -> dict:
    from devine_onnx.engines.devine.engine import DevineEngine
    from devine_onnx.engines.devine.frame import FrameGeometry

    eng = DevineEngine(model, method=method)
    da = eng.prepare_dem(dem, [])
    window = eng.coverage(da)
    eng.bind(da, window)
    t0 = time.perf_counter()
    for _ in eng.batches(np.asarray(angles), 1):
        pass
    wall = time.perf_counter() - t0
    fg = FrameGeometry.from_shape(da.shape)
    if method == "frame":  # the UNet windows of the tasks (docs/method.md §9.1)
        unet = 0
        for k in angles:
            for rows, cols in eng.tiles:
                r0, r1, c0, c1 = fg.unet_window(fg.source_box(k, rows, cols))
                unet += (r1 - r0) * (c1 - c0)
        unet /= len(angles)
    else:  # the crop, padded to a multiple of 8
        unet = (-(-fg.crop.s // 8) * 8) ** 2
    return {
        "unet_px": unet,
        "wall": wall / len(angles),
        "kernels": eng.timings["kernels"] / len(angles),
        "unet": eng.timings["unet"] / len(angles),
        "pixels": window.shape[0] * window.shape[1],
        "clean": fg.clean_count(method),
    }


def timing(size: int = 1001, n: int = len(ANGLES)) -> None:
    from devine_onnx.engines.devine.model import DevineModel
    from devine_onnx.sample_data import sample_dem

    dem = sample_dem((size, size))
    model = DevineModel(DEMO_MODEL, device="cpu")
    angles = [(ANGLES[i % len(ANGLES)] + i // len(ANGLES)) % 360 for i in range(n)]
    _engine_time(model, dem, "crop", [270])  # warm-up
    print(f"Machine: {machine()}\n")
    print(f"DEM {size} x {size}, directions {angles}, demonstration model, CPU:\n")
    print(
        "| method | s / direction | kernels | UNet | UNet input, Mpx | table pixels | "
        "clean pixels | ms / direction / 1000 clean px |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method in ("crop", "frame"):
        r = _engine_time(model, dem, method, angles)
        per_clean = 1000 * r["wall"] / max(r["clean"], 1) * 1000
        print(
            f"| {method} | {r['wall']:.2f} | {r['kernels']:.2f} | {r['unet']:.2f} | "
            f"{r['unet_px'] / 1e6:.2f} | {r['pixels']} | {r['clean']} | {per_clean:.2f} |"
        )


def tasks() -> None:
    from devine_onnx.engines.devine.frame import BOX_HALF, FrameGeometry

    print("Largest UNet window of one task over the 360 directions (an interior tile):\n")
    print("| tile | DEM 4001 x 4001 | DEM 20001 x 20001 | input + output per direction |")
    print("|---|---|---|---|")
    for tile in (256, 512, 704, 1024, 2048):
        sides = []
        for size in (4001, 20001):
            fg = FrameGeometry(size, size)
            r0 = c0 = size // 2 - tile // 2
            rows, cols = slice(r0, r0 + tile), slice(c0, c0 + tile)
            side = 0
            for k in range(360):
                w = fg.unet_window(fg.source_box(k, rows, cols))
                side = max(side, w[1] - w[0], w[3] - w[2])
            sides.append(side)
        # float32 input and (u, v, w) output, plus the int64 sums of the normalisation.
        region = (sides[0] + 2 * BOX_HALF[0]) * (sides[0] + 2 * BOX_HALF[1])
        mib = (sides[0] ** 2 * 16 + region * 16) / 2**20
        print(f"| {tile} | {sides[0]} px | {sides[1]} px | {mib:.0f} MiB |")


def main(argv: list[str]) -> None:
    mode = argv[0] if argv else "fractions"
    if mode == "fractions":
        fractions()
    elif mode == "time":
        timing(*(int(a) for a in argv[1:3]))
    elif mode == "tasks":
        tasks()
    else:
        raise SystemExit(f"unknown mode {mode!r}: fractions, time or tasks")


if __name__ == "__main__":
    main(sys.argv[1:])
