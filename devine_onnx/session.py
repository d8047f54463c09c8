"""ONNX Runtime session wrapper for the converted DEVINE UNet.

Loads a model written by ``devine-onnx convert`` (or ``python -m convert``), checks that it is
a DEVINE model, picks the execution provider (CUDA when usable, CPU otherwise), pads inputs to
the multiple the UNet needs and crops outputs back, and tiles large inputs with halos so that
memory stays bounded while the result equals the untiled one (docs/method.md §2).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import sys
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import DeviceError, ModelError, first_line

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
        candidate = Path(__file__).resolve().parent.parent / "models" / "devine-demo-synthetic.onnx"
    if not candidate.is_file():
        raise ModelError(
            f"{candidate}: the demonstration model is missing from this installation; "
            "pass --model MODEL.onnx or reinstall devine-onnx"
        )
    return candidate


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


def _session(path: Path, device: str, threads: int | None):
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"--device {device!r}: expected auto, cpu or cuda")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no per-session warnings on stderr
    if threads:
        options.intra_op_num_threads = int(threads)
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
    path: str | os.PathLike | None, device: str = "auto", threads: int | None = None
):
    """``(path, session, metadata)`` of a model written by ``devine-onnx convert``.

    The same provider choice and checks as :class:`DevineModel` (CUDA when usable, one
    note otherwise); raises :class:`ModelError` for a missing or
    unreadable file and for an ONNX file without devine-onnx metadata.
    """
    path = resolve_model_path(path)
    if not path.is_file():
        raise ModelError(
            f"{path}: model file not found; pass the .onnx written by 'devine-onnx convert' "
            "(see models/README.md)"
        )
    session = _session(path, device, threads)
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


class DevineModel:
    """A converted DEVINE UNet ready to run.

    Parameters
    ----------
    path
        ONNX file written by ``devine-onnx convert``; default ``$DEVINE_ONNX_MODEL``.
    device
        ``"auto"`` (CUDA when usable, else CPU; a :class:`DeviceFallbackWarning` when CUDA
        should work but does not start, one logged note per process when
        onnxruntime-gpu is installed), ``"cpu"`` or ``"cuda"`` (error when unusable).
    tile
        Core size in pixels of the tiles used for inputs larger than ``tile + 2·HALO``; each
        tile is run with a 64 px halo so the result equals untiled inference. ``None``
        disables tiling.
    threads
        ONNX Runtime intra-op threads (default: all cores).

    Examples
    --------
    >>> model = DevineModel("models/devine.onnx")          # doctest: +SKIP
    >>> uvw = model.predict(normalised_dem)                # (H, W) -> (H, W, 3) in m/s
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        device: str = "auto",
        tile: int | None = DEFAULT_TILE,
        threads: int | None = None,
    ):
        self.path = resolve_model_path(path)
        if not self.path.is_file():
            raise ModelError(
                f"{self.path}: model file not found; pass the .onnx written by "
                "'devine-onnx convert' (see models/README.md)"
            )
        self._session = _session(self.path, device, threads)
        meta = self._session.get_modelmeta().custom_metadata_map
        if model_kind(meta) != "rotation":
            raise ModelError(
                f"{self.path}: a {model_kind(meta)} model (devine-torch feature network, "
                f"{KIND_KEY}={model_kind(meta)}), not the DEVINE rotation model needed here; "
                "give the model converted from the official DEVINE weights, or use this one "
                "for a feature-network table or 'devine-onnx downscale --per-step'"
            )
        self._check_signature()
        if meta.get("devine.format", "").split("/")[0] != "devine-onnx":
            raise ModelError(
                f"{self.path}: an ONNX model but not a DEVINE one (no devine.* metadata); "
                "convert the official weights with 'devine-onnx convert'"
            )
        try:
            self.sigma = float(meta["devine.sigma"])
            self.multiple = int(meta["devine.multiple"])
        except (KeyError, ValueError):
            raise ModelError(
                f"{self.path}: DEVINE metadata devine.sigma / devine.multiple missing or "
                "malformed; convert the weights again with 'devine-onnx convert'"
            ) from None
        self.metadata = dict(meta)
        if tile is not None and (tile <= 0 or tile % self.multiple):
            raise ModelError(f"tile={tile}: expected a positive multiple of {self.multiple}")
        self.tile = tile
        self.device = "cuda" if CUDA in self._session.get_providers() else "cpu"

    def _check_signature(self) -> None:
        self._input = check_signature(
            self._session,
            self.path,
            channel_axis=3,
            channels=(1, 3),
            what="(N, H, W, 1) and one output (N, H, W, 3)",
            hint="an ONNX model but not a DEVINE one; convert the official weights with "
            "'devine-onnx convert'",
        )

    @property
    def synthetic(self) -> bool:
        """True for models built from synthetic (untrained) weights, e.g. the demo model."""
        return self.metadata.get("devine.synthetic_weights", "false") == "true"

    @cached_property
    def sha256(self) -> str:
        """SHA-256 of the ONNX file (provenance attribute of the outputs)."""
        return file_sha256(self.path)

    @property
    def providers(self) -> list[str]:
        return self._session.get_providers()

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: x})[0]

    def _run_padded(self, x: np.ndarray) -> np.ndarray:
        """Run (N, H, W) with zero padding at the bottom/right to the multiple; crop back."""
        n, h, w = x.shape
        m = self.multiple
        hp, wp = -(-h // m) * m, -(-w // m) * m
        if (hp, wp) != (h, w):
            padded = np.zeros((n, hp, wp), dtype=np.float32)
            padded[:, :h, :w] = x
        else:
            padded = np.ascontiguousarray(x, dtype=np.float32)
        return self._run(padded[..., None])[:, :h, :w, :]

    def predict(self, x: np.ndarray, tile: int | None | str = "default") -> np.ndarray:
        """Run the UNet on normalised DEM crops.

        Parameters
        ----------
        x
            ``(H, W)`` or ``(N, H, W)`` float32: DEM minus its sliding mean, divided by σ
            (docs/method.md §3.2). Any H, W ≥ 1: padded with zeros to the multiple of 8.
        tile
            Override the tile size given at construction (``None``: no tiling).

        Returns
        -------
        numpy.ndarray
            ``(H, W, 3)`` or ``(N, H, W, 3)`` float32: (u, v, w) in m/s in the rotated frame
            (u along the inflow, v across it, to the left).
        """
        x = np.asarray(x, dtype=np.float32)
        single = x.ndim == 2
        if single:
            x = x[None]
        if x.ndim != 3:
            raise ValueError(f"expected (H, W) or (N, H, W), got shape {x.shape}")
        tile = self.tile if tile == "default" else tile
        h, w = x.shape[1:]
        if tile is None or (h <= tile + 2 * HALO and w <= tile + 2 * HALO):
            out = self._run_padded(x)
        else:
            out = self._predict_tiled(x, tile)
        return out[0] if single else out

    def _predict_tiled(self, x: np.ndarray, tile: int) -> np.ndarray:
        n, h, w = x.shape
        m = self.multiple
        hp, wp = -(-h // m) * m, -(-w // m) * m
        padded = np.zeros((n, hp, wp), dtype=np.float32)
        padded[:, :h, :w] = x
        out = np.empty((n, h, w, 3), dtype=np.float32)
        for r0 in range(0, h, tile):
            for c0 in range(0, w, tile):
                # Window origins are multiples of 8 (r0, c0 and HALO are), so max-pool cells
                # align with the full image; the halo covers the receptive field.
                wr0, wc0 = max(r0 - HALO, 0), max(c0 - HALO, 0)
                wr1, wc1 = min(r0 + tile + HALO, hp), min(c0 + tile + HALO, wp)
                res = self._run(np.ascontiguousarray(padded[:, wr0:wr1, wc0:wc1])[..., None])
                r1, c1 = min(r0 + tile, h), min(c0 + tile, w)
                out[:, r0:r1, c0:c1] = res[:, r0 - wr0 : r1 - wr0, c0 - wc0 : c1 - wc0]
        return out

    def __repr__(self) -> str:
        return f"DevineModel({str(self.path)!r}, device={self.device!r}, sigma={self.sigma})"
