"""The ``features`` engine: devine-torch networks (DEVINE retrained on terrain features).

devine-torch (F. Hammer & N. Helbig) feeds DEVINE's UNet with three direction-dependent
terrain features (deflLis, reldem, ydsc; :mod:`.terrain_features`) on the geographic grid, no
rotation. A converted model (``devine-onnx convert MODEL_FOLDER``, metadata ``devine.kind =
features``) runs here with ONNX Runtime, in two ways:

- **table mode** (:class:`FeatureNetworkEngine`): for each inflow direction ``theta`` the
  features with that uniform direction, one network pass over the exact domain, then
  ``acceleration = |(u, v)| / 3``, ``alpha`` = the turn of ``(u, v)`` away from the inflow
  (radians, > 0 = to the left: downscaled FROM direction = ``theta - degrees(alpha)``) and
  ``vertical = w / 3``. The table covers the DEM minus its 2-cell frame.
- **per time step** (:class:`FeatureStepKernel`, driven by
  :mod:`devine_onnx.downscaling.per_step`): the features of the local direction field of each
  step, one pass per step (what devine-torch itself does), the number of steps per pass sized
  from a memory budget (:func:`images_per_pass`).

Around the network everything is meant to vanish: the direction-independent terrain terms are
computed once (:class:`~.terrain_features.NetworkInput`), and the passes run in a worker
thread while the next input is built and the previous output is used (:func:`pipeline`).
No file is read or written here: :mod:`devine_onnx.feature_maps` writes feature files.

The network's bilinear upsampling uses ``align_corners=True``: its sampling positions depend
on the size of the whole input, so the output at a pixel is not a function of its
neighbourhood alone. Padding the input changes every value and tiling is not exact: the
faithful way, used up to :data:`DEFAULT_MAX_PIXELS` pixels per pass, is one pass over the exact
domain. Larger domains are tiled with a halo (:data:`DEFAULT_HALO`), an approximation whose
measured error is given in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import xarray as xr

from devine_onnx.engines.runtime import (
    NO_SPINNING,
    check_signature,
    file_sha256,
    open_model_session,
)
from devine_onnx.errors import DEMError, ModelError, OptionError, number_option

from .base import TableEngine, TableWindow
from .terrain_features import (
    CHANNELS,
    COARSE_CELL,
    FRAME,
    NetworkInput,
    TerrainGeometry,
    terrain_geometry,
)

__all__ = [
    "DEFAULT_HALO",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_PASS_MEMORY",
    "NETWORK_BYTES_PER_PIXEL",
    "FeatureNetwork",
    "FeatureNetworkEngine",
    "FeatureStepKernel",
    "ResolutionWarning",
    "alpha_from_uv",
    "check_dem_size",
    "images_per_pass",
    "interior_and_orientation",
    "network_threads",
    "pipeline",
]

#: Largest number of pixels (directions x rows x columns) run in one network pass. A
#: 2048 x 2048 pass peaks at about 6 GB on CPU (docs/benchmarks.md); larger domains are tiled.
DEFAULT_MAX_PIXELS = 2048 * 2048
#: Halo of the tiles of domains larger than :data:`DEFAULT_MAX_PIXELS`, pixels (multiple of 8).
DEFAULT_HALO = 128
#: Smallest interior (DEM minus frame) side the network accepts: three 2x2 max pools.
MIN_INTERIOR = 8
#: Peak memory of a network pass on CPU per pixel of one image, bytes (ONNX Runtime, float32
#: activations of the UNet and its memory arena after repeated passes; measured 1.42-1.45 kB
#: on 320 x 360 with 1 and 4 images per pass, rounded up). :func:`images_per_pass` sizes
#: passes from it.
NETWORK_BYTES_PER_PIXEL = 1800
#: Default memory for the network passes of per-step downscaling, bytes.
DEFAULT_PASS_MEMORY = 512 * 2**20
#: Relative difference between the DEM cell and the training cell above which we warn.
RESOLUTION_TOLERANCE = 0.05

CITATION = (
    "devine-torch (F. Hammer and N. Helbig, github.com/weid-ost/devine), DEVINE retrained on "
    "terrain features; Le Toumelin et al. 2023, AIES, doi:10.1175/AIES-D-22-0034.1; "
    "Helbig et al. 2024 (features)"
)


class ResolutionWarning(UserWarning):
    """The DEM's cell size differs from the model's training resolution."""


def _threads_default() -> int | None:
    value = os.environ.get("DEVINE_ONNX_THREADS")
    return int(value) if value else None


def network_threads(threads: int | None = None) -> int | None:
    """ONNX Runtime intra-op threads of a :class:`FeatureNetwork`: ``threads``, else
    ``$DEVINE_ONNX_THREADS``, else None (all cores)."""
    return threads if threads is not None else _threads_default()


class FeatureNetwork:
    """A converted devine-torch network on ONNX Runtime.

    Parameters
    ----------
    path
        ONNX file written by ``devine-onnx convert`` from a devine-torch model folder;
        default ``$DEVINE_ONNX_MODEL``.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :class:`devine_onnx.engines.devine.model.DevineModel`).
    threads
        ONNX Runtime intra-op threads (default: ``$DEVINE_ONNX_THREADS``, else all cores).
    opened
        ``(path, session, metadata)`` returned by
        :func:`~devine_onnx.engines.runtime.open_model_session` for the same ``device``,
        ``threads`` and ``config``: reused instead of opening the model a second time (a
        session costs about 0.07 s).
    config
        ONNX Runtime session configuration entries; None: :attr:`SESSION_CONFIG` (intra-op
        threads do not spin between passes). Scheduling only: the outputs are the same.

    The session is not pickled: a copy sent to another process reopens the file.
    """

    #: Session configuration of feature networks: no spinning (busy-waiting) of the intra-op
    #: threads, whose cores the features and the output writer share (docs/benchmarks.md).
    SESSION_CONFIG = NO_SPINNING

    def __init__(
        self,
        path=None,
        device: str = "auto",
        threads: int | None = None,
        *,
        opened=None,
        config: dict | None = None,
    ):
        self.device_request = device
        self.threads = network_threads(threads)
        self.config = dict(self.SESSION_CONFIG if config is None else config)
        if opened is not None:  # (path, session, metadata) of open_model_session, reused
            path, session, meta = opened
        else:
            path, session, meta = open_model_session(path, device, self.threads, config=self.config)
        self.path = Path(path)
        kind = meta.get("devine.kind", "rotation")
        if kind != "features":
            raise ModelError(
                f"{self.path}: the DEVINE rotation model (devine.kind={kind}), not a feature "
                "network; this needs a devine-torch model converted with 'devine-onnx convert "
                "MODEL_FOLDER' (model.pt, norm.json, info.yaml)"
            )
        self.metadata = meta
        try:
            self.mean = [float(v) for v in json.loads(meta["devine.norm_mean"])]
            self.std = [float(v) for v in json.loads(meta["devine.norm_std"])]
            channels = tuple(meta["devine.channels"].split(","))
            self.inflow = float(meta.get("devine.inflow_speed", "3.0"))
            self.frame = int(meta.get("devine.frame", FRAME))
            self.coarse_cell = float(meta.get("devine.coarse_cell_default", COARSE_CELL))
        except (KeyError, ValueError, TypeError):
            raise ModelError(
                f"{self.path}: feature-network metadata (devine.norm_mean, devine.norm_std, "
                "devine.channels) missing or malformed; convert the model folder again"
            ) from None
        if channels != CHANNELS or len(self.mean) != 3 or len(self.std) != 3:
            raise ModelError(
                f"{self.path}: channels {','.join(channels)} with {len(self.mean)} means; this "
                f"version computes {','.join(CHANNELS)} only"
            )
        if self.frame != FRAME:
            raise ModelError(f"{self.path}: devine.frame={self.frame}, expected {FRAME}")
        if (
            not all(math.isfinite(v) for v in (*self.mean, *self.std, self.inflow))
            or min(*self.std, self.inflow, self.coarse_cell) <= 0
        ):  # std divides the features: NaN or 0 would give a table of NaN
            raise ModelError(
                f"{self.path}: feature-network metadata devine.norm_mean={self.mean}, "
                f"devine.norm_std={self.std}, devine.inflow_speed={self.inflow}: expected "
                "finite values, std and inflow speed > 0; convert the model folder again"
            )
        res = meta.get("devine.training_resolution")
        self.training_resolution = float(res) if res else None
        self._session = session
        self._check_signature()

    def _check_signature(self) -> None:
        self._input = check_signature(
            self._session,
            self.path,
            channel_axis=1,
            channels=(3, 3),
            what="(N, 3, H, W) and one output (N, 3, H, W)",
            hint="convert the model folder again",
        )

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_session"] = None
        state.pop("sha256", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("config", dict(self.SESSION_CONFIG))
        _, self._session, _ = open_model_session(
            self.path, self.device_request, self.threads, config=self.config
        )

    @property
    def synthetic(self) -> bool:
        return self.metadata.get("devine.synthetic_weights", "false") == "true"

    @property
    def device(self) -> str:
        return "cuda" if "CUDAExecutionProvider" in self._session.get_providers() else "cpu"

    @cached_property
    def sha256(self) -> str:
        return file_sha256(self.path)

    @property
    def model_id(self) -> str:
        return self.metadata.get("devine.model_id", self.path.stem)

    def check_resolution(self, cell: float, label: str = "the DEM") -> str | None:
        """Warn (:class:`ResolutionWarning`) when ``cell`` differs from the training cell by
        more than 5 %; return the message (None when the model states no training cell)."""
        if self.training_resolution is None:
            return None
        ref = self.training_resolution
        if abs(cell - ref) > RESOLUTION_TOLERANCE * ref:
            msg = (
                f"{label} has {cell:g} m cells but {self.model_id} was trained at {ref:g} m; "
                "its outputs are outside the training conditions"
            )
            warnings.warn(msg, ResolutionWarning, stacklevel=3)
            return msg
        return None

    # ------------------------------------------------------------------ inference
    def run(self, x: np.ndarray) -> np.ndarray:
        """One pass: normalised features ``(N, 3, H, W)`` float32 -> ``(N, 3, H, W)`` m/s."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) features, got shape {x.shape}")
        if min(x.shape[2:]) < MIN_INTERIOR:
            raise ValueError(
                f"the network needs at least {MIN_INTERIOR} x {MIN_INTERIOR} pixels, got "
                f"{x.shape[2]} x {x.shape[3]}"
            )
        return self._session.run(None, {self._input: x})[0]

    def predict(
        self, x: np.ndarray, max_pixels: int | None = DEFAULT_MAX_PIXELS, halo: int = DEFAULT_HALO
    ) -> np.ndarray:
        """Run ``(N, 3, H, W)``: whole-domain passes of at most ``max_pixels`` pixels (N
        split as needed), or, when one ``H x W`` image is larger, halo tiles (approximate:
        see the module notes). ``max_pixels=None``: always one pass."""
        n, _, h, w = x.shape
        if max_pixels is None or h * w <= max_pixels:
            per = n if max_pixels is None else max(1, max_pixels // (h * w))
            if per >= n:
                return self.run(x)
            out = np.empty((n, 3, h, w), dtype=np.float32)
            for a in range(0, n, per):
                out[a : a + per] = self.run(x[a : a + per])
            return out
        return self.predict_tiled(x, tile_for(max_pixels, halo), halo)

    def predict_tiled(self, x: np.ndarray, tile: int, halo: int = DEFAULT_HALO) -> np.ndarray:
        """Halo tiling: cores of ``tile`` pixels (multiple of 8) run with ``halo`` pixels of
        context on each side (clipped at the domain edges; window origins stay multiples of
        8, so the max pools align with the whole domain). Not exact (align-corners trap)."""
        n, _, h, w = x.shape
        out = np.empty((n, 3, h, w), dtype=np.float32)
        for r0 in range(0, h, tile):
            for c0 in range(0, w, tile):
                wr0, wc0 = max(r0 - halo, 0), max(c0 - halo, 0)
                wr1, wc1 = min(r0 + tile + halo, h), min(c0 + tile + halo, w)
                # Keep every window at least MIN_INTERIOR wide (last tiles can be thin).
                wr0 = max(0, min(wr0, wr1 - MIN_INTERIOR))
                wc0 = max(0, min(wc0, wc1 - MIN_INTERIOR))
                res = self.run(x[:, :, wr0:wr1, wc0:wc1])
                r1, c1 = min(r0 + tile, h), min(c0 + tile, w)
                out[:, :, r0:r1, c0:c1] = res[:, :, r0 - wr0 : r1 - wr0, c0 - wc0 : c1 - wc0]
        return out

    def __repr__(self) -> str:
        return f"FeatureNetwork({str(self.path)!r}, device={self.device!r})"


def tile_for(max_pixels: int, halo: int) -> int:
    """Largest tile core (multiple of 8) whose window with halos has at most ``max_pixels``."""
    side = int(math.isqrt(int(max_pixels))) - 2 * int(halo)
    return max(8, side - side % 8)


def images_per_pass(
    shape, memory: int | None = DEFAULT_PASS_MEMORY, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> int:
    """How many images of ``shape`` (rows, columns) one network pass may hold within
    ``memory`` bytes (at least one; :data:`NETWORK_BYTES_PER_PIXEL` per pixel), and within
    ``max_pixels`` pixels. A domain larger than ``max_pixels`` is tiled: its tiles are what
    a pass holds. ``memory=None``: no memory limit."""
    h, w = (int(a) for a in shape)
    pixels = h * w if max_pixels is None else min(h * w, int(max_pixels))
    n = 1 << 30
    if memory is not None:
        n = int(memory) // (NETWORK_BYTES_PER_PIXEL * pixels)
    if max_pixels is not None and h * w <= max_pixels:
        n = min(n, int(max_pixels) // (h * w))
    return max(1, n)


def pipeline(network, make_input, items) -> Iterator[tuple[object, np.ndarray]]:
    """Yield ``(item, network(make_input(item)))`` for each item, in order, with the network
    of item ``i + 1`` running in a worker thread while the caller works on item ``i``.

    ONNX Runtime releases the GIL during a pass, so the input of the next item (built here
    while the network runs) and the caller's work on the results (post-processing, writing)
    overlap the network. At most two passes are in flight; closing the generator waits for
    the running pass (a pass is never abandoned half-way).
    """
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    if not items:
        return
    if len(items) == 1:
        yield items[0], network(make_input(items[0]))
        return
    with ThreadPoolExecutor(1, thread_name_prefix="devine-network") as pool:
        running = pool.submit(network, make_input(items[0]))
        for i, item in enumerate(items):
            upcoming = make_input(items[i + 1]) if i + 1 < len(items) else None
            out = running.result()
            if upcoming is not None:
                running = pool.submit(network, upcoming)
                del upcoming
            yield item, out


def alpha_from_uv(u: np.ndarray, v: np.ndarray, theta) -> np.ndarray:
    """Turn (radians, in (-pi, pi]) of the flow ``(u, v)`` away from the inflow FROM direction
    ``theta`` (degrees, clockwise from north); > 0 = turned to the left (counter-clockwise),
    so that the downscaled FROM direction is ``theta - degrees(alpha)``. 0 where u = v = 0.

    ``u`` points east (+x), ``v`` north (+y); the inflow blows toward
    ``(-sin theta, -cos theta)``.
    """
    t = np.radians(np.asarray(theta, dtype=np.float64))
    ix, iy = -np.sin(t), -np.cos(t)
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    cross = ix * v - iy * u
    dot = ix * u + iy * v
    return np.arctan2(cross, dot)


def interior_and_orientation(dem: xr.DataArray) -> tuple[np.ndarray, float, bool, bool]:
    """North-up, west-to-east float64 elevations (m), the cell size (m), and the flips
    applied: ``(z, cell, flip_y, flip_x)``; the flips take the working view back to the
    DEM's own row/column order."""
    if {"y", "x"} <= set(dem.dims):
        dem = dem.transpose("y", "x")
    z = np.asarray(dem.values, dtype=np.float64)
    x = np.asarray(dem.x.values, dtype=np.float64)
    y = np.asarray(dem.y.values, dtype=np.float64)
    cell = abs(float(x[1] - x[0])) if x.size > 1 else abs(float(y[1] - y[0]))
    flip_y = bool(y.size > 1 and y[1] > y[0])
    flip_x = bool(x.size > 1 and x[1] < x[0])
    z = z[:: -1 if flip_y else 1, :: -1 if flip_x else 1]
    return z, cell, flip_y, flip_x


def check_dem_size(shape, label: str = "DEM") -> None:
    """DEMError unless both sides exceed the 2-cell frame by at least :data:`MIN_INTERIOR`."""
    ny, nx = shape
    need = MIN_INTERIOR + 2 * FRAME
    if ny < need or nx < need:
        raise DEMError(
            f"{label}: {ny} x {nx} cells is too small for a feature network: it needs at "
            f"least {need} x {need} (a {FRAME}-cell frame around at least {MIN_INTERIOR} x "
            f"{MIN_INTERIOR} cells)"
        )


class FeatureNetworkEngine(TableEngine):
    """devine-torch feature networks as a table engine.

    Parameters
    ----------
    model
        Path of a converted feature-network model (``devine.kind = features``).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    coarse_cell
        Coarse cell of the relative-DEM feature in metres (default: the model's, 1000).
    max_pixels
        Pixels per network pass (directions x domain); a domain larger than this is tiled
        with ``halo`` (approximate). None: always one whole-domain pass.
    halo
        Halo of the tiles, pixels.
    threads
        ONNX Runtime intra-op threads.

    :func:`devine_onnx.engines.engine_for_model` returns this engine for a feature-network
    model.
    """

    name = "features"
    title = "devine-torch feature network (DEVINE retrained on deflLis, reldem, ydsc)"
    citation = CITATION
    variables = ("acceleration", "alpha", "vertical")
    resume_keys = (
        "model_sha256",
        "features_coarse_cell",
        "features_max_pixels",
        "features_halo",
    )

    def __init__(
        self,
        model=None,
        device: str = "auto",
        coarse_cell: float | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        halo: int = DEFAULT_HALO,
        threads: int | None = None,
    ):
        self.network = (
            model
            if isinstance(model, FeatureNetwork)
            else FeatureNetwork(model, device=device, threads=threads)
        )
        cc = number_option(
            "coarse_cell",
            self.network.coarse_cell if coarse_cell is None else coarse_cell,
            "expected a length in metres > 0 (the NWP resolution, 1000 by default)",
        )
        if max_pixels is not None and (int(max_pixels) < MIN_INTERIOR**2):
            raise OptionError(f"max_pixels={max_pixels}: expected at least {MIN_INTERIOR**2}")
        if int(halo) < 0 or int(halo) % 8:
            raise OptionError(f"halo={halo}: expected a non-negative multiple of 8 pixels")
        self.coarse_cell = cc
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self.halo = int(halo)
        self._geom: TerrainGeometry | None = None
        self._inputs: NetworkInput | None = None
        self._crop: tuple[slice, slice] | None = None
        self._flips = (False, False)
        self.tiled = False

    # ------------------------------------------------------------------ interface
    def prepare_dem(self, dem: xr.DataArray, notes: list[str]) -> xr.DataArray:
        """Refuse DEMs too small for the frame and the network; warn about the resolution."""
        check_dem_size(dem.shape[-2:], str(dem.attrs.get("source", "DEM")))
        _, cell, _, _ = interior_and_orientation(dem)
        self.network.check_resolution(cell, str(dem.attrs.get("source", "the DEM")))
        from .terrain_features import block_size

        numb = block_size(self.coarse_cell, cell)
        if abs(numb * cell - self.coarse_cell) > 1e-3 * cell:
            notes.append(
                f"the coarse cell {self.coarse_cell:g} m is not a multiple of the DEM cell "
                f"{cell:g} m: reldem uses blocks of {numb} x {numb} cells ({numb * cell:g} m)"
            )
        return dem

    def coverage(self, dem: xr.DataArray) -> TableWindow:
        """The DEM minus its 2-cell frame."""
        ny, nx = dem.shape[-2:]
        return TableWindow(slice(FRAME, int(ny) - FRAME), slice(FRAME, int(nx) - FRAME))

    def bind(self, dem: xr.DataArray, window: TableWindow) -> None:
        """Terrain geometry of the whole DEM; the table is cut to ``window`` afterwards."""
        check_dem_size(dem.shape[-2:])
        z, cell, flip_y, flip_x = interior_and_orientation(dem)
        self._geom = terrain_geometry(z, cell, self.coarse_cell)
        self._inputs = NetworkInput(self._geom, self.network.mean, self.network.std)
        self._flips = (flip_y, flip_x)
        ny, nx = dem.shape[-2:]
        cov = self.coverage(dem)
        if (
            window.rows.start < cov.rows.start
            or window.cols.start < cov.cols.start
            or window.rows.stop > cov.rows.stop
            or window.cols.stop > cov.cols.stop
        ):
            raise OptionError(
                f"window rows {window.rows.start}:{window.rows.stop}, cols "
                f"{window.cols.start}:{window.cols.stop} reaches into the {FRAME}-cell frame "
                f"of the {ny} x {nx} DEM"
            )
        self._crop = (
            slice(window.rows.start - FRAME, window.rows.stop - FRAME),
            slice(window.cols.start - FRAME, window.cols.stop - FRAME),
        )
        h, w = self._geom.shape
        self.tiled = self.max_pixels is not None and h * w > self.max_pixels

    def _orient(self, a: np.ndarray) -> np.ndarray:
        """Back from the north-up working view to the DEM's own row/column order."""
        flip_y, flip_x = self._flips
        return a[..., :: -1 if flip_y else 1, :: -1 if flip_x else 1]

    def uvw(self, angles) -> np.ndarray:
        """Network output ``(N, 3, h, w)`` (m/s, 3 m/s inflow) for uniform directions, on the
        interior in the north-up working view."""
        if self._inputs is None:
            raise RuntimeError("FeatureNetworkEngine.bind() must be called first")
        return self.network.predict(self._inputs.from_angles(angles), self.max_pixels, self.halo)

    def batches(self, angles: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, dict]]:
        """Yield ``(ks, {"acceleration", "alpha", "vertical"})`` over the bound window.

        Pipelined: the network runs pass ``i + 1`` in a worker thread (ONNX Runtime releases
        the GIL) while this thread prepares the input of pass ``i + 2``, derives the table
        values of pass ``i`` and hands them to the caller (the table writer).
        """
        if self._inputs is None or self._crop is None:
            raise RuntimeError("FeatureNetworkEngine.bind() must be called first")
        angles = np.asarray(angles, dtype=np.int64).ravel()
        h, w = self._inputs.shape
        per = max(1, int(batch))
        if self.max_pixels is not None:
            per = max(1, min(per, self.max_pixels // (h * w)))
        groups = [angles[i : i + per] for i in range(0, len(angles), per)]
        inflow = self.network.inflow
        rows, cols = self._crop  # indices in the DEM's own order, like the oriented output

        def network(x):
            return self.network.predict(x, self.max_pixels, self.halo)

        for ks, out in pipeline(network, self._inputs.from_angles, groups):
            out = self._orient(out)
            u = out[:, 0, rows, cols].astype(np.float64)
            v = out[:, 1, rows, cols].astype(np.float64)
            acc = np.sqrt(u * u + v * v)
            acc /= inflow
            alpha = alpha_from_uv(u, v, ks.reshape(-1, 1, 1))
            yield (
                ks,
                {
                    "acceleration": acc.astype(np.float32),
                    "alpha": alpha.astype(np.float32),
                    "vertical": out[:, 2, rows, cols] / np.float32(inflow),
                },
            )

    def attrs(self) -> dict:
        net = self.network
        attrs = {
            "engine": self.name,
            "engine_title": self.title,
            "engine_citation": self.citation,
            "model_sha256": net.sha256,
            "model_source_sha256": net.metadata.get("devine.source_sha256", "unknown"),
            "model_id": net.model_id,
            "model_kind": "features",
            "synthetic_weights": "true" if net.synthetic else "false",
            "features_channels": ",".join(CHANNELS),
            "features_coarse_cell": self.coarse_cell,
            "features_frame": FRAME,
            "features_inflow_speed": net.inflow,
            "features_max_pixels": -1 if self.max_pixels is None else self.max_pixels,
            "features_halo": self.halo,
            "features_tiled": "true" if self.tiled else "false",
            "vertical_definition": "w / inflow speed (3 m/s): upward wind = vertical * speed",
            "alpha_definition": "turn of (u, v) away from the inflow, atan2, radians, > 0 left",
        }
        if self._geom is not None:
            attrs["features_block_cells"] = self._geom.numb
        if net.training_resolution is not None:
            attrs["model_training_resolution"] = net.training_resolution
        return attrs


class FeatureStepKernel:
    """One network pass per time step on the local wind-direction field (devine-torch's
    per-step method), everything around the network vectorised and overlapped with it.

    Parameters
    ----------
    network : FeatureNetwork
    geom : TerrainGeometry
        Geometry of the DEM interior in the north-up working view
        (:func:`~.terrain_features.terrain_geometry` of :func:`interior_and_orientation`).
    flips : (bool, bool)
        Whether the DEM's rows (y) / columns (x) are flipped relative to the working view
        (from :func:`interior_and_orientation`): winds come and go in the DEM's own order.
    max_pixels, halo
        See :meth:`FeatureNetwork.predict` (tiling of domains larger than ``max_pixels``).
    memory
        Bytes allowed for the network passes (sizes the number of steps per pass with
        :func:`images_per_pass`; at least one step). None: :data:`DEFAULT_PASS_MEMORY`.

    Notes
    -----
    Per step: the FROM direction field of the grid wind ``(u, v)`` gives the features
    (:meth:`~.terrain_features.NetworkInput.from_components`; calm or unknown pixels take the
    step's circular mean direction), the network runs once over the exact domain and its
    ``(u, v, w)`` for the 3 m/s inflow are scaled by ``S / 3``, ``S = sqrt(u**2 + v**2)``
    (float32). The network of pass ``i + 1`` runs in a worker thread while the input of pass
    ``i + 2`` is built and pass ``i`` is scaled (:func:`pipeline`).
    """

    def __init__(
        self,
        network: FeatureNetwork,
        geom: TerrainGeometry,
        flips: tuple[bool, bool] = (False, False),
        *,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        halo: int = DEFAULT_HALO,
        memory: int | None = None,
    ):
        self.network = network
        self.inputs = NetworkInput(geom, network.mean, network.std)
        self.shape = geom.shape
        self.flips = (bool(flips[0]), bool(flips[1]))
        self.max_pixels = max_pixels
        self.halo = int(halo)
        self.memory = DEFAULT_PASS_MEMORY if memory is None else int(memory)

    @property
    def steps_per_pass(self) -> int:
        """Time steps run in one network pass."""
        return images_per_pass(self.shape, self.memory, self.max_pixels)

    def pass_bytes(self, steps: int | None = None) -> int:
        """Estimated peak memory (bytes) of one pass of ``steps`` steps (default: a full pass)."""
        steps = self.steps_per_pass if steps is None else int(steps)
        h, w = self.shape
        pixels = h * w if self.max_pixels is None else min(h * w, self.max_pixels)
        return steps * pixels * NETWORK_BYTES_PER_PIXEL

    @property
    def step_bytes(self) -> int:
        """Bytes the kernel keeps per time step of a chunk: its float32 ``(u, v, w)`` result
        (the caller's own arrays, e.g. the interpolated wind and the outputs, are extra)."""
        h, w = self.shape
        return 3 * 4 * h * w

    def _orient(self, a: np.ndarray) -> np.ndarray:
        fy, fx = self.flips
        return a[..., :: -1 if fy else 1, :: -1 if fx else 1]

    def uvw(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Downscaled grid components of ``n`` steps.

        Parameters
        ----------
        u, v : numpy.ndarray, shape (n, ny, nx)
            Wind components in m/s toward grid +x and +y (grid-relative), on the DEM interior
            in the DEM's own row order (NaN where unknown).

        Returns
        -------
        u, v, w : numpy.ndarray, float32, shape (n, ny, nx)
            The network's wind scaled by ``S / 3`` (m/s; ``w`` upward), grid-relative, in the
            DEM's row order; NaN where the input wind is NaN, 0 for calm wind.
        """
        n = np.shape(u)[0] if np.ndim(u) == 3 else 0
        res = np.empty((3, n) + tuple(self.shape), dtype=np.float32)
        for sl, uo, vo, wo in self.passes(u, v):
            res[0, sl], res[1, sl], res[2, sl] = uo, vo, wo
        return res[0], res[1], res[2]

    def passes(self, u: np.ndarray, v: np.ndarray) -> Iterator[tuple[slice, ...]]:
        """:meth:`uvw` pass by pass: yield ``(steps, u, v, w)`` for each network pass, in
        order (``steps`` a slice of the ``n`` steps). The next pass runs while the caller
        works on this one (:func:`pipeline`): post-processing done here is overlapped."""
        u = np.asarray(u)
        v = np.asarray(v)
        if u.ndim != 3 or u.shape != v.shape or u.shape[1:] != tuple(self.shape):
            raise ValueError(
                f"expected u and v of shape (n, {self.shape[0]}, {self.shape[1]}), got "
                f"{u.shape} and {v.shape}"
            )
        n = u.shape[0]
        per = self.steps_per_pass
        groups = [slice(a, min(a + per, n)) for a in range(0, n, per)]
        inflow = np.float32(self.network.inflow)

        def make_input(sl):
            return self.inputs.from_components(self._orient(u[sl]), self._orient(v[sl]))

        def network(x):
            return self.network.predict(x, self.max_pixels, self.halo)

        for sl, out in pipeline(network, make_input, groups):
            us = u[sl].astype(np.float32, copy=False)
            vs = v[sl].astype(np.float32, copy=False)
            scale = np.sqrt(us * us + vs * vs)
            scale /= inflow
            out = self._orient(out)
            yield (sl, *(np.multiply(out[:, c], scale) for c in range(3)))
