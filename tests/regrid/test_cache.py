"""The weights cache and build_weights: any table grid (object, Dataset, file), one file per grids."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer
from scipy.interpolate import LinearNDInterpolator

import devine_onnx as dv
from devine_onnx.errors import TableError, WeightsMismatchError
from devine_onnx.io.nwp import open_nwp
from devine_onnx.regrid import (
    build_weights,
    cache_file,
    load_or_build,
    resolve_weights,
    target_grid,
    weights_cache_path,
)
from devine_onnx.sample_data import sample_dem, sample_nwp

SHAPE = (30, 40)


@pytest.fixture(scope="module")
def grid():
    """A table-like object: 1-D x, y in Lambert-93 metres and a crs, nothing else."""
    dem = sample_dem(shape=SHAPE)
    return SimpleNamespace(x=dem.x.values, y=dem.y.values, crs="EPSG:2154")


@pytest.fixture(scope="module")
def table_ds(grid):
    ds = xr.Dataset(
        {"acceleration": (("angle", "y", "x"), np.ones((2, *SHAPE), np.float32))},
        coords={"angle": [0.0, 180.0], "y": grid.y, "x": grid.x},
    )
    return ds.rio.write_crs(grid.crs)


def test_regrid_imports_neither_tables_nor_downscaling():
    code = (
        "import sys, devine_onnx.regrid\n"
        "bad = [m for m in sys.modules if m.startswith(('devine_onnx.tables', "
        "'devine_onnx.downscaling', 'devine_onnx.cli'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_build_weights_from_a_duck_typed_grid_matches_linear_interpolation(grid):
    nwp = sample_nwp(n_times=1)
    weights = build_weights(nwp, grid)
    # Independent reference: scipy's LinearNDInterpolator on the NWP points in Lambert-93.
    winds = open_nwp(nwp)
    lon, lat = np.meshgrid(winds.lon_or_x, winds.lat_or_y)
    px, py = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True).transform(lon, lat)
    field = np.cos(lon / 3.0) + lat**2 / 100.0
    ref = LinearNDInterpolator(np.c_[px.ravel(), py.ravel()], field.ravel())
    tx, ty = np.meshgrid(grid.x, grid.y)
    np.testing.assert_allclose(weights.apply(field), ref(tx, ty), rtol=1e-9, atol=1e-9)


def test_table_dataset_file_and_object_give_the_same_grid(tmp_path, grid, table_ds):
    path = tmp_path / "table.nc"
    table_ds.to_netcdf(path)
    ref = target_grid(grid)
    for given in (table_ds, path, str(path)):
        got = target_grid(given)
        np.testing.assert_array_equal(got.x, ref.x)
        np.testing.assert_array_equal(got.y, ref.y)
        assert got.crs == ref.crs and got.fingerprint == ref.fingerprint
    # The public API keeps accepting a table file.
    a = dv.build_weights(sample_nwp(n_times=1), path)
    b = build_weights(sample_nwp(n_times=1), grid)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_table_without_crs_or_file_is_refused(tmp_path, table_ds):
    with pytest.raises(TableError, match="no CRS"):
        target_grid(table_ds.drop_vars("spatial_ref").drop_attrs())
    with pytest.raises(TableError, match="missing.nc: correction table not found"):
        target_grid(tmp_path / "missing.nc")


def test_cache_is_shared_and_given_weights_are_checked(tmp_path, grid):
    winds = open_nwp(sample_nwp(n_times=1))
    path = weights_cache_path(winds, grid, cache_dir=tmp_path)
    assert path.parent == tmp_path and path.name.startswith("weights-")
    assert weights_cache_path(winds, grid, cache_dir=False) is None
    first = resolve_weights(None, winds, grid, cache_dir=tmp_path)
    assert first.path == path and path.is_file()
    again = load_or_build(
        tmp_path, winds.lon_or_x, winds.lat_or_y, winds.crs, grid.x, grid.y, grid.crs
    )
    assert again.path == path
    assert cache_file(tmp_path, *path.stem.split("-")[1:]) == path
    smaller = SimpleNamespace(x=grid.x[:-1], y=grid.y, crs=grid.crs)
    with pytest.raises(WeightsMismatchError):
        resolve_weights(first, winds, smaller)
