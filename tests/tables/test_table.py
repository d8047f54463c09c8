"""CorrectionTable: opening and validating a table once, reading windows of it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import xarray as xr
from pyproj import CRS

import devine_onnx.tables.table as table_mod
from devine_onnx.errors import OptionError, TableError
from devine_onnx.tables.table import CorrectionTable, open_table

pytest.importorskip("rioxarray")

N_ANGLES, NY, NX = 12, 15, 20
RES = 30.0


def make_table(*, alpha_units="radian", vertical=True, edge=True, comment="") -> xr.Dataset:
    """A small table with a different value at every (angle, y, x)."""
    rng = np.random.default_rng(16)
    shape = (N_ANGLES, NY, NX)
    angles = np.arange(N_ANGLES) * 30.0
    x = 900_000.0 + RES * np.arange(NX)
    y = 6_400_000.0 - RES * np.arange(NY)  # north-up: descending y, as rasters
    alpha = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
    data = {
        "acceleration": (("angle", "y", "x"), rng.uniform(0.5, 1.5, shape).astype(np.float32)),
        "alpha": (
            ("angle", "y", "x"),
            np.degrees(alpha) if alpha_units.startswith("deg") else alpha,
            {"units": alpha_units},
        ),
        "elevation": (("y", "x"), rng.uniform(1000, 2000, (NY, NX)).astype(np.float32)),
    }
    if vertical:
        data["vertical"] = (("angle", "y", "x"), rng.uniform(-0.2, 0.2, shape).astype(np.float32))
    if edge:
        flag = np.zeros((NY, NX), np.uint8)
        flag[0, :] = 1
        flag[5, 7] = 1
        data["edge_influence"] = (("y", "x"), flag, {"flag_values": [0, 1]})
    ds = xr.Dataset(
        data,
        coords={"angle": angles, "y": y, "x": x},
        attrs={"engine": "micromet", "engine_title": "MicroMet", "comment": comment},
    )
    ds["elevation"].attrs["units"] = "m"
    return ds.rio.write_crs("EPSG:2154")


def chunked_netcdf(ds: xr.Dataset, path, chunks=(5, 4, 6)):
    enc = {n: {"chunksizes": chunks} for n in ("acceleration", "alpha", "vertical") if n in ds}
    ds.to_netcdf(path, encoding=enc)
    return path


@pytest.fixture
def table_ds():
    return make_table()


# --------------------------------------------------------------------------- reading windows
@pytest.mark.parametrize("kind", ["netcdf", "zarr", "store", "dataset"])
def test_read_windows_match_the_stored_values(tmp_path, monkeypatch, table_ds, kind):
    # Pieces of a few kB: many slabs along angle and many chunks along y/x per window.
    monkeypatch.setattr(table_mod, "PIECE_BYTES", 2000)
    if kind == "netcdf":
        source = chunked_netcdf(table_ds, tmp_path / "t.nc")
    elif kind == "zarr":
        source = tmp_path / "t.zarr"
        table_ds.chunk({"angle": 5, "y": 4, "x": 6}).to_zarr(source)
    elif kind == "store":
        import zarr

        source = zarr.storage.MemoryStore()
        table_ds.to_zarr(source)
    else:
        source = table_ds
    with CorrectionTable.open(source) as t:
        for region in [None, (0, NY, 0, NX), (3, 11, 5, 17), (14, 15, 19, 20), (1, 9, 0, 1)]:
            got = t.read(region)
            assert set(got) == {"acceleration", "alpha", "vertical"}
            y0, y1, x0, x1 = region or (0, NY, 0, NX)
            for name, arr in got.items():
                want = table_ds[name].values[:, y0:y1, x0:x1]
                assert arr.dtype == np.float32 and arr.flags.c_contiguous
                np.testing.assert_array_equal(arr, want)
        # slices as the drivers use them, another dtype, a subset of variables
        got = t.read((slice(2, 6), slice(None, 4)), dtype=np.float64, variables=["alpha"])
        assert list(got) == ["alpha"] and got["alpha"].dtype == np.float64
        np.testing.assert_array_equal(got["alpha"], table_ds["alpha"].values[:, 2:6, :4])


def test_read_transposed_table(table_ds):
    t = CorrectionTable.open(table_ds.transpose("y", "x", "angle"))
    np.testing.assert_array_equal(t.read()["acceleration"], table_ds["acceleration"].values)
    assert t.dataset["acceleration"].dims == ("angle", "y", "x")


def test_alpha_in_degrees_is_read_in_radians(tmp_path):
    ds = make_table(alpha_units="degree")
    t = CorrectionTable.open(chunked_netcdf(ds, tmp_path / "deg.nc"))
    radians = np.deg2rad(ds["alpha"].values)
    np.testing.assert_allclose(t.read()["alpha"], radians, rtol=1e-6)
    np.testing.assert_allclose(t.read((2, 4, 3, 9))["alpha"], radians[:, 2:4, 3:9], rtol=1e-6)
    one = t.at_angle(90)
    np.testing.assert_allclose(one["alpha"].values, radians[3], rtol=1e-6)
    assert one["alpha"].attrs["units"] == "radian"
    # the Dataset keeps what the file stores
    assert t.dataset["alpha"].attrs["units"] == "degree"
    t.close()


def test_at_angle(table_ds):
    t = CorrectionTable.open(table_ds)
    one = t.at_angle(270)
    assert set(one.data_vars) == {"acceleration", "alpha", "vertical"}
    assert float(one["angle"]) == 270.0
    for name in ("acceleration", "alpha", "vertical"):
        assert one[name].dims == ("y", "x")
        np.testing.assert_array_equal(one[name].values, table_ds[name].values[9])
    # the direction is taken modulo 360, and the grid mapping comes along
    xr.testing.assert_identical(t.at_angle(-90), one)
    assert CRS.from_wkt(one["spatial_ref"].attrs["crs_wkt"]) == CRS("EPSG:2154")
    with pytest.raises(OptionError, match=r"angle=45: not in .*0 to 330 every 30°"):
        t.at_angle(45)
    with pytest.raises(OptionError, match="expected a number of degrees"):
        t.at_angle("west")


# --------------------------------------------------------------------------- properties
def test_grid_crs_and_metadata(tmp_path, table_ds):
    path = chunked_netcdf(table_ds, tmp_path / "t.nc")
    t = CorrectionTable.open(path)
    assert t.path == path and t.label == str(path)
    assert t.crs == CRS("EPSG:2154")
    np.testing.assert_array_equal(t.angles, np.arange(12) * 30.0)
    np.testing.assert_array_equal(t.x, table_ds.x.values)
    np.testing.assert_array_equal(t.y, table_ds.y.values)
    assert t.shape == (NY, NX)
    assert t.resolution == RES
    # pixel edges: half a pixel beyond the centres
    assert t.bounds == (
        900_000.0 - 15,
        6_400_000.0 - RES * (NY - 1) - 15,
        900_000.0 + RES * (NX - 1) + 15,
        6_400_000.0 + 15,
    )
    assert t.chunks == (4, 6)
    assert t.engine == "micromet" and t.engine_title == "MicroMet" and t.engine_citation == ""
    assert t.attrs["engine"] == "micromet"
    assert not t.synthetic and t.synthetic_note is None
    assert t.has_vertical and t.variables == ("acceleration", "alpha", "vertical")
    assert t.elevation.dims == ("y", "x") and t.edge_influence is not None
    with pytest.raises(ValueError):
        t.x[0] = 0.0  # read-only views
    t.close()
    mem = CorrectionTable.open(table_ds, label="my table")
    assert mem.label == "my table" and mem.path is None and mem.chunks is None


def test_engine_default_synthetic_and_no_vertical(table_ds):
    ds = make_table(vertical=False, edge=False, comment="synthetic model weights (test)")
    del ds.attrs["engine"]
    t = CorrectionTable.open(ds)
    assert t.engine == "devine"
    assert t.synthetic and "synthetic" in t.synthetic_note
    assert not t.has_vertical and t.variables == ("acceleration", "alpha")
    assert set(t.read()) == {"acceleration", "alpha"}
    assert t.edge_influence is None
    assert set(t.static_variables()) == {"elevation"}
    with pytest.raises(OptionError, match="no per-direction variable 'vertical'"):
        t.read(variables=["vertical"])


def test_static_variables_coarsened_by_hand(table_ds):
    t = CorrectionTable.open(table_ds)
    full = t.static_variables(grid_mapping="crs")
    np.testing.assert_array_equal(full["elevation"].values, table_ds["elevation"].values)
    assert full["elevation"].attrs["grid_mapping"] == "crs"
    assert full["edge_influence"].dtype == np.uint8
    ds = table_ds.copy(deep=True)
    ds["elevation"][1, 1] = np.nan
    c = CorrectionTable.open(ds).static_variables(coarsen=4)
    z, flag = c["elevation"].values, c["edge_influence"].values
    assert z.shape == flag.shape == (3, 5)  # 15 x 20 in 4 x 4 blocks: the last 3 rows dropped
    e = ds["elevation"].values.astype(np.float64)
    assert z[0, 0] == pytest.approx(np.nanmean(e[0:4, 0:4]), rel=1e-6)
    assert z[2, 4] == pytest.approx(e[8:12, 16:20].mean(), rel=1e-6)
    assert "(block mean)" in c["elevation"].attrs["long_name"]
    # edge_influence: row 0 flagged, and pixel (5, 7) -> block (1, 1)
    expected = np.zeros((3, 5), np.uint8)
    expected[0, :] = 1
    expected[1, 1] = 1
    np.testing.assert_array_equal(flag, expected)


def test_open_table_returns_the_dataset_and_pickles(tmp_path, table_ds):
    path = chunked_netcdf(table_ds, tmp_path / "t.nc")
    ds = open_table(path)
    assert isinstance(ds, xr.Dataset) and ds.encoding["source"] == str(path)
    ds.close()
    t = CorrectionTable.open(path)
    assert CorrectionTable.open(t) is t
    back = pickle.loads(pickle.dumps(t))  # scattered to dask workers
    np.testing.assert_array_equal(
        back.read((0, 3, 0, 3))["vertical"], t.read((0, 3, 0, 3))["vertical"]
    )
    back.close()
    t.close()


# --------------------------------------------------------------------------- bad inputs
def _one_line(exc_info):
    assert "\n" not in str(exc_info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.drop_vars("acceleration"), r"not a correction table, missing acceleration"),
        (lambda d: d.drop_vars("spatial_ref"), r"no CRS"),
        (lambda d: d.isel(angle=slice(None, None, -1)), r"angle coordinate must be strictly"),
        (lambda d: d.assign_coords(angle=d.angle + 30), r"in \[0, 360\) degrees"),
        (lambda d: d.isel(x=[0, 2, 1, 3]), r"coordinate x must be finite and strictly monotonic"),
        (lambda d: d.assign(vertical=d.vertical.isel(angle=0)), r"vertical has dimensions"),
        (lambda d: d.assign(alpha=d.alpha.assign_attrs(units="gradian")), r"alpha has units"),
        (
            lambda d: d.assign_coords(spatial_ref=((), 0, {"crs_wkt": "nonsense"})),
            r"grid mapping variable 'spatial_ref' does not describe a CRS",
        ),
    ],
)
def test_bad_tables_give_one_line_table_errors(tmp_path, table_ds, change, message):
    path = tmp_path / "bad.nc"
    change(table_ds).to_netcdf(path)
    with pytest.raises(TableError, match=r"bad\.nc: .*" + message) as info:
        CorrectionTable.open(path)
    _one_line(info)
    with pytest.raises(TableError, match=message):
        CorrectionTable.open(change(table_ds))


def test_bad_sources(tmp_path, table_ds):
    with pytest.raises(TableError, match=r"absent\.nc: correction table not found"):
        CorrectionTable.open(tmp_path / "absent.nc")
    text = tmp_path / "text.nc"
    text.write_text("hello")
    with pytest.raises(TableError, match=r"text\.nc: cannot be read as a NetCDF") as info:
        CorrectionTable.open(text)
    _one_line(info)
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(TableError, match=r"empty\.zarr: cannot be read as a Zarr"):
        CorrectionTable.open(tmp_path / "empty.zarr")
    tif = tmp_path / "dem.tif"
    table_ds["elevation"].rio.to_raster(tif)
    with pytest.raises(TableError, match=r"dem\.tif: a geotiff file, not a correction table"):
        CorrectionTable.open(tif)
    with pytest.raises(OptionError, match="table of type int"):
        CorrectionTable.open(3)
    t = CorrectionTable.open(table_ds)
    for region in [(0, NY + 1, 0, NX), (5, 5, 0, NX), (-1, 3, 0, 3)]:
        with pytest.raises(OptionError, match="outside the 15 x 20 table"):
            t.read(region)
    with pytest.raises(OptionError, match=r"expected \(y0, y1, x0, x1\)"):
        t.read((0, 1))


def test_template_keeps_the_engines_static_attributes():
    from devine_onnx.sample_data import sample_dem
    from devine_onnx.tables.build import compute_corrections

    t = CorrectionTable.open(
        compute_corrections(sample_dem((40, 40)), engine="micromet", angles=[270], quiet=True)
    )
    edge = t.edge_influence
    # the micromet engine's own meaning of the flag, with the common flag attributes
    assert "micromet engine" in edge.attrs["comment"]
    assert edge.attrs["flag_meanings"] == "clean edge_influenced"
    assert edge.attrs["grid_mapping"] == "spatial_ref"
    assert t.static_variables()["edge_influence"].attrs["comment"].endswith(edge.attrs["comment"])
