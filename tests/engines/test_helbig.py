"""The Helbig et al. (2017) engine against hand computations and an independent implementation.

The independent implementation below is written from the equations in docs/method.md §14 with
plain loops and scipy.ndimage (no code shared with devine_onnx.engines.helbig).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from devine_onnx.engines import get_engine
from devine_onnx.engines.helbig import (
    DSC_COEFFICIENTS,
    SGP_COEFFICIENTS,
    HelbigEngine,
    coarse_window,
    helbig_factor,
    helbig_laplacian,
    mean_squared_slope,
    x_dsc,
    x_sgp,
)
from devine_onnx.errors import OptionError

RES = 30.0
A, B, C, D, E = 17.0393, 0.737, 1.0234, 0.3794, 1.9821
A2, B2, C2, D2 = 3.354688, 1.998767, 0.20286, 5.951


# --- independent implementation ----------------------------------------------------------------


def loop_factor(z, dx, cell=None):
    ny, nx = z.shape

    def at(i, j):
        return z[min(max(i, 0), ny - 1), min(max(j, 0), nx - 1)]

    mu = np.zeros((ny, nx))
    out = np.zeros((ny, nx))
    for i in range(ny):
        for j in range(nx):
            if j == 0:
                gx = (z[i, 1] - z[i, 0]) / dx
            elif j == nx - 1:
                gx = (z[i, j] - z[i, j - 1]) / dx
            else:
                gx = (z[i, j + 1] - z[i, j - 1]) / (2 * dx)
            if i == 0:
                gy = (z[1, j] - z[0, j]) / dx
            elif i == ny - 1:
                gy = (z[i, j] - z[i - 1, j]) / dx
            else:
                gy = (z[i + 1, j] - z[i - 1, j]) / (2 * dx)
            mu[i, j] = math.sqrt((gx * gx + gy * gy) / 2)
            lap = (at(i - 1, j) + at(i + 1, j) + at(i, j - 1) + at(i, j + 1) - 4 * z[i, j]) / dx**2
            lap *= dx / 4
            out[i, j] = (1 - A * lap / (1 + A * abs(lap) ** B)) * (C / (1 + D * mu[i, j] ** E))
    if cell is None:
        return out
    h = max(1, int(math.floor(cell / (2 * dx) + 0.5)))
    size = 2 * h + 1
    # Window means cut by the edges: NaN outside, nan-aware statistics.
    mu_l = ndimage.generic_filter(mu, np.nanmean, size=size, mode="constant", cval=np.nan)
    sig = ndimage.generic_filter(z, np.nanstd, size=size, mode="constant", cval=np.nan)
    for i in range(ny):
        for j in range(nx):
            if mu_l[i, j] == 0:
                continue
            xi = math.sqrt(2) * sig[i, j] / mu_l[i, j]
            sgp = 1 - (1 - (1 + A2 * mu_l[i, j] ** B2) ** (-C2)) * math.exp(
                -D2 * (cell / xi) ** (-2)
            )
            out[i, j] *= sgp
    return out


def grid(ny, nx, dx=RES):
    x = (np.arange(nx) - (nx - 1) / 2) * dx
    y = -(np.arange(ny) - (ny - 1) / 2) * dx
    return np.meshgrid(x, y)


def bumpy(ny=23, nx=29, seed=5):
    rng = np.random.default_rng(seed)
    X, Y = grid(ny, nx)
    z = np.full(X.shape, 900.0)
    for _ in range(5):
        x0, y0 = rng.uniform(-300, 300, 2)
        s = rng.uniform(60, 200)
        z += rng.uniform(-120, 200) * np.exp(-((X - x0) ** 2 + (Y - y0) ** 2) / (2 * s**2))
    return z


def as_dem(z, dx=RES):
    import rioxarray  # noqa: F401
    import xarray as xr

    ny, nx = z.shape
    x = 700000.0 + dx * np.arange(nx)
    y = 6400000.0 - dx * np.arange(ny)
    return xr.DataArray(
        z.astype(np.float32), dims=("y", "x"), coords={"y": y, "x": x}
    ).rio.write_crs("EPSG:2154")


# --- coefficients and hand-computed cases ------------------------------------------------------


def test_coefficients_are_those_of_the_paper():
    assert DSC_COEFFICIENTS == (A, B, C, D, E)
    assert SGP_COEFFICIENTS == (A2, B2, C2, D2)


def test_flat_ground_gives_c():
    z = np.full((9, 11), 1234.5)
    np.testing.assert_array_equal(helbig_factor(z, RES), np.full(z.shape, C))
    # The subgrid factor of a flat cell is 1.
    np.testing.assert_array_equal(helbig_factor(z, RES, coarse_cell=150.0), np.full(z.shape, C))


def test_single_bump_by_hand():
    """A pixel h above flat ground: Laplacian term -4h/dx^2 * dx/4 = -h/dx, and the centred
    slope at the bump is 0, so x_dsc = 1 + a (h/dx) / (1 + a (h/dx)^b) times c."""
    h = 3.0
    z = np.zeros((7, 7))
    z[3, 3] = h
    lap = helbig_laplacian(z, RES)
    assert lap[3, 3] == pytest.approx(-h / RES)
    assert lap[3, 4] == pytest.approx(h / RES / 4)  # one neighbour raised: (h)/dx^2 * dx/4
    assert mean_squared_slope(z, RES)[3, 3] == 0.0
    expected = (1 + A * 0.1 / (1 + A * 0.1**B)) * C
    assert helbig_factor(z, RES)[3, 3] == pytest.approx(expected, rel=1e-12)


def test_ridge_above_one_valley_below_one():
    X, _ = grid(41, 41)
    ridge = 150.0 * np.exp(-(X**2) / (2 * 120.0**2))
    f = helbig_factor(ridge, RES)
    assert f[20, 20] > 1.0  # crest
    f = helbig_factor(-ridge, RES)
    assert f[20, 20] < 1.0  # valley floor


def test_steeper_slopes_reduce_speed():
    """Planes z = s x: no Laplacian inside, mu = s / sqrt(2): x_dsc = c / (1 + d mu^e)."""
    X, _ = grid(15, 15)
    previous = C
    for s in (0.1, 0.3, 0.6, 1.0):
        f = helbig_factor(s * X, RES)
        mu = s / math.sqrt(2)
        assert f[7, 7] == pytest.approx(C / (1 + D * mu**E), rel=1e-12)
        assert f[7, 7] < previous
        previous = f[7, 7]


def test_subgrid_factor_of_a_plane_by_hand():
    """Plane z = s x, window of 2h+1 pixels: mu_L = s/sqrt(2), sigma_z = s dx sqrt(((2h+1)^2-1)/12)
    (the standard deviation of the column offsets), xi = sqrt(2) sigma / mu_L."""
    s, cell = 0.4, 210.0
    h = coarse_window(cell, RES)
    assert h == 4  # 210 / 60 = 3.5 -> 4 (halves up): 9 pixels
    X, _ = grid(21, 21)
    f = helbig_factor(s * X, RES, coarse_cell=cell)
    mu_l = s / math.sqrt(2)
    sigma = s * RES * math.sqrt(((2 * h + 1) ** 2 - 1) / 12)
    xi = math.sqrt(2) * sigma / mu_l
    sgp = 1 - (1 - (1 + A2 * mu_l**B2) ** (-C2)) * math.exp(-D2 * (cell / xi) ** (-2))
    assert 0 < sgp < 1
    assert f[10, 10] == pytest.approx(sgp * C / (1 + D * mu_l**E), rel=1e-9)
    # The functions themselves.
    assert x_sgp(np.array(mu_l), np.array(xi), cell) == pytest.approx(sgp, rel=1e-12)
    assert x_sgp(np.array(0.0), np.array(np.nan), cell) == 1.0
    assert x_dsc(np.array(0.0), np.array(0.0)) == pytest.approx(C)


@pytest.mark.parametrize("cell", [None, 150.0, 400.0])
def test_matches_the_independent_implementation(cell):
    z = bumpy()
    np.testing.assert_allclose(helbig_factor(z, RES, cell), loop_factor(z, RES, cell), rtol=1e-9)


# --- the engine ----------------------------------------------------------------------------


def run_engine(engine, da, angles, batch=4):
    window = engine.coverage(da)
    engine.bind(da, window)
    acc, alpha = [], []
    for _ks, arrs in engine.batches(np.asarray(angles, np.int64), batch):
        assert set(arrs) == {"acceleration", "alpha"}
        acc.append(arrs["acceleration"])
        alpha.append(arrs["alpha"])
    return np.concatenate(acc), np.concatenate(alpha)


def test_engine_same_for_every_direction_alpha_zero():
    z = bumpy()
    da = as_dem(z)
    engine = HelbigEngine()
    acc, alpha = run_engine(engine, da, [0, 45, 90, 270, 359])
    assert acc.dtype == np.float32 and acc.shape == (5, *z.shape)
    expected = loop_factor(da.values.astype(np.float64), RES).astype(np.float32)
    for k in range(5):
        np.testing.assert_allclose(acc[k], expected, rtol=1e-6)
    assert np.all(alpha == 0.0)
    attrs = engine.attrs()
    assert attrs["engine"] == "helbig"
    assert "doi:10.1002/2016JD025593" in attrs["engine_citation"]
    assert "alpha = 0" in attrs["helbig_direction_dependence"]
    assert attrs["helbig_coarse_cell"] == "none (x_dsc only)"
    assert HelbigEngine.direction_independent
    for value in attrs.values():
        assert isinstance(value, (str, float))
    flag = engine.static_variables()["edge_influence"].values
    ring = np.zeros(z.shape, bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    np.testing.assert_array_equal(flag == 1, ring)


def test_engine_with_coarse_cell_flags_cut_windows():
    z = bumpy()
    da = as_dem(z)
    engine = get_engine("helbig", options={"coarse_cell": 150.0})
    acc, _ = run_engine(engine, da, [10])
    expected = loop_factor(da.values.astype(np.float64), RES, 150.0)
    np.testing.assert_allclose(acc[0], expected, rtol=1e-6)
    assert engine.attrs()["helbig_coarse_cell"] == 150.0
    flag = engine.static_variables()["edge_influence"].values == 1
    h = coarse_window(150.0, RES)  # 3 pixels
    inner = np.ones(z.shape, bool)
    inner[h:-h, h:-h] = False
    np.testing.assert_array_equal(flag, inner)


@pytest.mark.parametrize("value", [0.0, -5.0, float("nan"), "wide"])
def test_bad_coarse_cell(value):
    with pytest.raises(OptionError, match="coarse.cell"):
        HelbigEngine(coarse_cell=value)


def test_coarse_cell_below_two_pixels_is_refused():
    engine = HelbigEngine(coarse_cell=40.0)
    da = as_dem(bumpy())
    with pytest.raises(OptionError, match="at least 2 DEM pixels"):
        engine.bind(da, engine.coverage(da))


def test_helbig_needs_no_model():
    with pytest.raises(OptionError, match="needs no model"):
        get_engine("helbig", "demo")


def test_table_from_compute_corrections():
    from devine_onnx.tables.build import compute_corrections

    z = bumpy()
    ds = compute_corrections(as_dem(z), engine="helbig", angles=[0, 180], quiet=True)
    assert ds.attrs["engine"] == "helbig"
    a = np.asarray(ds["acceleration"].values)
    np.testing.assert_array_equal(a[0], a[1])
    assert np.all(np.asarray(ds["alpha"].values) == 0.0)
    assert "vertical" not in ds
    assert "edge_influence" in ds


def test_demo_cli_with_helbig(tmp_path, monkeypatch):
    """``devine-onnx demo --engine helbig`` runs the whole chain with the Helbig table."""
    from typer.testing import CliRunner

    from devine_onnx.cli import app

    monkeypatch.delenv("DEVINE_ONNX_MODEL", raising=False)
    out = tmp_path / "demo-helbig"
    args = ["demo", "--engine", "helbig", "--out", str(out), "--quiet", "--angle-step", "90"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    import xarray as xr

    with xr.open_dataset(out / "demo_table.nc") as table:
        assert table.attrs["engine"] == "helbig"
        a = table["acceleration"].values
        assert (a == a[:1]).all() and (table["alpha"].values == 0).all()
    with xr.open_dataset(out / "demo_wind.nc") as wind:
        assert wind.attrs["table_engine"] == "helbig"
        assert float(wind["wind_speed"].max()) > 0
