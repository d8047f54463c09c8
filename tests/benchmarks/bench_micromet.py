"""MicroMet table benchmark (issue 9): a 2001 x 2001 DEM x 360 directions, written compressed.

Run from the repository root::

    python -m tests.benchmarks.bench_micromet [SIZE] [N_DIRECTIONS] [FORMAT]

(default 2001, 360, nc). Runs ``compute_corrections(engine="micromet", output=...)`` end to
end, as the command line does: DEM reading, geometry, every direction, and the incremental
compressed writer. Prints the wall time, the time of the kernel alone, peak RSS and the size
of the table on disk, as a markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

from ._common import machine


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def main(size: int = 2001, n: int = 360, fmt: str = "nc") -> None:
    import numpy as np

    from devine_onnx import compute_corrections
    from devine_onnx.engines.micromet import MicroMetEngine
    from devine_onnx.sample_data import sample_dem

    dem = sample_dem((size, size))
    angles = np.arange(0, 360, 360 // n)[:n]
    with tempfile.TemporaryDirectory() as tmp:
        tif = Path(tmp) / "dem.tif"
        dem.rio.to_raster(tif)
        # The kernel alone (no writing), for the split.
        engine = MicroMetEngine()
        t0 = time.perf_counter()
        from devine_onnx.engines.base import TableWindow

        engine.bind(dem, TableWindow(slice(0, size), slice(0, size)))
        for _ in engine.batches(angles, 1):
            pass
        kernel = time.perf_counter() - t0
        out = Path(tmp) / f"table.{fmt}"
        t0 = time.perf_counter()
        compute_corrections(tif, engine="micromet", angles=angles, output=out, quiet=True)
        wall = time.perf_counter() - t0
        disk = _size(out)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    raw = 2 * len(angles) * size * size * 4
    print(f"machine: {machine()}")
    print(
        "| DEM | directions | format | whole command (s) | kernel alone (s) | peak RSS (MiB) "
        "| on disk (MiB) | raw (MiB) |"
    )
    print(
        f"| {size}x{size} | {len(angles)} | {fmt} | {wall:.1f} | {kernel:.1f} | {rss:.0f} "
        f"| {disk / 2**20:.0f} | {raw / 2**20:.0f} |"
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        int(args[0]) if args else 2001,
        int(args[1]) if len(args) > 1 else 360,
        args[2] if len(args) > 2 else "nc",
    )
