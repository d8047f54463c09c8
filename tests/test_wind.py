"""Wind conventions: from-direction, calm wind, meridian convergence sign (docs/method.md §4)."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import CRS, Transformer

from devine_onnx.errors import OptionError
from devine_onnx.wind import (
    earth_to_grid,
    grid_to_earth,
    meridian_convergence,
    speed_dir_to_uv,
    uv_to_speed_dir,
    wrap360,
)

LON, LAT = 6.15, 45.2  # Grenoble area


def _to_l93(lon, lat):
    return Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True).transform(lon, lat)


@pytest.mark.parametrize(
    ("u", "v", "expected"),
    [
        (5.0, 0.0, 270.0),  # westerly: blows toward the east
        (0.0, 5.0, 180.0),  # southerly: blows toward the north
        (0.0, -5.0, 0.0),  # northerly: 0, not 360
        (-0.0, -5.0, 0.0),
        (-5.0, 0.0, 90.0),  # easterly
        (3.0, 3.0, 225.0),  # south-westerly
        (-3.0, -3.0, 45.0),  # north-easterly
    ],
)
def test_from_direction_by_hand(u, v, expected):
    speed, d = uv_to_speed_dir(u, v)
    assert speed == pytest.approx(np.hypot(u, v))
    assert d == pytest.approx(expected, abs=1e-12)
    assert 0 <= d < 360


def test_round_trip_uv_speed_dir():
    rng = np.random.default_rng(1)
    u = rng.normal(0, 8, (50, 7))
    v = rng.normal(0, 8, (50, 7))
    s, d = uv_to_speed_dir(u, v)
    assert np.all((d >= 0) & (d < 360))
    u2, v2 = speed_dir_to_uv(s, d)
    np.testing.assert_allclose(u2, u, atol=1e-12)
    np.testing.assert_allclose(v2, v, atol=1e-12)


def test_speed_dir_to_uv_by_hand():
    u, v = speed_dir_to_uv(np.array([5.0, 5.0, 5.0, 5.0]), np.array([270.0, 180.0, 0.0, 90.0]))
    np.testing.assert_allclose(u, [5, 0, 0, -5], atol=1e-12)
    np.testing.assert_allclose(v, [0, 5, -5, 0], atol=1e-12)


def test_calm_and_nan():
    s, d = uv_to_speed_dir(np.array([0.0, np.nan, 1.0]), np.array([0.0, 1.0, np.nan]))
    assert s[0] == 0 and np.isnan(d[0])  # calm: no direction
    assert np.isnan(s[1]) and np.isnan(d[1])
    assert np.isnan(s[2]) and np.isnan(d[2])
    u, v = speed_dir_to_uv(np.array([0.0, 2.0]), np.array([np.nan, np.nan]))
    assert u[0] == 0 and v[0] == 0  # calm back to components: zero
    assert np.isnan(u[1]) and np.isnan(v[1])


def test_float32_preserved():
    s, d = uv_to_speed_dir(np.float32([5.0]), np.float32([0.0]))
    assert s.dtype == np.float32 and d.dtype == np.float32
    assert d[0] == 270


def test_wrap360_never_360():
    w = wrap360(np.array([-1e-20, 360.0, 720.5, -90.0, np.nan]))
    assert np.all(w[:4] < 360)
    np.testing.assert_allclose(w[:4], [0, 0, 0.5, 270])
    assert np.isnan(w[4])


def _finite_difference_gamma(lon, lat, crs):
    """Grid azimuth of true north from two points on the same meridian; gamma = -azimuth."""
    crs = CRS.from_user_input(crs)
    t = Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    x0, y0 = t.transform(lon, lat)
    x1, y1 = t.transform(lon, lat + 1e-4)  # ~11 m north
    azimuth_of_true_north = np.degrees(np.arctan2(x1 - x0, y1 - y0))
    # A wind from true north (dir_true = 0) is from grid direction azimuth_of_true_north,
    # and dir_grid = dir_true - gamma.
    return -azimuth_of_true_north


@pytest.mark.parametrize(
    ("crs", "lon", "lat", "sign"),
    [
        ("EPSG:2154", LON, LAT, +1),  # east of Lambert-93's central meridian 3°E
        ("EPSG:2154", -1.5, 47.0, -1),  # west of it
        ("EPSG:32632", LON, LAT, -1),  # UTM 32N, west of its central meridian 9°E
        ("EPSG:3035", 15.0, 60.0, +1),  # LAEA Europe, east of 10°E
    ],
)
def test_meridian_convergence_sign_vs_finite_difference(crs, lon, lat, sign):
    c = CRS.from_user_input(crs)
    x, y = Transformer.from_crs(c.geodetic_crs, c, always_xy=True).transform(lon, lat)
    gamma = meridian_convergence(x, y, crs)
    fd = _finite_difference_gamma(lon, lat, crs)
    assert gamma == pytest.approx(fd, abs=1e-5)
    assert np.sign(gamma) == sign and abs(gamma) > 0.1


def test_lambert93_westerly_grid_direction():
    x, y = _to_l93(LON, LAT)
    gamma = meridian_convergence(x, y, "EPSG:2154")
    assert 2.2 < gamma < 2.4
    # Westerly (true 270) in grid components.
    ug, vg = earth_to_grid(5.0, 0.0, gamma)
    s, d = uv_to_speed_dir(ug, vg)
    assert s == pytest.approx(5.0)
    assert 267.7 <= d <= 267.8
    assert d == pytest.approx(270 - gamma)
    assert np.floor(d + 0.5) == 268
    assert vg > 0  # grid north is clockwise of true north: an eastward wind gets +y


def test_gamma_zero_on_central_meridian_and_geographic():
    x, y = _to_l93(np.full(3, 3.0), np.array([43.0, 46.5, 50.0]))
    np.testing.assert_allclose(meridian_convergence(x, y, "EPSG:2154"), 0, atol=1e-9)
    g = meridian_convergence(np.array([[5.0, 6.0]]), np.array([[44.0], [45.0]]), "EPSG:4326")
    assert g.shape == (2, 2) and np.all(g == 0)


def test_gamma_broadcasts_grid_axes():
    x = 947000.0 + np.arange(4) * 1000.0
    y = 6460000.0 + np.arange(3) * 1000.0
    g = meridian_convergence(x[None, :], y[:, None], "EPSG:2154")
    assert g.shape == (3, 4)
    assert np.all((g > 2.2) & (g < 2.4))
    assert np.all(np.diff(g, axis=1) > 0)  # increases eastward


def test_rotated_pole_refused():
    rotated = CRS.from_proj4(
        "+proj=ob_tran +o_proj=longlat +o_lon_p=0 +o_lat_p=40 +lon_0=10 +datum=WGS84"
    )
    if not (rotated.is_geographic and rotated.is_derived):
        pytest.skip("pyproj does not report this CRS as derived geographic")
    with pytest.raises(OptionError, match="derived geographic"):
        meridian_convergence(0.0, 0.0, rotated)


def test_earth_grid_inverse():
    rng = np.random.default_rng(2)
    u = rng.normal(0, 5, (4, 6, 5))
    v = rng.normal(0, 5, (4, 6, 5))
    gamma = rng.uniform(-5, 5, (6, 5))
    ug, vg = earth_to_grid(u, v, gamma)
    np.testing.assert_allclose(np.hypot(ug, vg), np.hypot(u, v), rtol=1e-12)
    u2, v2 = grid_to_earth(ug, vg, gamma)
    np.testing.assert_allclose(u2, u, atol=1e-12)
    np.testing.assert_allclose(v2, v, atol=1e-12)
    # Direction relation: dir_grid = dir_true - gamma.
    _, d_true = uv_to_speed_dir(u, v)
    _, d_grid = uv_to_speed_dir(ug, vg)
    diff = np.mod(d_true - d_grid - gamma + 180, 360) - 180
    np.testing.assert_allclose(diff, 0, atol=1e-9)
