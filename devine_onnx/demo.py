"""``devine-onnx demo``: the whole chain on real terrain, in a minute on a laptop.

Writes a DEM of real terrain (the Jacksboro fault area, Tennessee, that matplotlib ships,
reprojected to UTM 16N) and a synthetic AROME-like wind series over it, computes the
correction table for all 360 directions, builds the regridding weights, downscales the series
and draws two PNGs.

By default the table comes from the built-in ``micromet`` engine (Liston & Elder 2006): a
physical terrain parameterisation that needs no weights. With ``model`` it comes from a
DEVINE or devine-torch model on 30 m terrain; the shipped demonstration model (``"demo"``)
has synthetic weights, and the notice printed before and after says that its results only
demonstrate the pipeline.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OptionError, OutputError, option
from .io.atomic import atomic_output

__all__ = ["DemoResult", "run_demo"]

DEM_NAME = "demo_dem.tif"
NWP_NAME = "demo_nwp.nc"
TABLE_NAME = "demo_table.nc"
WEIGHTS_NAME = "demo_weights.nc"
WIND_NAME = "demo_wind.nc"
WIND_PNG = "demo_wind.png"
TABLE_PNG = "demo_table.png"


@dataclass
class DemoResult:
    """Paths written by :func:`run_demo` and what the run used."""

    out_dir: Path
    dem: Path
    nwp: Path
    table: Path
    weights: Path
    wind: Path
    wind_png: Path
    table_png: Path
    engine: str
    model: Path | None
    synthetic: bool
    angles: int
    seconds: float
    timings: dict = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return [
            self.dem,
            self.nwp,
            self.table,
            self.weights,
            self.wind,
            self.wind_png,
            self.table_png,
        ]

    def summary(self) -> str:
        used = f"model {self.model}" if self.model is not None else "no model"
        lines = [
            f"demo done in {self.seconds:.0f} s ({self.engine} engine, {used}, {self.angles} "
            f"directions); wrote into {self.out_dir}:"
        ]
        lines += [f"  {p}" for p in self.files]
        return "\n".join(lines)


def _models_readme() -> str:
    """Where the user can read how to get and convert the official weights."""
    try:
        from .engines.runtime import demo_model_path

        readme = demo_model_path().parent / "README.md"
        if readme.is_file():
            return str(readme)
    except Exception:  # noqa: BLE001 - only used in a message
        pass
    return "models/README.md"


def synthetic_notice(model: Path, when: str) -> str:
    """The not-physical notice printed before (``when="before"``) and after the demo."""
    readme = _models_readme()
    if when == "before":
        head = (
            f"NOTICE: {model.name} has SYNTHETIC (untrained) weights. The demo will only "
            "demonstrate the pipeline: its winds are NOT physical."
        )
    else:
        head = (
            f"NOTICE: these results were computed with {model.name}, whose weights are "
            "SYNTHETIC (untrained): they only demonstrate the pipeline and are NOT physical."
        )
    return (
        f"{head} For real downscaling, convert the official DEVINE weights with "
        f"'devine-onnx convert' and pass --model or set DEVINE_ONNX_MODEL (see {readme})."
    )


def _own_notice(func):
    """``func`` without its synthetic-weights warning: the demo prints its own notice,
    before and after the run, instead of one warning per step."""
    from .synthetic import SyntheticWeightsWarning

    @functools.wraps(func)
    def call(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntheticWeightsWarning)
            return func(*args, **kwargs)

    return call


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _prepare_folder(out_dir) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{out}: cannot create the demo folder ({exc.strerror or exc}); choose another --out"
        ) from None
    if not os.access(out, os.W_OK):
        raise OutputError(f"{out}: the demo folder is not writable; choose another --out")
    return out


def run_demo(
    out_dir: str | os.PathLike = "demo",
    model: str | os.PathLike | None = None,
    quiet: bool = False,
    *,
    angle_step: int = 1,
    device: str = "auto",
    engine: str | None = None,
) -> DemoResult:
    """Run the full chain on real terrain and a synthetic forecast, writing into ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder for the outputs (created if needed; default ``demo``): ``demo_dem.tif``,
        ``demo_nwp.nc``, ``demo_table.nc``, ``demo_weights.nc``, ``demo_wind.nc`` (CF
        NetCDF), ``demo_wind.png`` and ``demo_table.png``.
    model
        None (default): the ``micromet`` engine on a 60 m DEM. An ONNX model path (or
        ``"demo"`` for the shipped demonstration model with synthetic weights): that model's
        engine on a 30 m DEM of the same area.
    quiet
        No progress bars or step messages. The not-physical notice after the run is printed
        even then when the model is synthetic.
    angle_step
        Compute the table every ``angle_step`` degrees only (tests; the demo uses all 360).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (model engines).
    engine
        A built-in engine without a model, ``"micromet"`` (the default when no model is given)
        or ``"helbig"`` (Helbig et al. 2017), on the 60 m DEM; with a model, None or that
        model's engine.

    Returns
    -------
    DemoResult
        The paths written, the engine and model used, whether it is synthetic, the wall time.
    """
    from .downscaling.api import downscale
    from .engines import get_engine
    from .engines.runtime import demo_model_path
    from .plot import plot_table, plot_wind
    from .regrid.cache import build_weights
    from .sample_data import JACKSBORO_CENTER, real_dem, sample_nwp
    from .tables.build import compute_corrections

    compute_corrections, downscale, plot_wind, plot_table = map(
        _own_notice, (compute_corrections, downscale, plot_wind, plot_table)
    )
    if (
        isinstance(angle_step, bool)
        or not isinstance(angle_step, int)
        or not 1 <= angle_step <= 180
    ):
        raise OptionError(f"{option('angle_step', angle_step)}: expected an integer in 1..180")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    out = _prepare_folder(out_dir)
    if model is None:
        engine = get_engine(engine or "micromet")
        model_path = None
        dem = real_dem(resolution=60.0, size_km=18.0)
    else:
        model_path = demo_model_path() if str(model) == "demo" else Path(model)
        engine = get_engine(engine, model_path, device=device)
        dem = real_dem(resolution=30.0, size_km=9.0)
    synthetic = str(engine.attrs().get("synthetic_weights", "false")) == "true"
    if synthetic and not quiet:
        _say(synthetic_notice(model_path, "before"))

    paths = {
        name: out / fname
        for name, fname in (
            ("dem", DEM_NAME),
            ("nwp", NWP_NAME),
            ("table", TABLE_NAME),
            ("weights", WEIGHTS_NAME),
            ("wind", WIND_NAME),
            ("wind_png", WIND_PNG),
            ("table_png", TABLE_PNG),
        )
    }

    def step(name: str, text: str):
        if not quiet:
            _say(text)
        timings[name] = time.perf_counter()

    def done(name: str) -> None:
        timings[name] = time.perf_counter() - timings[name]

    step("inputs", f"[1/5] writing the DEM (real terrain) and a synthetic wind series to {out}")
    with atomic_output(paths["dem"]) as tmp:
        dem.rio.to_raster(tmp, driver="GTiff", compress="deflate")
    nwp = sample_nwp(center_lonlat=JACKSBORO_CENTER)
    with atomic_output(paths["nwp"]) as tmp:
        nwp.to_netcdf(tmp, engine="netcdf4")
    done("inputs")

    angles = list(range(0, 360, angle_step))
    step("corrections", f"[2/5] correction table, {len(angles)} directions ({engine.title})")
    compute_corrections(
        paths["dem"], engine=engine, angles=angles, output=paths["table"], quiet=quiet
    )
    done("corrections")

    step("regrid", "[3/5] regridding weights NWP -> table grid")
    weights = build_weights(paths["nwp"], paths["table"], output=paths["weights"])
    done("regrid")

    step("downscale", "[4/5] downscaling the wind series")
    downscale(
        paths["nwp"],
        paths["table"],
        output=paths["wind"],
        weights=weights,
        quiet=quiet,
    )
    done("downscale")

    step("plots", "[5/5] drawing the maps")
    plot_wind(paths["wind"], output=paths["wind_png"], table=paths["table"])
    plot_table(paths["table"], angle=270, output=paths["table_png"])
    done("plots")

    result = DemoResult(
        out_dir=out,
        engine=engine.name,
        model=model_path,
        synthetic=synthetic,
        angles=len(angles),
        seconds=time.perf_counter() - t0,
        timings=timings,
        **paths,
    )
    if synthetic:
        _say(synthetic_notice(model_path, "after"))
    return result
