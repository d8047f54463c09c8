"""Issue 20 #7: the message of a failed distributed table run describes the partial store
as it is (no "0 of 36 directions are in t.zarr.partial" for a store that no longer exists)."""

from __future__ import annotations

import shutil

import numpy as np
import xarray as xr

from devine_onnx.io.atomic import partial_path
from devine_onnx.io.writers import create_writer
from devine_onnx.tables import distributed as dist


def store(tmp_path, n=36):
    template = xr.Dataset(
        coords={"angle": np.arange(n) * 10, "y": np.arange(4.0), "x": np.arange(5.0)}
    )
    tmp = partial_path(tmp_path / "t.zarr")
    writer = create_writer(
        tmp, template, "angle", {"acceleration": {}}, fmt="zarr", done_tiles=1, label=tmp
    )
    writer.write(0, 5, [np.ones((5, 4, 5), np.float32)])
    writer.mark_done(0, 5)
    return tmp, writer, list(range(0, 10 * n, 10))


def test_failed_run_counts_the_directions_kept(tmp_path):
    tmp, writer, angles = store(tmp_path)
    err = dist._driver_error(dist.TableTask(5, 6), RuntimeError("boom"), angles, tmp, writer)
    assert f"5 of 36 directions are in {tmp}" in str(err) and "boom" in str(err)
    writer.close()


def test_deleted_partial_store_is_not_reported_as_kept(tmp_path):
    tmp, writer, angles = store(tmp_path)
    shutil.rmtree(tmp)  # another run (or a user) deleted it while this one was going
    err = dist._driver_error(dist.TableTask(5, 6), RuntimeError("boom"), angles, tmp, writer)
    msg = str(err)
    assert "\n" not in msg and "directions are in" not in msg
    assert f"the partial store {tmp} no longer exists" in msg and "nothing was kept" in msg
    writer.close()
