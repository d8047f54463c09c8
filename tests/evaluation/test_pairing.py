"""Pairing of the sources (issue 16 #4): by default every source is scored on the same pairs.

A DEVINE-like output has values only inside a disc around station A (NaN elsewhere) and no
values at the first two hours; the raw NWP covers every station at every hour. With the
default ``pairing="common"`` both ``all`` rows must use the 8 pairs of station A at hours
2..9; with ``"per-source"`` the NWP keeps its 30 pairs.
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
from devine_onnx.errors import OptionError
from devine_onnx.evaluation import StationWarning
from devine_onnx.evaluation.pairs import common_pairs
from devine_onnx.sample_data import sample_nwp
from tests.evaluation.synthetic import (
    NT,
    NX,
    NY,
    STATIONS,
    TIMES,
    model_fields,
    observations,
    wind_dataset,
)

pytest.importorskip("rioxarray")
runner = CliRunner()
RADIUS = 3  # pixels around station A
NAN_HOURS = 2  # first hours without any value in the downscaled output


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    work = tmp_path_factory.mktemp("pairing")
    speed, direction = model_fields()
    iy, ix = np.mgrid[:NY, :NX]
    a_y, a_x = STATIONS["A"][:2]
    outside = (iy - a_y) ** 2 + (ix - a_x) ** 2 > RADIUS**2
    assert (
        outside[STATIONS["B"][0], STATIONS["B"][1]] and outside[STATIONS["C"][0], STATIONS["C"][1]]
    )
    speed[:, outside] = np.nan
    direction[:, outside] = np.nan
    speed[:NAN_HOURS] = np.nan
    direction[:NAN_HOURS] = np.nan
    devine = work / "devine.nc"
    wind_dataset(speed, direction).to_netcdf(devine)
    nwp = work / "nwp.nc"
    sample_nwp(n_times=NT, start=str(TIMES[0])).to_netcdf(nwp)
    obs = work / "obs.csv"
    observations().to_csv(obs, index=False)
    return work, devine, nwp, obs


def run(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StationWarning)
        return dv.evaluate(*args, quiet=True, **kwargs)


def all_rows(result):
    m = result.metrics
    return m[m["station"] == "all"].set_index("source")


def test_common_pairs_is_the_and_of_the_masks():
    a = np.array([True, True, False, True])
    b = np.array([True, False, False, True])
    np.testing.assert_array_equal(common_pairs([a, b]), [True, False, False, True])


def test_all_rows_use_the_same_pairs_by_default(files, caplog):
    work, devine, nwp, obs = files
    n_a = NT - NAN_HOURS
    with caplog.at_level(logging.INFO, logger="devine_onnx"):
        common = run(obs, devine, nwp=nwp)
    rows = all_rows(common)
    assert list(rows.index) == ["devine", "nwp"]
    assert list(rows["n"]) == [n_a, n_a]
    assert common.pairing == "common"
    assert common.dropped_pairs == {"devine": 0, "nwp": 3 * NT - n_a}
    assert any(
        f"{n_a} station-time pairs valid in every source" in r.getMessage()
        and f"nwp {3 * NT - n_a}" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    # Only station A is scored, in every source.
    assert set(common.metrics["station"]) == {"all", "A"}

    per_source = run(obs, devine, nwp=nwp, pairing="per-source")
    rows_ps = all_rows(per_source)
    assert list(rows_ps["n"]) == [n_a, 3 * NT]
    assert per_source.dropped_pairs == {}
    # The common NWP row: the NWP pairs of station A at hours 2..9, computed by hand.
    p = per_source.pairs
    p = p[(p["source"] == "nwp") & (p["station"] == "A") & (p["time"] >= TIMES[NAN_HOURS])]
    assert len(p) == n_a
    err = p["model_speed"].to_numpy() - p["observed_speed"].to_numpy()
    assert rows.loc["nwp", "bias"] == pytest.approx(err.mean(), rel=1e-9)
    assert rows.loc["nwp", "rmse"] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-9)
    # The downscaled source is unchanged by the pairing (it is the limiting one).
    pd.testing.assert_series_equal(rows.loc["devine"], rows_ps.loc["devine"])


def test_pairing_option_cli_and_bad_value(files):
    work, devine, nwp, obs = files
    with pytest.raises(OptionError, match="--pairing"):
        run(obs, devine, pairing="pooled")
    for extra, n_nwp in (([], NT - NAN_HOURS), (["--pairing", "per-source"], 3 * NT)):
        out = work / "metrics.csv"
        result = runner.invoke(
            app,
            ["evaluate", str(obs), str(devine), "--nwp", str(nwp), "-o", str(out), "-q", *extra],
        )
        assert result.exit_code == 0, result.output
        table = pd.read_csv(out, dtype={"station": str})
        rows = table[table["station"] == "all"].set_index("source")
        assert rows.loc["nwp", "n"] == n_nwp
    bad = runner.invoke(
        app, ["evaluate", str(obs), str(devine), "-o", str(work / "m.csv"), "--pairing", "x"]
    )
    assert bad.exit_code == 1
    assert [line for line in bad.stderr.splitlines() if line.startswith("error:")][0].count(
        "--pairing"
    )
