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
    # Not a blank image: many distinct colours (hillshade + colour map + arrows).
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
    out = plot_wind(wind_ds, time=-1, output=tmp_path / "m2.png")  # index, no hillshade
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
    with pytest.raises(OptionError, match="0 to 270 every 90"):
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


def test_table_without_elevation_for_hillshade(tmp_path, files, table_ds):
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
    from devine_onnx.plot import _crs, _grid_components
    from devine_onnx.wind import meridian_convergence

    ds = wind_ds.copy()
    ds["eastward_wind"] = xr.zeros_like(ds["eastward_wind"])
    ds["northward_wind"] = xr.ones_like(ds["northward_wind"])
    u, v = _grid_components(ds, lambda da: da.isel(time=0), _crs(ds, "wind_speed"), "test")
    gamma = meridian_convergence(ds.x.values[None, :], ds.y.values[:, None], LAMBERT93)
    assert 1.5 < gamma.mean() < 3.0  # Lambert-93 at 6.15°E
    np.testing.assert_allclose(u.values, -np.sin(np.radians(gamma)), atol=1e-6)
    np.testing.assert_allclose(v.values, np.cos(np.radians(gamma)), atol=1e-6)
    # Grid-relative components in the file are used as they are.
    g = wind_ds.rename({"eastward_wind": "x_wind", "northward_wind": "y_wind"})
    u, v = _grid_components(g, lambda da: da.isel(time=0), _crs(g, "wind_speed"), "test")
    np.testing.assert_array_equal(u.values, 5.0)
