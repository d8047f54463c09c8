"""Helpers shared by the on-demand benchmarks (not collected by pytest)."""

from __future__ import annotations

import os
import platform
import time


def machine() -> str:
    """One line describing this machine (CPU model, cores, memory, Python, ORT)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        import psutil

        mem = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        pass
    import onnxruntime as ort

    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}"
    )


def best_of(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn`` (seconds), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
