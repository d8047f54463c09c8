"""Read a devine-torch model folder: ``model.pt``, ``norm.json`` and ``info.yaml``.

Layout (docs/devine_torch.md)::

    <name>/model.pt     state dict (torch.save(model.state_dict())) or a Lightning checkpoint
                        whose "state_dict" holds the same keys, possibly prefixed ("model.")
    <name>/norm.json    {"mean": [3 floats], "std": [3 floats]}  (deflLis, reldem, ydsc)
    <name>/info.yaml    id, description, channels: 3, activation: ReLU, checkpoint: model.pt,
                        normalisation: norm.json, status

:func:`is_torch_folder` needs no PyTorch; :func:`read_torch_folder` loads the weights with
PyTorch and checks every key and shape against :mod:`.torch_layout`. Every refusal is a
one-line :class:`~devine_onnx_convert.readers.ConversionError` naming the file and the first
offending key or field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .readers import ConversionError, sha256_of
from .torch_layout import ACTIVATIONS, CHANNELS, KEYS, TENSORS

#: Files that make a folder a devine-torch model folder.
MARKERS = ("info.yaml", "norm.json", "model.pt")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def is_torch_folder(src) -> bool:
    """True when ``src`` looks like a devine-torch model (folder with info.yaml, norm.json or
    model.pt, or a ``.pt``/``.pth``/``.ckpt`` file). Imports nothing heavy."""
    if src is None:
        return False
    p = Path(src)
    if p.is_dir():
        return any((p / m).is_file() for m in MARKERS) or any(
            q.suffix in CHECKPOINT_SUFFIXES for q in p.iterdir() if q.is_file()
        )
    return p.suffix.lower() in CHECKPOINT_SUFFIXES


@dataclass
class TorchFolder:
    """What a devine-torch model folder holds, validated."""

    folder: Path
    checkpoint: Path
    state_dict: dict  # {key: float32 torch.Tensor}, in TENSORS order
    mean: list[float]
    std: list[float]
    info: dict = field(default_factory=dict)
    activation: str = "ReLU"
    sha256: str = ""
    norm_sha256: str = ""
    key_prefix: str = ""
    lightning: bool = False

    @property
    def model_id(self) -> str:
        return str(self.info.get("id") or self.folder.name)

    @property
    def description(self) -> str:
        return " ".join(str(self.info.get("description", "")).split())

    @property
    def training_resolution(self) -> float | None:
        """Training cell size in metres when info.yaml states one (``resolution``/``cellsize``)."""
        for key in ("resolution", "cellsize", "cell_size", "dx"):
            if key in self.info:
                try:
                    value = float(str(self.info[key]).lower().removesuffix("m").strip())
                except ValueError:
                    continue
                if math.isfinite(value) and value > 0:
                    return value
        return None

    @property
    def synthetic(self) -> bool:
        flag = str(self.info.get("synthetic", "false")).strip().lower()
        return flag in ("true", "yes", "1") or str(self.info.get("status", "")) == "synthetic"


def _parse_yaml(text: str, path: Path) -> dict:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml comes with the torch extra
        return _parse_flat_yaml(text, path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:160]
        raise ConversionError(f"{path}: not valid YAML ({first}); fix the file") from None
    if not isinstance(data, dict):
        raise ConversionError(
            f"{path}: expected a mapping (id:, description:, channels:, activation:...), "
            f"found {type(data).__name__}"
        )
    return data


def _parse_flat_yaml(text: str, path: Path) -> dict:
    """``key: value`` lines (quoted values may span lines); enough for devine-torch's files."""
    data: dict = {}
    key = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace() and ":" in line:
            key, value = line.split(":", 1)
            key = key.strip()
            data[key] = value.strip()
        elif key is not None:
            data[key] += " " + line.strip()
    for k, v in data.items():
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
            v = v[1:-1].replace("\\n", " ")
        data[k] = v
    return data


def read_info(folder: Path) -> dict:
    """``info.yaml`` as a dict, with channels and activation checked."""
    path = folder / "info.yaml"
    if not path.is_file():
        raise ConversionError(
            f"{path}: info.yaml not found; a devine-torch model folder holds model.pt, "
            "norm.json and info.yaml (id, description, channels: 3, activation: ReLU, "
            "checkpoint: model.pt, normalisation: norm.json)"
        )
    info = _parse_yaml(path.read_text(encoding="utf-8"), path)
    if "channels" in info:
        try:
            channels = int(info["channels"])
        except (TypeError, ValueError):
            channels = None
        if channels != len(CHANNELS):
            raise ConversionError(
                f"{path}: channels: {info['channels']!r}, expected {len(CHANNELS)} "
                f"({', '.join(CHANNELS)}); only 3-feature devine-torch models are supported"
            )
    act = str(info.get("activation", "ReLU")).strip()
    if act.startswith("nn."):
        act = act[3:]
    if act not in ACTIVATIONS:
        raise ConversionError(
            f"{path}: activation: {act!r} is not supported; expected one of "
            f"{', '.join(ACTIVATIONS)}"
        )
    info["activation"] = act
    return info


def read_norm(path: Path) -> tuple[list[float], list[float]]:
    """``mean`` and ``std`` of ``norm.json`` (3 finite floats each, std > 0)."""
    if not path.is_file():
        raise ConversionError(
            f"{path}: normalisation file not found; a devine-torch model folder needs "
            f'{path.name} with {{"mean": [3 floats], "std": [3 floats]}} '
            f"(channel order {', '.join(CHANNELS)})"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc}); fix the file") from None
    out = []
    for name in ("mean", "std"):
        values = data.get(name) if isinstance(data, dict) else None
        if not isinstance(values, list) or len(values) != len(CHANNELS):
            found = "missing" if values is None else f"{values!r}"[:60]
            raise ConversionError(
                f"{path}: {name!r} must be a list of {len(CHANNELS)} numbers "
                f"({', '.join(CHANNELS)}), found {found}"
            )
        try:
            floats = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ConversionError(f"{path}: {name!r} holds non-numbers: {values!r}") from None
        if not all(math.isfinite(v) for v in floats) or (
            name == "std" and not all(v > 0 for v in floats)
        ):
            raise ConversionError(
                f"{path}: {name!r} = {floats}: expected finite values"
                + (" > 0" if name == "std" else "")
            )
        out.append(floats)
    return out[0], out[1]


def _load_checkpoint(path: Path, trusted: bool):
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        first = " ".join(str(exc).split("\n")[0].split())[:140]
        if not trusted:
            raise ConversionError(
                f"{path}: holds Python objects besides tensors ({first}); if you trust the "
                "file, convert with --trusted-checkpoint (loads it with pickle), or save "
                "its state_dict alone"
            ) from None
        raise ConversionError(f"{path}: cannot be read by PyTorch ({first})") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        first = " ".join(str(exc).split("\n")[0].split())[:160] or type(exc).__name__
        raise ConversionError(
            f"{path}: cannot be read by PyTorch ({first}); expected a state dict saved with "
            "torch.save(model.state_dict()) or a Lightning checkpoint"
        ) from None


def _strip_prefix(keys: list[str]) -> str:
    """The prefix (e.g. ``"model."``) in front of the expected keys, or ``""``."""
    if KEYS[0] in keys:
        return ""
    for k in keys:
        if k.endswith(KEYS[0]):
            return k[: -len(KEYS[0])]
    return ""


def check_state_dict(raw, source: Path) -> tuple[dict, str, bool]:
    """Validate a loaded checkpoint; return (state dict in TENSORS order, prefix, lightning)."""
    import torch

    lightning = False
    if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
        raw, lightning = raw["state_dict"], True
    if not isinstance(raw, dict) or not raw:
        raise ConversionError(
            f"{source}: not a state dict (found {type(raw).__name__}); expected the tensors "
            "saved by torch.save(model.state_dict()) or a Lightning checkpoint"
        )
    keys = [str(k) for k in raw]
    prefix = _strip_prefix(keys)
    found = {k[len(prefix) :]: raw[k] for k in raw if str(k).startswith(prefix)}
    for k in keys:
        if not k.startswith(prefix) or k[len(prefix) :] not in KEYS:
            raise ConversionError(
                f"{source}: unexpected tensor {k!r}; this is not devine-torch's WindUNet "
                f"(expected keys such as {KEYS[0]!r})"
            )
    out = {}
    for t in TENSORS:
        if t.key not in found:
            raise ConversionError(
                f"{source}: tensor {prefix + t.key!r} is missing (expected shape {t.shape}); "
                "this is not devine-torch's WindUNet or the file is incomplete"
            )
        value = found[t.key]
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{source}: {prefix + t.key!r} is not a tensor")
        if tuple(value.shape) != t.shape:
            hint = ""
            if t.key == KEYS[0] and len(value.shape) == 4 and value.shape[1] != t.shape[1]:
                hint = f" ({value.shape[1]} input channels instead of {len(CHANNELS)})"
            raise ConversionError(
                f"{source}: tensor {prefix + t.key!r}: expected shape {t.shape}, found "
                f"{tuple(value.shape)}{hint}; this is not devine-torch's 3-feature WindUNet"
            )
        if not torch.is_floating_point(value) or not bool(torch.isfinite(value).all()):
            raise ConversionError(
                f"{source}: tensor {prefix + t.key!r} is not finite floating point"
            )
        out[t.key] = value.detach().to(torch.float32)
    return out, prefix, lightning


def _inside(folder: Path, value, default: str, key: str) -> Path:
    """The file ``info.yaml`` names under ``key``, refused unless it lies inside ``folder``.

    A model folder is self-contained: an absolute path, ``..`` or a symbolic link leading out
    of it would make the converter read (and, for a checkpoint, unpickle with
    ``--trusted-checkpoint``) a file the folder's author chose anywhere on the machine.
    """
    name = str(value) if value not in (None, "") else default
    path = folder / name
    root = folder.resolve()
    target = path.resolve()
    if Path(name).is_absolute() or not target.is_relative_to(root):
        raise ConversionError(
            f"{folder / 'info.yaml'}: {key}: {name} lies outside the model folder {folder} "
            f"(resolves to {target}); copy the file into the folder and name it relative to "
            f"it (e.g. {key}: {default})"
        )
    return path


def read_torch_folder(src, trusted: bool = False) -> TorchFolder:
    """Read and validate a devine-torch model folder (or its checkpoint file)."""
    src = Path(src)
    if not src.exists():
        raise ConversionError(
            f"{src}: no such file or folder; pass a devine-torch model folder "
            "(model.pt, norm.json, info.yaml)"
        )
    folder = src if src.is_dir() else src.parent
    info = read_info(folder)
    if src.is_dir():
        checkpoint = _inside(folder, info.get("checkpoint"), "model.pt", "checkpoint")
    else:
        checkpoint = src
    if not checkpoint.is_file():
        raise ConversionError(
            f"{checkpoint}: checkpoint not found (info.yaml checkpoint: "
            f"{info.get('checkpoint', 'model.pt')}); copy model.pt into the folder"
        )
    norm_path = _inside(folder, info.get("normalisation"), "norm.json", "normalisation")
    mean, std = read_norm(norm_path)
    state, prefix, lightning = check_state_dict(_load_checkpoint(checkpoint, trusted), checkpoint)
    return TorchFolder(
        folder=folder,
        checkpoint=checkpoint,
        state_dict=state,
        mean=mean,
        std=std,
        info=info,
        activation=info["activation"],
        sha256=sha256_of(checkpoint),
        norm_sha256=sha256_of(norm_path),
        key_prefix=prefix,
        lightning=lightning,
    )
