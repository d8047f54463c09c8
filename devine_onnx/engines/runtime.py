"""ONNX Runtime plumbing shared by the model-based engines.

Finds the model file (``-m``, ``$DEVINE_ONNX_MODEL`` or the shipped demonstration model),
opens an ONNX Runtime session on the execution provider asked for (CUDA when usable, CPU
otherwise; the NVIDIA driver is probed first), checks a model's devine-onnx metadata and
input/output signature, and hashes model files for provenance. The halo constants used to
tile large inputs exactly (docs/method.md §2) live here too; the DEVINE UNet wrapper that
uses them is :class:`devine_onnx.engines.devine.model.DevineModel`.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import re
import sys
import warnings
from importlib import metadata
from pathlib import Path

from devine_onnx.errors import DeviceError, DevineWarning, ModelError, first_line

#: Environment variable naming the default model file.
MODEL_ENV = "DEVINE_ONNX_MODEL"
#: Halo added around each tile, in pixels: larger than the UNet's receptive field (≤ 58 px)
#: and a multiple of 8, so that tiled inference is exact (docs/method.md §2).
HALO = 64
#: Default core size of a tile (pixels per side) above which inputs are tiled.
DEFAULT_TILE = 1024

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class DeviceFallbackWarning(UserWarning):
    """CUDA was asked for implicitly (``device="auto"``) but is not usable: running on CPU."""


def resolve_model_path(model: str | os.PathLike | None) -> Path:
    """Path of the model: ``model`` (``"demo"``: the shipped demonstration model), else
    ``$DEVINE_ONNX_MODEL``; error if neither is set."""
    if isinstance(model, str) and model == "demo":
        return demo_model_path()
    if model is None:
        model = os.environ.get(MODEL_ENV)
        if not model:
            raise ModelError(
                f"no model given: pass -m/--model MODEL.onnx or set {MODEL_ENV}; convert the "
                "official weights with 'devine-onnx convert' (see models/README.md)"
            )
    return Path(model)


def demo_model_path() -> Path:
    """The demonstration model (synthetic weights) shipped with the package."""
    from importlib.resources import files

    try:
        candidate = Path(str(files("devine_onnx.models") / "devine-demo-synthetic.onnx"))
    except ModuleNotFoundError:
        candidate = Path(__file__).resolve().parents[2] / "models" / "devine-demo-synthetic.onnx"
    if not candidate.is_file():
        raise ModelError(
            f"{candidate}: the demonstration model is missing from this installation; "
            "pass --model MODEL.onnx or reinstall devine-onnx"
        )
    return candidate


class OnnxRuntimeConflictWarning(DevineWarning):
    """Two ONNX Runtime packages (e.g. ``onnxruntime`` and ``onnxruntime-gpu``) are installed."""


def onnxruntime_distributions() -> dict[str, str]:
    """Installed distributions that provide the ``onnxruntime`` module: ``{name: version}``.

    ``onnxruntime``, ``onnxruntime-gpu`` and the other builds (DirectML, OpenVINO...) all
    install the same ``onnxruntime`` folder; a package whose name starts like them but that
    installs another module (``onnxruntime-extensions``) is not counted. Names are normalised
    (lower case, ``-`` separators). Only the distributions' metadata is read (fast).
    """
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        # The name of a dist-info folder is known without parsing its METADATA: skip the
        # other packages cheaply (reading every METADATA costs ~0.05 s at each start-up).
        folder_name = getattr(dist, "_normalized_name", None)
        if isinstance(folder_name, str) and not folder_name.startswith(("onnxruntime", "ort")):
            continue
        name = re.sub(r"[-_.]+", "-", str(dist.metadata["Name"] or "")).lower()
        if not name.startswith(("onnxruntime", "ort-")):
            continue
        top = (dist.read_text("top_level.txt") or "").split()
        if not top:  # wheels without top_level.txt: the first folder of each installed file
            top = {f.parts[0] for f in (dist.files or ()) if f.parts}
        if "onnxruntime" in top:
            found.setdefault(name, str(dist.version))
    return dict(sorted(found.items()))


def onnxruntime_conflict() -> str | None:
    """What to tell when several ONNX Runtime packages are installed at once, else None.

    They overwrite each other's files in the one ``onnxruntime`` folder, so the module that
    imports is a mix of both; the only repair is to uninstall all of them and install one.
    """
    found = onnxruntime_distributions()
    if len(found) < 2:
        return None
    names = list(found)
    listed = " and ".join(f"{n} {v}" for n, v in found.items())
    keep = "onnxruntime-gpu" if "onnxruntime-gpu" in found else names[0]
    return (
        f"{listed} are installed together: they overwrite each other's files in the same "
        f"onnxruntime folder, so ONNX Runtime may fail or run without the GPU; repair with "
        f"'pip uninstall -y {' '.join(names)}' then install one of them again: "
        f"'pip install {keep}' (onnxruntime-gpu also runs on CPU; plain onnxruntime for "
        "CPU-only machines)"
    )


_CONFLICT_WARNED = False


def warn_onnxruntime_conflict() -> str | None:
    """Warn (:class:`OnnxRuntimeConflictWarning`, once per process) about two ONNX Runtime
    packages; return the message (or None) so that a later error can repeat the repair."""
    global _CONFLICT_WARNED
    message = onnxruntime_conflict()
    if message and not _CONFLICT_WARNED:
        _CONFLICT_WARNED = True
        warnings.warn(message, OnnxRuntimeConflictWarning, stacklevel=3)
    return message


def nvidia_device_present() -> bool:
    """True when the NVIDIA driver reports at least one CUDA device.

    ONNX Runtime's GPU build lists the CUDA provider even on machines without a GPU, then
    prints an error and silently falls back to CPU; probing the driver first avoids that.
    """
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return False
            count = ctypes.c_int(0)
            return lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
        except AttributeError:
            return False
    return False


def cuda_usable() -> bool:
    """ONNX Runtime offers the CUDA provider and an NVIDIA device is present."""
    import onnxruntime as ort

    return CUDA in ort.get_available_providers() and nvidia_device_present()


#: Session configuration entries that change how ONNX Runtime schedules a pass, never its
#: results: the intra-op threads sleep between passes instead of spinning (busy-waiting) for
#: the next one, so that the work around the network (features, interpolation, compression of
#: the output) gets the cores while a pass is not running. Outputs are bit-identical either way
#: (docs/benchmarks.md, "ONNX Runtime session options").
NO_SPINNING = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def _session(path: Path, device: str, threads: int | None, config: dict | None = None):
    """An ONNX Runtime session of ``path`` on ``device`` with ``threads`` intra-op threads
    (None: ONNX Runtime's default, all cores) and the session configuration entries
    ``config`` (``{key: value}`` strings, e.g. :data:`NO_SPINNING`; see ONNX Runtime's
    ``onnxruntime_session_options_config_keys.h``)."""
    conflict = warn_onnxruntime_conflict()  # before the first model run
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DeviceError(
            f"ONNX Runtime cannot be imported ({first_line(exc)}); "
            + (conflict or "reinstall it: pip install --force-reinstall onnxruntime-gpu")
        ) from None

    if device not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"--device {device!r}: expected auto, cpu or cuda")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no per-session warnings on stderr
    if threads:
        options.intra_op_num_threads = int(threads)
    for key, value in (config or {}).items():
        options.add_session_config_entry(str(key), str(value))
    want_cuda = device == "cuda" or (device == "auto" and cuda_usable())
    if device == "cuda" and not cuda_usable():
        raise DeviceError(
            "--device cuda: CUDA is not usable here (onnxruntime-gpu with CUDA 13 and cuDNN 9 "
            "and an NVIDIA GPU are needed); use --device cpu or auto"
        )
    providers: list = [CPU]
    if want_cuda:
        if hasattr(ort, "preload_dlls"):
            try:  # CUDA/cuDNN from the nvidia-* pip packages, when installed
                ort.preload_dlls()
            except Exception:  # noqa: BLE001 - system libraries may still be found
                pass
        # Fixed tile shapes plus the heuristic search avoid cuDNN's per-shape benchmark.
        providers = [(CUDA, {"cudnn_conv_algo_search": "HEURISTIC"}), CPU]
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for bad files
        msg = first_line(exc)
        if conflict:  # the file may be fine: the mixed ONNX Runtime installation is not
            raise DeviceError(f"{path}: ONNX Runtime failed ({msg[:160]}); {conflict}") from None
        raise ModelError(
            f"{path}: not a readable ONNX model ({msg[:160]}); convert the official weights "
            "with 'devine-onnx convert'"
        ) from None
    got = session.get_providers()
    if want_cuda and CUDA not in got:
        if device == "cuda":
            raise DeviceError(
                "--device cuda: ONNX Runtime could not start CUDA (check CUDA 13 / cuDNN 9 "
                "libraries); use --device cpu"
            )
        warnings.warn(
            "CUDA could not be started by ONNX Runtime; running on CPU",
            DeviceFallbackWarning,
            stacklevel=3,
        )
    elif device == "auto" and not want_cuda and CUDA in ort.get_available_providers():
        _note_cpu_once()
    return session


_CPU_NOTED = False


def _note_cpu_once() -> None:
    """A machine without a GPU is the ordinary case: a note (``-q`` silences it), once."""
    global _CPU_NOTED
    if not _CPU_NOTED:
        _CPU_NOTED = True
        logging.getLogger("devine_onnx").info(
            "no NVIDIA GPU here; the network runs on CPU ('devine-onnx info' explains)"
        )


def file_sha256(path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (the provenance of a model)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_signature(session, path, *, channel_axis: int, channels, what: str, hint: str) -> str:
    """Name of the single float input of a 4-D model with ``channels`` (in, out) on
    ``channel_axis``; :class:`ModelError` naming ``path`` otherwise."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    ok = (
        len(inputs) == 1
        and len(outputs) == 1
        and len(inputs[0].shape) == 4
        and inputs[0].shape[channel_axis] == channels[0]
        and len(outputs[0].shape) == 4
        and outputs[0].shape[channel_axis] == channels[1]
        and inputs[0].type == "tensor(float)"
    )
    if not ok:
        found = [(i.name, i.shape, i.type) for i in inputs]
        raise ModelError(f"{path}: expected one float input {what}, found inputs {found}; {hint}")
    return inputs[0].name


#: Metadata key telling which family a converted model belongs to.
KIND_KEY = "devine.kind"
#: ``rotation``: the original DEVINE UNet run on the rotated DEM (no key in older files);
#: ``features``: a devine-torch network on terrain features.
MODEL_KINDS = ("rotation", "features")


def model_kind(metadata: dict) -> str:
    """Family of a devine-onnx model from its metadata: ``"rotation"`` or ``"features"``."""
    return str(metadata.get(KIND_KEY, "rotation")) or "rotation"


def open_model_session(
    path: str | os.PathLike | None,
    device: str = "auto",
    threads: int | None = None,
    *,
    config: dict | None = None,
):
    """``(path, session, metadata)`` of a model written by ``devine-onnx convert``.

    ``config``: ONNX Runtime session configuration entries (see :func:`_session`).

    The same provider choice and checks as
    :class:`~devine_onnx.engines.devine.model.DevineModel` (CUDA when usable, one
    note otherwise); raises :class:`ModelError` for a missing or
    unreadable file and for an ONNX file without devine-onnx metadata.
    """
    path = resolve_model_path(path)
    if not path.is_file():
        raise ModelError(
            f"{path}: model file not found; pass the .onnx written by 'devine-onnx convert' "
            "(see models/README.md)"
        )
    session = _session(path, device, threads, config)
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if meta.get("devine.format", "").split("/")[0] != "devine-onnx":
        raise ModelError(
            f"{path}: an ONNX model but not a DEVINE one (no devine.* metadata); convert the "
            "weights with 'devine-onnx convert'"
        )
    if model_kind(meta) not in MODEL_KINDS:
        raise ModelError(
            f"{path}: unknown model kind {model_kind(meta)!r} (expected one of "
            f"{', '.join(MODEL_KINDS)}); update devine-onnx or convert the weights again"
        )
    return path, session, meta
