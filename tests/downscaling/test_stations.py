"""Station-driven downscaling: observations -> Barnes analysis -> table (API, CLI, evaluate)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import Transformer

from devine_onnx.downscaling.api import downscale
from devine_onnx.downscaling.stations import (
    MIN_SPEED,
    StationCountWarning,
    is_observation_input,
)
from devine_onnx.errors import ObservationError, OptionError
from devine_onnx.evaluation import evaluate
from devine_onnx.io.atomic import partial_path
from devine_onnx.io.cf import write_grid_mapping
from devine_onnx.regrid.barnes import barnes, station_spacing
from devine_onnx.sample_data import CENTER_LONLAT, LAMBERT93, sample_nwp
from devine_onnx.wind import meridian_convergence, speed_dir_to_uv, uv_to_speed_dir

NY, NX, RES = 20, 30, 100.0
X0, Y0 = Transformer.from_crs("EPSG:4326", LAMBERT93, always_xy=True).transform(*CENTER_LONLAT)
X = X0 + (np.arange(NX) - (NX - 1) / 2) * RES
Y = Y0 - (np.arange(NY) - (NY - 1) / 2) * RES
TO_LONLAT = Transformer.from_crs(LAMBERT93, "EPSG:4326", always_xy=True)
TIMES = pd.date_range("2026-02-01T00:00", periods=4, freq="h")
# Stations at pixel centres (row, column).
PIXELS = {"A": (3, 4), "B": (15, 6), "C": (5, 25), "D": (12, 18)}


def make_table(acc_of_angle=lambda k: np.ones_like(k, dtype=float), n_angles=360):
    """Table on the test grid: acceleration a function of the direction index, alpha 0."""
    k = np.arange(n_angles, dtype=float)
    acc = np.broadcast_to(acc_of_angle(k)[:, None, None], (n_angles, NY, NX))
    ds = xr.Dataset(
        {
            "acceleration": (("angle", "y", "x"), acc.astype(np.float32)),
            "alpha": (("angle", "y", "x"), np.zeros((n_angles, NY, NX), np.float32)),
        },
        coords={"angle": k * (360.0 / n_angles), "y": Y, "x": X},
        attrs={"comment": "test table"},
    )
    ds["alpha"].attrs["units"] = "radian"
    return write_grid_mapping(ds, LAMBERT93)


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stations") / "table.nc"
    make_table().to_netcdf(path)
    return path


def station_list(names=tuple(PIXELS)):
    rows = []
    for name in names:
        iy, ix = PIXELS[name]
        lon, lat = TO_LONLAT.transform(X[ix], Y[iy])
        rows.append({"station": name, "latitude": lat, "longitude": lon})
    return pd.DataFrame(rows)


def observations(speed, direction, names=tuple(PIXELS), times=TIMES):
    """Long table: ``speed[t][k]``/``direction[t][k]`` of station ``names[k]`` at ``times[t]``."""
    rows = []
    for k, name in enumerate(names):
        for t, time in enumerate(times):
            rows.append(
                {"station": name, "time": time.isoformat(), "wind_speed": speed[t][k],
                 "wind_direction": direction[t][k]}
            )  # fmt: skip
    return pd.DataFrame(rows)


def write_obs(tmp_path, obs, stations=None, name="obs.csv"):
    path = tmp_path / name
    if stations is None:
        obs = obs.merge(station_list(), on="station")
    obs.to_csv(path, index=False)
    return path


def run(obs, table, **kw):
    kw.setdefault("quiet", True)
    return downscale(obs, table, **kw)


def nothing_written(out):
    return not out.exists() and not partial_path(out).exists()


def invoke(args):
    from typer.testing import CliRunner

    from devine_onnx.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_refused(result, *needles, outputs=()):
    """Exit 1, one ``error:`` line naming ``needles``, no traceback, nothing written."""
    detail = f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert result.exit_code == 1, detail
    assert "Traceback" not in result.output, detail
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, detail
    assert all(n in errors[0] for n in needles), detail
    assert all(nothing_written(o) for o in outputs)


# --------------------------------------------------------------------------- behaviour
def test_identical_winds_give_that_wind_everywhere(tmp_path, table_file):
    """Uniform 6 m/s from 200° at every station: before the table (the analysis of u and v)
    and after a table of acceleration 1, alpha 0, the same wind at every pixel."""
    speed = [[6.0] * 4] * 4
    direction = [[200.0] * 4] * 4
    path = write_obs(tmp_path, observations(speed, direction))
    out = run(path, table_file, output=tmp_path / "wind.nc")
    u0, v0 = speed_dir_to_uv(6.0, 200.0)
    np.testing.assert_allclose(out["eastward_wind"].values, u0, atol=1e-4)
    np.testing.assert_allclose(out["northward_wind"].values, v0, atol=1e-4)
    np.testing.assert_allclose(out["wind_speed"].values, 6.0, atol=1e-4)
    np.testing.assert_allclose(out["wind_from_direction"].values, 200.0, atol=1e-3)
    assert out["station_count"].values.tolist() == [4, 4, 4, 4]
    assert "station" in out.attrs["source"] and "Barnes" in out.attrs["source"]
    assert out.attrs["stations"] == "A, B, C, D"
    assert out["wind_speed"].dims == ("time", "y", "x")
    out.close()


def test_one_station_gives_its_wind_everywhere(tmp_path, table_file):
    speed = [[3.0, np.nan, np.nan, np.nan]] * 2
    direction = [[75.0, 10.0, np.nan, 300.0]] * 2
    obs = observations(speed, direction, times=TIMES[:2])
    out = run(obs, table_file, stations=station_list())
    np.testing.assert_allclose(out["wind_speed"].values, 3.0, atol=1e-5)
    np.testing.assert_allclose(out["wind_from_direction"].values, 75.0, atol=1e-3)
    assert out["station_count"].values.tolist() == [1, 1]
    assert out["station_used"].values.tolist() == [[1, 0, 0, 0]] * 2


def test_table_is_applied_in_grid_frame(tmp_path):
    """acceleration[k] = 1 + k/1000 (360 directions): a westerly (true north) of 5 m/s at every
    station uses k = round(270 - gamma), gamma the meridian convergence of each pixel."""
    table = make_table(lambda k: 1 + k / 1000)
    obs = observations([[5.0] * 4], [[270.0] * 4], times=TIMES[:1])
    out = run(obs, table, stations=station_list())
    gamma = meridian_convergence(X[None, :], Y[:, None], LAMBERT93)
    k = np.mod(np.floor(270 - gamma + 0.5), 360)
    np.testing.assert_allclose(out["wind_speed"].values[0], 5 * (1 + k / 1000), rtol=1e-5)
    np.testing.assert_allclose(out["wind_from_direction"].values[0], 270.0, atol=1e-3)


def test_equals_barnes_of_components_then_table(tmp_path, table_file):
    """Different winds: the output (table of 1, alpha 0) is the Barnes analysis of u and v at
    the pixel centres, with the spacing from the table's area and the station count."""
    speed = [[2.0, 7.0, 4.0, 9.0], [5.0, np.nan, 3.0, 1.0]]
    direction = [[10.0, 100.0, 250.0, 330.0], [180.0, 0.0, 90.0, 45.0]]
    out = run(observations(speed, direction, times=TIMES[:2]), table_file,
              stations=station_list(), min_speed=0)  # fmt: skip
    xs = np.array([X[PIXELS[n][1]] for n in PIXELS])
    ys = np.array([Y[PIXELS[n][0]] for n in PIXELS])
    area = (NX * RES) * (NY * RES)
    for t in range(2):
        u, v = speed_dir_to_uv(np.array(speed[t]), np.array(direction[t]))
        ok = np.isfinite(u)
        dn = station_spacing(area, int(ok.sum()))
        ug = barnes(xs[ok], ys[ok], u[ok][None], X, Y, spacing=dn, dtype=np.float64)[0]
        vg = barnes(xs[ok], ys[ok], v[ok][None], X, Y, spacing=dn, dtype=np.float64)[0]
        s, d = uv_to_speed_dir(ug, vg)
        np.testing.assert_allclose(out["wind_speed"].values[t], s, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["eastward_wind"].values[t], ug, rtol=1e-4, atol=1e-5)
    assert out["station_count"].values.tolist() == [4, 3]


def test_coarsen_and_nearest_lookup_options_apply(table_file):
    obs = observations([[4.0] * 4], [[300.0] * 4], times=TIMES[:1])
    out = run(obs, table_file, stations=station_list(), coarsen=2, chunk_time=1)
    assert out["wind_speed"].shape == (1, NY // 2, NX // 2)
    np.testing.assert_allclose(out["wind_speed"].values, 4.0, atol=1e-4)
    np.testing.assert_allclose(out["x"].values, X.reshape(-1, 2).mean(axis=1))


def test_barnes_spacing_option_narrows_the_filter(table_file):
    speed = [[2.0, 7.0, 4.0, 9.0]]
    direction = [[270.0] * 4]
    obs = observations(speed, direction, times=TIMES[:1])
    narrow = run(obs, table_file, stations=station_list(), barnes_spacing=50.0)
    for k, (iy, ix) in enumerate(PIXELS.values()):
        assert float(narrow["wind_speed"][0, iy, ix]) == pytest.approx(speed[0][k], abs=1e-4)
    wide = run(obs, table_file, stations=station_list())
    assert float(wide["wind_speed"][0, 3, 4]) > 2.5  # smoothed towards the others
    assert wide.attrs["barnes_station_spacing"] == "per time step"
    assert narrow.attrs["barnes_station_spacing"] == 50.0


def test_minimum_speed(table_file):
    obs = observations([[0.04] * 4], [[90.0] * 4], times=TIMES[:1])
    floored = run(obs, table_file, stations=station_list())
    assert MIN_SPEED == 0.1
    np.testing.assert_allclose(floored["wind_speed"].values, 0.1, atol=1e-6)
    np.testing.assert_allclose(floored["wind_from_direction"].values, 90.0, atol=1e-3)
    raw = run(obs, table_file, stations=station_list(), min_speed=0)
    np.testing.assert_allclose(raw["wind_speed"].values, 0.04, atol=1e-6)


def test_output_speed_floor_keeps_direction(table_file):
    """Opposing stations cancel in places: output speeds below 0.5 are raised to 0.5."""
    obs = observations([[4.0, 4.0, 4.0, 4.0]], [[0.0, 180.0, 0.0, 180.0]], times=TIMES[:1])
    raw = run(obs, table_file, stations=station_list(), min_speed=0)
    floored = run(obs, table_file, stations=station_list(), min_speed=0.5)
    s0, s1 = raw["wind_speed"].values, floored["wind_speed"].values
    low = s0 < 0.5
    assert low.any() and (~low).any()
    np.testing.assert_allclose(s1[low], 0.5, atol=1e-6)
    np.testing.assert_allclose(s1[~low], s0[~low], rtol=1e-6)
    d0, d1 = raw["wind_from_direction"].values, floored["wind_from_direction"].values
    np.testing.assert_allclose(d1[low], d0[low], atol=1e-3)
    u, v = speed_dir_to_uv(s1, d1)
    np.testing.assert_allclose(floored["eastward_wind"].values, u, atol=1e-5)
    np.testing.assert_allclose(floored["northward_wind"].values, v, atol=1e-5)


def test_min_stations_blanks_short_steps_with_a_warning(tmp_path, table_file):
    speed = [[5.0, 5.0, 5.0, 5.0], [5.0, np.nan, np.nan, 5.0], [5.0, 5.0, 5.0, np.nan]]
    direction = [[270.0] * 4] * 3
    obs = observations(speed, direction, times=TIMES[:3])
    with pytest.warns(StationCountWarning, match=r"1 of 3 time steps have fewer than 3"):
        out = run(obs, table_file, stations=station_list(), min_stations=3,
                  output=tmp_path / "w.zarr")  # fmt: skip
    assert np.isnan(out["wind_speed"].values[1]).all()
    assert np.isfinite(out["wind_speed"].values[[0, 2]]).all()
    assert out["station_count"].values.tolist() == [4, 0, 3]
    assert out["station_used"].values[1].tolist() == [0, 0, 0, 0]


def test_cf_timeseries_netcdf_input(tmp_path, table_file):
    names = list(PIXELS)
    st = station_list()
    ds = xr.Dataset(
        {
            "wind_speed": (("station", "time"), np.full((4, 2), 4.0), {"units": "m s-1"}),
            "wind_direction": (
                ("station", "time"),
                np.full((4, 2), 120.0),
                {"standard_name": "wind_from_direction"},
            ),  # fmt: skip
            "station_name": ("station", np.array(names), {"cf_role": "timeseries_id"}),
            "latitude": ("station", st["latitude"].to_numpy(), {"standard_name": "latitude"}),
            "longitude": ("station", st["longitude"].to_numpy(), {"standard_name": "longitude"}),
        },
        coords={"time": TIMES[:2]},
        attrs={"featureType": "timeSeries", "Conventions": "CF-1.8"},
    )
    path = tmp_path / "obs_dsg.nc"
    ds.to_netcdf(path)
    assert is_observation_input(path)
    out = run(path, table_file)
    np.testing.assert_allclose(out["wind_from_direction"].values, 120.0, atol=1e-3)
    assert not is_observation_input(table_file)  # a NetCDF without featureType


# --------------------------------------------------------------------------- refusals
def test_fewer_stations_than_min_stations_is_one_line(tmp_path, table_file):
    path = write_obs(tmp_path, observations([[5.0] * 4], [[270.0] * 4], times=TIMES[:1]))
    out = tmp_path / "wind.nc"
    with pytest.raises(ObservationError, match=r"obs.csv: 4 station\(s\) have wind values.*"
                       r"min_stations=5"):  # fmt: skip
        run(path, table_file, output=out, min_stations=5)
    assert nothing_written(out)


def test_stations_all_outside_the_grid(tmp_path, table_file):
    st = station_list()
    st["latitude"] += 1.0  # 110 km north
    obs = observations([[5.0] * 4], [[270.0] * 4], times=TIMES[:1])
    out = tmp_path / "wind.nc"
    with pytest.raises(ObservationError, match="all 4 stations lie outside the table grid"):
        run(obs, table_file, stations=st, output=out)
    assert nothing_written(out)


def test_times_not_sorted_or_duplicated(tmp_path, table_file):
    obs = observations([[5.0] * 4] * 3, [[270.0] * 4] * 3, times=TIMES[:3])
    swapped = obs.copy()
    swapped.loc[[0, 1], "time"] = swapped.loc[[1, 0], "time"].to_numpy()
    path = write_obs(tmp_path, swapped)
    out = tmp_path / "wind.nc"
    with pytest.raises(ObservationError, match=r"station 'A' are not in increasing order .*line 3"):
        run(path, table_file, output=out)
    dup = obs.copy()
    dup.loc[1, "time"] = dup.loc[0, "time"]
    with pytest.raises(ObservationError, match="two rows at"):
        run(write_obs(tmp_path, dup, name="dup.csv"), table_file, output=out)
    assert nothing_written(out)


def test_time_window_selects_exactly_those_steps(table_file):
    """start/end keep the observation times inside the window (both included), with the
    values of the full run at those times; an empty window is one line with the file's range."""
    rng = np.random.default_rng(5)
    speed = rng.uniform(2, 9, (4, 4))
    direction = rng.uniform(0, 360, (4, 4))
    obs = observations(speed, direction)
    full = run(obs, table_file, stations=station_list())
    part = run(obs, table_file, stations=station_list(), start=TIMES[1].isoformat(), end=TIMES[2])
    assert part["time"].values.tolist() == full["time"].values[1:3].tolist()
    np.testing.assert_array_equal(part["wind_speed"].values, full["wind_speed"].values[1:3])
    with pytest.raises(OptionError, match=r"start=.*no time step of the observations"):
        run(obs, table_file, stations=station_list(), start="2027-01-01")


def test_nwp_options_refused_with_stations_and_the_reverse(tmp_path, table_file):
    obs = observations([[5.0] * 4], [[270.0] * 4], times=TIMES[:1])
    with pytest.raises(OptionError, match="u_var, max_memory apply to NWP input"):
        run(obs, table_file, stations=station_list(), u_var="u10", max_memory="1GB")
    with pytest.raises(OptionError, match="grid_relative applies to NWP input"):
        run(obs, table_file, stations=station_list(), grid_relative=True)
    with pytest.raises(OptionError, match="barnes_spacing: for weather-station observations"):
        run(sample_nwp(n_times=1), table_file, barnes_spacing=100.0)
    with pytest.raises(OptionError, match="min_stations=0"):
        run(obs, table_file, stations=station_list(), min_stations=0)
    with pytest.raises(OptionError, match="min_speed=-1"):
        run(obs, table_file, stations=station_list(), min_speed=-1)


# --------------------------------------------------------------------------- CLI, leave one out
def test_cli_and_leave_one_out_scored_by_evaluate(tmp_path, table_file):
    """Hold D out with a station list without it; evaluate scores D on the downscaled wind."""
    rng = np.random.default_rng(1)
    speed = (3 + 4 * rng.random((4, 4))).tolist()
    direction = (250 + 40 * rng.random((4, 4))).tolist()
    obs_path = write_obs(tmp_path, observations(speed, direction), stations=False)
    all_st = tmp_path / "stations.csv"
    station_list().to_csv(all_st, index=False)
    without_d = tmp_path / "stations_without_D.csv"
    station_list(("A", "B", "C")).to_csv(without_d, index=False)
    wind = tmp_path / "out" / "wind_without_D.nc"
    res = invoke(["downscale", obs_path, "--table", table_file, "-o", wind, "--stations",
                  without_d, "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    with xr.open_dataset(wind) as ds:
        assert ds.attrs["stations"] == "A, B, C"
        assert ds["station_count"].values.tolist() == [3, 3, 3, 3]
    scores = tmp_path / "scores.csv"
    res = invoke(["evaluate", obs_path, wind, "--stations", all_st, "-o", scores, "--quiet"])
    assert res.exit_code == 0, res.output
    metrics = pd.read_csv(scores)
    row = metrics[metrics["station"] == "D"]
    assert len(row) == 1 and int(row["n"].iloc[0]) == 4
    # The held-out station is scored on the analysis of the other three: not a perfect fit.
    assert float(row["mae"].iloc[0]) > 0.01
    direct = evaluate(obs_path, [wind], stations=all_st, quiet=True)
    assert "D" in set(direct.metrics["station"])


def test_cli_refusal_is_one_line(tmp_path, table_file):
    path = write_obs(tmp_path, observations([[5.0] * 4], [[270.0] * 4], times=TIMES[:1]))
    out = tmp_path / "wind.nc"
    res = invoke(["downscale", path, "--table", table_file, "-o", out, "--min-stations", "6"])
    assert_refused(res, "--min-stations 6", outputs=[out])
    res = invoke(["downscale", path, "--table", table_file, "-o", out, "--barnes-spacing", "0"])
    assert_refused(res, "--barnes-spacing 0", outputs=[out])
