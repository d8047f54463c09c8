"""Export round trips: GeoTIFF, ESRI ASCII grids (WindNinja names) and KMZ read back equal."""

from __future__ import annotations

import zipfile
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import CRS

from devine_onnx.errors import InputFileError, OptionError
from devine_onnx.export import export_file as export
from devine_onnx.sample_data import LAMBERT93

NY, NX = 23, 31
DX, DY = 50.0, 50.0
X0, Y0 = 946_000.0, 6_461_000.0  # centre of the first column / first row (north)
TIMES = pd.date_range("2026-01-15T00:00", periods=3, freq="h")
KML = "{http://www.opengis.net/kml/2.2}"


def _grid_mapping() -> xr.DataArray:
    crs = CRS.from_user_input(LAMBERT93)
    return xr.DataArray(np.int32(0), attrs={**crs.to_cf(), "crs_wkt": crs.to_wkt()})


@pytest.fixture(scope="module")
def wind_ds() -> xr.Dataset:
    rng = np.random.default_rng(3)
    shape = (TIMES.size, NY, NX)
    speed = rng.uniform(0.5, 12.0, shape).astype(np.float32)
    speed[:, 0, :4] = np.nan
    direction = rng.uniform(0.0, 360.0, shape).astype(np.float32)
    direction[:, 0, :4] = np.nan
    u = (-speed * np.sin(np.radians(direction))).astype(np.float32)
    v = (-speed * np.cos(np.radians(direction))).astype(np.float32)
    gm = {"grid_mapping": "spatial_ref"}
    dims = ("time", "y", "x")
    return xr.Dataset(
        {
            "wind_speed": (dims, speed, {"units": "m s-1", "standard_name": "wind_speed", **gm}),
            "wind_from_direction": (dims, direction, {"units": "degree", **gm}),
            "eastward_wind": (dims, u, {"units": "m s-1", **gm}),
            "northward_wind": (dims, v, {"units": "m s-1", **gm}),
        },
        coords={
            "time": TIMES,
            # y increasing (south first) in the file: exports must still be north-up
            "y": Y0 - DY * np.arange(NY)[::-1],
            "x": X0 + DX * np.arange(NX),
            "spatial_ref": _grid_mapping(),
        },
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory, wind_ds):
    folder = tmp_path_factory.mktemp("export")
    wind = folder / "wind.nc"
    wind_ds.to_netcdf(wind)
    angles = np.array([0, 90, 180, 270])
    rng = np.random.default_rng(4)
    acc = rng.uniform(0.5, 1.5, (4, NY, NX)).astype(np.float32)
    alpha = rng.uniform(-0.3, 0.3, (4, NY, NX)).astype(np.float32)
    gm = {"grid_mapping": "spatial_ref"}
    table = xr.Dataset(
        {
            "acceleration": (("angle", "y", "x"), acc, {"units": "1", **gm}),
            "alpha": (("angle", "y", "x"), alpha, {"units": "radian", **gm}),
        },
        coords={
            "angle": angles,
            "y": Y0 - DY * np.arange(NY),
            "x": X0 + DX * np.arange(NX),
            "spatial_ref": _grid_mapping(),
        },
    )
    table_path = folder / "table.nc"
    table.to_netcdf(table_path)
    return wind, table_path, table


def _north_up(da: xr.DataArray) -> np.ndarray:
    return da.sortby("y", ascending=False).values


def test_geotiff_round_trip(tmp_path, files, wind_ds):
    import rasterio

    wind, _, _ = files
    written = export(wind, tmp_path / "out", "geotiff")
    names = sorted(p.name for p in written)
    assert names == ["wind_wind_from_direction.tif", "wind_wind_speed.tif"]
    for var in ("wind_speed", "wind_from_direction"):
        with rasterio.open(tmp_path / "out" / f"wind_{var}.tif") as ds:
            assert ds.count == TIMES.size
            assert ds.crs.to_epsg() == 2154
            # Left edge = first centre - dx/2, top edge = northernmost centre + dy/2.
            assert ds.transform.almost_equals(
                rasterio.Affine(DX, 0, X0 - DX / 2, 0, -DY, Y0 + DY / 2)
            )
            assert ds.descriptions == tuple(t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in TIMES)
            assert np.isnan(ds.nodata)
            assert ds.profile["compress"].lower() == "deflate"
            assert ds.profile.get("tiled") or ds.block_shapes[0][0] > 1
            data = ds.read()
            assert ds.tags().get("units") in ("m s-1", "degree")
        np.testing.assert_array_equal(data, _north_up(wind_ds[var]))


def test_geotiff_one_file_and_time_subset(tmp_path, files, wind_ds):
    import rasterio

    wind, _, _ = files
    out = tmp_path / "speed.tif"
    written = export(
        wind, out, "geotiff", var="wind_speed", time="2026-01-15T01:00/2026-01-15T02:00"
    )
    assert written == [out]
    with rasterio.open(out) as ds:
        assert ds.count == 2
        assert ds.descriptions == ("2026-01-15T01:00:00Z", "2026-01-15T02:00:00Z")
        np.testing.assert_array_equal(ds.read(1), _north_up(wind_ds["wind_speed"][1]))


def test_table_geotiff(tmp_path, files):
    import rasterio

    _, table_path, table = files
    written = export(table_path, tmp_path, "geotiff", angle=[90, 270])
    assert sorted(p.name for p in written) == ["table_acceleration.tif", "table_alpha.tif"]
    with rasterio.open(tmp_path / "table_alpha.tif") as ds:
        assert ds.descriptions == ("from 90 deg", "from 270 deg")
        assert ds.tags()["units"] == "degree"
        np.testing.assert_allclose(
            ds.read(2),
            np.degrees(table["alpha"].sel(angle=270).values.astype(np.float64)),
            rtol=1e-6,
        )
    with rasterio.open(tmp_path / "table_acceleration.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), table["acceleration"].sel(angle=90).values)


def _read_asc(path):
    header = {}
    with open(path) as f:
        for _ in range(6):
            key, value = f.readline().split()
            header[key.lower()] = float(value)
        data = np.loadtxt(f, dtype=np.float32)  # 9 significant digits: float32 exactly
    data[data == header["nodata_value"]] = np.nan
    return header, data


def test_ascii_grids_as_windninja(tmp_path, files, wind_ds):
    wind, _, _ = files
    written = export(wind, tmp_path, "asc", time=["2026-01-15T02:00", 0])
    names = sorted(p.name for p in written)
    expected = sorted(
        f"wind_{t}_{kind}.{ext}"
        for t in ("20260115T0000", "20260115T0200")
        for kind in ("vel", "ang")
        for ext in ("asc", "prj")
    )
    assert names == expected
    header, speed = _read_asc(tmp_path / "wind_20260115T0200_vel.asc")
    assert header == {
        "ncols": NX,
        "nrows": NY,
        "xllcorner": X0 - DX / 2,
        "yllcorner": Y0 - DY * (NY - 1) - DY / 2,
        "cellsize": DX,
        "nodata_value": -9999,
    }
    np.testing.assert_array_equal(speed, _north_up(wind_ds["wind_speed"][2]))
    _, ang = _read_asc(tmp_path / "wind_20260115T0000_ang.asc")
    np.testing.assert_array_equal(ang, _north_up(wind_ds["wind_from_direction"][0]))
    prj = (tmp_path / "wind_20260115T0000_ang.prj").read_text()
    assert prj.startswith('PROJCS["RGF_1993_Lambert_93"')  # ESRI's WKT dialect
    assert CRS.from_user_input(prj).to_epsg(min_confidence=50) == 2154


def test_kmz_time_spans_and_arrows(tmp_path, files, wind_ds):
    from pyproj import Transformer

    wind, _, _ = files
    out = tmp_path / "wind.kmz"
    assert export(wind, out, "kmz", time="2026-01-15T00:00/2026-01-15T01:00", arrows=6) == [out]
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist()[0] == "doc.kml" and "legend.png" in zf.namelist()
        root = ElementTree.fromstring(zf.read("doc.kml"))
    folders = root.findall(f".//{KML}Folder")
    assert len(folders) == 2
    spans = [f.find(f"{KML}TimeSpan") for f in folders]
    assert [s.find(f"{KML}begin").text for s in spans] == [
        "2026-01-15T00:00:00Z",
        "2026-01-15T01:00:00Z",
    ]
    assert spans[0].find(f"{KML}end").text == "2026-01-15T01:00:00Z"
    assert spans[1].find(f"{KML}end").text == "2026-01-15T02:00:00Z"
    assert root.find(f".//{KML}ScreenOverlay/{KML}Icon/{KML}href").text == "legend.png"
    marks = folders[0].findall(f"{KML}Placemark")
    assert 20 <= len(marks) <= 60  # about 6 arrows along the longer side
    # Each arrow points where the wind blows TO: its bearing (tail -> tip) is the FROM
    # direction + 180 degrees (checked in the projected CRS, grid-relative).
    to_xy = Transformer.from_crs("EPSG:4326", LAMBERT93, always_xy=True)
    coords = marks[0].find(f".//{KML}coordinates").text.split()
    (x0, y0), (x1, y1) = (to_xy.transform(*map(float, c.split(","))) for c in coords[:2])
    xc, yc = (x0 + x1) / 2, (y0 + y1) / 2
    ds = wind_ds.isel(time=0).sel(x=xc, y=yc, method="nearest")
    u, v = float(ds["eastward_wind"]), float(ds["northward_wind"])
    from devine_onnx.wind import earth_to_grid, meridian_convergence

    gamma = meridian_convergence(np.array(xc), np.array(yc), LAMBERT93)
    ug, vg = earth_to_grid(u, v, gamma)
    np.testing.assert_allclose(np.arctan2(x1 - x0, y1 - y0), np.arctan2(ug, vg), atol=1e-3)


def test_bad_inputs_leave_no_file(tmp_path, files):
    wind, table_path, _ = files
    out = tmp_path / "out"
    with pytest.raises(OptionError, match="correction table; tables export to GeoTIFF only"):
        export(table_path, out, "asc")
    with pytest.raises(OptionError, match="--var nonsense: not a map variable"):
        export(wind, out, "geotiff", var=["wind_speed", "nonsense"])
    with pytest.raises(OptionError, match="--time 2026-02-01T00:00: not in"):
        export(wind, out, "asc", time="2026-02-01T00:00")
    with pytest.raises(OptionError, match="unknown export format"):
        export(wind, out, "shapefile")
    with pytest.raises(OptionError, match="--angle"):
        export(wind, out, "geotiff", angle=[90])
    with pytest.raises(OptionError, match="not in"):
        export(table_path, out, "geotiff", angle=[45])
    with pytest.raises(InputFileError, match="not found"):
        export(tmp_path / "missing.nc", out, "geotiff")
    with pytest.raises(OptionError, match="several files"):
        export(wind, tmp_path / "both.tif", "geotiff")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_failure_midway_removes_every_partial(tmp_path, files, monkeypatch):
    """A failure while writing the second variable leaves neither file nor partial."""
    from devine_onnx.export import geotiff

    wind, _, _ = files
    real = geotiff.write_geotiff
    calls = []

    def failing(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(geotiff, "write_geotiff", failing)
    (tmp_path / "out").mkdir()
    with pytest.raises(OSError, match="disk full"):
        export(wind, tmp_path / "out", "geotiff")
    assert list((tmp_path / "out").iterdir()) == []


def test_command_line(tmp_path, files):
    from typer.testing import CliRunner

    from devine_onnx.cli import app

    wind, table_path, _ = files
    runner = CliRunner()
    out = tmp_path / "gis" / "new"  # missing folders are created
    result = runner.invoke(
        app, ["export", str(wind), "-o", str(out), "--format", "asc", "--time", "2026-01-15T01:00"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "wind_20260115T0100_ang.asc",
        "wind_20260115T0100_ang.prj",
        "wind_20260115T0100_vel.asc",
        "wind_20260115T0100_vel.prj",
    ]
    result = runner.invoke(
        app, ["export", str(table_path), "-o", str(tmp_path / "t.kmz"), "--format", "kmz"]
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --format kmz:"), result.output
    assert not (tmp_path / "t.kmz").exists()
    result = runner.invoke(
        app,
        [
            "plot",
            str(wind),
            "--time",
            "2026-01-15T00:00",
            "--time",
            "2026-01-15T02:00",
            "--var",
            "wind_from_direction",
            "--arrows",
            "4",
            "--graticule",
            "-o",
            str(tmp_path / "two.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "two.png").is_file()


def test_geotiff_without_the_cog_driver(tmp_path, files, wind_ds, monkeypatch):
    """A GDAL without the COG driver: a tiled, compressed plain GeoTIFF with the same content."""
    import rasterio

    from devine_onnx.export import geotiff

    monkeypatch.setattr(geotiff, "_has_cog", lambda: False)
    wind, _, _ = files
    (out,) = export(wind, tmp_path / "s.tif", "geotiff", var="wind_speed", time=[2])
    with rasterio.open(out) as ds:
        assert ds.profile["tiled"] and ds.profile["compress"].lower() == "deflate"
        assert ds.descriptions == ("2026-01-15T02:00:00Z",) and ds.crs.to_epsg() == 2154
        np.testing.assert_array_equal(ds.read(1), _north_up(wind_ds["wind_speed"][2]))
