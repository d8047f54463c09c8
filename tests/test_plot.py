"""Quick-look maps: PNG written atomically with the expected size; inputs validated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from devine_onnx.errors import InputFileError, OptionError, OutputError, TableError
from devine_onnx.io.atomic import partial_path
from devine_onnx.plot import DPI, TABLE_FIGSIZE, WIND_FIGSIZE, plot_file, plot_table, plot_wind
from devine_onnx.sample_data import LAMBERT93, sample_dem

NY, NX = 61, 71
TIMES = pd.date_range("2026-01-15T00:00", periods=3, freq="h")


def _grid_mapping() -> xr.DataArray:
    from pyproj import CRS

    crs = CRS.from_user_input(LAMBERT93)
    return xr.DataArray(np.int32(0), attrs={**crs.to_cf(), "crs_wkt": crs.to_wkt()})


@pytest.fixture(scope="module")
def table_ds() -> xr.Dataset:
    dem = sample_dem((NY, NX))
    angles = np.array([0, 90, 180, 270])
    rng = np.random.default_rng(1)
    acc = (1 + 0.2 * rng.standard_normal((4, NY, NX))).astype(np.float32)
    acc[:, :5, :5] = np.nan
    alpha = (0.2 * rng.standard_normal((4, NY, NX))).astype(np.float32)
    ds = xr.Dataset(
        {
            "acceleration": (("angle", "y", "x"), acc, {"grid_mapping": "spatial_ref"}),
            "alpha": (
                ("angle", "y", "x"),
                alpha,
                {"units": "radian", "grid_mapping": "spatial_ref"},
            ),
            "elevation": (("y", "x"), dem.values, {"units": "m", "grid_mapping": "spatial_ref"}),
        },
        coords={
            "angle": angles,
            "y": dem.y.values,
            "x": dem.x.values,
            "spatial_ref": _grid_mapping(),
        },
        attrs={"synthetic_weights": "true"},
    )
    return ds


@pytest.fixture(scope="module")
def wind_ds(table_ds) -> xr.Dataset:
    nt = TIMES.size
    speed = np.full((nt, NY, NX), 5.0, dtype=np.float32)
    speed[:, 10:20, 10:30] = 9.0
    speed[:, -3:, :] = np.nan  # outside the valid disc
    u = np.full_like(speed, 5.0)
    v = np.zeros_like(speed)
    attrs = {"units": "m s-1", "grid_mapping": "spatial_ref"}
    return xr.Dataset(
        {
            "wind_speed": (("time", "y", "x"), speed, attrs),
            "wind_from_direction": (
                ("time", "y", "x"),
                np.full_like(speed, 270.0),
                {"units": "degree", "grid_mapping": "spatial_ref"},
            ),
            "eastward_wind": (("time", "y", "x"), u, attrs),
            "northward_wind": (("time", "y", "x"), v, attrs),
        },
        coords={
            "time": TIMES,
            "y": table_ds.y.values,
            "x": table_ds.x.values,
            "spatial_ref": _grid_mapping(),
        },
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory, table_ds, wind_ds):
    folder = tmp_path_factory.mktemp("plot")
    table, wind = folder / "table.nc", folder / "wind.nc"
    table_ds.to_netcdf(table)
    wind_ds.to_netcdf(wind)
    return table, wind


def _read_png(path):
    import matplotlib.image as mpimg

    assert path.is_file() and path.stat().st_size > 1000
    assert not partial_path(path).exists()
    return mpimg.imread(path)


def test_plot_wind_png(tmp_path, files):
    table, wind = files
    out = plot_wind(wind, output=tmp_path / "map.png", table=table)
    img = _read_png(out)
    assert img.shape[:2] == (round(WIND_FIGSIZE[1] * DPI), round(WIND_FIGSIZE[0] * DPI))
    # Not a blank image: many distinct colours (colour map, contours, arrows).
    assert np.unique(img.reshape(-1, img.shape[-1])[::7], axis=0).shape[0] > 200


def test_plot_wind_time_and_custom_size(tmp_path, wind_ds, table_ds):
    out = plot_wind(
        wind_ds,
        time="2026-01-15T02:00",
        output=tmp_path / "m.png",
        table=table_ds,
        figsize=(4, 3),
        dpi=50,
    )
    assert _read_png(out).shape[:2] == (150, 200)
    out = plot_wind(wind_ds, time=-1, output=tmp_path / "m2.png")  # index, no terrain
    assert _read_png(out).ndim == 3


def test_plot_wind_bad_time(tmp_path, files):
    _, wind = files
    out = tmp_path / "map.png"
    with pytest.raises(OptionError) as exc:
        plot_wind(wind, time="2026-02-01T00:00", output=out)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "--time" in msg and "2026-01-15T00:00:00" in msg and "2026-01-15T02:00:00" in msg
    assert "3 time steps" in msg and "every 1 h" in msg
    with pytest.raises(OptionError, match="not a date/time"):
        plot_wind(wind, time="yesterday", output=out)
    with pytest.raises(OptionError, match="out of range"):
        plot_wind(wind, time=7, output=out)
    assert not out.exists() and not partial_path(out).exists()


def test_plot_table_png(tmp_path, files):
    table, _ = files
    out = plot_table(table, angle=90, output=tmp_path / "table.png")
    img = _read_png(out)
    assert img.shape[:2] == (round(TABLE_FIGSIZE[1] * DPI), round(TABLE_FIGSIZE[0] * DPI))


def test_plot_table_bad_angle(tmp_path, files):
    table, _ = files
    with pytest.raises(OptionError, match="45.*not in .*it has angles 0.*270"):
        plot_table(table, angle=45, output=tmp_path / "t.png")


def test_wrong_kind_of_file(tmp_path, files):
    table, wind = files
    with pytest.raises(TableError, match="not a devine-onnx correction table"):
        plot_table(wind, output=tmp_path / "t.png")
    with pytest.raises(InputFileError, match="not a devine-onnx downscaled output"):
        plot_wind(table, output=tmp_path / "m.png")
    text = tmp_path / "notes.nc"
    text.write_text("hello")
    with pytest.raises(InputFileError, match="notes.nc"):
        plot_wind(text, output=tmp_path / "m.png")
    with pytest.raises(InputFileError, match="not found"):
        plot_file(tmp_path / "missing.nc", tmp_path / "m.png")
    assert not list(tmp_path.glob("*.png*"))


def test_table_without_elevation_for_contours(tmp_path, files, table_ds):
    _, wind = files
    no_elev = table_ds.drop_vars("elevation")
    with pytest.raises(TableError, match="elevation"):
        plot_wind(wind, output=tmp_path / "m.png", table=no_elev)


def test_plot_file_dispatch(tmp_path, files):
    table, wind = files
    kind, path = plot_file(table, tmp_path / "a.png", angle=180)
    assert kind == "table" and path.is_file()
    kind, path = plot_file(wind, tmp_path / "b.png", table=table)
    assert kind == "wind" and path.is_file()
    with pytest.raises(OptionError, match="--time"):
        plot_file(table, tmp_path / "c.png", time="2026-01-15T00:00")
    with pytest.raises(OptionError, match="--angle"):
        plot_file(wind, tmp_path / "c.png", angle=90)


def test_output_checks(tmp_path, files):
    table, wind = files
    with pytest.raises(OutputError, match="does not exist"):
        plot_wind(wind, output=tmp_path / "missing" / "m.png")
    with pytest.raises(OutputError, match="unsupported image format"):
        plot_table(table, output=tmp_path / "t.txt")
    with pytest.raises(OutputError, match="folder"):
        plot_table(table, output=tmp_path)


def test_other_formats(tmp_path, files):
    table, _ = files
    out = plot_table(table, output=tmp_path / "t.svg")
    assert out.read_text().lstrip().startswith("<?xml")


def test_arrows_are_grid_relative(wind_ds):
    """A northward (true north) wind points slightly west of grid north east of 3°E."""
    from devine_onnx.export.source import open_source
    from devine_onnx.plot import _grid_components
    from devine_onnx.wind import meridian_convergence

    ds = wind_ds.copy()
    ds["eastward_wind"] = xr.zeros_like(ds["eastward_wind"])
    ds["northward_wind"] = xr.ones_like(ds["northward_wind"])
    u, v = _grid_components(open_source(ds), 0)
    gamma = meridian_convergence(ds.x.values[None, :], ds.y.values[:, None], LAMBERT93)
    assert 1.5 < gamma.mean() < 3.0  # Lambert-93 at 6.15°E
    np.testing.assert_allclose(u, -np.sin(np.radians(gamma)), atol=1e-6)
    np.testing.assert_allclose(v, np.cos(np.radians(gamma)), atol=1e-6)
    # Grid-relative components in the file are used as they are.
    g = wind_ds.rename({"eastward_wind": "x_wind", "northward_wind": "y_wind"})
    u, v = _grid_components(open_source(g), 0)
    np.testing.assert_array_equal(u, 5.0)


# ---------------------------------------------------------------------------- honest colours
def _blocks_ds(values, with_elevation=True) -> xr.Dataset:
    """A 40 x 48 output whose four quadrants hold ``values`` (one step), elevation a cone."""
    ny, nx = 40, 48
    y = 6_460_000.0 - 100.0 * np.arange(ny)
    x = 946_000.0 + 100.0 * np.arange(nx)
    speed = np.empty((1, ny, nx), np.float32)
    speed[0, : ny // 2, : nx // 2] = values[0]
    speed[0, : ny // 2, nx // 2 :] = values[1]
    speed[0, ny // 2 :, : nx // 2] = values[2]
    speed[0, ny // 2 :, nx // 2 :] = values[3]
    attrs = {"units": "m s-1", "grid_mapping": "spatial_ref"}
    data = {
        "wind_speed": (("time", "y", "x"), speed, attrs),
        "wind_from_direction": (("time", "y", "x"), np.full_like(speed, 200.0), attrs),
    }
    if with_elevation:
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        cone = 2000.0 - 40.0 * np.hypot(yy - ny / 2, xx - nx / 2)
        data["elevation"] = (("y", "x"), cone, {"units": "m", "grid_mapping": "spatial_ref"})
        flag = np.zeros((ny, nx), np.uint8)
        flag[:12, :] = 1  # the northern band "felt the DEM's edge": outlined, not darkened
        data["edge_influence"] = (("y", "x"), flag, {"grid_mapping": "spatial_ref"})
    return xr.Dataset(
        data,
        coords={"time": TIMES[:1], "y": y, "x": x, "spatial_ref": _grid_mapping()},
    )


def _count_colour(img, rgb) -> int:
    diff = np.abs(img[..., :3] - np.asarray(rgb)[None, None, :3]).max(axis=-1)
    return int((diff <= 1.01 / 255).sum())


def test_map_colours_match_the_colour_bar(tmp_path):
    """Each quadrant's pixels have exactly the colour the colormap gives its value: nothing
    (terrain shading, edge shading) is blended into the data colours."""
    import matplotlib as mpl

    values = (1.0, 3.5, 6.0, 8.5)
    ds = _blocks_ds(values)
    out = plot_wind(ds, output=tmp_path / "m.png", arrows=0, vmin=0, vmax=10, figsize=(6, 5))
    img = _read_png(out)
    cmap = mpl.colormaps["viridis"]
    counts = [_count_colour(img, cmap(value / 10.0)) for value in values]
    # A quadrant fills a quarter of the ~4 x 4 inch axes at 100 dpi (~38000 pixels); all but
    # the pixels under the contour lines and the outline keep their exact colour, in the
    # northern quadrants (edge_influence = 1) as in the southern ones.
    assert min(counts) > 30000, counts
    assert min(counts) > 0.9 * max(counts), counts
    # The colour bar shows the same colours (it is drawn from the same norm and colormap).
    assert _count_colour(img, cmap(0.5)) > 10


def test_default_range_is_fixed_over_the_file(wind_ds):
    from devine_onnx.export.source import open_source
    from devine_onnx.plot import _norm

    ds = wind_ds.copy(deep=True)
    ds["wind_speed"][2] = ds["wind_speed"][2] / 3  # the last step is calmer
    norm, cmap = _norm(open_source(ds), "wind_speed", None, None)
    assert (norm.vmin, norm.vmax) == (0.0, 9.0)  # the whole file: 9 m/s, for every step
    assert cmap.name.startswith("viridis")
    ds["upward_air_velocity"] = ds["wind_speed"] * 0.1 - 0.6
    norm, cmap = _norm(open_source(ds), "upward_air_velocity", None, None)
    assert norm.vmin == -norm.vmax and norm.vmax >= 0.3
    assert cmap.name.startswith("RdBu_r")
    with pytest.raises(OptionError, match="vmin must be below vmax"):
        _norm(open_source(ds), "wind_speed", 5, 2)


def test_small_multiples_and_options(tmp_path, files):
    table, wind = files
    out = plot_wind(
        wind,
        time=["2026-01-15T00:00", "2026-01-15T01:00/2026-01-15T02:00"],
        output=tmp_path / "multi.png",
        table=table,
        arrows=8,
        graticule=True,
        dpi=40,
    )
    img = _read_png(out)
    assert img.shape[1] > img.shape[0]  # 2 x 2 panels: default size grows with the panels
    out = plot_wind(wind, output=tmp_path / "dir.png", var="wind_from_direction", dpi=30)
    assert _read_png(out).ndim == 3
    with pytest.raises(OptionError, match="--var nonsense: not a map variable"):
        plot_wind(wind, output=tmp_path / "x.png", var="nonsense")
    with pytest.raises(OptionError, match="no time step in this interval"):
        plot_wind(wind, output=tmp_path / "x.png", time="2027-01-01/2027-01-02")
    assert not (tmp_path / "x.png").exists()


def test_animation_gif(tmp_path, files):
    from PIL import Image

    _, wind = files
    kind, out = plot_file(wind, animate=tmp_path / "a.gif", arrows=5)
    assert kind == "animation" and not partial_path(out).exists()
    with Image.open(out) as gif:
        assert gif.n_frames == TIMES.size
    with pytest.raises(OutputError, match="animation format"):
        plot_file(wind, animate=tmp_path / "a.png")
    with pytest.raises(OptionError, match="either"):
        plot_file(wind, tmp_path / "m.png", animate=tmp_path / "a.gif")
    assert not list(tmp_path.glob("*.partial*"))


def test_table_single_variable_in_degrees(tmp_path, files, table_ds):
    from devine_onnx.export.source import open_source

    table, _ = files
    src = open_source(table)
    np.testing.assert_allclose(
        src.field("alpha", angle=180),
        np.degrees(table_ds["alpha"].sel(angle=180).values.astype(np.float64)),
        rtol=1e-6,
    )
    out = plot_table(table, angle=180, output=tmp_path / "alpha.png", var="alpha", dpi=30)
    assert _read_png(out).ndim == 3
    from devine_onnx.tables.table import CorrectionTable

    opened = CorrectionTable.open(table)
    out = plot_table(opened, angle=90, output=tmp_path / "acc.png", var="acceleration", dpi=30)
    assert _read_png(out).ndim == 3
    opened.close()


def test_utc_label():
    from devine_onnx.export.source import utc_label

    assert utc_label(pd.Timestamp("2026-01-15T12:00")) == "2026-01-15 12:00 UTC"
    assert utc_label(pd.Timestamp("2026-01-15T13:00+01:00")) == "2026-01-15 12:00 UTC"


def test_mp4_needs_ffmpeg(tmp_path, files, monkeypatch):
    from matplotlib import animation

    _, wind = files
    monkeypatch.setattr(animation.writers, "is_available", lambda name: False)
    with pytest.raises(OptionError, match="ffmpeg"):
        plot_file(wind, animate=tmp_path / "a.mp4")
    assert not list(tmp_path.iterdir())
