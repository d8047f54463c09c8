"""Issue 21 (the first hour, round 2), items #1, #4 and #6 from the command line.

Each test failed on the code before the fix (commit 9ec097b):
- #1 a DEM with non-square pixels was refused even with ``--resample`` and for MicroMet,
  with a message about the DEVINE model;
- #4 coverage errors gave extents in metres only;
- #6 the forecast variables chosen (``u10`` over ``u100``) were not shown, the coarse-table
  warning printed an absolute path where the user typed a relative one, and the mode messages
  of downscale mixed API and CLI words (``per_step=True / --per-step``).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

import devine_onnx as dv
from devine_onnx.errors import NWPError, OptionError
from devine_onnx.regrid.weights import RegridWeights
from devine_onnx.sample_data import sample_dem, sample_nwp
from tests.cli.helpers import assert_refused, invoke, write_tif


def notes(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("note:")]


# ------------------------------------------------------------------------------ #1
@pytest.fixture(scope="module")
def rect_dem(tmp_path_factory):
    """A DEM with 30 m x 37 m pixels, as after reprojecting a lat/lon DEM."""
    da = sample_dem((151, 151), 30.0)
    y = da.y.values[0] + (da.y.values - da.y.values[0]) * (37.0 / 30.0)
    da = da.assign_coords(y=y).rio.write_crs(da.rio.crs)
    return write_tif(da, tmp_path_factory.mktemp("rect") / "rect.tif")


@pytest.mark.parametrize("engine", ["micromet", "helbig"])
def test_non_square_pixels_with_resample(tmp_path, rect_dem, engine):
    out = tmp_path / "t.nc"
    args = ["corrections", rect_dem, "--engine", engine, "-o", out, "--angles", "0,180"]
    result = invoke([*args, "--resample", "40", "-q"])
    assert result.exit_code == 0, result.output
    with xr.open_dataset(out) as t:
        np.testing.assert_allclose(np.abs(np.diff(t.x.values)), 40.0)
        np.testing.assert_allclose(np.abs(np.diff(t.y.values)), 40.0)


def test_non_square_pixels_message_names_the_engine_used(tmp_path, rect_dem):
    out = tmp_path / "t.nc"
    result = invoke(["corrections", rect_dem, "--engine", "micromet", "-o", out, "-q"])
    assert_refused(result, "MicroMet", "--resample", outputs=[out])
    assert "DEVINE" not in result.stderr


# ------------------------------------------------------------------------------ #4
def test_nwp_not_covering_the_table_gives_lon_lat():
    lon, lat = np.linspace(5.5, 6.5, 6), np.linspace(44.8, 45.6, 5)  # the Alps
    far_x = 200000.0 + np.arange(5) * 100.0  # Brittany, Lambert-93
    far_y = 6800000.0 + np.arange(4) * 100.0
    with pytest.raises(NWPError, match="does not cover the table") as exc:
        RegridWeights.from_grids(lon, lat, "EPSG:4326", far_x, far_y, "EPSG:2154")
    msg = str(exc.value)
    spans = re.findall(r"lon (-?[\d.]+) to (-?[\d.]+), lat (-?[\d.]+) to (-?[\d.]+)", msg)
    assert len(spans) == 2, msg
    (w, e, s, n), (tw, te, ts, tn) = ([float(v) for v in span] for span in spans)
    # The NWP as the user knows it (its box in the table CRS, back in degrees: a bit larger) ...
    assert 5.4 < w <= 5.5 and 6.5 <= e < 6.6 and 44.7 < s <= 44.8 and 45.6 <= n < 45.7, msg
    # ... and the table, in Brittany (Lambert-93 x = 200 km, y = 6800 km).
    assert -3.8 < tw < te < -3.6 and 48.0 < ts < tn < 48.2, msg


def test_target_outside_the_dem_gives_lon_lat(tmp_path, dem_tif):
    out = tmp_path / "t.nc"
    args = ["corrections", dem_tif, "--engine", "micromet", "-o", out, "--target", "0,0,100,100"]
    result = invoke(args)
    assert_refused(result, "--target", "x 9", "lon 6.1", "lat 45.", outputs=[out])


# ------------------------------------------------------------------------------ #6
@pytest.fixture(scope="module")
def two_heights(tmp_path_factory):
    """An NWP file with 10 m and 100 m winds (u10 is chosen, as documented)."""
    ds = sample_nwp(n_times=2)
    for c in "uv":
        ds[f"{c}100"] = ds[f"{c}10"] * 1.3
        ds[f"{c}100"].attrs["long_name"] = f"100 m {ds[f'{c}10'].attrs['long_name'][5:]}"
    path = tmp_path_factory.mktemp("heights") / "nwp2.nc"
    ds.to_netcdf(path)
    return path


def test_chosen_wind_variables_are_shown(tmp_path, two_heights, table_nc):
    out = tmp_path / "w.nc"
    result = invoke(["downscale", two_heights, "--table", table_nc, "-o", out])
    assert result.exit_code == 0, result.output
    (note,) = [n for n in notes(result) if "wind from" in n]
    assert f"{two_heights}: wind from u10/v10 (10 m)" in note
    assert "also in the file: u100/v100" in note and "--u-var/--v-var" in note
    result = invoke(
        ["downscale", two_heights, "--table", table_nc, "-o", tmp_path / "w100.nc"]
        + ["--u-var", "u100", "--v-var", "v100"]
    )
    assert result.exit_code == 0, result.output
    assert any("wind from u100/v100 (100 m)" in n for n in notes(result)), result.stderr
    quiet = invoke(["downscale", two_heights, "--table", table_nc, "-o", tmp_path / "q.nc", "-q"])
    assert quiet.exit_code == 0 and not notes(quiet)


def test_coarse_table_warning_names_the_table_as_typed(tmp_path, nwp_nc, table_nc, monkeypatch):
    """Relative paths stay relative in the coarse-table warning, like in every other message."""
    import shutil

    shutil.copy(table_nc, tmp_path / "t4.nc")
    shutil.copy(nwp_nc, tmp_path / "n.nc")
    monkeypatch.chdir(tmp_path)
    result = invoke(["downscale", "n.nc", "--table", "t4.nc", "-o", "w.nc", "-q"])
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.stderr.splitlines() if "directions up to" in x]
    assert line.startswith("warning: t4.nc: 4 directions up to 90° apart"), line
    assert str(tmp_path) not in result.stderr


def test_mode_messages_use_one_vocabulary(tmp_path, nwp_nc, table_nc, demo_model_file):
    """'per_step=True / --per-step' mixed API and CLI words (like fill_nodata, issue 21 #6)."""
    out = tmp_path / "w.nc"
    args = ["downscale", nwp_nc, "--table", table_nc, "-m", demo_model_file, "-o", out, "-q"]
    result = invoke(args)
    assert_refused(result, "--per-step", "--model", "--table", outputs=[out])
    assert "per_step" not in result.stderr
    with pytest.raises(OptionError, match="per_step=True") as exc:
        dv.downscale(nwp_nc, table_nc, model=demo_model_file, output=out)
    assert "--" not in str(exc.value)
    with pytest.raises(OptionError, match="no correction table") as exc:
        dv.downscale(nwp_nc, output=out)
    assert "--" not in str(exc.value) and "per_step=True" in str(exc.value)
