"""Sliding box mean (docs/method.md §3.2) against TensorFlow's 'SAME' box convolution in float64."""

from __future__ import annotations

import numpy as np
import pytest

from devine_onnx.engines.devine.boxfilter import WINDOW, normalise, sliding_mean


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def terrain() -> np.ndarray:
    cbook = pytest.importorskip("matplotlib.cbook")
    return cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(np.float32)


def tf_box_mean(tf, z, window=WINDOW):
    kernel = np.ones((*window, 1, 1), np.float64) / (window[0] * window[1])
    out = tf.nn.conv2d(z.astype(np.float64)[None, :, :, None], kernel, strides=1, padding="SAME")
    return out.numpy()[0, :, :, 0]


def _check(got, expected):
    assert got.dtype == np.float64 and got.shape == expected.shape
    scale = max(np.abs(expected).max(initial=0.0), 1.0)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize(
    "shape",
    [(79, 69), (80, 72), (200, 257), (30, 200), (200, 30), (10, 7), (1, 1), (78, 68)],
)
def test_random_against_tensorflow(tf, shape):
    z = np.random.default_rng(sum(shape)).uniform(-1, 4000, shape).astype(np.float32)
    _check(sliding_mean(z), tf_box_mean(tf, z))


@pytest.mark.parametrize("window", [(4, 6), (5, 2), (1, 1), (2, 9), (100, 3)])
def test_other_windows_against_tensorflow(tf, window):
    # Even sizes: TF pads (k-1)//2 before and the rest after.
    z = np.random.default_rng(1).normal(size=(37, 41))
    _check(sliding_mean(z, window), tf_box_mean(tf, z, window))


def test_real_terrain_against_tensorflow(tf, terrain):
    _check(sliding_mean(terrain), tf_box_mean(tf, terrain))
    # A rotated DEM with its -1 fill (counted by the mean, as in the original).
    from devine_onnx.engines.devine.rotation import rotate_nearest, rotation_angle

    rotated = rotate_nearest(terrain, rotation_angle(30), -1.0)
    _check(sliding_mean(rotated), tf_box_mean(tf, rotated))


def test_hand_computed():
    # A single pixel of 5451 at the centre of a 79 x 69 frame: mean 1 wherever the window
    # reaches it, i.e. everywhere; a pixel in the corner: 1 only within 39 rows / 34 columns.
    z = np.zeros((79, 69))
    z[39, 34] = 5451.0
    np.testing.assert_array_equal(sliding_mean(z), np.ones((79, 69)))
    z = np.zeros((100, 100))
    z[0, 0] = 5451.0
    expected = np.zeros((100, 100))
    expected[:40, :35] = 1.0
    np.testing.assert_array_equal(sliding_mean(z), expected)
    # Constant field: interior mean = value, edges diluted by the zeros outside (/ 5451 always).
    ones = sliding_mean(np.ones((200, 200)))
    assert ones[100, 100] == 1.0
    assert ones[0, 0] == pytest.approx(40 * 35 / 5451, rel=1e-15)


def test_regions_equal_slices_of_full(terrain):
    full = sliding_mean(terrain)
    h, w = terrain.shape
    for rows, cols in [
        (slice(0, h), slice(0, w)),
        (slice(100, 250), slice(50, 300)),
        (slice(0, 10), slice(w - 5, w)),
        (slice(-40, None), slice(None, 20)),
        (slice(5, 5), slice(0, w)),
    ]:
        part = sliding_mean(terrain, rows=rows, cols=cols)
        np.testing.assert_allclose(part, full[rows, cols], rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError):
        sliding_mean(terrain, rows=slice(0, 10, 2))


def test_normalise(terrain):
    sigma = 141.1161085195641
    out = normalise(terrain, sigma)
    assert out.dtype == np.float32 and out.shape == terrain.shape
    expected = ((terrain.astype(np.float64) - sliding_mean(terrain)) / sigma).astype(np.float32)
    np.testing.assert_array_equal(out, expected)
    part = normalise(terrain, sigma, rows=slice(40, 300), cols=slice(10, 400))
    np.testing.assert_allclose(part, expected[40:300, 10:400], rtol=0, atol=1e-6)


def test_float64_accumulation_is_accurate():
    # Large offsets: sums of ~1e10 must not lose the metre-scale signal.
    rng = np.random.default_rng(3)
    z = (4000 + rng.normal(size=(600, 700))).astype(np.float32)
    got = sliding_mean(z, rows=slice(300, 302), cols=slice(350, 352))
    direct = [
        [z[i - 39 : i + 40, j - 34 : j + 35].astype(np.float64).sum() / 5451 for j in (350, 351)]
        for i in (300, 301)
    ]
    np.testing.assert_allclose(got, direct, rtol=1e-13)
