"""Barnes objective analysis (devine_onnx.regrid.barnes) against hand computations and loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

import devine_onnx.regrid.barnes as barnes_mod
from devine_onnx.errors import OptionError
from devine_onnx.regrid.barnes import barnes, station_spacing, weight_parameter

XS = np.array([150.0, 1850.0, 900.0, 400.0, 1600.0])
YS = np.array([200.0, 300.0, 1500.0, 1100.0, 1250.0])
GX = np.arange(0.0, 2000.0, 100.0)  # 20 columns
GY = np.arange(1700.0, -1.0, -100.0)  # 18 rows, north-up
AREA = 2000.0 * 1800.0


def brute_force(xs, ys, values, gx, gy, spacing, gamma=0.2):
    """Two-pass Barnes with plain loops (one row of ``values``), straight from the formulas."""
    kappa = 5.052 * (2 * spacing / math.pi) ** 2
    ok = [k for k in range(len(xs)) if not math.isnan(values[k])]

    def mean(px, py, data, kap):
        # exp(-(d² - d²min)/kappa): the same weighted mean, without underflow far away
        d2min = min((px - xs[k]) ** 2 + (py - ys[k]) ** 2 for k in ok)
        num = den = 0.0
        for k in ok:
            w = math.exp(-((px - xs[k]) ** 2 + (py - ys[k]) ** 2 - d2min) / kap)
            num += w * data[k]
            den += w
        return num / den

    residual = {k: values[k] - mean(xs[k], ys[k], values, kappa) for k in ok}
    out = np.empty((len(gy), len(gx)))
    for i, py in enumerate(gy):
        for j, px in enumerate(gx):
            out[i, j] = mean(px, py, values, kappa) + mean(px, py, residual, gamma * kappa)
    return out


def test_spacing_and_weight_parameter_by_hand():
    # 10 km square, 4 stations: sqrt(A/N) = 5000; sqrt(A)(1+2)/3 = 10000; mean 7500 m.
    assert station_spacing(1e8, 4) == pytest.approx(7500.0)
    # kappa = 5.052 (2 dn / pi)^2
    assert weight_parameter(7500.0) == pytest.approx(5.052 * (15000.0 / math.pi) ** 2)
    with pytest.raises(ValueError):
        station_spacing(1e8, 1)


@pytest.mark.parametrize("kw", [{"area": AREA}, {"spacing": 300.0}, {"spacing": 5000.0}])
def test_identical_values_give_that_value_everywhere(kw):
    values = np.array([[3.5] * 5, [-2.0] * 5])
    out = barnes(XS, YS, values, GX, GY, dtype=np.float64, **kw)
    assert out.shape == (2, GY.size, GX.size)
    np.testing.assert_allclose(out[0], 3.5, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[1], -2.0, rtol=0, atol=1e-12)


def test_one_station_gives_its_value_everywhere():
    values = np.array([[np.nan, 4.25, np.nan, np.nan, np.nan]])
    out = barnes(XS, YS, values, GX, GY, area=AREA)
    assert np.all(out == np.float32(4.25))


def test_no_station_gives_nan_and_missing_values_drop_out_of_their_row_only():
    values = np.array([[np.nan] * 5, [1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, np.nan, 4.0, 5.0]])
    out = barnes(XS, YS, values, GX, GY, area=AREA, dtype=np.float64)
    assert np.isnan(out[0]).all()
    full = brute_force(XS, YS, values[1], GX, GY, station_spacing(AREA, 5))
    part = brute_force(XS, YS, values[2], GX, GY, station_spacing(AREA, 4))
    np.testing.assert_allclose(out[1], full, rtol=1e-10)
    np.testing.assert_allclose(out[2], part, rtol=1e-10)


@pytest.mark.parametrize("max_elements", [10, 10_000_000])
def test_vectorised_equals_brute_force_loops(max_elements):
    rng = np.random.default_rng(4)
    values = rng.normal(size=(3, 5)) * 4
    values[1, 3] = np.nan
    for spacing in (250.0, 700.0):
        out = barnes(XS, YS, values, GX, GY, spacing=spacing, dtype=np.float64,
                     max_elements=max_elements)  # fmt: skip
        for t in range(3):
            ref = brute_force(XS, YS, values[t], GX, GY, spacing)
            np.testing.assert_allclose(out[t], ref, rtol=1e-10, atol=1e-12)


def test_narrow_filter_near_a_missing_station_equals_the_loops(monkeypatch):
    """Spacing 30 m, stations >= 500 m apart: near station 0, missing in row 1, the shared
    weights of the rows underflow; those pixels are recomputed with the row's own stations."""
    calls = []
    original = barnes_mod._two_pass

    def counting(px, *args):
        calls.append(px.size)
        return original(px, *args)

    monkeypatch.setattr(barnes_mod, "_two_pass", counting)
    values = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [np.nan, 2.0, 3.0, 4.0, 5.0]])
    values = np.concatenate([values, [[9.0, np.nan, 3.0, 4.0, 5.0]]])  # same count as row 1
    out = barnes(XS, YS, values, GX, GY, spacing=30.0, dtype=np.float64)
    for t in range(3):
        ref = brute_force(XS, YS, values[t], GX, GY, 30.0)
        np.testing.assert_allclose(out[t], ref, rtol=1e-9, atol=1e-12)
    assert np.isfinite(out).all()
    assert len(calls) > 2  # the shared pass of each group, and the recomputed pixels


def test_gamma_changes_the_second_pass_as_the_loops_do():
    values = np.array([[1.0, -3.0, 2.0, 0.5, 4.0]])
    out = barnes(XS, YS, values, GX, GY, spacing=400.0, gamma=0.5, dtype=np.float64)
    ref = brute_force(XS, YS, values[0], GX, GY, 400.0, gamma=0.5)
    np.testing.assert_allclose(out[0], ref, rtol=1e-10)


def test_analysis_at_a_station_converges_to_its_value_as_the_filter_narrows():
    # Stations on grid points: the pixel of station k is (row, col) = ((1700 - y)/100, x/100).
    xs = np.array([200.0, 1500.0, 800.0, 1200.0])
    ys = np.array([300.0, 400.0, 1400.0, 900.0])
    values = np.array([[2.0, 9.0, -4.0, 6.0]])
    rows = ((1700 - ys) / 100).astype(int)
    cols = (xs / 100).astype(int)
    errors = []
    for spacing in (3000.0, 1000.0, 300.0, 100.0, 30.0):
        out = barnes(xs, ys, values, GX, GY, spacing=spacing, dtype=np.float64)[0]
        errors.append(np.abs(out[rows, cols] - values[0]).max())
    # Strictly smaller each time until the misfit vanishes (to the last bit).
    assert all(b < a or a < 1e-12 for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[1] < errors[0] and errors[2] < 1e-4 * errors[1] and errors[-1] < 1e-12


def test_far_pixels_stay_defined():
    """1000 km from every station (weights underflow without the per-pixel shift)."""
    out = barnes(XS, YS, np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]), [1e6], [1e6], spacing=100.0)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan"), "wide"])
def test_bad_spacing_is_one_line(bad):
    with pytest.raises(OptionError, match="barnes_spacing"):
        barnes(XS, YS, np.ones((1, 5)), GX, GY, spacing=bad)


def test_bad_gamma_is_refused():
    with pytest.raises(OptionError, match="gamma"):
        barnes(XS, YS, np.ones((1, 5)), GX, GY, spacing=100.0, gamma=1.5)
