"""Write a devine-torch model folder with seeded synthetic weights (tests and demonstrations).

The folder has devine-torch's layout and key names (``model.pt``, ``norm.json``,
``info.yaml``) but its weights are NOT trained: nothing computed with them is physical.
``info.yaml`` says so (``status: synthetic``, ``synthetic: true``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .torch_layout import CHANNELS, TENSORS

#: Normalisation of the synthetic folders (plausible magnitudes of deflLis, reldem, ydsc).
SYNTHETIC_MEAN = (0.0, 0.0, -0.03)
SYNTHETIC_STD = (0.1, 120.0, 0.27)


def synthetic_state_dict(seed: int = 0, gain=(0.5, 0.5, 0.1), bias=(2.2, 1.6, 0.0)) -> dict:
    """``{key: float32 numpy array}`` for the 36 tensors: He-normal kernels, small biases.

    The output layer's kernel rows (u, v, w) are scaled by ``gain`` and its bias set to
    ``bias`` (m/s), so that |(u, v)| is of the order of the 3 m/s inflow and w smaller, with a
    terrain-dependent part. A network cannot know the inflow direction from these weights:
    the turn of the flow (alpha) is arbitrary.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for t in TENSORS:
        if t.key.endswith(".weight"):
            fan_in = int(np.prod(t.shape[1:]))
            w = rng.normal(0.0, np.sqrt(2.0 / fan_in), t.shape)
            if t.key.startswith("out_layer"):
                w *= np.asarray(gain, dtype=np.float64).reshape(-1, 1, 1, 1)
            out[t.key] = w.astype(np.float32)
        else:
            b = rng.normal(0.0, 0.05, t.shape)
            if t.key.startswith("out_layer"):
                b = np.asarray(bias, dtype=np.float64)
            out[t.key] = b.astype(np.float32)
    return out


def write_torch_folder(
    folder: str | Path,
    seed: int = 0,
    *,
    state: dict | None = None,
    mean=SYNTHETIC_MEAN,
    std=SYNTHETIC_STD,
    lightning: bool = False,
    prefix: str = "",
    model_id: str | None = None,
    activation: str = "ReLU",
    info_extra: dict | None = None,
    norm: bool = True,
    info: bool = True,
) -> Path:
    """Write a devine-torch model folder; return it.

    Parameters
    ----------
    state
        ``{key: array}`` to save instead of :func:`synthetic_state_dict` (``seed``); keys and
        shapes are written as given (tests use this for malformed folders).
    lightning
        Save a Lightning-style checkpoint ``{"state_dict": ..., "epoch": 0, ...}`` instead of
        a plain state dict.
    prefix
        Prefix of every key (e.g. ``"model."`` as in a wrapped Lightning module).
    norm, info
        Write ``norm.json`` / ``info.yaml`` (False: leave them out, for tests).
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = synthetic_state_dict(seed) if state is None else state
    sd = {prefix + k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    payload = (
        {"state_dict": sd, "epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.5.0"}
        if lightning
        else sd
    )
    torch.save(payload, folder / "model.pt")
    if norm:
        (folder / "norm.json").write_text(
            json.dumps({"mean": list(mean), "std": list(std)}, indent=2) + "\n"
        )
    if info:
        name = model_id or folder.name
        lines = [
            f"id: {name}",
            'description: "Synthetic devine-torch model (seed '
            f'{seed}): untrained weights.\n              Not physical; for tests only.\\n"',
            "",
            f"channels: {len(CHANNELS)}",
            f"activation: {activation}",
            "loss: MSELoss",
            "",
            "checkpoint: model.pt",
            "normalisation: norm.json",
            "",
            "status: synthetic",
            "synthetic: true",
        ]
        for key, value in (info_extra or {}).items():
            lines.append(f"{key}: {value}")
        (folder / "info.yaml").write_text("\n".join(lines) + "\n")
    return folder
