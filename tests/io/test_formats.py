"""The one table of file formats (io/formats.py): suffixes, content sniffing and open_any."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from devine_onnx.errors import InputFileError, NWPError
from devine_onnx.io.formats import (
    FORMATS,
    NETCDF_SUFFIXES,
    format_from_suffix,
    guess_format,
    open_any,
    sniff_format,
    strip_suffix,
    suffixes,
)


def small() -> xr.Dataset:
    return xr.Dataset(
        {"z": (("y", "x"), np.arange(6.0).reshape(2, 3))},
        coords={"y": [1.0, 0.0], "x": [0.0, 1.0, 2.0]},
    )


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.nc", "netcdf"),
        ("a.NC4", "netcdf"),
        ("a.netcdf", "netcdf"),
        ("a.cdf", "netcdf"),
        ("a.zarr", "zarr"),
        ("a.grib", "grib"),
        ("a.grb", "grib"),
        ("a.grib2", "grib"),
        ("a.tif", "geotiff"),
        ("a.TIFF", "geotiff"),
        ("a.asc", "ascii_grid"),
        ("a.txt", None),
        ("a", None),
    ],
)
def test_suffix_table(name, fmt):
    assert format_from_suffix(name) == fmt
    assert guess_format(name) == fmt  # a path that does not exist: the suffix only


def test_suffix_helpers():
    assert ".nc" in NETCDF_SUFFIXES and ".zarr" not in NETCDF_SUFFIXES
    assert suffixes("zarr") == (".zarr",)
    assert set(FORMATS.values()) == {"netcdf", "zarr", "grib", "geotiff", "ascii_grid"}
    assert strip_suffix("wind_30m.nc") == "wind_30m"
    assert strip_suffix("wind_30m.zarr") == "wind_30m"
    assert strip_suffix("wind.30m") == "wind.30m"
    assert strip_suffix(".nc") == ".nc"


def test_content_decides(tmp_path):
    nc = tmp_path / "looks.grib"
    small().to_netcdf(nc)
    assert sniff_format(nc) == "netcdf"
    assert guess_format(nc) == "netcdf"
    grib = tmp_path / "looks.nc"
    grib.write_bytes(b"GRIB" + b"\0" * 100)
    assert guess_format(grib) == "grib"
    asc = tmp_path / "dem.txt"
    asc.write_text("ncols 3\nnrows 2\nxllcorner 0\nyllcorner 0\ncellsize 30\n1 2 3\n4 5 6\n")
    assert guess_format(asc) == "ascii_grid"
    store = tmp_path / "store"
    small().to_zarr(store)
    assert guess_format(store) == "zarr"
    assert guess_format(tmp_path) is None  # a plain folder


def test_open_any(tmp_path):
    nc = tmp_path / "a.nc"
    small().to_netcdf(nc)
    with open_any(nc) as ds:
        np.testing.assert_array_equal(ds["z"].values, small()["z"].values)
    store = tmp_path / "a.zarr"
    small().to_zarr(store)
    with open_any(store) as ds:
        np.testing.assert_array_equal(ds["z"].values, small()["z"].values)
    with pytest.raises(InputFileError, match=r"missing\.nc: table not found"):
        open_any(tmp_path / "missing.nc", what="table")
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf file at all")
    with pytest.raises(
        NWPError, match=r"bad\.nc: not a NetCDF, GRIB or Zarr file \(unrecognised content b'not '\)"
    ):
        open_any(bad, what="NWP file", error=NWPError)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(InputFileError, match="is a folder but not a Zarr store"):
        open_any(folder)
    # A format the caller does not accept.
    with pytest.raises(InputFileError, match=r"not a NetCDF file \(it looks like Zarr\)"):
        open_any(store, formats=("netcdf",))
