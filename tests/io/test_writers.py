"""Incremental writers: done markers of Zarr outputs written by several processes."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from devine_onnx.io.writers import (
    DONE_VARIABLE,
    create_writer,
    inspect_output,
    open_writer,
)


def template(n=4, ny=5, nx=7) -> xr.Dataset:
    ds = xr.Dataset(
        {"elevation": (("y", "x"), np.arange(ny * nx, dtype=np.float32).reshape(ny, nx))},
        coords={"angle": np.arange(n) * 90, "y": np.arange(ny) * -30.0, "x": np.arange(nx) * 30.0},
    )
    ds.attrs["title"] = "test"
    return ds


def test_done_markers_round_trip(tmp_path):
    path = tmp_path / "out.zarr"
    variables = {"acceleration": {"units": "1"}, "alpha": {"units": "radian"}}
    writer = create_writer(
        path, template(), "angle", variables, fmt="zarr", spatial_chunks=(2, 3), done_tiles=2
    )
    assert writer.done_markers().shape == (4, 2) and not writer.done_markers().any()
    values = np.ones((2, 5, 7), np.float32)
    # Another process: reopen, write records 1:3 of tile 0, mark them.
    other = open_writer(path, tuple(variables), fmt="zarr")
    other.write(1, 3, [values, 2 * values])
    other.mark_done(1, 3, tile=0)
    other.close()
    state = inspect_output(path, "angle", "acceleration", "zarr")
    expected = np.zeros((4, 2), bool)
    expected[1:3, 0] = True
    np.testing.assert_array_equal(state["done"], expected)
    np.testing.assert_array_equal(writer.done_markers(), expected)
    with xr.open_zarr(path, consolidated=False) as ds:  # a partial store stays readable
        assert ds[DONE_VARIABLE].dims == ("angle", "tile")
        assert ds.acceleration.encoding["chunks"] == (1, 2, 3)
        assert np.isnan(ds.acceleration[0].values).all()
        np.testing.assert_array_equal(ds.alpha[1:3].values, 2 * values)
    writer.finalize({"notes": "done"})
    writer.close()
    with xr.open_zarr(path) as ds:  # consolidated, markers gone
        assert DONE_VARIABLE not in ds.variables and ds.attrs["notes"] == "done"
    assert inspect_output(path, "angle", "acceleration", "zarr")["done"] is None


def test_markers_from_a_counter_and_netcdf(tmp_path):
    path = tmp_path / "out.zarr"
    writer = create_writer(path, template(), "angle", {"acceleration": {}}, fmt="zarr")
    assert writer.done_markers() is None
    writer.add_done_markers(1, "angle", done=np.arange(4) < 2)
    np.testing.assert_array_equal(writer.done_markers()[:, 0], [True, True, False, False])
    with pytest.raises(ValueError, match="Zarr"):
        create_writer(tmp_path / "out.nc", template(), "angle", {"acceleration": {}}, done_tiles=1)
    nc = create_writer(tmp_path / "b.nc", template(), "angle", {"acceleration": {}})
    try:
        assert nc.done_markers() is None
        with pytest.raises(NotImplementedError, match="no done markers"):
            nc.mark_done(0, 1)
    finally:
        nc.close()
