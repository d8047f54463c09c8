"""The one CRS reader (io/cf.py): each form a file may carry, the precedence between conflicting
forms, and the same CRS from the DEM, NWP, table and plot readers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from pyproj import CRS

from devine_onnx.errors import DEMError, InputFileError, NWPError
from devine_onnx.io.cf import (
    crs_label,
    find_xy_dims,
    grid_mapping_attrs,
    grid_mapping_crs,
    local_projected_crs,
    lonlat_extent,
    read_crs,
    write_grid_mapping,
)

L93 = CRS.from_epsg(2154)  # Lambert-93
UTM31 = CRS.from_epsg(32631)
UTM32 = CRS.from_epsg(32632)
# The CF parameters of Lambert-93, without any name: what a model writes without crs_wkt.
L93_CF = {
    "grid_mapping_name": "lambert_conformal_conic",
    "standard_parallel": [49.0, 44.0],
    "latitude_of_projection_origin": 46.5,
    "longitude_of_central_meridian": 3.0,
    "false_easting": 700000.0,
    "false_northing": 6600000.0,
    "semi_major_axis": 6378137.0,
    "inverse_flattening": 298.257222101,
}


def dataset(gm_attrs: dict | None = None, *, gm_name="spatial_ref", named=True, **global_attrs):
    """A small (y, x) field with a grid-mapping variable carrying ``gm_attrs``."""
    x = 900_000.0 + 30.0 * np.arange(4)
    y = 6_450_000.0 - 30.0 * np.arange(3)
    ds = xr.Dataset(
        {"z": (("y", "x"), np.ones((3, 4), np.float32))},
        coords={"y": y, "x": x},
        attrs=global_attrs,
    )
    if gm_attrs is not None:
        ds[gm_name] = xr.DataArray(np.int32(0), attrs=gm_attrs)
        if named:
            ds["z"].attrs["grid_mapping"] = gm_name
    return ds


def same(a: CRS | None, b: CRS) -> bool:
    return a is not None and a.equals(b, ignore_axis_order=True)


# --------------------------------------------------------------------------- each form alone
@pytest.mark.parametrize(
    "attrs",
    [
        {"crs_wkt": L93.to_wkt()},
        {"spatial_ref": L93.to_wkt()},
        L93_CF,
        {"proj4": L93.to_proj4()},
        {"proj4text": L93.to_proj4()},
    ],
    ids=["crs_wkt", "spatial_ref", "cf_parameters", "proj4", "proj4text"],
)
def test_each_grid_mapping_form(attrs):
    ds = dataset(attrs)
    crs = read_crs(ds, "z")
    assert crs is not None
    # Same projection (the CF and PROJ forms lose the name, not the maths).
    x, y = 900_000.0, 6_450_000.0
    from pyproj import Transformer

    ref = Transformer.from_crs(L93, 4326, always_xy=True).transform(x, y)
    got = Transformer.from_crs(crs, 4326, always_xy=True).transform(x, y)
    np.testing.assert_allclose(got, ref, atol=1e-7)


def test_other_sources():
    # A global ``crs`` attribute (EPSG code, WKT or PROJ text).
    assert same(read_crs(dataset(crs="EPSG:2154"), "z"), L93)
    # A ``crs`` attribute of the variable.
    ds = dataset()
    ds["z"].attrs["crs"] = "EPSG:32631"
    assert same(read_crs(ds, "z"), UTM31)
    # A grid mapping under an unusual name, named by nobody: found by its attributes.
    assert same(
        read_crs(dataset({"crs_wkt": L93.to_wkt()}, gm_name="Lambert_Conformal", named=False)), L93
    )
    # rioxarray's own CRS, and a DataArray (its coordinates hold the grid mapping).
    rioxarray = pytest.importorskip("rioxarray")
    assert rioxarray
    da = dataset()["z"].rio.write_crs("EPSG:2154")
    assert same(read_crs(da), L93)
    # Nothing at all.
    assert read_crs(dataset(), "z") is None
    # Free text that is no CRS is not a CRS source.
    assert read_crs(dataset(crs="see the documentation"), "z") is None


# --------------------------------------------------------------------------- precedence
def test_precedence_within_one_grid_mapping():
    # crs_wkt > spatial_ref > CF parameters > proj4
    both = {
        **L93_CF,
        "crs_wkt": UTM31.to_wkt(),
        "spatial_ref": UTM32.to_wkt(),
        "proj4": "+proj=merc",
    }
    assert same(read_crs(dataset(both), "z"), UTM31)
    del both["crs_wkt"]
    assert same(read_crs(dataset(both), "z"), UTM32)
    del both["spatial_ref"]
    crs = read_crs(dataset(both), "z")
    assert crs.to_cf()["grid_mapping_name"] == "lambert_conformal_conic"
    # An unreadable WKT falls through to the next form of the same grid mapping.
    assert same(
        read_crs(dataset({"crs_wkt": "garbage", "spatial_ref": UTM32.to_wkt()}), "z"), UTM32
    )


def test_precedence_between_sources():
    # The grid mapping the variable names wins over a conventional ``spatial_ref`` variable...
    ds = dataset({"crs_wkt": UTM31.to_wkt()}, gm_name="lambert")
    ds["spatial_ref"] = xr.DataArray(np.int32(0), attrs={"crs_wkt": UTM32.to_wkt()})
    assert same(read_crs(ds, "z"), UTM31)
    # ... which wins over a ``crs`` attribute of the variable, then a global one ...
    ds = dataset({"crs_wkt": UTM31.to_wkt()}, named=False, crs="EPSG:32632")
    ds["z"].attrs["crs"] = "EPSG:2154"
    assert same(read_crs(ds, "z"), UTM31)
    del ds["spatial_ref"]
    assert same(read_crs(ds, "z"), L93)
    del ds["z"].attrs["crs"]
    assert same(read_crs(ds, "z"), UTM32)
    # ``spatial_ref`` is tried before ``crs`` when nothing names either.
    ds = dataset({"crs_wkt": UTM31.to_wkt()}, named=False)
    ds["crs"] = xr.DataArray(np.int32(0), attrs={"crs_wkt": UTM32.to_wkt()})
    assert same(read_crs(ds), UTM31)


def test_unreadable_named_grid_mapping():
    ds = dataset({"grid_mapping_name": "no_such_projection"})
    with pytest.raises(
        InputFileError, match="'spatial_ref' does not describe a CRS.*fix or remove"
    ):
        read_crs(ds, "z", label="f.nc")
    with pytest.raises(NWPError, match="f.nc: .*give the CRS with nwp_crs"):
        read_crs(ds, "z", label="f.nc", error=NWPError, remedy="give the CRS with nwp_crs")
    assert read_crs(ds, "z", strict=False) is None
    assert grid_mapping_crs(ds, "z") is None
    # An empty grid-mapping variable (no CRS attributes at all) is simply no CRS.
    assert read_crs(dataset({}), "z") is None


def test_same_crs_whichever_reader(tmp_path):
    """A file with conflicting forms gives one CRS to the DEM and NWP readers and the plots."""
    from devine_onnx.io.dem import load_dem
    from devine_onnx.io.nwp import open_nwp

    # CF parameters of Lambert-93 with a crs_wkt of UTM 31N, and a global crs of UTM 32N: the
    # old NWP reader took the CF parameters, the old DEM reader rioxarray's choice.
    gm = {**L93_CF, "crs_wkt": UTM31.to_wkt()}
    x = 600_000.0 + 30.0 * np.arange(40)
    y = 5_000_000.0 - 30.0 * np.arange(30)
    dem = xr.Dataset(
        {"elevation": (("y", "x"), np.full((30, 40), 500.0, np.float32), {"grid_mapping": "gm"})},
        coords={"y": y, "x": x},
        attrs={"crs": "EPSG:32632"},
    )
    dem["gm"] = xr.DataArray(np.int32(0), attrs=gm)
    path = tmp_path / "dem.nc"
    dem.to_netcdf(path)
    loaded, _ = load_dem(path)
    assert same(CRS.from_user_input(loaded.rio.crs.to_wkt()), UTM31)

    times = np.array(["2024-01-01T00", "2024-01-01T01"], dtype="datetime64[ns]")
    wind = xr.Dataset(
        {
            n: (
                ("time", "y", "x"),
                np.ones((2, 30, 40), np.float32),
                {"units": "m s-1", "grid_mapping": "gm"},
            )
            for n in ("u10", "v10")
        },
        coords={"time": times, "y": y, "x": x},
        attrs={"crs": "EPSG:32632"},
    )
    wind["gm"] = xr.DataArray(np.int32(0), attrs=gm)
    wpath = tmp_path / "wind.nc"
    wind.to_netcdf(wpath)
    nwp = open_nwp(wpath, nwp_wind_frame="earth")
    assert same(nwp.crs, UTM31)
    with xr.open_dataset(wpath) as ds:
        assert same(grid_mapping_crs(ds, "u10"), UTM31)
    with xr.open_dataset(wpath, decode_coords="all") as ds:
        assert same(read_crs(ds["u10"]), UTM31)


def test_dem_with_unreadable_grid_mapping(tmp_path):
    ds = dataset({"grid_mapping_name": "no_such_projection"})
    path = tmp_path / "dem.nc"
    ds.to_netcdf(path)
    with pytest.raises(DEMError, match="dem.nc: grid mapping variable 'spatial_ref'.*dem_crs"):
        from devine_onnx.io.dem import load_dem

        load_dem(path)
    # Given a CRS, the broken grid mapping is ignored.
    dem, notes = load_dem(path, dem_crs="EPSG:2154")
    assert dem.rio.crs.to_epsg() == 2154


# --------------------------------------------------------------------------- dimensions
def test_find_xy_dims():
    def da(dims, **coord_attrs):
        coords = {d: (d, np.arange(3.0), coord_attrs.get(d, {})) for d in dims}
        return xr.DataArray(np.zeros((3,) * len(dims)), dims=dims, coords=coords)

    assert find_xy_dims(da(("time", "y", "x"))) == ("y", "x")
    assert find_xy_dims(da(("latitude", "longitude"))) == ("latitude", "longitude")
    assert find_xy_dims(da(("south_north", "west_east"))) == ("south_north", "west_east")
    assert find_xy_dims(da(("rlat", "rlon"))) == ("rlat", "rlon")
    # By the coordinates' attributes when the names say nothing.
    got = da(("a", "b"), a={"standard_name": "projection_y_coordinate"}, b={"axis": "X"})
    assert find_xy_dims(got) == ("a", "b")
    assert find_xy_dims(da(("a", "b"))) == (None, None)
    # A Dataset too.
    assert find_xy_dims(dataset()) == ("y", "x")


# --------------------------------------------------------------------------- writing
def test_write_grid_mapping_round_trip(tmp_path):
    ds = write_grid_mapping(dataset(), L93)
    assert ds["z"].attrs["grid_mapping"] == "spatial_ref"
    attrs = ds["spatial_ref"].attrs
    assert attrs["crs_wkt"] == attrs["spatial_ref"] == L93.to_wkt()
    assert attrs["grid_mapping_name"] == "lambert_conformal_conic"
    assert isinstance(attrs["standard_parallel"], list)
    assert attrs == grid_mapping_attrs("EPSG:2154")
    path = tmp_path / "t.nc"
    ds.to_netcdf(path, encoding={"z": {"zlib": True}})
    with xr.open_dataset(path) as back:
        assert same(read_crs(back, "z"), L93)
        assert back["z"].attrs["grid_mapping"] == "spatial_ref"
    rioxarray = pytest.importorskip("rioxarray")
    assert rioxarray
    with xr.open_dataset(path, decode_coords="all") as back:
        assert back["z"].rio.crs.to_epsg() == 2154
    # Overwriting an existing grid mapping replaces it.
    again = write_grid_mapping(ds, UTM31)
    assert same(read_crs(again, "z"), UTM31)


# --------------------------------------------------------------------------- messages
def test_crs_label_never_undefined():
    cf_only = CRS.from_cf(L93_CF)
    assert cf_only.name in ("undefined", "unknown")  # what pyproj calls it
    label = crs_label(cf_only)
    assert "undefined" not in label and "Lambert" in label
    assert crs_label(L93) == "RGF93 v1 / Lambert-93"
    assert crs_label(None, "the NWP grid") == "the NWP grid"


def test_local_utm_and_lonlat_extent():
    # Tennessee (lon -84, lat 35.8) lies in UTM zone 16N, not in France.
    assert local_projected_crs([-84.5, -83.5], [35.5, 36.0], "EPSG:4326").to_epsg() == 32616
    assert local_projected_crs([-84.5, -83.5], [35.5, 36.0], None) is None
    # Lambert-93 near Grenoble: zone 31N (x 5.6 E).
    assert local_projected_crs([900_000, 910_000], [6_450_000, 6_460_000], L93).to_epsg() == 32631
    text = lonlat_extent([900_000, 910_000], [6_450_000, 6_460_000], L93)
    lon0, lon1, lat0, lat1 = (
        float(v)
        for v in text.replace("lon ", "").replace(" lat ", "").replace(" to ", ",").split(",")
    )
    assert 5.5 < lon0 < lon1 < 5.7 and 45.1 < lat0 < lat1 < 45.25
    assert lonlat_extent([0, 1], [0, 1], None) is None
