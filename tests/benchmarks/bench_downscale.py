"""Downscaling benchmarks (issue 4): devine-onnx vs the seed's algorithm, and peak RSS.

Run from the repository root:

- ``python -m tests.benchmarks.bench_downscale compare [SIZE] [N_TIMES]``: the same data for
  both (a SIZE x SIZE table with 360 angles, default 200, and N_TIMES hourly steps, default
  240, from ``sample_nwp`` on a grid covering the table), timing (a) the weights,
  (b) the lookup alone on the same in-memory interpolated ``u``/``v`` (seed: 360-pass
  ``xr.where``; devine-onnx: one gather per block with ``TableLookup.downscale_uv`` into
  preallocated outputs) and
  (c) the whole command (seed: weights + interpolation + lookup + NetCDF; devine-onnx:
  ``downscale(nwp.nc, table.nc, output=out.nc)`` including the weights, no cache). The seed
  is the re-implementation in :mod:`tests.benchmarks.seed_baseline`.
- ``python -m tests.benchmarks.bench_downscale rss [SIZE] [N_TIMES ...]``: peak RSS and wall
  time of ``downscale(nwp.nc, table.nc, output=out.nc)`` with default chunking for a
  SIZE x SIZE table (default 500) and each series length (default 2190 and 8760 hourly
  steps).
- ``python -m tests.benchmarks.bench_downscale blocks [MAX_MEMORY] [N_TIMES] [SIZE ...]``:
  downscaling by spatial blocks (issue 11): for each SIZE x SIZE table with 360 angles
  (default 500, 1000 and 1400: 0.7, 2.9 and 5.6 GB in memory), the peak RSS and wall time
  of the in-memory run and of ``downscale(..., max_memory=MAX_MEMORY)`` (default 1GB) with
  the table stored as NetCDF in whole-grid chunks (as ``corrections`` writes it) and as Zarr
  in chunks of 360 x 128 x 128; N_TIMES hourly steps (default 240) of an NWP grid at
  0.0125° covering the table; NetCDF outputs.
- ``python -m tests.benchmarks.bench_downscale codecs [SIZE] [N_TIMES]``: compression of the
  uncompressed output of the ``compare`` case, chunk by chunk on one thread (zlib and ISA-L
  deflate levels, as :mod:`devine_onnx.io.hdf5_chunks` does), and whole files written through
  netCDF4 with other HDF5 codecs (zstd, blosc, lossy BitRound quantisation).

Every measurement runs in its own subprocess, so that its peak RSS belongs to that run
alone. The peak is read from ``VmHWM`` in ``/proc/self/status`` (Linux), not from
``getrusage(RUSAGE_SELF).ru_maxrss``: Linux keeps ``ru_maxrss`` across ``execve``, so a
child would report at least the peak of the process that forked it. For the same reason the
input files are written to a temporary folder by a subprocess of their own. Prints markdown
tables for docs/benchmarks.md.
"""

from __future__ import annotations

import json
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
TABLE_CRS = "EPSG:2154"
_RESULT = "RESULT "


# --------------------------------------------------------------------------- inputs
def synthetic_table(shape: tuple[int, int], n_angles: int = 360, seed: int = 0):
    """A correction table on ``sample_dem(shape)``'s grid (values are made up).

    ``acceleration = 1 + 0.2 sin(f + angle)`` and ``alpha = 0.05 cos(f + angle)`` (radians)
    with ``f`` a smooth random field; float32, built one angle at a time.
    """
    import rioxarray  # noqa: F401
    import xarray as xr

    from devine_onnx.sample_data import sample_dem

    dem = sample_dem(shape)
    ny, nx = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, ny), np.linspace(0, 1, nx), indexing="ij")
    field = np.zeros(shape)
    for _ in range(6):
        fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
        field += np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
    acc = np.empty((n_angles, ny, nx), dtype=np.float32)
    alpha = np.empty((n_angles, ny, nx), dtype=np.float32)
    angles = np.arange(n_angles) * (360.0 / n_angles)
    for k, a in enumerate(np.radians(angles)):
        acc[k] = 1.0 + 0.2 * np.sin(field + a)
        alpha[k] = 0.05 * np.cos(field + a)
    ds = xr.Dataset(
        {
            "acceleration": (("angle", "y", "x"), acc, {"units": "1"}),
            "alpha": (("angle", "y", "x"), alpha, {"units": "radian"}),
        },
        coords={"angle": angles, "y": dem.y.values, "x": dem.x.values},
        attrs={"comment": "synthetic benchmark table"},
    )
    return ds.rio.write_crs(TABLE_CRS)


def write_inputs(folder: Path, size: int, n_times: int) -> tuple[Path, Path]:
    """Write ``table.nc`` (size x size, 360 angles) and ``nwp.nc`` (n_times steps)."""
    from devine_onnx.sample_data import sample_nwp

    table_path = folder / f"table{size}.nc"
    if not table_path.exists():
        synthetic_table((size, size)).to_netcdf(table_path)
    nwp_path = folder / f"nwp{n_times}.nc"
    if not nwp_path.exists():
        sample_nwp(n_times=n_times).to_netcdf(nwp_path)
    return table_path, nwp_path


def _load_avg() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _header() -> None:
    blas = {
        k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ
    }
    print(f"Machine: {machine()}", flush=True)
    print(f"At start: {_load_avg()}; BLAS threads: {blas or 'library default'}\n", flush=True)


# --------------------------------------------------------------------------- children
def _rss_now_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    """Peak RSS of this process image (VmHWM, reset by exec), else ru_maxrss."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    # ru_maxrss survives exec on Linux (it may include the parent's peak); KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _interpolated(nwp_path: Path, table):
    """The NWP Dataset and its u, v interpolated to the table grid ((time, y, x) float32)."""
    import xarray as xr

    from devine_onnx.regrid.weights import RegridWeights

    nwp = xr.open_dataset(nwp_path).load()
    x, y = table["x"].values, table["y"].values
    w = RegridWeights.from_grids(
        nwp["longitude"].values, nwp["latitude"].values, "EPSG:4326", x, y, TABLE_CRS
    )
    u = w.apply(nwp["u10"].values.astype(np.float32))
    v = w.apply(nwp["v10"].values.astype(np.float32))
    return nwp, u, v


def _field(shape, seed: int = 0):
    ny, nx = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, ny), np.linspace(0, 1, nx), indexing="ij")
    field = np.zeros(shape, dtype=np.float32)
    for _ in range(6):
        fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
        field += np.sin(2 * np.pi * (fx * xx + fy * yy) + phase).astype(np.float32)
    return field


def write_big_inputs(folder: Path, size: int, n_times: int) -> None:
    """``table{size}.nc`` (chunks of one direction x the whole grid, written direction by
    direction, as ``corrections`` does), ``table{size}.zarr`` (chunks 360 x 128 x 128, written
    block by block) and ``nwp{size}_{n_times}.nc`` covering the table: never the whole table
    in memory. Values as :func:`synthetic_table`."""
    import rioxarray  # noqa: F401
    import xarray as xr

    from devine_onnx.io.writers import create_writer
    from devine_onnx.sample_data import sample_dem, sample_nwp

    dem = sample_dem((size, size))
    angles = np.arange(360.0)
    template = xr.Dataset(
        coords={"angle": angles, "y": dem.y.values, "x": dem.x.values},
        attrs={"comment": "synthetic benchmark table"},
    ).rio.write_crs(TABLE_CRS)
    variables = {"acceleration": {"units": "1"}, "alpha": {"units": "radian"}}
    field = _field((size, size))
    rad = np.radians(angles).astype(np.float32)
    for fmt, name, spatial in (("netcdf", "nc", None), ("zarr", "zarr", (128, 128))):
        path = folder / f"table{size}.{name}"
        if path.exists():
            continue
        w = create_writer(path, template, "angle", variables, fmt=fmt,
                          chunk=1 if spatial is None else 360, spatial_chunks=spatial)  # fmt: skip
        if spatial is None:
            for k, a in enumerate(rad):
                w.write(k, k + 1, [1.0 + 0.2 * np.sin(field + a)[None],
                                   0.05 * np.cos(field + a)[None]])  # fmt: skip
        else:
            for y0 in range(0, size, 128):
                for x0 in range(0, size, 128):
                    f = field[y0 : y0 + 128, x0 : x0 + 128][None] + rad[:, None, None]
                    w.write_region(0, 360, y0, x0, [1.0 + 0.2 * np.sin(f), 0.05 * np.cos(f)])
        w.finalize({})
        w.close()
    nwp_path = folder / f"nwp{size}_{n_times}.nc"
    if not nwp_path.exists():
        extent = size * 30.0
        n_lat = int(np.ceil(extent / 1390.0)) + 6
        n_lon = int(np.ceil(extent / 985.0)) + 6
        sample_nwp(n_lon=n_lon, n_lat=n_lat, step_deg=0.0125, n_times=n_times).to_netcdf(nwp_path)


def _child(task: str, table_path: Path, nwp_path: Path, out: Path, repeat: int) -> None:
    import warnings

    import xarray as xr

    warnings.simplefilter("ignore")
    # Import everything the measured code imports, so that import time is not measured.
    import devine_onnx.downscaling.api  # noqa: F401
    from devine_onnx.downscaling.lookup import TableLookup
    from devine_onnx.regrid.weights import RegridWeights
    from devine_onnx.wind import meridian_convergence

    from . import seed_baseline as seed

    def run(fn, n=repeat):
        if n <= 1:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        return best_of(fn, repeat=n, warmup=0)

    result: dict = {}
    if task.endswith("weights"):
        with xr.open_dataset(table_path) as t, xr.open_dataset(nwp_path) as n:
            x, y = t["x"].values, t["y"].values
            lon, lat = n["longitude"].values, n["latitude"].values
        before = _rss_now_mib()
        if task == "seed_weights":
            elapsed = run(lambda: seed.seed_weights(lon, lat, x, y, TABLE_CRS))
        else:
            elapsed = run(lambda: RegridWeights.from_grids(lon, lat, "EPSG:4326", x, y, TABLE_CRS))
    elif task.endswith("lookup"):
        table = xr.open_dataset(table_path).load()
        nwp, u, v = _interpolated(nwp_path, table)
        x, y = table["x"].values, table["y"].values
        if task == "seed_lookup":
            coords = {"time": nwp["time"].values, "y": y, "x": x}
            ua = xr.DataArray(u, dims=("time", "y", "x"), coords=coords)
            va = xr.DataArray(v, dims=("time", "y", "x"), coords=coords)
            before = _rss_now_mib()
            elapsed = run(lambda: seed.seed_lookup(ua, va, table))
        else:
            from devine_onnx.downscaling.kernel import MAX_BLOCK_ELEMENTS

            acc = np.ascontiguousarray(table["acceleration"].values, dtype=np.float32)
            alpha = np.ascontiguousarray(table["alpha"].values, dtype=np.float32)
            angles = table["angle"].values
            gamma = meridian_convergence(x[None, :], y[:, None], TABLE_CRS).astype(np.float32)
            nt = u.shape[0]
            step = max(1, MAX_BLOCK_ELEMENTS // (y.size * x.size))

            def ours():
                # Fresh outputs each run, like the seed's: their first touch is measured too.
                outs = [np.empty_like(u) for _ in range(4)]
                lut = TableLookup(acc, alpha, angles)
                for a in range(0, nt, step):
                    out = tuple(o[a : a + step] for o in outs)
                    lut.downscale_uv(u[a : a + step], v[a : a + step], gamma, out=out)

            before = _rss_now_mib()
            elapsed = run(ours)
    elif task.startswith("blocks"):
        import logging

        from devine_onnx.downscaling.api import downscale

        notes = []

        class _Notes(logging.Handler):
            def emit(self, record):
                notes.append(record.getMessage())

        logging.getLogger("devine_onnx").addHandler(_Notes())
        logging.getLogger("devine_onnx").setLevel(logging.INFO)
        limit = task.partition(":")[2] or None
        before = _rss_now_mib()

        def blocks_run():
            import shutil

            shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
            downscale(nwp_path, table_path, output=out, quiet=True, cache_dir=False,
                      max_memory=limit).close()  # fmt: skip

        elapsed = run(blocks_run)
        result["output_bytes"] = out.stat().st_size
        result["notes"] = notes
    elif task.endswith(("full", "full_raw")):
        before = _rss_now_mib()

        def full():
            if out.exists():
                out.unlink()
            if task == "seed_full":
                seed.seed_downscale(nwp_path, table_path, out)
            else:
                from devine_onnx.downscaling.api import downscale

                level = 0 if task == "ours_full_raw" else 1
                downscale(
                    nwp_path, table_path, output=out, quiet=True, cache_dir=False, complevel=level
                ).close()

        elapsed = run(full)
        result["output_bytes"] = out.stat().st_size
    else:
        raise SystemExit(f"unknown task {task}")
    result.update(seconds=elapsed, peak_mib=_peak_mib(), before_mib=before)
    print(_RESULT + json.dumps(result), flush=True)


def _write_inputs_in_subprocess(folder: Path, size: int, n_times: int) -> tuple[Path, Path]:
    """:func:`write_inputs` in a subprocess, so that this process stays small."""
    cmd = [
        sys.executable,
        "-m",
        "tests.benchmarks.bench_downscale",
        "_inputs",
        str(folder),
        str(size),
        str(n_times),
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return folder / f"table{size}.nc", folder / f"nwp{n_times}.nc"


def _spawn(task: str, table_path: Path, nwp_path: Path, out: Path, repeat: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "tests.benchmarks.bench_downscale",
        "_child",
        task,
        str(table_path),
        str(nwp_path),
        str(out),
        str(repeat),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"{task} failed:\n{proc.stdout}\n{proc.stderr}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(_RESULT)][-1]
    res = json.loads(line[len(_RESULT) :])
    print(
        f"  {task}: {res['seconds']:.3f} s, peak RSS {res['peak_mib']:.0f} MiB ({_load_avg()})",
        file=sys.stderr,
        flush=True,
    )
    return res


# --------------------------------------------------------------------------- modes
def compare(size: int = 200, n_times: int = 240) -> None:
    _header()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table_path, nwp_path = _write_inputs_in_subprocess(folder, size, n_times)
        out = folder / "out.nc"
        r = {}
        for task, repeat in (
            ("seed_weights", 1),
            ("ours_weights", 3),
            ("seed_lookup", 1),
            ("ours_lookup", 3),
            ("seed_full", 1),
            ("ours_full", 2),
            ("ours_full_raw", 2),
        ):
            r[task] = _spawn(task, table_path, nwp_path, out, repeat)
    end_load = _load_avg()
    npix = size * size
    pixel_steps = npix * n_times
    print(
        f"{size}x{size} table (360 angles), {n_times} hourly steps ({pixel_steps / 1e6:.1f} M "
        "pixel-steps), sample_nwp 12x10 grid; seed: one run, devine-onnx: best of 2-3, each "
        f"measurement in its own process. At end: {end_load}.\n"
    )
    print(
        "| step | seed (s) | devine-onnx (s) | speed-up | seed peak RSS (MiB) | "
        "devine-onnx peak RSS (MiB) | devine-onnx throughput |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = (
        ("weights", f"weights ({npix:,} pixels)", f"{npix / 1e6:.2f} M pixels"),
        ("lookup", "lookup alone (in-memory u, v)", None),
        ("full", "whole command, default compressed NetCDF", None),
    )
    rows += (
        ("full_raw", "whole command, uncompressed NetCDF like the seed (--complevel 0)", None),
    )
    for key, label, _ in rows:
        s, o = r[f"seed_{key.replace('_raw', '')}"], r[f"ours_{key}"]
        rate = (npix if key == "weights" else pixel_steps) / o["seconds"]
        unit = "pixels/s" if key == "weights" else "pixel-steps/s"
        print(
            f"| {label} | {s['seconds']:.2f} | {o['seconds']:.3f} | "
            f"{s['seconds'] / o['seconds']:.0f}x | {s['peak_mib']:.0f} | {o['peak_mib']:.0f} | "
            f"{rate / 1e6:.1f} M {unit} |"
        )
    print(
        f"\nRSS before the measured step (imports, inputs): lookup seed "
        f"{r['seed_lookup']['before_mib']:.0f} MiB, devine-onnx "
        f"{r['ours_lookup']['before_mib']:.0f} MiB; whole command seed "
        f"{r['seed_full']['before_mib']:.0f} MiB, devine-onnx "
        f"{r['ours_full']['before_mib']:.0f} MiB. Output: seed "
        f"{r['seed_full']['output_bytes'] / 2**20:.0f} MiB (uncompressed), devine-onnx "
        f"{r['ours_full']['output_bytes'] / 2**20:.0f} MiB (default: shuffle + deflate level 1)."
    )


def rss(size: int = 500, *n_times: int) -> None:
    n_times = n_times or (2190, 8760)
    _header()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in n_times:
            table_path, nwp_path = _write_inputs_in_subprocess(folder, size, n)
            out = folder / "out.nc"
            res = _spawn("ours_full", table_path, nwp_path, out, 1)
            res["load"] = _load_avg()
            rows.append((n, res))
            out.unlink(missing_ok=True)
            nwp_path.unlink()
    print(
        f"`downscale(nwp.nc, table.nc, output=out.nc)`, {size}x{size} table (360 angles, "
        "float32: "
        f"{2 * 360 * size * size * 4 / 2**20:.0f} MiB in memory), default chunk_time=24, "
        "weights built (no cache); one run each in its own process.\n"
    )
    print(
        "| time steps | pixel-steps | peak RSS (MiB) | wall time (s) | pixel-steps/s | "
        "output (GiB) | load average (1, 5, 15 min) at end |"
    )
    print("|---|---|---|---|---|---|---|")
    for n, res in rows:
        ps = n * size * size
        print(
            f"| {n} | {ps / 1e9:.2f} G | {res['peak_mib']:.0f} | {res['seconds']:.0f} | "
            f"{ps / res['seconds'] / 1e6:.1f} M | {res['output_bytes'] / 2**30:.2f} | "
            f"{res['load'].removeprefix('load average ')} |"
        )


def blocks(max_memory: str = "1GB", n_times: int = 240, *sizes: int) -> None:
    """Peak RSS of downscaling tables larger than ``max_memory`` (see the module docstring)."""
    from devine_onnx.downscaling.options import parse_memory

    sizes = sizes or (500, 1000, 1400)
    limit = parse_memory(max_memory)
    _header()
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        for size in sizes:
            cmd = [sys.executable, "-m", "tests.benchmarks.bench_downscale", "_big_inputs",
                   str(folder), str(size), str(n_times)]  # fmt: skip
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT)
            print(f"  inputs {size}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            nwp_path = folder / f"nwp{size}_{n_times}.nc"
            out = folder / "out.nc"
            for label, table, task in (
                ("in memory, NetCDF table", "nc", "blocks"),
                (f"max_memory={max_memory}, NetCDF table (whole-grid chunks)", "nc",
                 f"blocks:{max_memory}"),
                (f"max_memory={max_memory}, Zarr table (360 x 128 x 128 chunks)", "zarr",
                 f"blocks:{max_memory}"),
            ):  # fmt: skip
                res = _spawn(task, folder / f"table{size}.{table}", nwp_path, out, 1)
                res["load"] = _load_avg()
                rows.append((size, label, res))
                out.unlink(missing_ok=True)
            for p in folder.iterdir():  # free the disk before the next size
                if p.is_dir():
                    import shutil

                    shutil.rmtree(p)
                else:
                    p.unlink()
    print(
        f"`downscale(nwp.nc, table, output=out.nc, max_memory=...)`: SIZE x SIZE tables with 360 "
        f"angles (acceleration and alpha, float32), {n_times} hourly steps, NWP grid at 0.0125° "
        f"covering the table, weights built (no cache); one run each in its own process; "
        f"max_memory {max_memory} = {limit / 2**20:.0f} MiB.\n"
    )
    print(
        "| table | table in memory (MiB) | run | blocks | peak RSS (MiB) | wall time (s) | "
        "M pixel-steps/s | load average at end |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size, label, res in rows:
        table_mib = 360 * size * size * 4 * 2 / 2**20
        notes = " ".join(res.get("notes", []))
        n_blocks = "1"
        if "blocks of" in notes:
            part = notes.split("blocks of ")[1]
            n_blocks = part.split("(")[1].split(" blocks")[0] + " of " + part.split(" table")[0]
        ps = size * size * n_times
        print(
            f"| {size}x{size} | {table_mib:.0f} | {label} | {n_blocks} | {res['peak_mib']:.0f} | "
            f"{res['seconds']:.1f} | {ps / res['seconds'] / 1e6:.1f} | "
            f"{res['load'].removeprefix('load average ')} |"
        )


def codecs(size: int = 200, n_times: int = 240) -> None:
    import zlib

    import netCDF4

    from devine_onnx.downscaling.api import downscale
    from devine_onnx.io.hdf5_chunks import shuffle

    _header()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table_path, nwp_path = _write_inputs_in_subprocess(folder, size, n_times)
        raw = folder / "raw.nc"
        downscale(nwp_path, table_path, output=raw, quiet=True, cache_dir=False, complevel=0)
        with netCDF4.Dataset(raw) as nc:
            names = [n for n in nc.variables if nc[n].ndim == 3]
            data = {n: nc[n][:].filled(np.nan).astype(np.float32) for n in names}
            tc = nc[names[0]].chunking()[0]
        chunks = [
            shuffle(np.ascontiguousarray(a[t : t + tc]))
            for a in data.values()
            for t in range(0, n_times, tc)
        ]
        total = sum(map(len, chunks))
        print(
            f"{size}x{size} table, {n_times} steps: {len(names)} variables, {len(chunks)} chunks of "
            f"{tc} steps, {total / 2**20:.1f} MiB (float32, shuffled). One thread, best of 2.\n"
        )
        print("| codec (per chunk, as written by devine-onnx) | seconds | MiB | MB/s |")
        print("|---|---|---|---|")
        coders = [(f"zlib {lvl}", lambda b, lvl=lvl: zlib.compress(b, lvl)) for lvl in (1, 6)]
        try:
            from isal import isal_zlib

            coders += [
                (f"ISA-L {lvl}", lambda b, lvl=lvl: isal_zlib.compress(b, lvl)) for lvl in (1, 2, 3)
            ]
        except ImportError:
            print("(isal not installed: no ISA-L rows)")
        for label, fn in coders:
            sizes = []
            seconds = best_of(
                lambda fn=fn, sizes=sizes: sizes.append(sum(len(fn(c)) for c in chunks)),
                repeat=2,
                warmup=0,
            )
            print(
                f"| {label} | {seconds:.3f} | {sizes[-1] / 2**20:.1f} | {total / seconds / 1e6:.0f} |"
            )
        print(
            "\n| whole file through netCDF4 (HDF5 filters) | seconds | MiB | readable without plugins |"
        )
        print("|---|---|---|---|")
        ny, nx = data[names[0]].shape[1:]
        options = [
            ("none", {}, "yes"),
            ("zlib 1 + shuffle", {"compression": "zlib", "complevel": 1, "shuffle": True}, "yes"),
            ("zstd 1 + shuffle", {"compression": "zstd", "complevel": 1, "shuffle": True}, "no"),
            ("blosc lz4", {"compression": "blosc_lz4", "complevel": 1, "blosc_shuffle": 1}, "no"),
            (
                "BitRound 12 bits + zlib 1 (lossy)",
                {
                    "compression": "zlib",
                    "complevel": 1,
                    "shuffle": True,
                    "significant_digits": 12,
                    "quantize_mode": "BitRound",
                },
                "yes",
            ),
        ]
        for label, kw, plain in options:
            path = folder / "codec.nc"
            t0 = time.perf_counter()
            try:
                with netCDF4.Dataset(path, "w") as nc:
                    nc.createDimension("time", None)
                    nc.createDimension("y", ny)
                    nc.createDimension("x", nx)
                    for n in names:
                        var = nc.createVariable(
                            n, "f4", ("time", "y", "x"), chunksizes=(tc, ny, nx), **kw
                        )
                        for t in range(0, n_times, tc):
                            var[t : t + tc] = data[n][t : t + tc]
            except (RuntimeError, ValueError) as exc:  # codec not built into this netCDF4
                print(f"| {label} | unavailable: {exc} | | |")
                continue
            seconds = time.perf_counter() - t0
            print(f"| {label} | {seconds:.3f} | {path.stat().st_size / 2**20:.1f} | {plain} |")
            path.unlink()


if __name__ == "__main__":
    args = sys.argv[1:] or ["compare"]
    if args[0] == "compare":
        compare(*map(int, args[1:]))
    elif args[0] == "rss":
        rss(*map(int, args[1:]))
    elif args[0] == "codecs":
        codecs(*map(int, args[1:]))
    elif args[0] == "blocks":
        blocks(*(args[1:2] or ["1GB"]), *map(int, args[2:]))
    elif args[0] == "_big_inputs":
        write_big_inputs(Path(args[1]), int(args[2]), int(args[3]))
    elif args[0] == "_inputs":
        write_inputs(Path(args[1]), int(args[2]), int(args[3]))
    elif args[0] == "_child":
        _child(args[1], Path(args[2]), Path(args[3]), Path(args[4]), int(args[5]))
    else:
        sys.exit(__doc__)
