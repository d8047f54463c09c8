"""The devine engine's frame method (docs/method.md §9.1): one extended rotated frame per
direction, computed tile by tile; its equality with the crop method in the crop's interior, the
edge-influence marker against a brute-force check, and the automatic choice of the method."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from devine_onnx.engines import get_engine
from devine_onnx.engines.base import TableWindow
from devine_onnx.engines.devine.engine import DevineEngine
from devine_onnx.engines.devine.frame import FrameGeometry, edge_margins
from devine_onnx.engines.devine.geometry import trim_to_odd
from devine_onnx.engines.devine.model import DevineModel
from devine_onnx.errors import OptionError
from devine_onnx.io.dem import load_dem
from devine_onnx.tables.build import compute_corrections

KS = [20, 137, 270]
NAMES = ("acceleration", "alpha", "vertical")
RES = 30.0


def terrain(shape, offset=(20, 20)) -> xr.DataArray:
    """Real terrain (matplotlib's Jacksboro DEM) on a Lambert-93 grid, north-up."""
    cbook = pytest.importorskip("matplotlib.cbook")
    z = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(np.float32)
    z = z[offset[0] : offset[0] + shape[0], offset[1] : offset[1] + shape[1]]
    assert z.shape == tuple(shape)
    da = xr.DataArray(
        z,
        dims=("y", "x"),
        coords={
            "y": 6_450_000.0 - RES * np.arange(shape[0]),
            "x": 900_000.0 + RES * np.arange(shape[1]),
        },
        name="elevation",
    )
    return da.rio.write_crs("EPSG:2154")


def flat_grid(shape) -> xr.DataArray:
    """A DEM of the given shape (values irrelevant: geometry and choices only)."""
    ny, nx = shape
    da = xr.DataArray(
        np.full(shape, 500.0, np.float32),
        dims=("y", "x"),
        coords={"y": 6_450_000.0 - RES * np.arange(ny), "x": 900_000.0 + RES * np.arange(nx)},
    )
    return da.rio.write_crs("EPSG:2154")


def outside_terrain(k, rows, cols):
    """Made-up terrain outside the DEM, a function of the rotated-frame pixel (and k)."""
    rows = np.asarray(rows, np.float64)
    cols = np.asarray(cols, np.float64)
    hills = 900.0 + 400.0 * np.sin(0.11 * rows + k) * np.cos(0.07 * cols)
    return (hills + 37.0 * ((rows * 7919 + cols * 104729) % 13)).astype(np.float32)


@pytest.fixture(scope="module")
def model(demo_model_file) -> DevineModel:
    return DevineModel(demo_model_file, device="cpu")


@pytest.fixture(scope="module")
def dem301() -> xr.DataArray:
    return terrain((301, 301))


def table(engine, dem, ks=KS, batch=1) -> xr.Dataset:
    return compute_corrections(dem, engine=engine, angles=ks, batch=batch, quiet=True)


@pytest.fixture(scope="module")
def crop301(model, dem301):
    return table(DevineEngine(model, method="crop"), dem301)


@pytest.fixture(scope="module")
def frame301(model, dem301):
    return table(DevineEngine(model, method="frame"), dem301)


def bound_values(engine, dem, window, ks=KS, batch=1) -> dict:
    """The engine's values on ``window`` (bypassing coverage and target checks)."""
    da, _ = load_dem(dem)
    da = engine.prepare_dem(da, [])
    engine.bind(da, window)
    parts = {name: [] for name in NAMES}
    for _, values in engine.batches(np.asarray(ks), batch):
        for name in NAMES:
            parts[name].append(values[name])
    return {name: np.concatenate(parts[name]) for name in NAMES}


def test_frame_table_layout(frame301, dem301):
    ds = frame301
    assert ds.attrs["devine_method"] == "frame" and ds.attrs["devine_method_requested"] == "frame"
    assert ds.sizes["y"] == 301 and ds.sizes["x"] == 301  # the whole DEM
    for name in NAMES:
        assert not np.isnan(ds[name].values).any()  # every pixel can be computed
    er, ec = edge_margins()
    assert (ds.attrs["edge_margin_rows"], ds.attrs["edge_margin_cols"]) == (er, ec) == (135, 135)
    flag = ds.edge_influence.values
    assert flag.dtype == np.uint8
    clean = np.zeros((301, 301), bool)
    clean[er : 301 - er, ec : 301 - ec] = True
    np.testing.assert_array_equal(flag == 0, clean)
    assert ds.attrs["clean_fraction"] == pytest.approx(clean.mean())


def test_equal_to_crop_in_its_interior(frame301, crop301, dem301):
    """Where the crop's values do not feel its edge (its interior disc, r <= d - 64, which
    includes everything >= 100 px inside the valid disc), both methods agree."""
    geom = FrameGeometry.from_shape(dem301.shape).crop
    a = np.arange(geom.s) - geom.d
    interior = a[:, None] ** 2 + a[None, :] ** 2 <= (geom.d - 64) ** 2
    assert interior.sum() > 5000
    frame = frame301.isel(y=geom.rows, x=geom.cols)
    np.testing.assert_array_equal(frame.x.values, crop301.x.values)
    for name in NAMES:
        f, c = frame[name].values[:, interior], crop301[name].values[:, interior]
        diff = np.abs(f - c)
        if name == "alpha":  # atan folds at +-pi/2: a sign flip there is not a difference
            diff[(np.abs(f) > np.pi / 2 - 1e-3) & (np.abs(c) > np.pi / 2 - 1e-3)] = 0
        assert diff.max() <= 1e-5, (name, float(diff.max()))
    # ...and they differ near the crop's rim, where its zero padding shows.
    rim = ~np.isnan(crop301.acceleration.values[0]) & ~interior
    assert (
        np.abs(frame.acceleration.values[:, rim] - crop301.acceleration.values[:, rim]).max() > 1e-3
    )


def test_tile_size_does_not_change_a_bit(model, dem301, frame301):
    window = TableWindow(slice(100, 141), slice(0, 61))  # from the edge into the DEM
    small = bound_values(DevineEngine(model, method="frame", tile_size=24), dem301, window)
    large = bound_values(
        DevineEngine(model, method="frame", tile_size=1024), dem301, window, batch=2
    )
    for name in NAMES:
        np.testing.assert_array_equal(small[name], large[name])
        whole = frame301[name].values[:, window.rows, window.cols]  # one 301 px tile
        np.testing.assert_array_equal(small[name], whole)


def test_edge_influence_brute_force(model, dem301, frame301):
    """Other terrain outside the DEM changes no value that the marker calls clean."""
    eng = DevineEngine(model, method="frame")
    eng._outside = outside_terrain
    other = table(eng, dem301)
    changed = np.zeros((301, 301), bool)
    for name in NAMES:
        changed |= (other[name].values != frame301[name].values).any(axis=0)
    marker_clean = frame301.edge_influence.values == 0
    # The margins of the directions computed here (the marker covers all 360: wider).
    er, ec = edge_margins(KS)
    band = np.zeros((301, 301), bool)
    band[er : 301 - er, ec : 301 - ec] = True
    assert not changed[band].any()
    assert not changed[marker_clean].any()
    assert (band | ~marker_clean).all()
    # The check has teeth: values change outside the band, up to a few pixels from it.
    assert changed.mean() > 0.5
    depth = np.minimum.outer(
        np.minimum(np.arange(301) - er, 300 - er - np.arange(301)),
        np.minimum(np.arange(301) - ec, 300 - ec - np.arange(301)),
    )  # < 0 outside the band: how far outside
    assert depth[changed].max() >= -10


def test_crop_edge_influence_brute_force(model, dem301, crop301):
    """The crop's marker too: another fill changes nothing it calls clean."""
    eng = DevineEngine(model, method="crop")
    eng._fill = 2500.0
    other = table(eng, dem301)
    clean = crop301.edge_influence.values == 0
    assert clean.sum() == 31 * 31  # the frame's clean square lies in the crop's interior disc
    for name in NAMES:
        a, b = crop301[name].values, other[name].values
        assert np.abs(a - b)[:, clean].max() <= 1e-5  # float64 sums see the whole block
        assert np.nanmax(np.abs(a - b)[:, ~clean]) > 1e-2


def test_netcdf_output_and_options(model, tmp_path):
    dem = terrain((185, 185))
    out = tmp_path / "frame.nc"
    ds = compute_corrections(
        dem, model, [270], engine_options={"method": "frame", "tile_size": 96}, output=out,
        quiet=True,
    )  # fmt: skip
    assert ds.attrs["devine_method"] == "frame" and ds.attrs["tile_size"] == 96
    assert ds.edge_influence.dtype == np.uint8 and int(ds.edge_influence.min()) == 1  # small
    assert not np.isnan(ds.acceleration.values).any()
    with pytest.raises(OptionError, match="method='nope'"):
        DevineEngine(model, method="nope")
    with pytest.raises(OptionError, match="tile_size=8"):
        DevineEngine(model, tile_size=8)
    with pytest.raises(OptionError, match="no such option"):
        get_engine("micromet", options={"method": "frame"})


@pytest.mark.parametrize(
    "shape, method",
    [
        ((185, 185), "crop"),  # no clean pixel either way: today's crop
        ((301, 301), "crop"),  # the frame's clean square lies within the crop's disc
        ((357, 357), "crop"),  # the largest square DEM where the crop ties
        ((359, 359), "frame"),
        ((301, 501), "frame"),  # not square: the frame covers more
        ((1001, 1001), "frame"),
    ],
)
def test_auto_chooses_more_usable_area(model, shape, method):
    fg = FrameGeometry.from_shape(shape)
    frame, crop = fg.clean_count("frame"), fg.clean_count("crop")
    assert (frame > crop) == (method == "frame")
    eng = DevineEngine(model)
    dem = eng.prepare_dem(flat_grid(shape), [])
    window = eng.coverage(dem)
    if method == "frame":
        assert window.shape == dem.shape
    else:
        assert window.shape == (fg.crop.s, fg.crop.s)
    # The counts are those of the masks.
    for m, n in (("frame", frame), ("crop", crop)):
        rows, cols = slice(0, shape[0]), slice(0, shape[1])
        assert fg.clean(m, rows, cols).sum() == n


def test_frame_never_has_fewer_clean_pixels():
    for h in range(185, 1300, 37):
        for w in (h, h + 52, 2 * h + 1):
            fg = FrameGeometry(h, w)
            assert fg.clean_count("frame") >= fg.clean_count("crop")
            rows, cols = slice(0, h), slice(0, w)
            assert not (fg.crop_clean(rows, cols) & ~fg.band_clean(rows, cols)).any()


def test_4000_px_dem_mostly_free_of_edge_influence():
    fg = FrameGeometry(*trim_to_odd(4000, 4000))
    frame = fg.clean_count("frame") / 4000**2
    crop = fg.clean_count("crop") / 4000**2
    assert frame >= 0.85 and frame == pytest.approx(0.869, abs=1e-3)
    assert crop == pytest.approx(0.358, abs=2e-3)


def test_targets(model):
    dem = DevineEngine(model).prepare_dem(flat_grid((401, 601)), [])
    x0, y0 = float(dem.x[0]), float(dem.y[0])

    def bounds(c0, r0, c1, r1):  # columns/rows -> (xmin, ymin, xmax, ymax)
        return (x0 + c0 * RES, y0 - r1 * RES, x0 + c1 * RES, y0 - r0 * RES)

    auto = DevineEngine(model)
    centre = bounds(290, 190, 310, 210)  # inside the crop's interior disc: the crop
    window = auto.target_window(dem, centre)
    auto.bind(dem, window)
    assert auto.chosen == "crop" and window.shape == (21, 21)
    east = bounds(440, 190, 460, 210)  # beyond the crop but >= 135 px inside the DEM
    window = auto.target_window(dem, east)
    auto.bind(dem, window)  # bound elsewhere (a dask worker): the same choice from the window
    assert auto.chosen == "frame" and window.cols == slice(440, 461)
    with pytest.raises(OptionError, match="frame method.*extend at least 4050 m"):
        auto.target_window(dem, bounds(500, 190, 520, 210))  # too close to the east edge
    with pytest.raises(OptionError, match="crop method"):
        DevineEngine(model, method="crop").target_window(dem, east)


def test_downscale_and_plot_respect_the_marker(model, tmp_path):
    import warnings

    from devine_onnx.downscaling.api import downscale
    from devine_onnx.plot import plot_table, plot_wind
    from devine_onnx.sample_data import sample_dem, sample_nwp

    tbl = compute_corrections(
        sample_dem((185, 185)), model, [0, 90, 180, 270], engine_options={"method": "frame"},
        quiet=True,
    )  # fmt: skip
    flag = tbl.edge_influence.values.copy()
    assert flag.all()  # 185 px: every value feels the DEM's edge for some direction
    flag[40:100, 60:120] = 0  # pretend part of it is clean, to see the flag carried
    tbl["edge_influence"] = (("y", "x"), flag, tbl.edge_influence.attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wind = downscale(sample_nwp(n_times=2), tbl, cache_dir=False, quiet=True)
        coarse = downscale(sample_nwp(n_times=2), tbl, coarsen=4, cache_dir=False, quiet=True)
    np.testing.assert_array_equal(wind.edge_influence.values, flag)
    assert wind.attrs["table_devine_method"] == "frame"
    blocks = flag[:184, :184].reshape(46, 4, 46, 4).any(axis=(1, 3))
    np.testing.assert_array_equal(coarse.edge_influence.values, blocks)
    assert plot_wind(wind, output=tmp_path / "w.png").stat().st_size > 1000
    assert plot_table(tbl, 270, tmp_path / "t.png").stat().st_size > 1000


def test_command_line(demo_model_file, tmp_path):
    from typer.testing import CliRunner

    from devine_onnx.cli import app
    from devine_onnx.sample_data import sample_dem

    dem = tmp_path / "dem.tif"
    sample_dem((185, 185)).rio.to_raster(dem, driver="GTiff")
    out = tmp_path / "t.nc"
    args = ["corrections", dem, "-m", demo_model_file, "-o", out, "--angles", "270"]
    args += ["--devine-method", "frame", "--tile-size", "128", "--device", "cpu"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "frame method: values on the whole DEM" in result.output
    with xr.open_dataset(out) as ds:
        assert ds.attrs["devine_method"] == "frame" and ds.attrs["tile_size"] == 128
    args = ["corrections", dem, "--engine", "micromet", "-o", tmp_path / "m.nc"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--devine-method", "crop"]])
    assert result.exit_code == 1 and "--devine-method crop" in result.output
