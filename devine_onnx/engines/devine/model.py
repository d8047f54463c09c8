"""The converted DEVINE UNet, ready to run (:class:`DevineModel`).

Loads a model written by ``devine-onnx convert`` (or ``python -m convert``), checks that it is
a DEVINE rotation model, runs it on the execution provider chosen by
:mod:`devine_onnx.engines.runtime`, pads inputs to the multiple the UNet needs and crops
outputs back, and tiles large inputs with halos so that memory stays bounded while the result
equals the untiled one (docs/method.md §2).
"""

from __future__ import annotations

import os
from functools import cached_property

import numpy as np

from devine_onnx.engines.runtime import (
    CUDA,
    DEFAULT_TILE,
    HALO,
    KIND_KEY,
    _session,
    check_signature,
    file_sha256,
    model_kind,
    resolve_model_path,
)
from devine_onnx.errors import ModelError

__all__ = ["DevineModel"]


class DevineModel:
    """A converted DEVINE UNet ready to run.

    Parameters
    ----------
    path
        ONNX file written by ``devine-onnx convert``; default ``$DEVINE_ONNX_MODEL``.
    device
        ``"auto"`` (CUDA when usable, else CPU; a :class:`~devine_onnx.engines.runtime.DeviceFallbackWarning` when CUDA
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
        if not (np.isfinite(self.sigma) and self.sigma > 0) or self.multiple <= 0:
            # sigma divides the DEM (docs/method.md §3.2): NaN or 0 gives a table of NaN.
            raise ModelError(
                f"{self.path}: DEVINE metadata devine.sigma={meta['devine.sigma']} and "
                f"devine.multiple={meta['devine.multiple']}, expected a finite sigma > 0 (m) "
                "and a positive multiple; convert the weights again with 'devine-onnx convert'"
            )
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
