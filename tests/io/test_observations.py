"""Station observation reader (devine_onnx.io.observations): CSV, station lists, CF DSG NetCDF.

Every bad input is refused with one line naming the file, the column (or variable) and, for
a CSV, the line; the CF timeSeries layouts (orthogonal and contiguous ragged arrays) read to
the same table as the CSV that holds the same values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from devine_onnx.errors import ObservationError
from devine_onnx.io.observations import RESERVED_STATION, read_observations

NT = 10
TIMES = pd.date_range("2026-01-15T00:00", periods=NT, freq="h")
# name -> (longitude, latitude, altitude)
STATIONS = {"A": (6.10, 45.20, 1030.0), "B": (6.15, 45.25, 1200.0), "C": (6.05, 45.18, 980.0)}


def observations(coords: bool = True) -> pd.DataFrame:
    """3 stations x 10 hours; speed 1..~6 m/s, directions across north."""
    rows = []
    for j, (name, (lon, lat, _)) in enumerate(STATIONS.items()):
        for k, t in enumerate(TIMES):
            row = {
                "station": name,
                "time": t.strftime("%Y-%m-%dT%H:%M:%S"),
                "wind_speed": 1.0 + 0.5 * k + 0.25 * j,
                "wind_direction": float(np.mod(330.0 + 7.5 * k + 3.0 * j, 360.0)),
            }
            if coords:
                row.update(latitude=lat, longitude=lon)
            rows.append(row)
    return pd.DataFrame(rows)


def write_csv(path, df):
    df.to_csv(path, index=False)
    return path


def one_line(exc_info, *needles):
    text = str(exc_info.value)
    assert "\n" not in text, text
    for needle in needles:
        assert str(needle) in text, text


def test_csv_reads_to_utc_times_and_station_table(tmp_path):
    df = observations()
    df.loc[0, "time"] = "2026-01-15T01:00:00+01:00"  # the same instant as 00:00 UTC
    df.loc[1, "wind_direction"] = 360.0  # north, written as 0
    obs, table = read_observations(write_csv(tmp_path / "obs.csv", df))
    assert list(obs.columns) == ["station", "time", "wind_speed", "wind_direction"]
    assert obs["time"].iloc[0] == TIMES[0]
    assert obs["wind_direction"].iloc[1] == 0.0
    assert list(table.index) == ["A", "B", "C"]
    assert table.loc["B", "longitude"] == pytest.approx(6.15)
    assert table["altitude"].isna().all()
    assert RESERVED_STATION == "all"


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda df: df.drop(columns="wind_direction"), ["'wind_direction'", "missing column"]),
        (lambda df: df.drop(columns=["latitude", "longitude"]), ["'latitude'", "--stations"]),
        (
            lambda df: df.assign(wind_speed=df["wind_speed"].astype(object)).pipe(_bad_speed),
            ["'wind_speed'", "'fast'", "line 4"],
        ),
        (lambda df: df.assign(time=["yesterday"] + list(df["time"][1:])), ["'time'", "yesterday"]),
        (lambda df: pd.concat([df, df.iloc[[5]]]), ["'A'", "two rows", "station, time"]),
        (lambda df: df.assign(wind_direction=df["wind_direction"] + 400), ["'wind_direction'"]),
        (
            lambda df: df.assign(station=np.where(df["station"] == "C", "all", df["station"])),
            ["'station'", "reserved"],
        ),
    ],
    ids=[
        "missing-column",
        "no-coordinates",
        "non-numeric",
        "bad-time",
        "duplicate",
        "direction-range",
        "reserved-name",
    ],
)
def test_bad_observations_name_file_and_column(tmp_path, edit, needles):
    path = write_csv(tmp_path / "bad_obs.csv", edit(observations()))
    with pytest.raises(ObservationError) as exc:
        read_observations(path)
    one_line(exc, "bad_obs.csv", *needles)


def _bad_speed(df):
    df.loc[2, "wind_speed"] = "fast"
    return df


def test_unknown_station_and_bad_station_list(tmp_path):
    stations = pd.DataFrame(
        {
            "station": ["A", "B"],
            "latitude": [STATIONS[n][1] for n in "AB"],
            "longitude": [STATIONS[n][0] for n in "AB"],
        }
    )
    st_path = write_csv(tmp_path / "stations_ab.csv", stations)
    obs_path = write_csv(tmp_path / "obs_abc.csv", observations(coords=False))
    with pytest.raises(ObservationError) as exc:
        read_observations(obs_path, st_path)
    one_line(exc, "obs_abc.csv", "'C'", "'station'", "stations_ab.csv")
    st_bad = write_csv(tmp_path / "stations_bad.csv", stations.drop(columns="longitude"))
    with pytest.raises(ObservationError) as exc:
        read_observations(obs_path, st_bad)
    one_line(exc, "stations_bad.csv", "'longitude'")
    st_dup = write_csv(tmp_path / "stations_dup.csv", pd.concat([stations, stations.iloc[[1]]]))
    with pytest.raises(ObservationError) as exc:
        read_observations(obs_path, st_dup)
    one_line(exc, "stations_dup.csv", "'B'", "'station'")
    # A complete station list takes precedence over the coordinates in the observations.
    full = pd.DataFrame(
        {
            "station": list(STATIONS),
            "latitude": [v[1] for v in STATIONS.values()],
            "longitude": [v[0] for v in STATIONS.values()],
            "altitude": [v[2] for v in STATIONS.values()],
        }
    )
    _, table = read_observations(
        write_csv(tmp_path / "obs_coords.csv", observations()),
        write_csv(tmp_path / "stations.csv", full),
    )
    assert list(table["altitude"]) == [1030.0, 1200.0, 980.0]


def test_cf_dsg_netcdf_orthogonal_and_ragged(tmp_path):
    csv = observations()
    reference_obs, reference_table = read_observations(write_csv(tmp_path / "obs.csv", csv))
    names = list(STATIONS)
    lonlat = np.array([STATIONS[n][:2] for n in names])
    speed = csv["wind_speed"].to_numpy().reshape(len(names), NT)
    direction = csv["wind_direction"].to_numpy().reshape(len(names), NT)
    common = {
        "station_name": ("station", np.array(names, dtype=object), {"cf_role": "timeseries_id"}),
        "lat": ("station", lonlat[:, 1], {"standard_name": "latitude"}),
        "lon": ("station", lonlat[:, 0], {"standard_name": "longitude"}),
    }
    ortho = xr.Dataset(
        {
            **common,
            "ff": (("station", "time"), speed, {"standard_name": "wind_speed"}),
            "dd": (("station", "time"), direction, {"standard_name": "wind_from_direction"}),
        },
        coords={"time": ("time", TIMES, {"standard_name": "time"})},
        attrs={"featureType": "timeSeries", "Conventions": "CF-1.8"},
    )
    ortho.to_netcdf(tmp_path / "obs_ortho.nc")
    ragged = xr.Dataset(
        {
            **common,
            "row_size": ("station", np.full(len(names), NT), {"sample_dimension": "obs"}),
            "wind_speed": ("obs", speed.ravel()),
            "wind_direction": ("obs", direction.ravel()),
            "time": ("obs", np.tile(TIMES.values, len(names)), {"standard_name": "time"}),
        },
        attrs={"featureType": "timeSeries"},
    )
    ragged.to_netcdf(tmp_path / "obs_ragged.nc")
    for path in (tmp_path / "obs_ortho.nc", tmp_path / "obs_ragged.nc"):
        obs, table = read_observations(path)
        pd.testing.assert_frame_equal(obs, reference_obs)
        pd.testing.assert_frame_equal(table, reference_table)
    wrong = ortho.assign_attrs(featureType="trajectory")
    wrong.to_netcdf(tmp_path / "obs_trajectory.nc")
    with pytest.raises(ObservationError) as exc:
        read_observations(tmp_path / "obs_trajectory.nc")
    one_line(exc, "obs_trajectory.nc", "featureType", "timeSeries")
