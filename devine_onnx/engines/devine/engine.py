"""The ``devine`` table engine: the DEVINE UNet run on the DEM rotated to every direction.

For each table direction ``k`` (docs/method.md §3) the DEM is rotated so that the inflow comes
from the west, normalised by its sliding mean, cropped, run through the UNet and the speed
ratio and deviation are rotated back. The table covers the central ``s x s`` crop of the DEM
(§3.3); only the disc of ``valid_radius`` pixels lies inside the rotated DEM for every
direction, so pixels outside it are NaN for every direction (§9), and the outer
:data:`MARGIN` pixels of that disc are influenced by the UNet's zero padding for some
directions.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

from devine_onnx.engines.base import TableEngine, TableWindow
from devine_onnx.errors import DEMError, DevineWarning, OptionError, option
from devine_onnx.session import HALO

from .geometry import MIN_SIZE, CropGeometry, trim_to_odd
from .postprocess import ARPS_INFLOW, prepare_input, speed_alpha
from .rotation import rotate_nearest, rotation_angle, rotation_source_indices

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
        demonstration model (synthetic weights), a :class:`~devine_onnx.session.DevineModel`,
        or None for ``$DEVINE_ONNX_MODEL``.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (when ``model`` is not a DevineModel).
    tile
        UNet tile size; ``DEFAULT`` keeps the model's, None disables tiling.
    """

    name = "devine"
    title = "DEVINE UNet on the rotated DEM (Le Toumelin et al. 2023)"
    citation = (
        "Le Toumelin, L., Gouttevin, I., Helbig, N., Galiez, C., Roux, M. and Karbou, F., 2023: "
        "Emulating the adaptation of wind fields to complex terrain with deep learning. "
        "Artif. Intell. Earth Syst., 2, e220034, doi:10.1175/AIES-D-22-0034.1"
    )
    variables = ("acceleration", "alpha", "vertical")
    resume_keys = ("model_sha256", "sigma")

    def __init__(self, model=None, device: str = "auto", tile=DEFAULT):
        if model is not None and hasattr(model, "predict"):
            self.model = model
        else:
            from devine_onnx.session import DevineModel, demo_model_path

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

    def coverage(self, dem: xr.DataArray) -> TableWindow:
        geom = self._geometry(dem)
        return TableWindow(geom.rows, geom.cols)

    def target_window(self, dem, bounds) -> TableWindow:
        """Target pixels, refused unless inside the valid disc minus the UNet margin."""
        xmin, ymin, xmax, ymax = bounds
        geom = self._geometry(dem)
        res = abs(float(dem.x.values[1] - dem.x.values[0]))
        label = f"target ({xmin:.1f}, {ymin:.1f}, {xmax:.1f}, {ymax:.1f})"
        cy, cx = geom.center
        x0 = float(dem.x.values[cx])
        y0 = float(dem.y.values[cy])
        xs, ys = dem.x.values, dem.y.values
        half = res / 2
        if (
            xmax < xs.min() - half
            or xmin > xs.max() + half
            or ymax < ys.min() - half
            or (ymin > ys.max() + half)
        ):
            raise OptionError(
                f"{option('target')} {label}: lies outside the DEM (x {xs.min() - half:.1f} to "
                f"{xs.max() + half:.1f}, y {ys.min() - half:.1f} to {ys.max() + half:.1f}); "
                "give bounds in the DEM's CRS inside its extent"
            )
        corners = [(x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
        reach = max(math.hypot(x - x0, y - y0) for x, y in corners) / res
        inner = geom.valid_radius - MARGIN
        if reach > inner:
            a = (xmax - xmin) / 2 / res
            b = (ymax - ymin) / 2 / res
            m = minimum_dem_size(math.hypot(a, b))
            beyond = math.ceil((m / 2 - min(a, b)) * res)
            raise OptionError(
                f"{option('target')} {label}: reaches {reach * res:.0f} m from the DEM centre ({x0:.1f}, "
                f"{y0:.1f}) but the DEVINE table is reliable only within "
                f"{max(inner, 0) * res:.0f} m (valid radius {geom.valid_radius:g} px minus a "
                f"{MARGIN} px UNet margin, at {res:g} m); the DEM must extend at least "
                f"{beyond} m beyond the target on every side (centred on it: at least {m} x {m} "
                "pixels)"
            )
        return super().target_window(dem, bounds)

    # --- computation ------------------------------------------------------------------------
    def bind(self, dem: xr.DataArray, window: TableWindow) -> None:
        self.geom = geom = self._geometry(dem)
        self.z = np.ascontiguousarray(dem.values, dtype=np.float32)
        # Table rows/columns to store, in crop coordinates.
        self.trows = slice(window.rows.start - geom.rows.start, window.rows.stop - geom.rows.start)
        self.tcols = slice(window.cols.start - geom.cols.start, window.cols.stop - geom.cols.start)
        self.full = window.shape == (geom.s, geom.s)
        # All-or-none: a pixel outside the disc valid for every direction is NaN for all.
        self.outside = ~geom.valid_disc()[self.trows, self.tcols]
        self.timings = {"kernels": 0.0, "unet": 0.0}
        self.resolution = abs(float(dem.x.values[1] - dem.x.values[0]))
        cy, cx = geom.center
        self.center_xy = (float(dem.x.values[cx]), float(dem.y.values[cy]))

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
        for i, k in enumerate(ks):
            x[i] = prepare_input(self.z, int(k), self.sigma, self.geom)[r0:r1, c0:c1]
        return x, (slice(r0, r1), slice(c0, c1)), time.perf_counter() - t0

    def _predict(self, x: np.ndarray) -> np.ndarray:
        if isinstance(self.tile, str) and self.tile == DEFAULT:
            return self.model.predict(x)
        return self.model.predict(x, tile=self.tile)

    def _finish(self, out: np.ndarray, ks, roi) -> dict:
        n = len(ks)
        ny = self.trows.stop - self.trows.start
        nx = self.tcols.stop - self.tcols.start
        res = {name: np.empty((n, ny, nx), np.float32) for name in self.variables}
        s = self.geom.s
        inflow = np.float32(ARPS_INFLOW)
        for i, k in enumerate(ks):
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
        return res

    def batches(self, angles: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, dict]]:
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
            attrs.update(
                {
                    "table_size": int(geom.s),
                    "table_center_x": self.center_xy[0],
                    "table_center_y": self.center_xy[1],
                    "valid_radius": float(geom.valid_radius),
                    "valid_radius_m": float(geom.valid_radius * res),
                    "interior_radius": float(max(geom.valid_radius - MARGIN, 0)),
                    "interior_radius_m": float(max(geom.valid_radius - MARGIN, 0) * res),
                    "geometry_comment": (
                        "the table has values for every direction within valid_radius pixels "
                        "of (table_center_x, table_center_y) and none outside (NaN for every "
                        f"direction); within {MARGIN} pixels of that rim (beyond "
                        "interior_radius) the UNet's zero padding influences some directions "
                        "(docs/method.md §9)"
                    ),
                }
            )
        if self.synthetic:
            attrs["comment"] = (
                "computed with a model with SYNTHETIC (untrained) weights: the values are NOT "
                "physical and only demonstrate the pipeline"
            )
        return attrs
