"""GPU check (issue 11 items 4-5): table time on CPU and CUDA, fp32 and fp16.

Run from the repository root (``scripts/gpu_check.sh`` runs it after installing)::

    python -m tests.benchmarks.bench_gpu [--size 1601] [--directions 36] [--batch 1,4]
                                         [--out DIR] [--cpu-only] [--budget 360]

For each device (CUDA when usable, then CPU) and precision (fp32: the shipped demonstration
model, whose synthetic weights have the real DEVINE architecture and cost; fp16: a copy
converted with onnxconverter-common's ``float16`` when it is installed, else skipped with a
message), it opens the model once, warms it up on one direction, then times
``compute_corrections`` of a SIZE x SIZE sample DEM for DIRECTIONS directions (in memory,
``batch`` directions per call) and, separately, one UNet pass on an input of the table's
size (the rest of a direction's time is the rotation, sliding mean and back-rotation on the
CPU). From the measured cost per table pixel and direction it extrapolates a 360-direction
table of the DEM and of the French Alps at 30 m (10,000 x 8,000 pixels) on one and on eight
devices.

Writes ``gpu_check.json`` and ``gpu_check.md`` into ``--out`` (default: ``$OUT`` when set,
else ``gpu-check/``). Without a usable CUDA device the CUDA rows are skipped with a reason
and the CPU rows are still measured (``--cpu-only`` skips CUDA on purpose). Runs after
``--budget`` seconds are skipped (with a reason) so that the check ends in time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
#: The French Alps at 30 m (issue 11 item 5).
ALPS_PIXELS = 10_000 * 8_000
ALPS_DIRECTIONS = 360


def _nvidia_smi() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fp16_copy(src: Path, dst: Path) -> str | None:
    """An fp16 copy of a devine-onnx model (inputs/outputs stay float32); None, or the reason
    it cannot be made."""
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError as exc:
        return f"fp16 skipped: {exc.name} is not installed (pip install onnxconverter-common)"
    proto = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weights below fp16's range are flushed on purpose
        model16 = float16.convert_float_to_float16(proto, keep_io_types=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    meta["devine.precision"] = "float16"
    del model16.metadata_props[:]
    for key, value in meta.items():
        entry = model16.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model16, str(dst))
    return None


def _time_table(model, dem, angles, batch: int) -> tuple[float, tuple[int, int], str]:
    from devine_onnx.tables.build import compute_corrections

    t0 = time.perf_counter()
    table = compute_corrections(dem, model, angles=angles, batch=batch, quiet=True)
    seconds = time.perf_counter() - t0
    shape = (table.sizes["y"], table.sizes["x"])
    method = str(table.attrs.get("method", table.attrs.get("table_method", "")))
    del table
    return seconds, shape, method


def _time_unet(model, side: int, repeat: int = 3) -> float:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (1, side, side)).astype(np.float32)
    model.predict(x)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        model.predict(x)
        best = min(best, time.perf_counter() - t0)
    return best


def run(args) -> dict:
    import onnxruntime as ort

    from devine_onnx.engines.devine.model import DevineModel
    from devine_onnx.engines.runtime import cuda_usable, demo_model_path
    from devine_onnx.sample_data import sample_dem

    t_start = time.perf_counter()
    usable = cuda_usable()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "gpu": _nvidia_smi(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "cuda_usable": usable,
        "dem": [args.size, args.size],
        "directions": args.directions,
        "runs": [],
        "skipped": [],
    }
    devices = []
    if args.cpu_only:
        result["skipped"].append("cuda: --cpu-only")
    elif not usable:
        result["skipped"].append(
            "cuda: not usable here (onnxruntime-gpu with CUDA 13 / cuDNN 9 and an NVIDIA driver "
            "are needed; 'devine-onnx info' explains)"
        )
    else:
        devices.append("cuda")
    devices.append("cpu")
    folder = Path(tempfile.mkdtemp(prefix="devine-gpu-check-"))
    models = {"fp32": demo_model_path()}
    reason = fp16_copy(models["fp32"], folder / "demo-fp16.onnx")
    if reason is None:
        models["fp16"] = folder / "demo-fp16.onnx"
    else:
        result["skipped"].append(reason)
    dem = sample_dem((args.size, args.size))
    step = 360 // args.directions
    angles = list(range(0, step * args.directions, step))
    batches = [int(b) for b in str(args.batch).split(",")]
    try:
        for device in devices:
            for precision, path in models.items():
                for batch in batches if device == "cuda" else [1]:
                    label = f"{device} {precision} batch {batch}"
                    if time.perf_counter() - t_start > args.budget:
                        result["skipped"].append(f"{label}: over the {args.budget:.0f} s budget")
                        continue
                    print(f"timing {label} ...", file=sys.stderr, flush=True)
                    try:
                        model = DevineModel(path, device=device)
                        _time_table(model, dem, [angles[0]], batch)  # warm-up: session, cuDNN
                        seconds, shape, method = _time_table(model, dem, angles, batch)
                        unet = _time_unet(model, shape[0])
                    except Exception as exc:  # noqa: BLE001 - report and go on
                        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                        result["skipped"].append(f"{label}: {type(exc).__name__}: {text[:200]}")
                        continue
                    pixels = shape[0] * shape[1]
                    per = seconds / args.directions
                    cost = seconds / (args.directions * pixels)
                    result["runs"].append(
                        {
                            "device": device,
                            "precision": precision,
                            "batch": batch,
                            "table": list(shape),
                            "method": method,
                            "seconds": round(seconds, 3),
                            "per_direction_s": round(per, 4),
                            "unet_s": round(unet, 4),
                            "rest_s": round(per - unet, 4),
                            "us_per_pixel_direction": round(cost * 1e6, 5),
                            "us_per_unet_pixel": round(unet / pixels * 1e6, 5),
                            "table_360_s": round(per * 360, 1),
                            "alps_1_device_h": round(
                                cost * ALPS_PIXELS * ALPS_DIRECTIONS / 3600, 2
                            ),
                            "alps_8_devices_h": round(
                                cost * ALPS_PIXELS * ALPS_DIRECTIONS / 3600 / 8, 2
                            ),
                        }
                    )
                    print(f"  {json.dumps(result['runs'][-1])}", file=sys.stderr, flush=True)
                    del model
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    return result


def markdown(result: dict) -> str:
    lines = [
        f"# GPU check ({result['date']})",
        "",
        f"- machine: {result['machine']}",
        f"- GPU: {result['gpu'] or 'none seen by nvidia-smi'}",
        f"- onnxruntime {result['onnxruntime']}, providers {', '.join(result['providers'])}; "
        f"CUDA usable: {result['cuda_usable']}",
        f"- {result['dem'][0]}x{result['dem'][1]} sample DEM, {result['directions']} directions, "
        "demonstration model (synthetic weights, DEVINE's architecture and cost); whole "
        f"check {result['wall_s']} s",
        "",
        "| device | precision | batch | table (px) | seconds | s per direction | UNet alone (s) | "
        "rest: rotation, sliding mean, back-rotation (s) | µs per table pixel and direction | "
        "UNet µs per input pixel | 360 directions (s) | Alps 10,000x8,000 x 360: 1 device (h) | "
        "8 devices (h) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['device']} | {r['precision']} | {r['batch']} | {r['table'][0]}x{r['table'][1]} "
            f"| {r['seconds']:.2f} | {r['per_direction_s']:.3f} | {r['unet_s']:.3f} | "
            f"{r['rest_s']:.3f} | {r['us_per_pixel_direction']:.4f} | "
            f"{r['us_per_unet_pixel']:.4f} | {r['table_360_s']:.0f} | "
            f"{r['alps_1_device_h']:.2f} | {r['alps_8_devices_h']:.2f} |"
        )
    lines += [
        "",
        "Alps extrapolation: T = 360 directions x 8.0e7 table pixels x (µs per table pixel and "
        "direction, measured above on the whole table of this DEM with the default method), "
        "divided by the number of devices (directions or tiles split evenly; I/O and the "
        "scheduler not counted). docs/benchmarks.md gives the formula per UNet input pixel.",
    ]
    if result["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- {s}" for s in result["skipped"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1601, help="DEM side in pixels")
    parser.add_argument("--directions", type=int, default=36, help="directions timed")
    parser.add_argument("--batch", default="1,4", help="directions per call on CUDA, e.g. 1,4")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu-check")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA")
    parser.add_argument("--budget", type=float, default=360.0, help="seconds for all runs")
    args = parser.parse_args(argv)
    if not 1 <= args.directions <= 360:
        parser.error("--directions: expected 1 to 360")
    result = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (out / "gpu_check.md").write_text(text)
    print(text)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}", file=sys.stderr)
    return 0 if result["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
