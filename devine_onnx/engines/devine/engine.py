"""The ``devine`` table engine: the DEVINE UNet run on the DEM rotated to every direction.

For each table direction ``k`` (docs/method.md §3) the DEM is rotated so that the inflow comes
from the west, normalised by its sliding mean, run through the UNet and the speed ratio and
deviation are rotated back. Two methods (``method=``):

- ``crop`` (§3.3, §9): one central ``s x s`` crop per direction. The table covers that crop;
  only the disc of ``valid_radius`` pixels lies inside the rotated DEM for every direction,
  so pixels outside it are NaN for every direction, and the outer :data:`MARGIN` pixels of
  that disc are influenced by the UNet's zero padding for some directions.
- ``frame`` (§9.1, :mod:`.frame`): one extended rotated frame per direction, computed tile by
  tile (``tile_size``); the table covers the whole DEM, seamless whatever the tile size.
- ``auto`` (default): the one with more pixels free of edge influence, the crop on a tie.

Every table gets ``edge_influence(y, x)``: 1 where some direction's value depended on terrain
outside the DEM or on the edge of the computed window (or where there is no value), 0 where
it is clean; the attribute ``devine_method`` says which method made it.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

from devine_onnx.engines.base import TableEngine, TableWindow, dem_extent
from devine_onnx.engines.runtime import HALO
from devine_onnx.errors import DEMError, DevineWarning, OptionError, option

from .boxfilter import BOX_HALF_COLS, BOX_HALF_ROWS, fixed_point_bits, normalise_exact
from .frame import (
    DEFAULT_TILE_SIZE,
    MAX_TILE_SIZE,
    METHODS,
    RECEPTIVE_FIELD,
    FrameGeometry,
    tiles,
)
from .geometry import MIN_SIZE, CropGeometry, trim_to_odd
from .postprocess import ARPS_INFLOW, prepare_input, speed_alpha
from .preprocess import DEM_FILL
from .rotation import (
    rotate_nearest,
    rotate_window,
    rotation_angle,
    rotation_source_indices,
    source_pixels,
)

__all__ = [
    "DEFAULT",
    "MARGIN",
    "TRAINING_RESOLUTION",
    "DevineEngine",
    "ResolutionWarning",
    "minimum_dem_size",
]

#: Sentinel for "the model's own tile size" (``tile=DEFAULT``).
DEFAULT = "default"
#: Pixels near the rim of the valid disc where the UNet's zero padding influences some
#: directions (receptive field <= 58 px, docs/method.md §2): a target must stay this far inside.
MARGIN = HALO
#: Pixel size (m) of the terrain the official network was trained on (ARPS, 30 m).
TRAINING_RESOLUTION = 30.0
#: Relative difference to the training resolution above which a warning is given.
RESOLUTION_TOLERANCE = 0.2


#: Threads for the per-direction numpy kernels of a batch (rotation, sliding mean,
#: back-rotation): they release the GIL, so a batch's directions spread over the cores
#: instead of leaving a GPU waiting on one core.
KERNEL_THREADS = max(1, os.cpu_count() or 1)
_KERNEL_POOL: ThreadPoolExecutor | None = None


def _each(fn, n: int) -> None:
    """``fn(i)`` for ``i < n``, on the kernel threads when there is more than one."""
    global _KERNEL_POOL
    if n <= 1 or KERNEL_THREADS <= 1:
        for i in range(n):
            fn(i)
        return
    if _KERNEL_POOL is None:
        _KERNEL_POOL = ThreadPoolExecutor(KERNEL_THREADS, thread_name_prefix="devine-kernels")
    for f in [_KERNEL_POOL.submit(fn, i) for i in range(n)]:
        f.result()


class ResolutionWarning(DevineWarning):
    """The DEM's pixel size is far from the resolution the network was trained on."""


def minimum_dem_size(radius_px: float) -> int:
    """Smallest short side ``m`` (pixels) whose table is reliable within ``radius_px``.

    That is the smallest ``m`` with ``d(m) - MARGIN >= radius_px`` where
    ``d(m) = floor(floor(m / sqrt(2)) / 2)`` (docs/method.md §3.3).
    """
    need = math.ceil(radius_px) + MARGIN
    m = max(int(2 * need * math.sqrt(2)) - 4, 1)
    while math.isqrt(m * m // 2) // 2 < need:
        m += 1
    return m


class DevineEngine(TableEngine):
    """DEVINE (Le Toumelin et al. 2023): the UNet on the rotated DEM, one pass per direction.

    Parameters
    ----------
    model
        ONNX model path written by ``devine-onnx convert``, ``"demo"`` for the shipped
        demonstration model (synthetic weights), a :class:`~devine_onnx.engines.devine.model.DevineModel`,
        or None for ``$DEVINE_ONNX_MODEL``.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (when ``model`` is not a DevineModel).
    tile
        UNet tile size; ``DEFAULT`` keeps the model's, None disables tiling.
    method
        ``"crop"``: one central crop per direction (docs/method.md §3.3, §9); ``"frame"``: one
        extended rotated frame per direction, computed tile by tile over the whole DEM
        (§9.1); ``"auto"`` (default): the method with more pixels free of edge influence
        (the crop on a tie: square DEMs up to 357 px).
    tile_size
        Side, in table pixels, of the tiles of the frame method (memory per task grows with
        it, never with the DEM; the values do not depend on it).
    """

    name = "devine"
    title = "DEVINE UNet on the rotated DEM (Le Toumelin et al. 2023)"
    citation = (
        "Le Toumelin, L., Gouttevin, I., Helbig, N., Galiez, C., Roux, M. and Karbou, F., 2023: "
        "Emulating the adaptation of wind fields to complex terrain with deep learning. "
        "Artif. Intell. Earth Syst., 2, e220034, doi:10.1175/AIES-D-22-0034.1"
    )
    variables = ("acceleration", "alpha", "vertical")
    resume_keys = ("model_sha256", "sigma", "devine_method")

    def __init__(
        self,
        model=None,
        device: str = "auto",
        tile=DEFAULT,
        method: str = "auto",
        tile_size: int = DEFAULT_TILE_SIZE,
    ):
        if not isinstance(method, str) or method not in METHODS:
            raise OptionError(
                f"{option('method', method)}: expected one of {', '.join(METHODS)} "
                "(docs/method.md §9.1)"
            )
        if (
            isinstance(tile_size, bool)
            or not isinstance(tile_size, int | np.integer)
            or not 16 <= tile_size <= MAX_TILE_SIZE
        ):
            raise OptionError(
                f"{option('tile_size', tile_size)}: expected a whole number of pixels from 16 "
                f"to {MAX_TILE_SIZE}"
            )
        self.method = method
        self.tile_size = int(tile_size)
        self.chosen: str | None = None
        # Terrain outside the DEM (docs/method.md §3.1): the fill of the rotated frame. Tests
        # replace it (_fill, or _outside(k, rows, cols) -> values) to check edge_influence.
        self._fill = DEM_FILL
        self._outside = None
        if model is not None and hasattr(model, "predict"):
            self.model = model
        else:
            from devine_onnx.engines.devine.model import DevineModel
            from devine_onnx.engines.runtime import demo_model_path

            if isinstance(model, str) and model == "demo":
                model = demo_model_path()
            kwargs = {} if isinstance(tile, str) and tile == DEFAULT else {"tile": tile}
            self.model = DevineModel(model, device=device, **kwargs)
        self.tile = tile
        self.sigma = float(self.model.sigma)
        self.geom: CropGeometry | None = None

    @property
    def synthetic(self) -> bool:
        return bool(getattr(self.model, "synthetic", False))

    # --- DEM and coverage -------------------------------------------------------------------
    def prepare_dem(self, dem: xr.DataArray, notes: list[str]) -> xr.DataArray:
        """Trim even dimensions to odd ones (§6.6), refuse DEMs below :data:`MIN_SIZE`."""
        label = str(dem.attrs.get("source", "DEM"))
        res = abs(float(dem.x.values[1] - dem.x.values[0]))
        h, w = dem.shape
        ht, wt = trim_to_odd(h, w)
        if min(ht, wt) < MIN_SIZE:
            raise DEMError(
                f"{label}: DEM of {h} x {w} pixels is too small for DEVINE: after trimming to "
                f"odd dimensions both sides must be at least {MIN_SIZE} pixels "
                f"({MIN_SIZE * res:.0f} m at {res:g} m resolution); use a larger extent"
            )
        geom = CropGeometry.from_shape((ht, wt))
        if geom.valid_radius - MARGIN <= 0:
            raise DEMError(
                f"{label}: DEM of {h} x {w} pixels is too small for a reliable DEVINE table: "
                f"its valid disc ({geom.valid_radius:g} px) is within the UNet's {MARGIN} px "
                f"margin everywhere; use at least {minimum_dem_size(1)} x "
                f"{minimum_dem_size(1)} pixels"
            )
        if abs(res - TRAINING_RESOLUTION) > RESOLUTION_TOLERANCE * TRAINING_RESOLUTION:
            warnings.warn(
                f"{label}: {res:g} m pixels, but the DEVINE network was trained on "
                f"{TRAINING_RESOLUTION:g} m terrain and distorts other resolutions; resample "
                f"the DEM with {option('resample', TRAINING_RESOLUTION)}",
                ResolutionWarning,
                stacklevel=2,
            )
        if (ht, wt) != (h, w):
            dropped = []
            if ht != h:
                dropped.append("the last (southernmost) row")
            if wt != w:
                dropped.append("the last (easternmost) column")
            notes.append(
                f"trimmed the DEM from {h} x {w} to {ht} x {wt} pixels (dropped "
                f"{' and '.join(dropped)}) so that its centre is a pixel (odd dimensions, "
                "docs/method.md §6.6)"
            )
            dem = dem.isel(y=slice(0, ht), x=slice(0, wt))
        return dem

    def _geometry(self, dem: xr.DataArray) -> CropGeometry:
        return CropGeometry.from_shape(dem.shape)

    def _resolve(self, dem: xr.DataArray, window: TableWindow | None = None) -> str:
        """The method for this DEM (and window): the one asked for, or the automatic choice
        (:meth:`FrameGeometry.auto_method`, a function of the DEM's shape and the window
        only, so that an engine bound elsewhere, e.g. on a dask worker, makes the same)."""
        if self.method != "auto":
            return self.method
        fg = FrameGeometry.from_shape(dem.shape)
        if window is None:
            return fg.auto_method()
        return fg.auto_method(window.rows, window.cols)

    def coverage(self, dem: xr.DataArray) -> TableWindow:
        if self._resolve(dem) == "frame":
            return TableWindow(slice(0, dem.shape[0]), slice(0, dem.shape[1]))
        geom = self._geometry(dem)
        return TableWindow(geom.rows, geom.cols)

    def target_window(self, dem, bounds) -> TableWindow:
        """Target pixels, refused unless free of edge influence: inside the crop's valid disc
        minus the UNet margin (``crop``), at least the edge margin inside the DEM
        (``frame``). ``auto`` takes the method with more clean target pixels, the crop on a
        tie (which it is whenever the crop accepts the target)."""
        xmin, ymin, xmax, ymax = bounds
        res = abs(float(dem.x.values[1] - dem.x.values[0]))
        label = f"target ({xmin:.1f}, {ymin:.1f}, {xmax:.1f}, {ymax:.1f})"
        xs, ys = dem.x.values, dem.y.values
        half = res / 2
        if (
            xmax < xs.min() - half
            or xmin > xs.max() + half
            or ymax < ys.min() - half
            or (ymin > ys.max() + half)
        ):
            raise OptionError(
                f"{option('target')} {label}: lies outside the DEM ({dem_extent(dem)}); give "
                "bounds in the DEM's CRS inside its extent"
            )
        shape = tuple(int(n) for n in dem.shape)
        full = TableWindow(slice(0, shape[0]), slice(0, shape[1]))
        window = self.pixels_in(dem, bounds, full)
        method = self._resolve(dem, window)
        crop_error = self._crop_target_error(dem, bounds, label, res)
        fg = FrameGeometry.from_shape(shape)
        if method == "crop":
            # auto also takes a target whose pixels are all clean in the crop.
            clean = self.method == "auto" and fg.crop_clean(window.rows, window.cols).all()
            if crop_error is not None and not clean:
                raise OptionError(crop_error)
            return self.pixels_in(dem, bounds, self._crop_window(dem))
        if not fg.band_clean(window.rows, window.cols).all():
            er, ec = fg.margins
            edge = max(er, ec)
            gap = min(
                window.rows.start,
                window.cols.start,
                shape[0] - window.rows.stop,
                shape[1] - window.cols.stop,
            )
            also = ""
            if self.method == "auto" and crop_error is not None:
                m = crop_error.split("(centred on it: at least ")[-1].split(" pixels")[0]
                also = f" (or, with the crop method, centred on it: at least {m} pixels)"
            raise OptionError(
                f"{option('target')} {label}: comes within {gap * res:.0f} m of the DEM's edge, "
                f"but the DEVINE table (frame method) is free of edge influence only {er} rows "
                f"and {ec} columns ({edge * res:.0f} m at {res:g} m) inside it (docs/method.md "
                f"§9.1); the DEM must extend at least {edge * res:.0f} m beyond the target on "
                f"every side{also}"
            )
        return window

    def _crop_window(self, dem) -> TableWindow:
        geom = self._geometry(dem)
        return TableWindow(geom.rows, geom.cols)

    def _crop_target_error(self, dem, bounds, label: str, res: float) -> str | None:
        """Why the crop method refuses the target (None when it accepts it)."""
        xmin, ymin, xmax, ymax = bounds
        geom = self._geometry(dem)
        cy, cx = geom.center
        x0 = float(dem.x.values[cx])
        y0 = float(dem.y.values[cy])
        corners = [(x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
        reach = max(math.hypot(x - x0, y - y0) for x, y in corners) / res
        inner = geom.valid_radius - MARGIN
        if reach <= inner:
            return None
        a = (xmax - xmin) / 2 / res
        b = (ymax - ymin) / 2 / res
        m = minimum_dem_size(math.hypot(a, b))
        beyond = math.ceil((m / 2 - min(a, b)) * res)
        return (
            f"{option('target')} {label}: reaches {reach * res:.0f} m from the DEM centre "
            f"({x0:.1f}, {y0:.1f}) but the DEVINE table (crop method) is reliable only within "
            f"{max(inner, 0) * res:.0f} m (valid radius {geom.valid_radius:g} px minus a "
            f"{MARGIN} px UNet margin, at {res:g} m); the DEM must extend at least "
            f"{beyond} m beyond the target on every side (centred on it: at least {m} x {m} "
            "pixels)"
        )

    # --- computation ------------------------------------------------------------------------
    def bind(self, dem: xr.DataArray, window: TableWindow) -> None:
        self.chosen = method = self._resolve(dem, window)
        self.geom = geom = self._geometry(dem)
        self.fgeom = fg = FrameGeometry.from_shape(dem.shape)
        self.z = np.ascontiguousarray(dem.values, dtype=np.float32)
        self.window = window
        self.edge = fg.edge_influence(method, window.rows, window.cols)
        self.timings = {"kernels": 0.0, "unet": 0.0}
        self.resolution = abs(float(dem.x.values[1] - dem.x.values[0]))
        cy, cx = geom.center
        self.center_xy = (float(dem.x.values[cx]), float(dem.y.values[cy]))
        if method == "frame":
            self.tiles = tiles(window.rows, window.cols, self.tile_size)
            self.bits = fixed_point_bits(max(float(np.abs(self.z).max()), abs(self._fill)))
            return
        # Table rows/columns to store, in crop coordinates.
        self.trows = slice(window.rows.start - geom.rows.start, window.rows.stop - geom.rows.start)
        self.tcols = slice(window.cols.start - geom.cols.start, window.cols.stop - geom.cols.start)
        self.full = window.shape == (geom.s, geom.s)
        # All-or-none: a pixel outside the disc valid for every direction is NaN for all.
        self.outside = ~geom.valid_disc()[self.trows, self.tcols]

    def static_variables(self) -> dict:
        """``edge_influence(y, x)`` of the bound window (docs/method.md §9.1)."""
        return {"edge_influence": self.edge}

    def _roi(self, k: int) -> tuple[slice, slice]:
        """Window of the rotated crop that the stored pixels of direction k depend on."""
        s = self.geom.s
        if self.full:
            return slice(0, s), slice(0, s)
        src_r, src_c, valid = rotation_source_indices(
            (s, s), (s, s), rotation_angle(k, inverse=True), rows=self.trows, cols=self.tcols
        )
        if not valid.any():
            return slice(0, 0), slice(0, 0)
        r, c = src_r[valid], src_c[valid]
        # Origin on a multiple of 8 of the crop frame and a 64 px halo: the UNet output on
        # the window equals the untiled one (docs/method.md §2).
        r0 = max(0, (int(r.min()) - HALO) // 8 * 8)
        c0 = max(0, (int(c.min()) - HALO) // 8 * 8)
        return (
            slice(r0, min(s, int(r.max()) + 1 + HALO)),
            slice(c0, min(s, int(c.max()) + 1 + HALO)),
        )

    def _prepare(self, ks):
        t0 = time.perf_counter()
        rois = [self._roi(int(k)) for k in ks]
        r0 = min(r.start for r, _ in rois)
        r1 = max(r.stop for r, _ in rois)
        c0 = min(c.start for _, c in rois)
        c1 = max(c.stop for _, c in rois)
        x = np.empty((len(ks), max(r1 - r0, 0), max(c1 - c0, 0)), np.float32)

        def one(i):
            k = int(ks[i])
            x[i] = prepare_input(self.z, k, self.sigma, self.geom, fill=self._fill)[r0:r1, c0:c1]

        _each(one, len(ks))
        return x, (slice(r0, r1), slice(c0, c1)), time.perf_counter() - t0

    def _predict(self, x: np.ndarray) -> np.ndarray:
        if isinstance(self.tile, str) and self.tile == DEFAULT:
            if self.chosen == "frame":
                # The frame's own tiles bound the window (tile_size); tiling it again
                # would only add halos.
                return self.model.predict(x, tile=None)
            return self.model.predict(x)
        return self.model.predict(x, tile=self.tile)

    def _finish(self, out: np.ndarray, ks, roi) -> dict:
        n = len(ks)
        ny = self.trows.stop - self.trows.start
        nx = self.tcols.stop - self.tcols.start
        res = {name: np.empty((n, ny, nx), np.float32) for name in self.variables}
        s = self.geom.s
        inflow = np.float32(ARPS_INFLOW)

        def one(i):
            k = ks[i]
            speed, alpha = speed_alpha(out[i, ..., 0], out[i, ..., 1])
            fields = np.full((3, s, s), np.nan, np.float32)
            fields[0][roi] = speed / inflow
            fields[1][roi] = alpha
            # w is a scalar: back-rotated like the speed (docs/method.md §3.6).
            fields[2][roi] = out[i, ..., 2] / inflow
            back = rotate_nearest(
                fields,
                rotation_angle(int(k), inverse=True),
                np.nan,
                rows=self.trows,
                cols=self.tcols,
            )
            back[:, self.outside] = np.nan
            for j, name in enumerate(self.variables):
                res[name][i] = back[j]

        _each(one, n)
        return res

    # --- the frame method (docs/method.md §9.1) ---------------------------------------------
    def _frame_prepare(self, ks, tile: tuple[slice, slice]):
        """UNet input of one task: the directions ``ks`` on the window that ``tile`` needs."""
        t0 = time.perf_counter()
        fg = self.fgeom
        boxes = [fg.source_box(int(k), *tile) for k in ks]
        box = (
            min(b[0] for b in boxes),
            max(b[1] for b in boxes),
            min(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        r0, r1, c0, c1 = fg.unet_window(box)
        pr, pc = BOX_HALF_ROWS, BOX_HALF_COLS
        x = np.empty((len(ks), r1 - r0, c1 - c0), np.float32)
        rows, cols = (r0 - pr, r1 + pr), (c0 - pc, c1 + pc)

        def one(i):
            k = int(ks[i])
            theta = rotation_angle(k)
            if self._outside is None:
                region = rotate_window(self.z, theta, self._fill, rows=rows, cols=cols)
            else:
                region = rotate_window(self.z, theta, np.nan, rows=rows, cols=cols)
                ii, jj = np.nonzero(np.isnan(region))
                region[ii, jj] = self._outside(k, ii + rows[0], jj + cols[0])
            x[i] = normalise_exact(region, self.sigma, self.bits)

        _each(one, len(ks))
        return x, (r0, r1, c0, c1), time.perf_counter() - t0

    def _frame_finish(self, out: np.ndarray, ks, unet_window, tile, res: dict) -> None:
        """Back-rotate the UNet output of one task into its tile of ``res``."""
        fg = self.fgeom
        r0, r1, c0, c1 = unet_window
        o_r, o_c = fg.origin
        s = fg.crop.s
        rows, cols = tile
        ty = slice(rows.start - self.window.rows.start, rows.stop - self.window.rows.start)
        tx = slice(cols.start - self.window.cols.start, cols.stop - self.window.cols.start)
        inflow = np.float32(ARPS_INFLOW)
        width = c1 - c0
        for i, k in enumerate(ks):
            # The crop method's back-rotation (§3.6), in the crop's coordinates, extended.
            sr, sc = source_pixels(
                (s, s),
                rotation_angle(int(k), inverse=True),
                rows=(rows.start - o_r, rows.stop - o_r),
                cols=(cols.start - o_c, cols.stop - o_c),
            )
            sr += o_r - r0
            sc += o_c - c0
            lo, hi_r, hi_c = RECEPTIVE_FIELD, r1 - r0 - RECEPTIVE_FIELD, width - RECEPTIVE_FIELD
            if sr.min() < lo or sc.min() < lo or sr.max() >= hi_r or sc.max() >= hi_c:
                raise RuntimeError("frame window misses the receptive field of its tile")
            flat = (sr * width + sc).reshape(-1)
            uvw = out[i].reshape(-1, 3)[flat]
            speed, alpha = speed_alpha(uvw[:, 0], uvw[:, 1])
            shape = sr.shape
            res["acceleration"][i, ty, tx] = (speed / inflow).reshape(shape)
            res["alpha"][i, ty, tx] = alpha.reshape(shape)
            res["vertical"][i, ty, tx] = (uvw[:, 2] / inflow).reshape(shape)

    def _frame_batches(self, angles: np.ndarray, batch: int):
        todo = [angles[i : i + batch] for i in range(0, len(angles), batch)]
        tasks = [(j, ks, tile) for j, ks in enumerate(todo) for tile in self.tiles]
        if not tasks:
            return
        ny, nx = self.window.shape
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            pending = pool.submit(self._frame_prepare, tasks[0][1], tasks[0][2])
            res = None
            for n, (j, ks, tile) in enumerate(tasks):
                x, unet_window, t_prep = pending.result()
                if n + 1 < len(tasks):
                    pending = pool.submit(self._frame_prepare, tasks[n + 1][1], tasks[n + 1][2])
                if res is None:
                    res = {name: np.empty((len(ks), ny, nx), np.float32) for name in self.variables}
                t0 = time.perf_counter()
                out = self._predict(x)
                t1 = time.perf_counter()
                self._frame_finish(out, ks, unet_window, tile, res)
                del out, x
                self.timings["kernels"] += t_prep + (time.perf_counter() - t1)
                self.timings["unet"] += t1 - t0
                if n + 1 == len(tasks) or tasks[n + 1][0] != j:
                    yield ks, res
                    res = None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def batches(self, angles: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, dict]]:
        if self.chosen == "frame":
            yield from self._frame_batches(angles, batch)
            return
        todo = [angles[i : i + batch] for i in range(0, len(angles), batch)]
        if not todo:
            return
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            # The next batch is prepared (numpy, releases the GIL) while the UNet runs.
            pending = pool.submit(self._prepare, todo[0])
            for j, ks in enumerate(todo):
                x, roi, t_prep = pending.result()
                if j + 1 < len(todo):
                    pending = pool.submit(self._prepare, todo[j + 1])
                t0 = time.perf_counter()
                out = self._predict(x)
                t1 = time.perf_counter()
                values = self._finish(out, ks, roi)
                del out, x
                self.timings["kernels"] += t_prep + (time.perf_counter() - t1)
                self.timings["unet"] += t1 - t0
                yield ks, values
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # --- attributes -------------------------------------------------------------------------
    def attrs(self) -> dict:
        path = getattr(self.model, "path", None)
        attrs = {
            "engine": self.name,
            "engine_title": self.title,
            "engine_citation": self.citation,
            "model_sha256": str(getattr(self.model, "sha256", "")),
            "model_file": Path(path).name if path is not None else "",
            "sigma": self.sigma,
            "synthetic_weights": "true" if self.synthetic else "false",
            "model_training_resolution": TRAINING_RESOLUTION,
        }
        if self.geom is not None:
            geom = self.geom
            res = self.resolution
            clean = int(self.edge.size - np.count_nonzero(self.edge))
            attrs.update(
                {
                    "devine_method": self.chosen,
                    "devine_method_requested": self.method,
                    "clean_fraction": float(clean / max(self.edge.size, 1)),
                    "table_center_x": self.center_xy[0],
                    "table_center_y": self.center_xy[1],
                }
            )
            if self.method == "auto":
                fg = self.fgeom
                attrs["devine_method_choice"] = (
                    f"auto: {self.chosen} (pixels free of edge influence: frame "
                    f"{fg.clean_count('frame')}, crop {fg.clean_count('crop')}; the crop on a tie)"
                )
            if self.chosen == "frame":
                er, ec = self.fgeom.margins
                attrs.update(
                    {
                        "tile_size": int(self.tile_size),
                        "edge_margin_rows": int(er),
                        "edge_margin_cols": int(ec),
                        "edge_margin_m": float(max(er, ec) * res),
                        "geometry_comment": (
                            "frame method: one extended rotated frame per direction about "
                            "(table_center_x, table_center_y), computed tile by tile "
                            "(docs/method.md §9.1); values on the whole DEM; edge_influence = 0 "
                            "(free of terrain outside the DEM for every direction) at least "
                            "edge_margin_rows rows and edge_margin_cols columns inside its edges"
                        ),
                    }
                )
                return self._synthetic_attrs(attrs)
            attrs.update(
                {
                    "table_size": int(geom.s),
                    "valid_radius": float(geom.valid_radius),
                    "valid_radius_m": float(geom.valid_radius * res),
                    "interior_radius": float(max(geom.valid_radius - MARGIN, 0)),
                    "interior_radius_m": float(max(geom.valid_radius - MARGIN, 0) * res),
                    "geometry_comment": (
                        "the table has values for every direction within valid_radius pixels "
                        "of (table_center_x, table_center_y) and none outside (NaN for every "
                        f"direction); within {MARGIN} pixels of that rim (beyond "
                        "interior_radius) the UNet's zero padding influences some directions "
                        "(docs/method.md §9); edge_influence also marks the pixels whose "
                        "values read terrain outside the DEM (§9.1)"
                    ),
                }
            )
        return self._synthetic_attrs(attrs)

    def _synthetic_attrs(self, attrs: dict) -> dict:
        if self.synthetic:
            attrs["comment"] = (
                "computed with a model with SYNTHETIC (untrained) weights: the values are NOT "
                "physical and only demonstrate the pipeline"
            )
        return attrs
