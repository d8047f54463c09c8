"""The price of the table for devine-torch feature networks (issue 10).

Run from the repository root (needs PyTorch, only to convert the synthetic model folder):

- ``python -m tests.benchmarks.bench_features compare [SIZE] [N_STEPS]``: a SIZE x SIZE domain
  (sample DEM of SIZE + 4 cells with its 2-cell frame, default 201) and N_STEPS hourly steps
  (default 72) of NWP wind whose direction varies across the grid and in time. Per-step mode
  (what devine-torch does: one network pass per step on the local direction field) is the
  reference; table mode (360 directions, nearest and linear lookup) is compared with it:
  |speed|, circular |direction| and |w| differences, median and 95th percentile.
- ``python -m tests.benchmarks.bench_features timing [SIZE] [MONTH_STEPS]``: wall time of the
  360-direction table, of table-mode downscaling of a month (720) and a year (8760) of hourly
  steps, and of per-step mode for a month; the per-step year is extrapolated from the measured
  month (x 8760 / 720; the cost per step is constant). NetCDF output, weights cached once.
- ``python -m tests.benchmarks.bench_features tiling [SIZE] [TILE] [HALO]``: network output of a
  SIZE x SIZE domain in one pass vs tiled (cores of TILE, halo HALO): the error of tiling
  (align_corners upsampling), and both times.
- ``python -m tests.benchmarks.bench_features memory [SIZE ...]``: peak RSS (VmHWM, one
  subprocess each) of one whole-domain network pass on SIZE x SIZE.
- ``python -m tests.benchmarks.bench_features peer [--size 320x360] [--cell 50] [--steps 24,96]
  [--threads 2] [--directions 12,36]`` (issue 17): devine-onnx side by side with devine-torch's own
  way of working, on one DEM, each limited to the same number of threads (each side twice,
  alternating, the faster run kept). devine-torch's work
  per step (its numpy features of the step's direction field, then its network in PyTorch, then
  the scaling by S / 3: a lower bound of its pipeline, without I/O or interpolation) against
  the whole ``devine-onnx downscale --per-step`` command (a subprocess: start-up, reading,
  interpolation, features, network, output file) and against the bare ONNX network passes
  (the faster of ONNX Runtime's default session options and intra-op spinning off); then
  ``devine-onnx corrections`` for each number of DIRECTIONS against as many bare passes (the
  faster of two commands below 100 directions). Checks that both give the same winds (max |difference|, m/s) and prints a Markdown table.
  ``--steps none`` runs the table part only. The *library floor* is the time a fresh Python
  takes to import what any command of devine-onnx needs (numpy, xarray with pandas and
  dask.array, rioxarray with rasterio, ONNX Runtime, netCDF4/h5py, pyproj, typer), before any
  work: what no change inside devine-onnx can remove. devine-onnx's bytecode is compiled first
  when Python does not write it (``PYTHONDONTWRITEBYTECODE``), as ``pip install`` does.
- ``python -m tests.benchmarks.bench_features shutdown [PAIRS]`` (issue 17): the interpreter's
  shutdown after a command, with and without the CLI's ``gc.freeze()``: PAIRS (default 5)
  alternating runs of a 12-direction ``corrections`` (320x360, synthetic model, 2 threads),
  medians of the whole command and of the time after the last ``atexit`` handler.
- ``python -m tests.benchmarks.bench_features stages [ROWSxCOLS] [BATCHES]`` (issue 17): the
  cost of each stage around the network on one process, wall and CPU time (CPU counts ONNX
  Runtime's threads: usable on a busy machine): the features per direction (the transcription
  vs :class:`NetworkInput`), per step from wind components, the network per image for passes
  of BATCHES images (default 1,2,4,8,24), and ONNX Runtime session options.

The model has synthetic (untrained) weights: speeds are those of the real architecture,
differences between the modes only show how the pipeline behaves, not physics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ._common import machine

ROOT = Path(__file__).resolve().parents[2]
_RESULT = "RESULT "


# --------------------------------------------------------------------------- inputs
def synthetic_model(folder: Path) -> Path:
    from devine_onnx_convert.torch_export import convert_torch_model
    from devine_onnx_convert.torch_fixture import write_torch_folder

    src = write_torch_folder(folder / "bench-devine-torch", seed=2024)
    out = folder / "bench-devine-torch.onnx"
    if not out.exists():
        convert_torch_model(src, out)
    return out


def varying_nwp(n_times: int, seed: int = 0):
    """AROME-like 10 m wind; the FROM direction varies by +-60 deg across the grid, drifts
    with time (a full turn in 4 days plus a random walk), speed 2-10 m/s."""
    from devine_onnx.sample_data import sample_nwp

    ds = sample_nwp(n_times=n_times, n_lon=14, n_lat=12, seed=seed)
    rng = np.random.default_rng(seed)
    lon, lat = np.meshgrid(ds.longitude.values, ds.latitude.values)
    hours = np.arange(n_times)[:, None, None]
    walk = np.cumsum(rng.normal(0, 8.0, n_times))[:, None, None]
    space = 60.0 * np.sin((lon - lon.mean()) * 40.0) * np.cos((lat - lat.mean()) * 35.0)
    direction = np.radians(270.0 + space + 360.0 * hours / 96.0 + walk)
    speed = 6.0 + 3.0 * np.sin(hours / 7.0) * np.cos(lat * 50.0) + rng.normal(0, 0.3, space.shape)
    speed = np.clip(speed, 2.0, None)
    ds["u10"].values[:] = (-speed * np.sin(direction)).astype(np.float32)
    ds["v10"].values[:] = (-speed * np.cos(direction)).astype(np.float32)
    return ds


def build_table(model: Path, dem, angles=tuple(range(360))):
    """The feature engine's table (acceleration, alpha, vertical) as a Dataset; seconds."""
    import xarray as xr

    from devine_onnx.engines.features import FeatureNetworkEngine

    engine = FeatureNetworkEngine(model, device="cpu")
    notes: list[str] = []
    dem = engine.prepare_dem(dem, notes)
    window = engine.coverage(dem)
    engine.bind(dem, window)
    t0 = time.perf_counter()
    parts = {name: [] for name in engine.variables}
    for _, values in engine.batches(np.asarray(angles), 8):
        for name, arr in values.items():
            parts[name].append(arr)
    seconds = time.perf_counter() - t0
    inner = dem.isel(y=window.rows, x=window.cols)
    ds = xr.Dataset(
        {k: (("angle", "y", "x"), np.concatenate(v)) for k, v in parts.items()},
        coords={"angle": np.asarray(angles, dtype=np.float64), "y": inner.y, "x": inner.x},
        attrs=engine.attrs(),
    ).rio.write_crs(dem.rio.crs)
    return ds, seconds


def _stats(a: np.ndarray) -> str:
    a = a[np.isfinite(a)]
    return f"{np.median(a):.3g} | {np.percentile(a, 95):.3g} | {a.max():.3g}"


# --------------------------------------------------------------------------- compare
def compare(size: int = 201, n_steps: int = 72) -> None:
    import devine_onnx as dv
    from devine_onnx.sample_data import sample_dem

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        model = synthetic_model(Path(tmp))
        dem = sample_dem((size + 4, size + 4), 30.0)
        nwp = varying_nwp(n_steps)
        table, t_table = build_table(model, dem)
        print(f"table: 360 directions on {size}x{size} in {t_table:.1f} s")
        t0 = time.perf_counter()
        ref = dv.downscale(
            nwp, model=model, per_step=True, dem=dem, device="cpu", cache_dir=tmp, quiet=True
        )
        t_step = time.perf_counter() - t0
        print(f"per-step: {n_steps} steps in {t_step:.1f} s")
        print()
        print(
            "| lookup | speed diff median (m/s) | p95 | max | relative speed diff p95 | "
            "direction diff median (deg) | p95 | max | w diff median (m/s) | p95 | max |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for method in ("nearest", "linear"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tab = dv.downscale(
                    nwp, table, cache_dir=tmp, quiet=True, angular_interpolation=method
                )
            s_ref = ref["wind_speed"].values
            ds_ = np.abs(tab["wind_speed"].values - s_ref)
            rel = ds_ / np.maximum(s_ref, 0.5)
            dd = tab["wind_from_direction"].values - ref["wind_from_direction"].values
            dd = np.abs((dd + 180.0) % 360.0 - 180.0)
            dw = np.abs(tab["upward_air_velocity"].values - ref["upward_air_velocity"].values)
            print(
                f"| {method} | {_stats(ds_)} | {np.nanpercentile(rel, 95):.3g} | {_stats(dd)} | "
                f"{_stats(dw)} |"
            )
        print(
            f"\ninterpolated NWP direction across the domain: circular std per step, median "
            f"{np.median(_direction_spread(nwp, dem)):.1f} deg; per-step mean speed "
            f"{np.nanmean(ref['wind_speed'].values):.2f} m/s, mean |w| "
            f"{np.nanmean(np.abs(ref['upward_air_velocity'].values)):.3f} m/s"
        )


def _direction_spread(nwp, dem) -> np.ndarray:
    """Circular standard deviation (degrees) of the interpolated NWP direction, per step."""
    from devine_onnx.regrid.weights import RegridWeights

    w8 = RegridWeights.from_grids(
        nwp.longitude.values, nwp.latitude.values, "EPSG:4326",
        dem.x.values[2:-2], dem.y.values[2:-2], dem.rio.crs,
    )  # fmt: skip
    u = w8.apply(nwp.u10.values).astype(np.float64)
    v = w8.apply(nwp.v10.values).astype(np.float64)
    rad = np.arctan2(u, v)
    r = np.hypot(np.cos(rad).mean(axis=(1, 2)), np.sin(rad).mean(axis=(1, 2)))
    return np.degrees(np.sqrt(-2.0 * np.log(np.clip(r, 1e-12, 1.0))))


# --------------------------------------------------------------------------- timing
def timing(size: int = 201, month: int = 720) -> None:
    import devine_onnx as dv
    from devine_onnx.sample_data import sample_dem

    print(f"machine: {machine()}")
    year = 8760
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = synthetic_model(tmp)
        dem = sample_dem((size + 4, size + 4), 30.0)
        table, t_table = build_table(model, dem)
        table_path = tmp / "table.nc"
        table.to_netcdf(table_path)
        rows = [("table: 360 network passes (once per domain)", t_table, "measured")]
        for n, label in ((month, "month"), (year, "year")):
            nwp_path = tmp / f"nwp_{n}.nc"
            varying_nwp(n).to_netcdf(nwp_path)
            out = tmp / f"tab_{n}.nc"
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dv.downscale(nwp_path, table_path, output=out, cache_dir=tmp, quiet=True)
            rows.append((f"table mode, {label} ({n} steps)", time.perf_counter() - t0, "measured"))
            out.unlink()
        nwp_path = tmp / f"nwp_{month}.nc"
        out = tmp / "step.nc"
        t0 = time.perf_counter()
        dv.downscale(
            nwp_path, model=model, per_step=True, dem=dem, device="cpu", output=out,
            cache_dir=tmp, quiet=True,
        )  # fmt: skip
        t_month = time.perf_counter() - t0
        rows.append((f"per-step mode, month ({month} steps)", t_month, "measured"))
        rows.append(
            (
                f"per-step mode, year ({year} steps)",
                t_month * year / month,
                "extrapolated x 8760/720",
            )
        )
    print(f"\ndomain {size}x{size} (30 m), hourly steps, NetCDF output, CPU\n")
    print("| run | wall time (s) | |")
    print("|---|---|---|")
    for label, seconds, how in rows:
        print(f"| {label} | {seconds:.1f} | {how} |")


# --------------------------------------------------------------------------- tiling
def tiling(size: int = 1000, tile: int = 512, halo: int = 128) -> None:
    from devine_onnx.engines.features import FeatureNetwork, alpha_from_uv
    from devine_onnx.engines.terrain_features import direction_features, normalise, terrain_geometry
    from devine_onnx.sample_data import sample_dem

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        net = FeatureNetwork(synthetic_model(Path(tmp)), device="cpu")
        dem = sample_dem((size + 4, size + 4), 30.0)
        geom = terrain_geometry(dem.values.astype(np.float64), 30.0)
        theta = 280.0
        defl, ydsc = direction_features(geom, theta)
        x = normalise(defl[None], geom.reldem, ydsc[None], net.mean, net.std)
        t0 = time.perf_counter()
        whole = net.predict(x, max_pixels=None)[0]
        t_whole = time.perf_counter() - t0
        t0 = time.perf_counter()
        tiled = net.predict_tiled(x, tile, halo)[0]
        t_tiled = time.perf_counter() - t0
    d = np.abs(tiled - whole)
    acc_w = np.hypot(whole[0], whole[1]) / 3
    acc_t = np.hypot(tiled[0], tiled[1]) / 3
    da = np.abs(alpha_from_uv(tiled[0], tiled[1], theta) - alpha_from_uv(whole[0], whole[1], theta))
    da = np.minimum(da, 2 * np.pi - da)
    print(
        f"\n{size}x{size}, tiles of {tile} + {halo} halo: whole {t_whole:.1f} s, tiled {t_tiled:.1f} s"
    )
    print("| quantity | median | p95 | max | typical value (median abs) |")
    print("|---|---|---|---|---|")
    for name, diff, ref in (
        ("u (m/s)", d[0], whole[0]),
        ("v (m/s)", d[1], whole[1]),
        ("w (m/s)", d[2], whole[2]),
        ("acceleration", np.abs(acc_t - acc_w), acc_w),
        ("alpha (deg)", np.degrees(da), np.degrees(alpha_from_uv(whole[0], whole[1], theta))),
    ):
        print(
            f"| {name} | {np.median(diff):.3g} | {np.percentile(diff, 95):.3g} | {diff.max():.3g} "
            f"| {np.median(np.abs(ref)):.3g} |"
        )


# --------------------------------------------------------------------------- memory
def _peak_gib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def _child_memory(model: str, size: int) -> None:
    from devine_onnx.engines.features import FeatureNetworkEngine
    from devine_onnx.sample_data import sample_dem

    engine = FeatureNetworkEngine(model, device="cpu")
    dem = sample_dem((size + 4, size + 4), 30.0)
    engine.bind(dem, engine.coverage(dem))
    base = _peak_gib()
    t0 = time.perf_counter()
    list(engine.batches(np.array([270]), 1))
    seconds = time.perf_counter() - t0
    print(_RESULT + json.dumps({"size": size, "peak_gib": _peak_gib(), "before_gib": base,
                                "seconds": seconds, "tiled": engine.tiled}))  # fmt: skip


def memory(sizes=(1000, 2000)) -> None:
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        model = synthetic_model(Path(tmp))
        print("| domain | one direction (s) | peak RSS (GiB) | tiled |")
        print("|---|---|---|---|")
        for size in sizes:
            proc = subprocess.run(
                [sys.executable, "-m", "tests.benchmarks.bench_features", "_child_memory",
                 str(model), str(size)],
                cwd=ROOT, capture_output=True, text=True, check=True,
            )  # fmt: skip
            line = next(x for x in proc.stdout.splitlines() if x.startswith(_RESULT))
            r = json.loads(line[len(_RESULT) :])
            print(f"| {size}x{size} | {r['seconds']:.1f} | {r['peak_gib']:.2f} | {r['tiled']} |")


# --------------------------------------------------------------------------- peer
def _child_cli(args: list[str]) -> None:
    """Run the devine-onnx CLI in this process; print its peak RSS (GiB) as a RESULT line."""
    from devine_onnx.cli import main as cli_main

    code = 0
    try:
        cli_main(args)
    except SystemExit as exc:  # typer exits with the command's status
        code = exc.code or 0
    print(_RESULT + json.dumps({"peak_gib": _peak_gib(), "code": code}))
    sys.stdout.flush()
    os._exit(int(code))


def _run_cli(args: list[str], threads: int) -> tuple[float, float]:
    """Wall time (s, interpreter start included) and peak RSS (GiB) of one CLI command."""
    env = dict(os.environ, **_thread_env(threads))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_features", "_child_cli", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, env=env,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    lines = [x for x in proc.stdout.splitlines() if x.startswith(_RESULT)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"devine-onnx {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")
    return seconds, json.loads(lines[-1][len(_RESULT) :])["peak_gib"]


def _thread_env(threads: int) -> dict:
    n = str(int(threads))
    return {
        "DEVINE_ONNX_THREADS": n,
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
    }


def _grid_winds(nwp, dem):
    """NWP u, v interpolated to the DEM interior and turned into grid components (the per-step
    command's own input to the features), float32 (t, ny, nx); and the meridian convergence."""
    try:
        from devine_onnx.regrid.weights import RegridWeights
    except ImportError:  # older layout
        from devine_onnx.downscaling.regrid import RegridWeights
    from devine_onnx.wind import earth_to_grid, meridian_convergence

    x = dem.x.values[2:-2]
    y = dem.y.values[2:-2]
    w8 = RegridWeights.from_grids(
        nwp.longitude.values, nwp.latitude.values, "EPSG:4326", x, y, dem.rio.crs
    )
    u = w8.apply(nwp.u10.values.astype(np.float32))
    v = w8.apply(nwp.v10.values.astype(np.float32))
    gamma = meridian_convergence(x[None, :], y[:, None], dem.rio.crs).astype(np.float32)
    ug, vg = earth_to_grid(u, v, gamma)
    return np.asarray(ug, np.float32), np.asarray(vg, np.float32), gamma


def _peer_loop(folder: Path, geom, ug, vg, threads: int):
    """devine-torch's work per step: numpy features of the step's direction field (float64, as
    its pre-processing computes them), one PyTorch pass, u, v, w times S / 3. Returns the
    (t, 3, ny, nx) winds and the wall time of the loop (the first pass is a warm-up, untimed)."""
    import importlib

    torch = importlib.import_module("torch")  # the peer's own runtime (benchmark only)

    from devine_onnx.engines.terrain_features import direction_features, normalise
    from devine_onnx.wind import uv_to_speed_dir
    from tests.feature_models import norm_of, torch_net

    torch.set_num_threads(int(threads))
    net = torch_net(folder)
    mean, std = norm_of(folder)

    def step(k):
        speed, theta = uv_to_speed_dir(ug[k].astype(np.float64), vg[k].astype(np.float64))
        theta = np.where(np.isfinite(theta), theta, 270.0)
        defl, ydsc = direction_features(geom, theta[None])
        x = normalise(defl, geom.reldem, ydsc, mean, std)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = net(torch.from_numpy(x)).numpy()[0]
        return out * (speed / 3.0)[None].astype(np.float32)

    step(0)
    out = np.empty((ug.shape[0], 3) + geom.shape, dtype=np.float32)
    t0 = time.perf_counter()
    for k in range(ug.shape[0]):
        out[k] = step(k)
    return out, time.perf_counter() - t0


def _bare_passes(model: Path, geom, n: int, threads: int) -> float:
    """Wall time of ``n`` passes of the ONNX network alone (intra-op threads = ``threads``) on
    one real input, a warm-up pass first: the faster of ONNX Runtime's default session options
    and intra-op spinning off (what devine-onnx uses), so that the reference is the network at
    its best on this machine."""
    import onnxruntime as ort

    from devine_onnx.engines.features import FeatureNetwork
    from devine_onnx.engines.runtime import NO_SPINNING
    from devine_onnx.engines.terrain_features import NetworkInput

    net = FeatureNetwork(model, device="cpu", threads=1)
    x = NetworkInput(geom, net.mean, net.std).from_angles([280.0])
    best = float("inf")
    for config in ({}, NO_SPINNING):
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        for key, value in config.items():
            options.add_session_config_entry(key, value)
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        session.run(None, {name: x})
        t0 = time.perf_counter()
        for _ in range(int(n)):
            session.run(None, {name: x})
        best = min(best, time.perf_counter() - t0)
        del session
    return best


def peer(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="bench_features peer")
    parser.add_argument("--size", default="320x360", help="interior rows x columns")
    parser.add_argument("--cell", type=float, default=50.0, help="DEM cell, metres")
    parser.add_argument(
        "--steps", default="24,96", help="hourly steps, comma-separated ('none': tables only)"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads of each side")
    parser.add_argument("--directions", default="12,36", help="table directions, comma-separated")
    a = parser.parse_args(argv)
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise SystemExit(
            "the peer benchmark runs devine-torch's network in PyTorch: pip install torch "
            "(the CPU-only build is enough, see docs/devine_torch.md)"
        )
    for key, value in _thread_env(a.threads).items():
        os.environ.setdefault(key, value)
    _compile_package()
    from devine_onnx.engines.terrain_features import terrain_geometry
    from devine_onnx.sample_data import sample_dem

    ny, nx = (int(v) for v in a.size.lower().split("x"))
    steps = [] if a.steps.lower() == "none" else sorted({int(v) for v in a.steps.split(",")})
    print(f"machine: {machine()}; {a.threads} threads each side")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = synthetic_model(tmp)
        folder = tmp / "bench-devine-torch"
        dem = sample_dem((ny + 4, nx + 4), a.cell)
        dem_path = tmp / "dem.tif"
        dem.rio.to_raster(dem_path)
        geom = terrain_geometry(dem.values.astype(np.float64), a.cell)
        nwp_all = varying_nwp(max(steps, default=1))
        floor = _library_floor()
        if not steps:
            one = {}
            startup = float("nan")
        else:
            one, startup = _peer_steps(a, tmp, model, folder, dem, dem_path, geom, nwp_all, steps)
        tables = {}
        for k in sorted({int(v) for v in a.directions.split(",")}):
            angles = ",".join(str(int(v)) for v in np.linspace(0, 360, k, endpoint=False))
            # the faster of two runs below 100 directions (the bare passes are the faster of
            # two session options): a short command is at the mercy of one hiccup
            runs = [
                _run_cli(
                    [
                        "corrections",
                        dem_path,
                        "-m",
                        model,
                        "-o",
                        tmp / f"table_{k}_{r}.nc",
                        "--angles",
                        angles,
                        "--device",
                        "cpu",
                        "-q",
                    ],
                    a.threads,
                )  # fmt: skip
                for r in range(2 if k < 100 else 1)
            ]
            t_tab, peak_tab = min(runs)
            tables[k] = (t_tab, peak_tab, _bare_passes(model, geom, k, a.threads))
    if steps:
        _print_steps(a, ny, nx, steps, one, startup)
    print(f"\nlibrary floor (a fresh Python importing what every command needs): {floor:.2f} s\n")
    print(
        "| `devine-onnx corrections` | whole command | bare passes | ratio | "
        "floor: (bare + library floor) / bare | peak |"
    )
    print("|---|---|---|---|---|---|")
    for k, (t_tab, peak_tab, t_bare_tab) in tables.items():
        print(
            f"| {k} directions | {t_tab:.1f} s | {t_bare_tab:.1f} s | "
            f"{t_tab / t_bare_tab:.2f}x | {(t_bare_tab + floor) / t_bare_tab:.2f}x | "
            f"{peak_tab:.2f} GB |"
        )


def _compile_package() -> None:
    """Compile devine-onnx's bytecode, as ``pip install`` does, when this Python does not write
    it (``PYTHONDONTWRITEBYTECODE``): each command would otherwise compile every module it
    imports again (0.1-0.3 s) and time what no installed copy does."""
    if not sys.flags.dont_write_bytecode:
        return
    import compileall

    import devine_onnx

    compileall.compile_dir(Path(devine_onnx.__file__).parent, quiet=1)


_FLOOR_IMPORTS = (
    "import numpy, xarray, dask.array, rioxarray, onnxruntime, netCDF4, h5py, pyproj, typer"
)


def _library_floor(repeat: int = 3) -> float:
    """Smallest wall time (s) of a fresh Python that imports the libraries every command of
    devine-onnx needs, and exits."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", _FLOOR_IMPORTS], check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - t0)
    return best


def _peer_steps(a, tmp, model, folder, dem, dem_path, geom, nwp_all, steps):
    """The per-step half of ``peer``: ``({n: (t_peer, t_cmd, peak, t_bare, diff)}, start-up)``."""
    from devine_onnx.wind import grid_to_earth

    cache = tmp / "cache"
    # build the regridding weights once (cached like a user's second run)
    nwp_all.isel(time=slice(0, 2)).to_netcdf(tmp / "nwp_warm.nc")
    _run_cli(
        ["downscale", tmp / "nwp_warm.nc", "--per-step", "-m", model, "--dem", dem_path,
         "-o", tmp / "warm.nc", "--cache-dir", cache, "--device", "cpu", "-q"],
        a.threads,
    )  # fmt: skip
    one = {}
    for n in [1, *steps]:
        nwp_all.isel(time=slice(0, n)).to_netcdf(tmp / f"nwp_{n}.nc")
    t_cmd1 = min(
        _run_cli(
            ["downscale", tmp / "nwp_1.nc", "--per-step", "-m", model, "--dem", dem_path,
             "-o", tmp / f"one_{k}.nc", "--cache-dir", cache, "--device", "cpu", "-q"],
            a.threads,
        )[0]
        for k in range(2)
    )  # fmt: skip
    t_bare1 = _bare_passes(model, geom, 1, a.threads)
    startup = max(t_cmd1 - t_bare1, 0.0)
    for n in steps:
        ug, vg, gamma = _grid_winds(nwp_all.isel(time=slice(0, n)), dem)
        # Each side twice, alternating, the faster run kept: on a shared 2-core machine one
        # run of either side can be 20-30 % slower for reasons of its own.
        t_peer = t_cmd = t_bare = float("inf")
        for r in range(2):
            ref, t = _peer_loop(folder, geom, ug, vg, a.threads)
            t_peer = min(t_peer, t)
            out = tmp / f"step_{n}_{r}.nc"
            t, peak = _run_cli(
                ["downscale", tmp / f"nwp_{n}.nc", "--per-step", "-m", model, "--dem",
                 dem_path, "-o", out, "--cache-dir", cache, "--device", "cpu", "-q"],
                a.threads,
            )  # fmt: skip
            t_cmd = min(t_cmd, t)
            t_bare = min(t_bare, _bare_passes(model, geom, n, a.threads))
        import xarray as xr

        with xr.open_dataset(out) as ds:
            got_u = ds["eastward_wind"].values
            got_v = ds["northward_wind"].values
            got_w = ds["upward_air_velocity"].values
        ref_u, ref_v = grid_to_earth(ref[:, 0], ref[:, 1], gamma)
        diff = max(
            float(np.nanmax(np.abs(got_u - ref_u))),
            float(np.nanmax(np.abs(got_v - ref_v))),
            float(np.nanmax(np.abs(got_w - ref[:, 2]))),
        )
        one[n] = (t_peer, t_cmd, peak, t_bare, diff)
    return one, startup


def _print_steps(a, ny, nx, steps, one, startup) -> None:
    rows: list[tuple[str, ...]] = []
    head = " | ".join(f"{n} hourly steps" for n in steps)
    print(f"\n| same DEM ({ny}x{nx} at {a.cell:g} m), {a.threads} threads each | {head} |")
    print("|---|" + "---|" * len(steps))
    rows.append(
        ("devine-torch's work per step: numpy features + PyTorch network (lower bound)",)
        + tuple(f"{one[n][0]:.1f} s" for n in steps)
    )
    rows.append(
        ("`devine-onnx downscale --per-step` (whole command)",)
        + tuple(
            f"{one[n][1]:.1f} s ({one[n][0] / one[n][1]:.2f}x the speed), {one[n][2]:.2f} GB peak"
            for n in steps
        )
    )
    rows.append(
        ("bare ONNX network passes",)
        + tuple(f"{one[n][3]:.1f} s ({one[n][3] / n:.3f} s per pass)" for n in steps)
    )
    rows.append(
        (f"whole command / (bare passes + start-up {startup:.1f} s)",)
        + tuple(f"{one[n][1] / (one[n][3] + startup):.2f}" for n in steps)
    )
    rows.append(
        ("max abs. difference of u, v, w (m/s), ours vs PyTorch",)
        + tuple(f"{one[n][4]:.1e}" for n in steps)
    )
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nstart-up (1-step command minus one bare pass): {startup:.1f} s")


# --------------------------------------------------------------------------- shutdown
_SHUTDOWN_CHILD = """
import atexit, gc, sys, time
if sys.argv[1] == "off":
    gc.freeze = lambda: None
atexit.register(lambda: print("ATEXIT", time.time(), file=sys.stderr))
from devine_onnx.cli import main
main(sys.argv[2:])
"""


def shutdown(pairs: int = 5) -> None:
    import statistics

    from devine_onnx.sample_data import sample_dem

    _compile_package()
    env = dict(os.environ, **_thread_env(2))
    print(f"machine: {machine()}")
    times: dict[str, list[tuple[float, float]]] = {"with gc.freeze": [], "without": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = synthetic_model(tmp)
        sample_dem((324, 364), 50.0).rio.to_raster(tmp / "dem.tif")
        angles = ",".join(str(a) for a in range(0, 360, 30))
        for _ in range(int(pairs)):
            for label, mode in (("with gc.freeze", "on"), ("without", "off")):
                args = ["corrections", str(tmp / "dem.tif"), "-m", str(model), "-o",
                        str(tmp / "t.nc"), "--angles", angles, "--device", "cpu", "-q",
                        "--overwrite"]  # fmt: skip
                t0 = time.time()
                proc = subprocess.run(
                    [sys.executable, "-c", _SHUTDOWN_CHILD, mode, *args],
                    cwd=ROOT, capture_output=True, text=True, env=env, check=True,
                )  # fmt: skip
                t1 = time.time()
                last = [x for x in proc.stderr.splitlines() if x.startswith("ATEXIT")][-1]
                times[label].append((t1 - t0, t1 - float(last.split()[1])))
    print("\n| 12-direction corrections | whole command (median) | after the last atexit |")
    print("|---|---|---|")
    for label, v in times.items():
        whole = statistics.median(a for a, _ in v)
        after = statistics.median(b for _, b in v)
        print(f"| {label} | {whole:.2f} s | {after:.3f} s |")


# --------------------------------------------------------------------------- stages
def _timed(fn, repeat: int = 3) -> tuple[float, float]:
    """Smallest wall and CPU seconds of ``repeat`` calls (after one warm-up call)."""
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def stages(size: str = "320x360", batches: str = "1,2,4,8,24") -> None:
    import onnxruntime as ort

    from devine_onnx.engines.features import FeatureNetwork
    from devine_onnx.engines.terrain_features import (
        NetworkInput,
        direction_features,
        normalise,
        terrain_geometry,
    )
    from devine_onnx.sample_data import sample_dem

    ny, nx = (int(v) for v in size.lower().split("x"))
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        model = synthetic_model(Path(tmp))
        net = FeatureNetwork(model, device="cpu")
        dem = sample_dem((ny + 4, nx + 4), 50.0)
        geom = terrain_geometry(dem.values.astype(np.float64), 50.0)
        fast = NetworkInput(geom, net.mean, net.std)
        angles = np.arange(0.0, 360.0, 30.0)
        rows = []

        def reference():
            d, y = direction_features(geom, angles.reshape(-1, 1, 1))
            return normalise(d, geom.reldem, y, net.mean, net.std)

        w, c = _timed(reference)
        rows.append(("features, transcription (float64)", w / 12, c / 12, "per direction"))
        w, c = _timed(lambda: fast.from_angles(angles))
        rows.append(("features, NetworkInput.from_angles", w / 12, c / 12, "per direction"))
        rng = np.random.default_rng(0)
        u = rng.normal(0, 5, (12,) + geom.shape).astype(np.float32)
        v = rng.normal(0, 5, (12,) + geom.shape).astype(np.float32)
        w, c = _timed(lambda: fast.from_components(u, v))
        rows.append(("features, NetworkInput.from_components", w / 12, c / 12, "per step"))
        x1 = fast.from_angles([280.0])
        for b in (int(v) for v in batches.split(",")):
            xb = np.repeat(x1, b, axis=0)
            w, c = _timed(lambda xb=xb: net.run(xb), repeat=2)
            rows.append((f"network, {b} image(s) per pass", w / b, c / b, "per image"))

        def session(**config):
            options = ort.SessionOptions()
            options.graph_optimization_level = config.pop(
                "level", ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            )
            for key, value in config.items():
                if "." in key:
                    options.add_session_config_entry(key, value)
                else:
                    setattr(options, key, value)
            return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

        variants = {
            "ORT_ENABLE_ALL (used)": session(),
            "ORT_ENABLE_EXTENDED": session(level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
            "memory arena off": session(enable_cpu_mem_arena=False),
            "intra-op spinning off": session(**{"session.intra_op.allow_spinning": "0"}),
        }
        ref = None
        for label, sess in variants.items():
            name = sess.get_inputs()[0].name
            out = sess.run(None, {name: x1})[0]
            ref = out if ref is None else ref
            w, c = _timed(lambda sess=sess, name=name: sess.run(None, {name: x1}))
            diff = float(np.abs(out - ref).max())
            rows.append((f"session: {label}", w, c, f"per pass, max abs. diff {diff:.1e}"))
    print(f"\n{ny}x{nx} interior, synthetic devine-torch model, CPU\n")
    print("| stage | wall (ms) | CPU (ms, all threads) | |")
    print("|---|---|---|---|")
    for label, w, c, what in rows:
        print(f"| {label} | {1e3 * w:.1f} | {1e3 * c:.1f} | {what} |")


def main(argv: list[str]) -> None:
    if not argv:
        print(__doc__)
        return
    cmd, args = argv[0], argv[1:]
    if cmd == "compare":
        compare(*(int(a) for a in args))
    elif cmd == "timing":
        timing(*(int(a) for a in args))
    elif cmd == "tiling":
        tiling(*(int(a) for a in args))
    elif cmd == "memory":
        memory(tuple(int(a) for a in args) or (1000, 2000))
    elif cmd == "_child_memory":
        _child_memory(args[0], int(args[1]))
    elif cmd == "peer":
        peer(args)
    elif cmd == "shutdown":
        shutdown(*(int(a) for a in args))
    elif cmd == "stages":
        stages(*args)
    elif cmd == "_child_cli":
        _child_cli(args)
    else:
        raise SystemExit(f"unknown mode {cmd!r}; see the module docstring")


if __name__ == "__main__":
    main(sys.argv[1:])
