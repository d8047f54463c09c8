"""What evaluate tells the user (issue 21 #7) and repeated model times (issue 20 #8).

- The altitude warning is given once per run, not once per wind file; ``-q`` hides the
  console notes but not the warning.
- Observations outside the times of a source are counted (note + result attribute).
- A model file that repeats a time is refused, naming the time.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import devine_onnx as dv
from devine_onnx.cli import app
from devine_onnx.errors import DevineError, InputFileError
from devine_onnx.evaluation import StationWarning
from devine_onnx.sample_data import sample_nwp
from tests.evaluation.synthetic import NT, NX, NY, TIMES, observations, station_lonlat, wind_dataset

pytest.importorskip("rioxarray")
runner = CliRunner()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("messages")
    elevation = np.full((NY, NX), 1000.0)
    wind_dataset(elevation=elevation).to_netcdf(work / "wind_a.nc")
    wind_dataset(elevation=elevation).to_netcdf(work / "wind_b.nc")
    wind_dataset().to_netcdf(work / "wind_noelev.nc")
    stations = pd.DataFrame(
        {
            "station": ["A", "B", "C"],
            "latitude": [station_lonlat(n)[1] for n in "ABC"],
            "longitude": [station_lonlat(n)[0] for n in "ABC"],
            "altitude": [1030.0, 1200.0, np.nan],
        }
    )
    stations.to_csv(work / "stations.csv", index=False)
    observations(coords=False).to_csv(work / "obs.csv", index=False)
    return work


def test_altitude_warning_once_per_run(work):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = dv.evaluate(
            work / "obs.csv",
            [work / "wind_a.nc", work / "wind_b.nc"],
            stations=work / "stations.csv",
            quiet=True,
        )
    altitude = [w for w in record if "elevation" in str(w.message)]
    assert len(altitude) == 1, [str(w.message) for w in record]
    assert issubclass(altitude[0].category, StationWarning)
    assert "B (1200 m vs 1000 m)" in str(altitude[0].message)
    assert str(altitude[0].message).count("B (") == 1
    # The report still lists the station per source.
    assert list(zip(result.report["source"], result.report["station"], strict=True)) == [
        ("wind_a", "B"),
        ("wind_b", "B"),
    ]


def test_quiet_hides_notes_not_the_warning(work):
    args = [
        "evaluate",
        str(work / "obs.csv"),
        str(work / "wind_a.nc"),
        str(work / "wind_b.nc"),
        str(work / "wind_noelev.nc"),
        "--stations",
        str(work / "stations.csv"),
        "-o",
        str(work / "metrics.csv"),
    ]
    loud = runner.invoke(app, args)
    assert loud.exit_code == 0, loud.output
    lines = loud.stderr.splitlines()
    warn = [line for line in lines if line.startswith("warning:") and "elevation" in line]
    notes = [line for line in lines if line.startswith("note:") and "elevation" in line]
    assert len(warn) == 1, loud.stderr
    assert len(notes) == 1 and "wind_noelev.nc" in notes[0], loud.stderr
    quiet = runner.invoke(app, [*args, "-q"])
    assert quiet.exit_code == 0, quiet.output
    lines = quiet.stderr.splitlines()
    assert not [line for line in lines if line.startswith("note:")], quiet.stderr
    assert len([line for line in lines if line.startswith("warning:")]) == 1, quiet.stderr


def test_observations_outside_the_model_times_are_counted(work, caplog):
    later = observations(times=TIMES + pd.Timedelta("5h"))  # 5 of 10 hours in the file
    path = work / "obs_later.csv"
    later.to_csv(path, index=False)
    with caplog.at_level(logging.INFO, logger="devine_onnx"):
        result = dv.evaluate(path, work / "wind_noelev.nc", quiet=True)
    assert result.unmatched_observations == {"wind_noelev": 15}
    text = [r.getMessage() for r in caplog.records]
    assert any("15 of 30 observations" in t and "left out" in t for t in text), text
    assert result.metrics.set_index("station").loc["all", "n"] == 15


def test_repeated_model_times_are_refused(work):
    times = TIMES.values.copy()
    times[3] = times[2]
    path = work / "wind_repeated.nc"
    wind_dataset().assign_coords(time=times).to_netcdf(path)
    with pytest.raises(InputFileError) as exc:
        dv.evaluate(work / "obs.csv", path, stations=work / "stations.csv", quiet=True)
    text = str(exc.value)
    assert "\n" not in text
    assert "wind_repeated.nc" in text and "2026-01-15 02:00:00" in text and "repeats" in text
    nwp = sample_nwp(n_times=NT, start=str(TIMES[0]))
    nwp_times = nwp.time.values.copy()
    nwp_times[1] = nwp_times[0]
    nwp_path = work / "nwp_repeated.nc"
    nwp.assign_coords(time=nwp_times).to_netcdf(nwp_path)
    with pytest.raises(DevineError) as exc:
        dv.evaluate(work / "obs.csv", [], nwp=nwp_path, stations=work / "stations.csv", quiet=True)
    assert "nwp_repeated.nc" in str(exc.value) and "2026-01-15 00:00:00" in str(exc.value)
