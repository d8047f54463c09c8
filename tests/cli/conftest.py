"""Fixtures of the CLI tests: a small DEM, NWP, table, weights and result, made once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from devine_onnx.sample_data import sample_dem, sample_nwp
from tests.cli.helpers import ANGLES, SMALL, invoke, write_tif


@pytest.fixture(autouse=True)
def _no_default_model(monkeypatch):
    monkeypatch.delenv("DEVINE_ONNX_MODEL", raising=False)
    monkeypatch.delenv("DEVINE_ONNX_DEBUG", raising=False)


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="session")
def dem_tif(work) -> Path:
    return write_tif(sample_dem(SMALL), work / "dem.tif")


@pytest.fixture(scope="session")
def nwp_nc(work) -> Path:
    path = work / "nwp.nc"
    sample_nwp(n_times=4).to_netcdf(path)
    return path


@pytest.fixture(scope="session")
def table_nc(work, dem_tif, demo_model_file) -> Path:
    out = work / "table.nc"
    result = invoke(
        [
            "corrections",
            dem_tif,
            "-m",
            demo_model_file,
            "-o",
            out,
            "--angles",
            ANGLES,
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def weights_nc(work, nwp_nc, table_nc) -> Path:
    out = work / "weights.nc"
    result = invoke(["regrid", nwp_nc, "--table", table_nc, "-o", out])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    return out


@pytest.fixture(scope="session")
def wind_nc(work, nwp_nc, table_nc, weights_nc) -> Path:
    out = work / "wind.nc"
    result = invoke(
        ["downscale", nwp_nc, "--table", table_nc, "--weights", weights_nc, "-o", out, "-q"]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def projected_nwp_nc(work, table_nc) -> Path:
    """u/v on a Lambert-93 grid (with its grid mapping) covering the table; no standard names."""
    with xr.open_dataset(table_nc) as t:
        x0, x1 = float(t.x.min()), float(t.x.max())
        y0, y1 = float(t.y.min()), float(t.y.max())
    x = np.linspace(x0 - 5000, x1 + 5000, 8)
    y = np.linspace(y1 + 5000, y0 - 5000, 7)
    shape = (3, y.size, x.size)
    time = np.datetime64("2026-01-15T00", "ns") + np.arange(3) * np.timedelta64(1, "h")
    ds = xr.Dataset(
        {
            "u": (("time", "y", "x"), np.full(shape, 5.0, np.float32)),
            "v": (("time", "y", "x"), np.zeros(shape, np.float32)),
        },
        coords={"time": time, "y": y, "x": x},
    ).rio.write_crs("EPSG:2154")  # grid_mapping = spatial_ref on u and v
    path = work / "projected_nwp.nc"
    ds.to_netcdf(path)
    return path
