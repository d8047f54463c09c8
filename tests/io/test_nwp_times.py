"""Issue 20 #8: forecast times out of order are sorted (with a note), repeated ones refused.

Before: both were written to the output as given.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from devine_onnx.cli import app
from devine_onnx.errors import NWPError
from devine_onnx.io.nwp import open_nwp
from devine_onnx.sample_data import sample_dem, sample_nwp


def shuffled(order, n=4):
    """sample_nwp with its steps in ``order``; u of step k (after sorting) is k + 1 m/s."""
    ds = sample_nwp(n_times=n)
    ds["u10"][:] = (np.arange(n) + 1.0)[:, None, None]
    return ds.isel(time=list(order))


def test_unsorted_times_are_sorted_with_a_note(caplog):
    ds = shuffled([2, 0, 3, 1])
    with caplog.at_level(logging.INFO, logger="devine_onnx"):
        nwp = open_nwp(ds)
    assert np.all(np.diff(nwp.time) > np.timedelta64(0))
    np.testing.assert_array_equal(nwp.time, sample_nwp(n_times=4).time.values)
    np.testing.assert_array_equal(nwp.u.values[:, 0, 0], [1.0, 2.0, 3.0, 4.0])
    notes = [r.getMessage() for r in caplog.records if "not in increasing order" in r.getMessage()]
    assert len(notes) == 1 and "4 time steps" in notes[0] and "sorted" in notes[0]


def test_sorted_times_say_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="devine_onnx"):
        open_nwp(shuffled([0, 1, 2, 3]))
    assert not [r for r in caplog.records if "increasing order" in r.getMessage()]


def test_repeated_times_are_refused_naming_them():
    ds = shuffled([0, 1, 1, 2, 3, 3, 3])
    with pytest.raises(NWPError) as info:
        open_nwp(ds)
    msg = str(info.value)
    t1, t3 = (pd.Timestamp(ds.time.values[i]).strftime("%Y-%m-%d %H:%M:%S") for i in (1, 4))
    assert "\n" not in msg and "2 valid time(s) appear more than once" in msg
    assert t1 in msg and t3 in msg and "7 steps" in msg


def test_overlapping_forecast_steps_are_refused():
    """(time, step) forecasts whose valid times overlap: two runs cover 03:00."""
    base = sample_nwp(n_times=1)
    u = np.ones((2, 3, *base.u10.shape[1:]), np.float32)
    ds = xr.Dataset(
        {
            "u10": (("time", "step", "latitude", "longitude"), u),
            "v10": (("time", "step", "latitude", "longitude"), u),
        },
        coords={
            "time": pd.to_datetime(["2026-01-15T00:00", "2026-01-15T02:00"]),
            "step": pd.to_timedelta([0, 1, 3], unit="h"),
            "latitude": base.latitude.values,
            "longitude": base.longitude.values,
        },
    )
    with pytest.raises(
        NWPError, match=r"1 valid time\(s\) appear more than once \(2026-01-15 03:00:00 UTC"
    ):
        open_nwp(ds)


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    from devine_onnx.tables.build import compute_corrections

    path = tmp_path_factory.mktemp("times") / "t.nc"
    compute_corrections(
        sample_dem(shape=(40, 50)), engine="micromet", angles=range(0, 360, 30), output=path,
        quiet=True,
    )  # fmt: skip
    return path


def test_downscale_writes_sorted_times_and_refuses_repeated(tmp_path, table_file):
    runner = CliRunner()
    shuffled([3, 1, 0, 2]).to_netcdf(tmp_path / "unsorted.nc")
    out = tmp_path / "w.nc"
    args = ["downscale", str(tmp_path / "unsorted.nc"), "-t", str(table_file), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "not in increasing order" in result.stderr
    with xr.open_dataset(out) as wind:
        assert np.all(np.diff(wind.time.values) > np.timedelta64(0))
        ref = shuffled([0, 1, 2, 3])
        np.testing.assert_array_equal(wind.time.values, ref.time.values)
    shuffled([0, 1, 2, 2]).to_netcdf(tmp_path / "repeated.nc")
    out2 = tmp_path / "w2.nc"
    result = runner.invoke(
        app, ["downscale", str(tmp_path / "repeated.nc"), "-t", str(table_file), "-o", str(out2)]
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "appear more than once" in errors[0] and not out2.exists()
