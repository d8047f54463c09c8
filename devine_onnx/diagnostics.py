"""Environment report for ``devine-onnx info``: versions, devices and the default model.

Nothing heavy is imported: TensorFlow is only looked up (``importlib.util.find_spec`` and the
installed distribution's version), never imported.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from importlib import metadata

from ._version import __version__

#: Modules the ``convert`` extra provides (``pip install "devine-onnx[convert]"``).
CONVERT_MODULES = ("tensorflow", "tf2onnx", "onnx", "h5py")


def _dist_version(*names: str) -> str | None:
    """Version of the first installed distribution among ``names`` (None if none is)."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def info() -> dict:
    """Describe the installation: versions, ONNX Runtime providers, GPU, default model.

    Returns
    -------
    dict
        Keys: ``devine_onnx`` (version), ``python``, ``platform``, ``onnxruntime`` (version),
        ``onnxruntime_package`` (``"onnxruntime-gpu"`` or ``"onnxruntime"``), ``providers``
        (execution providers the package offers), ``usable_providers`` (those that can run
        here: without a usable GPU, not CUDA/TensorRT), ``nvidia_gpu`` (an NVIDIA device is seen by
        the driver), ``cuda_usable`` (ONNX Runtime can run on it), ``default_model`` (value of
        ``$DEVINE_ONNX_MODEL`` or None), ``default_model_exists``, ``demo_model`` (path of the
        shipped demonstration model or None), ``tensorflow`` (installed version or None),
        ``convert_extra`` (all modules of the ``convert`` extra are installed) and
        ``convert_missing`` (those that are not), ``engines`` (name, title, citation,
        ``needs_model`` and ``direction_independent`` of each table engine),
        ``onnxruntime_packages`` (``{name: version}`` of every installed ONNX Runtime package)
        and ``onnxruntime_conflict`` (what to do when there are several, else None).
    """
    from .engines.runtime import (
        MODEL_ENV,
        cuda_usable,
        demo_model_path,
        nvidia_device_present,
        onnxruntime_conflict,
        onnxruntime_distributions,
    )

    ort_packages = onnxruntime_distributions()

    try:
        import onnxruntime as ort

        ort_version = ort.__version__
        providers = list(ort.get_available_providers())
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        ort_version, providers = None, []
    try:
        usable = cuda_usable() if ort_version else False
    except Exception:  # noqa: BLE001 - an info command must not fail on a driver quirk
        usable = False
    try:
        demo = str(demo_model_path())
    except Exception:  # noqa: BLE001 - missing demo model is reported as None
        demo = None
    default_model = os.environ.get(MODEL_ENV) or None
    missing = [m for m in CONVERT_MODULES if not _installed(m)]
    tf_version = _dist_version("tensorflow", "tensorflow-cpu") if _installed("tensorflow") else None
    return {
        "devine_onnx": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "onnxruntime": ort_version,
        "onnxruntime_package": (
            " + ".join(ort_packages)
            or ("onnxruntime-gpu" if _dist_version("onnxruntime-gpu") else "onnxruntime")
        ),
        "onnxruntime_packages": ort_packages,
        "onnxruntime_conflict": onnxruntime_conflict() if len(ort_packages) > 1 else None,
        "providers": providers,
        # What can really run here: the GPU build lists CUDA/TensorRT even without a GPU.
        "usable_providers": [
            p
            for p in providers
            if usable or p not in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        ],
        "nvidia_gpu": nvidia_device_present(),
        "cuda_usable": bool(usable),
        "model_env": MODEL_ENV,
        "default_model": default_model,
        "default_model_exists": bool(default_model) and os.path.isfile(default_model),
        "demo_model": demo,
        "tensorflow": tf_version,
        "convert_extra": not missing,
        "convert_missing": missing,
        "engines": _engines(),
    }


def _engines() -> list[dict]:
    """Name, method, citation and whether a model file is needed, for each table engine."""
    from importlib import import_module

    from .engines import ENGINES

    rows = []
    for name, (module, cls, needs_model) in ENGINES.items():
        try:
            engine = getattr(import_module(module), cls)
            title, citation = engine.title, engine.citation
            fixed = bool(getattr(engine, "direction_independent", False))
        except Exception as exc:  # noqa: BLE001 - an info command must not fail
            title, citation = f"unavailable ({type(exc).__name__})", ""
            fixed = False
        rows.append(
            {
                "name": name,
                "title": title,
                "citation": citation,
                "needs_model": needs_model,
                "direction_independent": fixed,
            }
        )
    return rows


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def format_info(data: dict | None = None) -> str:
    """Human-readable text of :func:`info` (one ``key: value`` line per item)."""
    d = info() if data is None else data
    if d["default_model"]:
        model = d["default_model"] + ("" if d["default_model_exists"] else " (file not found!)")
    else:
        model = f"not set (set {d['model_env']} or pass -m/--model)"
    if d["tensorflow"]:
        tf = f"{d['tensorflow']} (convert extra {'complete' if d['convert_extra'] else 'incomplete'})"
    else:
        tf = 'not installed (needed only by "devine-onnx convert")'
    if d["convert_missing"] and d["tensorflow"]:
        tf += f"; missing: {', '.join(d['convert_missing'])}"
    rows = [
        ("devine-onnx", d["devine_onnx"]),
        ("Python", f"{d['python']} ({d['platform']})"),
        ("ONNX Runtime", f"{d['onnxruntime']} ({d['onnxruntime_package']})"),
        ("usable providers", ", ".join(d["usable_providers"]) or "none"),
        ("NVIDIA GPU seen", _yes(d["nvidia_gpu"])),
        ("CUDA usable", _yes(d["cuda_usable"])),
        (f"default model (${d['model_env']})", model),
        ("demo model", d["demo_model"] or "missing"),
        ("TensorFlow", tf),
    ]
    for e in d.get("engines", []):
        need = "needs a converted model (-m)" if e["needs_model"] else "built in, no model"
        if e.get("direction_independent"):
            need += "; the same speed ratio for every direction, alpha = 0"
        rows.append((f"engine {e['name']}", f"{e['title']}; {need}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k + ':':<{width + 1}} {v}" for k, v in rows]
    if d.get("onnxruntime_conflict"):
        lines.append(f"warning: {d['onnxruntime_conflict']}")
    if not d["cuda_usable"] and "CUDAExecutionProvider" in d["providers"]:
        lines.append(
            "note: onnxruntime-gpu is installed and offers CUDA, but it is not usable here (no "
            "NVIDIA GPU, or CUDA 13 / cuDNN 9 missing): networks run on CPU, and each run says "
            "so in one note that -q silences"
        )
    if d["default_model"] is None:
        lines.append(
            "note: convert the official weights with 'devine-onnx convert' (see the models "
            "README) and set the variable above"
        )
    return "\n".join(lines)
