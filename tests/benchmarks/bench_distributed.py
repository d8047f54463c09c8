"""Distributed tables (issue 11, item 2): wall time with 1 and 2 dask workers.

Run from the repository root::

    python -m tests.benchmarks.bench_distributed micromet [SIZE] [N_DIRECTIONS] [BATCH]
    python -m tests.benchmarks.bench_distributed devine [SIZE] [N_DIRECTIONS] [BATCH]

(defaults: micromet 2001 360 1; devine 601 36 1, the shipped demonstration model). Each case
runs ``compute_corrections`` on a GeoTIFF DEM into a ``.zarr`` store: locally (no dask), with
``workers=1`` and with ``workers=2`` (a new LocalCluster each time, its start-up included:
the cost of the command), and checks that the three tables are bit-identical. Prints the
wall time and the CPU time of all processes (driver and workers: robust to other load on the
machine) as markdown rows for docs/benchmarks.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import machine

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "models" / "devine-demo-synthetic.onnx"


def _cluster_start() -> float:
    import logging

    import distributed

    t0 = time.perf_counter()
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.CRITICAL,
    ) as cluster:
        with distributed.Client(cluster, set_as_default=False):
            elapsed = time.perf_counter() - t0
    return elapsed


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children (the workers
    of a LocalCluster are reaped when it closes)."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def _same(a: Path, b: Path, names) -> bool:
    """Bit-identical tables, compared direction by direction (bounded memory)."""
    import xarray as xr

    with xr.open_zarr(a) as da, xr.open_zarr(b) as db:
        for name in names:
            for i in range(da.sizes["angle"]):
                x, y = da[name][i].values, db[name][i].values
                if not np.array_equal(x, y, equal_nan=True):
                    return False
    return True


def main(engine: str = "micromet", size: int | None = None, n: int | None = None, batch=1):
    from devine_onnx import compute_corrections
    from devine_onnx.sample_data import sample_dem

    size = int(size or (2001 if engine == "micromet" else 601))
    n = int(n or (360 if engine == "micromet" else 36))
    batch = int(batch)
    angles = np.arange(0, 360, 360 // n)[:n]
    kwargs = {"engine": "micromet"} if engine == "micromet" else {"model": DEMO_MODEL}
    names = ("acceleration", "alpha") + (("vertical",) if engine != "micromet" else ())
    rows = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tif = Path(tmp) / "dem.tif"
        sample_dem((size, size)).rio.to_raster(tif)
        ref = None
        for label, extra in (("local (no dask)", {}), ("1", {"workers": 1}), ("2", {"workers": 2})):
            out = Path(tmp) / f"table-{len(rows)}.zarr"
            c0, t0 = _cpu(), time.perf_counter()
            compute_corrections(
                tif, angles=angles, output=out, batch=batch, quiet=True, **kwargs, **extra
            ).close()
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            if ref is None:
                ref = out
            rows.append((label, wall, cpu, _same(out, ref, names)))
    start = _cluster_start()
    print(f"machine: {machine()}")
    what = "MicroMet" if engine == "micromet" else "DEVINE demo model (CPU)"
    print(f"\n{what}, {size}x{size} DEM, {n} directions, batch {batch}, .zarr output\n")
    print("| workers | wall time (s) | CPU time, all processes (s) | equal to the local table |")
    print("|---|---|---|---|")
    for label, wall, cpu, same in rows:
        print(f"| {label} | {wall:.1f} | {cpu:.1f} | {'yes' if same else 'NO'} |")
    print(f"\nLocalCluster start + stop (2 workers): {start:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
