"""Evaluation against weather stations: pixel choice, time matching, metrics, NWP baseline, CLI.

The observations are built from a synthetic wind file with known relations (observed speed =
model / 1.25, observed direction = model − 10° across north), so that the expected scores
follow by hand: bias = 0.2·mean(model), rmse = 0.2·sqrt(mean(model²)), r = 1,
relative bias = 0.2 / 0.8 = 0.25, direction bias = direction MAE = 10°.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import Transformer
from scipy.interpolate import LinearNDInterpolator
from typer.testing import CliRunner

import devine_onnx as dv
from devine_onnx.cli import app
from devine_onnx.errors import InputFileError, ObservationError, OptionError, OutputError
from devine_onnx.evaluation import (
    METRIC_COLUMNS,
    StationWarning,
    circular_difference,
    match_times,
    pair_metrics,
)
from devine_onnx.io.atomic import partial_path
from devine_onnx.sample_data import LAMBERT93, sample_nwp
from tests.evaluation.synthetic import (
    NAN_PIXEL,
    NT,
    NX,
    NY,
    STATIONS,
    TIMES,
    TO_LONLAT,
    X0,
    Y0,
    X,
    Y,
    model_fields,
    observations,
    station_lonlat,
    wind_dataset,
)

rioxarray = pytest.importorskip("rioxarray")
runner = CliRunner()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evaluation")


@pytest.fixture(scope="module")
def wind_nc(work) -> Path:
    path = work / "wind_30m.nc"
    wind_dataset().to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def obs_csv(work) -> Path:
    path = work / "obs.csv"
    observations().to_csv(path, index=False)
    return path


def write_csv(path, df):
    df.to_csv(path, index=False)
    return path


def run(*args, **kwargs):
    kwargs.setdefault("quiet", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StationWarning)
        return dv.evaluate(*args, **kwargs)


def one_line(exc_info, *needles):
    text = str(exc_info.value)
    assert "\n" not in text, text
    for needle in needles:
        assert str(needle) in text, text


# --------------------------------------------------------------------------- metric helpers
def test_circular_difference_wraps_into_half_open_interval():
    a = np.array([10.0, 350.0, 180.0, 0.0, 190.0, 359.0, 0.0, 720.0])
    b = np.array([350.0, 10.0, 0.0, 180.0, 10.0, 1.0, 0.0, 10.0])
    np.testing.assert_allclose(
        circular_difference(a, b), [20.0, -20.0, 180.0, 180.0, 180.0, -2.0, 0.0, -10.0]
    )


def test_pair_metrics_by_hand():
    # model [1, 2, 3], observed [1, 3, 2]: errors [0, -1, 1]; r = 0.5 (cov 0.5 / var 1).
    m = pair_metrics([1.0, 2.0, 3.0, np.nan], [1.0, 3.0, 2.0, 5.0], [0.0] * 4, [0.0] * 4)
    assert m["n"] == 3
    assert m["bias"] == pytest.approx(0.0, abs=1e-15)
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(2 / 3))
    assert m["r"] == pytest.approx(0.5)
    assert m["relative_bias"] == pytest.approx(0.0, abs=1e-15)
    # Directions: observed 5 with model 355, observed 355 with model 5 -> -10 and +10 (a
    # naive difference would give -350 and +350); the calm observation (0.5 m/s) is left out.
    m = pair_metrics(
        [4.0, 4.0, 4.0], [2.0, 3.0, 0.5], [355.0, 5.0, 90.0], [5.0, 355.0, 0.0], min_speed=1.0
    )
    assert m["direction_n"] == 2
    assert m["direction_bias"] == pytest.approx(0.0, abs=1e-12)
    assert m["direction_mae"] == pytest.approx(10.0)
    m = pair_metrics([4.0], [3.0], [355.0], [5.0])
    assert m["direction_bias"] == pytest.approx(-10.0)
    assert np.isnan(m["r"])  # a single pair has no correlation
    m = pair_metrics([np.nan], [3.0], [np.nan], [5.0])
    assert m["n"] == 0 and m["direction_n"] == 0 and np.isnan(m["bias"])


def test_match_times_exact_and_tolerance():
    model = np.array(["2026-01-15T01:00", "2026-01-15T00:00", "2026-01-15T02:00"], "datetime64[ns]")
    obs = np.array(
        [
            "2026-01-15T00:00",
            "2026-01-15T00:29",
            "2026-01-15T00:30",
            "2026-01-15T00:31",
            "2026-01-15T02:20",
            "2026-01-15T03:00",
        ],
        "datetime64[ns]",
    )
    np.testing.assert_array_equal(match_times(obs, model), [1, -1, -1, -1, -1, -1])
    # Nearest model time within 30 min; the tie at 00:30 goes to the earlier model time.
    np.testing.assert_array_equal(match_times(obs, model, "30min"), [1, 1, 1, 0, 2, -1])
    np.testing.assert_array_equal(match_times(obs, model, "PT1H"), [1, 1, 1, 0, 2, 2])
    with pytest.raises(OptionError, match="--time-tolerance"):
        match_times(obs, model, "soon")


# --------------------------------------------------------------------------- end to end (API)
def expected_station_scores(name, times_idx=slice(None)):
    speed, direction = model_fields()
    iy, ix, _, _ = STATIONS[name]
    m = speed[times_idx, iy, ix]
    return {
        "n": m.size,
        "bias": 0.2 * m.mean(),
        "mae": 0.2 * m.mean(),
        "rmse": 0.2 * np.sqrt((m**2).mean()),
        "r": 1.0,
        "relative_bias": 0.25,
        "direction_n": m.size,
        "direction_bias": 10.0,
        "direction_mae": 10.0,
    }


def check_row(row, expected):
    for key, value in expected.items():
        # float32 files: directions near 350° are stored to ~3e-5°.
        assert row[key] == pytest.approx(value, rel=1e-5, abs=1e-4), (key, row[key], value)


def test_scaled_speed_and_shifted_direction(work, wind_nc, obs_csv):
    out = work / "metrics.csv"
    result = run(obs_csv, wind_nc, output=out)
    table = pd.read_csv(out, dtype={"station": str})
    assert list(table.columns) == METRIC_COLUMNS
    assert list(table["station"]) == ["all", "A", "B", "C"]
    assert set(table["source"]) == {"wind_30m"}
    speed, direction = model_fields()
    # The model directions cross north at every station (340° + 5°/h...).
    for name in STATIONS:
        iy, ix, _, _ = STATIONS[name]
        d = direction[:, iy, ix]
        assert d.max() > 340 and d.min() < 20
        check_row(table.set_index("station").loc[name], expected_station_scores(name))
        lon, lat = station_lonlat(name)
        row = table.set_index("station").loc[name]
        assert row["latitude"] == pytest.approx(lat, abs=1e-7)
        assert row["longitude"] == pytest.approx(lon, abs=1e-7)
    pooled = np.concatenate([speed[:, iy, ix] for iy, ix, _, _ in STATIONS.values()])
    check_row(
        table.iloc[0],
        {
            "n": 3 * NT,
            "bias": 0.2 * pooled.mean(),
            "rmse": 0.2 * np.sqrt((pooled**2).mean()),
            "r": 1.0,
            "relative_bias": 0.25,
            "direction_n": 3 * NT,
            "direction_bias": 10.0,
            "direction_mae": 10.0,
        },
    )
    assert np.isnan(table.iloc[0]["latitude"])
    # The pairs hold the containing pixel's values (station A is 40 m / 30 m off its centre).
    pa = result.pairs[result.pairs["station"] == "A"]
    np.testing.assert_allclose(pa["model_speed"], speed[:, 5, 7], rtol=1e-6)
    assert len(result.report) == 0


def test_gaps_outside_station_nan_pixel_and_min_speed(work, wind_nc):
    obs = observations()
    gaps = [(0, "wind_speed"), (3, "wind_speed"), (4, "wind_direction")]  # station A rows
    for i, col in gaps:
        obs.loc[i, col] = np.nan
    lon_far, lat_far = TO_LONLAT.transform(X[-1] + 5000.0, Y[0])
    lon_nan, lat_nan = TO_LONLAT.transform(X[NAN_PIXEL[1]], Y[NAN_PIXEL[0]])
    extra = pd.DataFrame(
        {
            "station": ["far"] * 2 + ["hole"] * 2,
            "time": [TIMES[0].isoformat(), TIMES[1].isoformat()] * 2,
            "wind_speed": [3.0, 4.0, 3.0, 4.0],
            "wind_direction": [10.0, 20.0, 10.0, 20.0],
            "latitude": [lat_far] * 2 + [lat_nan] * 2,
            "longitude": [lon_far] * 2 + [lon_nan] * 2,
        }
    )
    path = write_csv(work / "obs_gaps.csv", pd.concat([obs, extra], ignore_index=True))
    with pytest.warns(StationWarning) as record:
        result = dv.evaluate(path, wind_nc, quiet=True, min_speed=4.0)
    text = " ".join(str(w.message) for w in record)
    assert "far" in text and "outside the grid" in text
    assert "hole" in text and "NaN" in text
    table = result.metrics.set_index("station")
    assert "far" not in table.index and "hole" not in table.index
    issues = dict(zip(result.report["station"], result.report["issue"], strict=True))
    assert issues == {"far": "outside", "hole": "no_value"}

    speed, direction = model_fields()
    m = speed[:, 5, 7]
    keep = np.ones(NT, bool)
    keep[[0, 3]] = False  # NaN observed speeds
    a = table.loc["A"]
    assert a["n"] == keep.sum()
    assert a["bias"] == pytest.approx(0.2 * m[keep].mean(), rel=1e-5)
    assert a["rmse"] == pytest.approx(0.2 * np.sqrt((m[keep] ** 2).mean()), rel=1e-5)
    # Directions: observed speed known and >= 4 m/s (not at hours 1, 2), direction known.
    dir_keep = keep & (m / 1.25 >= 4.0)
    assert not dir_keep[1] and not dir_keep[2] and dir_keep[5]
    dir_keep[4] = False
    assert a["direction_n"] == dir_keep.sum() > 0
    assert a["direction_bias"] == pytest.approx(10.0, abs=1e-4)
    # The pooled row counts every station's pairs.
    assert table.loc["all", "n"] == keep.sum() + 2 * NT


def test_time_alignment_with_and_without_tolerance(work, wind_nc):
    shifted = observations(times=TIMES + pd.Timedelta("10min"))
    path = write_csv(work / "obs_shifted.csv", shifted)
    with pytest.raises(ObservationError) as exc:
        run(path, wind_nc)
    one_line(exc, "obs_shifted.csv", "'time'", "wind_30m.nc", "--time-tolerance")
    with pytest.raises(ObservationError):
        run(path, wind_nc, time_tolerance="5min")
    result = run(path, wind_nc, time_tolerance="15min")
    pairs = result.pairs
    assert (pairs["time"] - pairs["model_time"] == pd.Timedelta("10min")).all()
    check_row(result.metrics.set_index("station").loc["B"], expected_station_scores("B"))
    # Observations with a time zone are converted to UTC.
    zoned = observations()
    zoned["time"] = [
        (pd.Timestamp(t) + pd.Timedelta("1h")).strftime("%Y-%m-%dT%H:%M:%S+01:00")
        for t in zoned["time"]
    ]
    result = run(write_csv(work / "obs_zoned.csv", zoned), wind_nc)
    check_row(result.metrics.set_index("station").loc["C"], expected_station_scores("C"))


def test_partial_time_overlap_uses_common_times(work, wind_nc):
    later = observations(times=TIMES + pd.Timedelta("5h"))  # 5 of 10 times overlap
    result = run(write_csv(work / "obs_later.csv", later), wind_nc)
    row = result.metrics.set_index("station").loc["A"]
    speed, _ = model_fields()
    m = speed[5:, 5, 7]
    assert row["n"] == 5
    # Observations at hours 5..9 were built from model steps 0..4 (k % NT): not a scaled copy.
    obs_speed = speed[:5, 5, 7] / 1.25
    assert row["bias"] == pytest.approx((m - obs_speed).mean(), rel=1e-5)


def test_bilinear_interpolation_of_a_linear_field(work):
    # Speed linear in x and y: bilinear interpolation is exact at any point.
    t = np.arange(NT)[:, None, None]
    xx = X[None, None, :]
    yy = Y[None, :, None]
    speed = 5.0 + 0.5 * t + 0.001 * (xx - X0) - 0.002 * (yy - Y0) + 0.0 * t
    direction = np.full(speed.shape, 270.0)
    path = work / "linear.nc"
    wind_dataset(speed, direction).to_netcdf(path)
    sx, sy = X[4] + 37.0, Y[6] - 71.0
    lon, lat = TO_LONLAT.transform(sx, sy)
    obs = pd.DataFrame(
        {
            "station": "P",
            "time": [t.isoformat() for t in TIMES],
            "wind_speed": 5.0,
            "wind_direction": 270.0,
            "latitude": lat,
            "longitude": lon,
        }
    )
    obs_path = write_csv(work / "obs_linear.csv", obs)
    expected = 5.0 + 0.5 * np.arange(NT) + 0.001 * (sx - X0) - 0.002 * (sy - Y0)
    result = run(obs_path, path, bilinear=True)
    np.testing.assert_allclose(result.pairs["model_speed"], expected, rtol=1e-5)
    np.testing.assert_allclose(result.pairs["model_direction"], 270.0, atol=1e-4)
    # Without --bilinear: the containing pixel is row 7, column 4: the station is 71 m south
    # of row 6's centre (pixel edges are 50 m from the centres) and 37 m east of column 4's.
    result = run(obs_path, path)
    np.testing.assert_allclose(result.pairs["model_speed"], speed[:, 7, 4], rtol=1e-6)


def test_grid_relative_output_is_turned_to_true_north(work):
    from devine_onnx.wind import meridian_convergence

    path = work / "grid_relative.nc"
    wind_dataset(attrs={"wind_frame": "grid-relative: test"}).to_netcdf(path)
    gamma = {
        n: float(meridian_convergence(X[ix] + dx, Y[iy] + dy, LAMBERT93))
        for n, (iy, ix, dx, dy) in STATIONS.items()
    }
    assert all(g > 2 for g in gamma.values())  # 6.15°E in Lambert-93
    obs = observations(shift=0.0)
    obs["wind_direction"] = [
        np.mod(d + gamma[s], 360.0)
        for s, d in zip(obs["station"], obs["wind_direction"], strict=True)
    ]
    result = run(write_csv(work / "obs_true_north.csv", obs), path)
    assert result.metrics["direction_mae"].max() < 1e-3


def test_altitude_check(work):
    elevation = np.full((NY, NX), 1000.0)
    path = work / "with_elevation.nc"
    wind_dataset(elevation=elevation).to_netcdf(path)
    stations = pd.DataFrame(
        {
            "station": ["A", "B", "C"],
            "latitude": [station_lonlat(n)[1] for n in "ABC"],
            "longitude": [station_lonlat(n)[0] for n in "ABC"],
            "altitude": [1030.0, 1200.0, np.nan],
        }
    )
    st_path = write_csv(work / "stations_alt.csv", stations)
    obs_path = write_csv(work / "obs_nocoords.csv", observations(coords=False))
    with pytest.warns(StationWarning, match=r"B \(1200 m vs 1000 m\)"):
        result = dv.evaluate(obs_path, path, stations=st_path, quiet=True, output=work / "alt.csv")
    assert list(result.report["station"]) == ["B"]
    assert list(result.report["issue"]) == ["altitude"]
    table = pd.read_csv(work / "alt.csv")
    assert list(table.columns) == [*METRIC_COLUMNS, "altitude"]
    assert list(table["altitude"].iloc[1:3]) == [1030.0, 1200.0]
    assert np.isnan(table["altitude"].iloc[3])
    assert table["n"].iloc[2] == NT  # still evaluated


def test_zarr_wind_and_two_sources(work, wind_nc, obs_csv):
    store = work / "wind_30m.zarr"
    wind_dataset().to_zarr(store, mode="w", zarr_format=2, consolidated=True)  # as downscale
    result = run(obs_csv, [wind_nc, store])
    m = result.metrics
    assert list(dict.fromkeys(m["source"])) == ["wind_30m", "wind_30m-2"]
    a = m[m["source"] == "wind_30m"].drop(columns="source").reset_index(drop=True)
    b = m[m["source"] == "wind_30m-2"].drop(columns="source").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------- NWP baseline
def test_nwp_baseline_matches_linear_nd_interpolator(work, wind_nc):
    nwp = sample_nwp(n_times=NT, start=str(TIMES[0]))
    nwp_path = work / "nwp.nc"
    nwp.to_netcdf(nwp_path)
    obs_path = write_csv(work / "obs_nwp.csv", observations())
    result = run(obs_path, wind_nc, nwp=nwp_path)
    assert list(dict.fromkeys(result.metrics["source"])) == ["wind_30m", "nwp"]
    # Direct interpolation: NWP points projected into the wind file's CRS (as downscale does).
    lon2, lat2 = np.meshgrid(nwp.longitude.values, nwp.latitude.values)
    to_l93 = Transformer.from_crs("EPSG:4326", LAMBERT93, always_xy=True)
    px, py = to_l93.transform(lon2.ravel(), lat2.ravel())
    pts = np.column_stack([px, py])
    pairs = result.pairs[result.pairs["source"] == "nwp"]
    for name in STATIONS:
        sx, sy = to_l93.transform(*station_lonlat(name))
        p = pairs[pairs["station"] == name]
        assert len(p) == NT
        for k in range(NT):
            u = LinearNDInterpolator(pts, nwp.u10.values[k].ravel().astype(np.float64))(sx, sy)
            v = LinearNDInterpolator(pts, nwp.v10.values[k].ravel().astype(np.float64))(sx, sy)
            speed = float(np.hypot(u, v).item())
            direction = float(np.mod(180.0 + np.degrees(np.arctan2(u, v)), 360.0).item())
            assert p["model_speed"].iloc[k] == pytest.approx(speed, rel=1e-5)
            assert circular_difference(p["model_direction"].iloc[k], direction) == pytest.approx(
                0.0, abs=1e-3
            )


def test_nwp_baseline_equals_neutral_downscale_at_pixel_centres(work):
    """acceleration 1, alpha 0: the downscaled wind IS the interpolated NWP at the pixel."""
    dem_x, dem_y = X[:9], Y[:7]
    table = xr.Dataset(
        {
            "acceleration": (("angle", "y", "x"), np.ones((360, 7, 9), np.float32)),
            "alpha": (("angle", "y", "x"), np.zeros((360, 7, 9), np.float32)),
        },
        coords={"angle": np.arange(360.0), "y": dem_y, "x": dem_x},
        attrs={"model_sha256": "test", "valid_radius": 3.0},
    )
    table["alpha"].attrs["units"] = "radian"
    table = table.rio.write_crs(LAMBERT93)
    nwp = sample_nwp(n_times=4, start=str(TIMES[0]))
    wind_path = work / "neutral.nc"
    dv.downscale(nwp, table, output=wind_path, cache_dir=False, quiet=True)
    lon, lat = TO_LONLAT.transform([dem_x[2], dem_x[6]], [dem_y[1], dem_y[5]])
    obs = pd.DataFrame(
        {
            "station": np.repeat(["P", "Q"], 4),
            "time": [t.isoformat() for t in TIMES[:4]] * 2,
            "wind_speed": 5.0,
            "wind_direction": 200.0,
            "latitude": np.repeat(lat, 4),
            "longitude": np.repeat(lon, 4),
        }
    )
    result = run(write_csv(work / "obs_neutral.csv", obs), wind_path, nwp=nwp)
    p = result.pairs
    ds_pairs = p[p["source"] == "neutral"].reset_index(drop=True)
    nwp_pairs = p[p["source"] == "nwp"].reset_index(drop=True)
    assert len(ds_pairs) == len(nwp_pairs) == 8
    np.testing.assert_allclose(ds_pairs["model_speed"], nwp_pairs["model_speed"], rtol=1e-4)
    d = circular_difference(ds_pairs["model_direction"], nwp_pairs["model_direction"])
    np.testing.assert_allclose(d, 0.0, atol=0.05)


# --------------------------------------------------------------------------- bad input
# (bad observations and station lists: tests/io/test_observations.py)
def test_bad_wind_file_output_and_options(work, wind_nc, obs_csv):
    no_dir = work / "no_direction.nc"
    wind_dataset().drop_vars("wind_from_direction").to_netcdf(no_dir)
    with pytest.raises(InputFileError) as exc:
        run(obs_csv, no_dir)
    one_line(exc, "no_direction.nc", "'wind_from_direction'")
    with pytest.raises(InputFileError) as exc:
        run(obs_csv, work / "missing.nc")
    one_line(exc, "missing.nc", "not found")
    with pytest.raises(OutputError) as exc:
        run(obs_csv, wind_nc, output=work / "nowhere" / "m.csv")
    one_line(exc, "nowhere")
    with pytest.raises(OptionError, match="--min-speed"):
        run(obs_csv, wind_nc, min_speed=-1)
    # All stations outside: an error, not an empty table.
    far = observations()
    lon, lat = TO_LONLAT.transform(X[0] - 10_000.0, Y[0])
    far["latitude"], far["longitude"] = lat, lon
    with pytest.raises(InputFileError) as exc:
        run(write_csv(work / "obs_far.csv", far), wind_nc)
    one_line(exc, "wind_30m.nc", "none of the 3 stations")


# --------------------------------------------------------------------------- command line
def invoke(args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def test_cli_end_to_end_with_plots(work, wind_nc, obs_csv):
    out = work / "cli_metrics.csv"
    plots = work / "plots"
    result = invoke(["evaluate", obs_csv, wind_nc, "-o", out, "--plots", plots])
    assert result.exit_code == 0, result.output
    assert "wind_30m" in result.stdout and "rmse" in result.stdout
    table = pd.read_csv(out, dtype={"station": str})
    assert list(table.columns) == METRIC_COLUMNS
    assert table["relative_bias"].to_numpy() == pytest.approx(0.25, rel=1e-5)
    names = sorted(p.name for p in plots.iterdir())
    assert names == [
        "direction_error_wind_30m.png",
        "speed_wind_30m.png",
        "timeseries_A.png",
        "timeseries_B.png",
        "timeseries_C.png",
    ]
    for name in names:
        assert (plots / name).read_bytes()[:4] == b"\x89PNG"
    quiet = invoke(["evaluate", obs_csv, wind_nc, "-o", out, "-q"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == ""


def test_cli_bad_input_is_one_line_without_output(work, wind_nc):
    bad = observations()
    bad["wind_speed"] = bad["wind_speed"].astype(object)
    bad.loc[0, "wind_speed"] = "n/a?"
    path = write_csv(work / "cli_bad.csv", bad)
    out = work / "cli_bad_metrics.csv"
    result = invoke(["evaluate", path, wind_nc, "-o", out])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "cli_bad.csv" in errors[0] and "'wind_speed'" in errors[0]
    assert not out.exists() and not partial_path(out).exists()


def test_downscale_output_carries_elevation_for_the_altitude_check(tmp_path):
    """A real downscale output has the table's elevation: the altitude check runs on it."""
    import devine_onnx as dv
    from devine_onnx.sample_data import sample_dem, sample_nwp

    table = dv.compute_corrections(
        sample_dem((61, 61)), engine="micromet", angles=range(0, 360, 30)
    )
    wind = tmp_path / "wind.nc"
    dv.downscale(sample_nwp(n_times=3), table, output=wind, cache_dir=False, quiet=True)
    with xr.open_dataset(wind) as ds:
        np.testing.assert_array_equal(ds["elevation"].values, table["elevation"].values)
        assert ds["elevation"].attrs["standard_name"] == "surface_altitude"
        iy, ix = 30, 30
        x, y = float(ds.x[ix]), float(ds.y[iy])
        z = float(ds["elevation"][iy, ix])
        speed = ds["wind_speed"].isel(y=iy, x=ix).values
        times = pd.to_datetime(ds.time.values)
    lon, lat = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True).transform(x, y)
    obs = pd.DataFrame(
        {
            "station": ["far"] * 3,
            "time": [t.isoformat() for t in times],
            "wind_speed": speed,
            "wind_direction": [270.0] * 3,
            "latitude": lat,
            "longitude": lon,
            "altitude": z + 200.0,
        }
    )
    path = tmp_path / "obs.csv"
    obs.to_csv(path, index=False)
    result = dv.evaluate(path, [wind], quiet=True)
    assert list(result.report["issue"]) == ["altitude"]
    assert list(result.report["station"]) == ["far"]
