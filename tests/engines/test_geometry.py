"""Crop geometry (docs/method.md §3.3, §6.6), speed/alpha (§3.5), back-rotation (§3.6) and the
per-direction steps around the UNet."""

from __future__ import annotations

import math

import numpy as np
import pytest

from devine_onnx.engines.devine.boxfilter import normalise
from devine_onnx.engines.devine.geometry import MIN_SIZE, CropGeometry, trim_to_odd
from devine_onnx.engines.devine.postprocess import (
    ARPS_INFLOW,
    back_rotate,
    finish_output,
    prepare_input,
    speed_alpha,
)
from devine_onnx.engines.devine.rotation import (
    rotate_nearest,
    rotation_angle,
    rotation_source_indices,
)
from devine_onnx.errors import DEMError

SIGMA = 141.1161085195641


@pytest.mark.parametrize(
    "shape, q, d, rows, cols",
    [
        # m = 79: 79 / sqrt(2) = 55.86 -> q = 55, d = 27, s = 55; centre (39, 39).
        ((79, 79), 55, 27, (12, 67), (12, 67)),
        # m = 100: 70.71 -> q = 70, d = 35, s = 71; centre (50, 60).
        ((100, 120), 70, 35, (15, 86), (25, 96)),
        # m = 1049: 741.75 -> q = 741, d = 370, s = 741; centre (532, 524).
        ((1065, 1049), 741, 370, (162, 903), (154, 895)),
        # m = 2001: 1414.92 -> q = 1414, d = 707, s = 1415; centre (1000, 1000).
        ((2001, 2001), 1414, 707, (293, 1708), (293, 1708)),
    ],
)
def test_crop_geometry_hand_checked(shape, q, d, rows, cols):
    g = CropGeometry(*shape)
    assert (g.m, g.q, g.d, g.s) == (min(shape), q, d, 2 * d + 1)
    assert g.rows == slice(*rows) and g.cols == slice(*cols)
    assert g.rows.stop - g.rows.start == g.s == g.cols.stop - g.cols.start
    assert g.center == (shape[0] // 2, shape[1] // 2)
    assert g.valid_radius == d
    assert CropGeometry.from_shape((3, *shape)) == g


def test_q_is_exact():
    for m in range(MIN_SIZE, 30000):
        assert CropGeometry(m, m + 1).q == math.floor(m / math.sqrt(2))


def test_minimum_size():
    assert MIN_SIZE == 79
    assert CropGeometry(79, 79).s == 55
    with pytest.raises(DEMError, match="at least 79"):
        CropGeometry(78, 500)
    with pytest.raises(DEMError):
        CropGeometry(500, 78)


def test_trim_to_odd_and_centres():
    assert trim_to_odd(80, 72) == (79, 71)
    assert trim_to_odd(79, 69) == (79, 69)
    assert trim_to_odd(2000, 2001) == (1999, 2001)
    faithful = CropGeometry(80, 120)
    assert faithful.rotation_center == (59.5, 39.5)
    assert faithful.center == (40, 60)
    assert faithful.center_offset == (-0.5, -0.5) and not faithful.centered
    trimmed = CropGeometry(*trim_to_odd(80, 120))
    assert trimmed.rotation_center == (59.0, 39.0) == trimmed.center[::-1]
    assert trimmed.center_offset == (0.0, 0.0) and trimmed.centered
    assert CropGeometry(81, 120).center_offset == (-0.5, 0.0)


def test_speed_alpha_special_cases():
    u = np.array([0, 0, 0, 1, -1, 1e-6, 1e-5, -1e-5, 2e-5, 3, 1, -2], np.float32)
    v = np.array([0, 2, -2, 1, 1, 1e-6, 1.0, -1.0, 0, 4, -1e-6, -2], np.float32)
    with np.errstate(all="raise"):
        speed, alpha = speed_alpha(u, v)
    assert speed.dtype == alpha.dtype == np.float32
    half = np.float32(3.14159 / 2)  # not pi/2: the original's constant
    assert half == np.float32(np.pi / 2 * (3.14159 / np.pi))
    quarter = np.float32(np.pi / 4)
    expected = [0, half, -half, quarter, -quarter, 0, half, -half, 0]
    expected += [np.arctan(np.float32(4 / 3)), np.arctan(np.float32(-1e-6)), quarter]
    np.testing.assert_array_equal(alpha, np.array(expected, np.float32))
    np.testing.assert_allclose(speed[[0, 1, 9, 11]], [0, 2, 5, np.sqrt(8)], rtol=1e-7)
    s, a = speed_alpha(np.float32(np.nan), np.float32(1))
    assert np.isnan(s) and np.isnan(a)


def test_back_rotate_nan_outside():
    s = 57
    fields = np.stack([np.full((s, s), 2.0, np.float32), np.full((s, s), -0.25, np.float32)])
    for k in (0, 30, 45, 270, 313):
        out = back_rotate(fields, k)
        assert out.shape == fields.shape and out.dtype == np.float32
        _, _, valid = rotation_source_indices((s, s), (s, s), rotation_angle(k, inverse=True))
        np.testing.assert_array_equal(~np.isnan(out[0]), valid)
        np.testing.assert_array_equal(~np.isnan(out[1]), valid)
        assert (out[0][valid] == 2.0).all() and (out[1][valid] == -0.25).all()
    assert np.isnan(back_rotate(fields[0], 45)[0, 0])  # oblique: corners outside
    assert not np.isnan(back_rotate(fields[0], 270)).any()  # ~identity


@pytest.mark.parametrize("m", [79, 200, 426])
def test_valid_radius_for_all_directions(m):
    g = CropGeometry(m, m + 6)
    s, d = g.s, g.d
    offsets = np.arange(s) - d
    r2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    disc = g.valid_disc()
    np.testing.assert_array_equal(disc, r2 <= g.valid_radius**2)
    ones = np.ones((s, s), np.float32)
    invalid = np.zeros((s, s), bool)
    for k in range(360):
        invalid |= np.isnan(back_rotate(ones, k))
    assert not invalid[disc].any()
    # Sharp bound (documented, not guaranteed): every pixel with r**2 <= d**2 + d, i.e.
    # r < d + 0.5, is valid; the first invalid ones lie just beyond.
    assert not invalid[r2 <= d * d + d].any()
    assert invalid[r2 <= (d + 1) ** 2].any()


def test_finish_output():
    s = 55
    u = np.full((s, s), 3.0, np.float32)
    v = np.zeros((s, s), np.float32)
    for k in (0, 45, 137, 270):
        acc, alpha = finish_output(u, v, k)
        assert acc.shape == alpha.shape == (s, s)
        assert acc.dtype == alpha.dtype == np.float32
        outside = np.isnan(back_rotate(np.ones((s, s), np.float32), k))
        np.testing.assert_array_equal(np.isnan(acc), outside)
        np.testing.assert_array_equal(np.isnan(alpha), outside)
        assert (acc[~outside] == 1.0).all() and (alpha[~outside] == 0.0).all()
    rng = np.random.default_rng(0)
    u = rng.normal(3, 1, (s, s)).astype(np.float32)
    v = rng.normal(0, 1, (s, s)).astype(np.float32)
    acc, alpha = finish_output(u, v, 100)
    speed, a = speed_alpha(u, v)
    np.testing.assert_array_equal(acc, back_rotate(speed / np.float32(ARPS_INFLOW), 100))
    np.testing.assert_array_equal(alpha, back_rotate(a, 100))


@pytest.fixture(scope="module")
def terrain() -> np.ndarray:
    cbook = pytest.importorskip("matplotlib.cbook")
    return cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(np.float32)


@pytest.mark.parametrize("shape", [(101, 91), (100, 90), (79, 250), (300, 120), (344, 403)])
def test_prepare_input_equals_full_computation(terrain, shape):
    """The crop-plus-halo shortcut equals rotate whole -> normalise whole -> crop."""
    dem = terrain[: shape[0], : shape[1]]
    g = CropGeometry(*shape)
    for k in (0, 33, 45, 180, 270, 301):
        x = prepare_input(dem, k, SIGMA, g)
        assert x.shape == (g.s, g.s) and x.dtype == np.float32
        rotated = rotate_nearest(dem, rotation_angle(k), -1.0)
        expected = normalise(rotated, SIGMA)[g.rows, g.cols]
        np.testing.assert_allclose(x, expected, rtol=0, atol=2e-6)
    with pytest.raises(ValueError):
        prepare_input(dem, 0, SIGMA, CropGeometry(shape[0] + 2, shape[1]))
