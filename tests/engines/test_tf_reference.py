"""Cheap self-checks of the TensorFlow reference (tests/tf_reference.py) against the numpy
kernels it is meant to validate: same input, same outside pattern."""

from __future__ import annotations

import numpy as np
import pytest

from devine_onnx.engines.devine.geometry import CropGeometry
from devine_onnx.engines.devine.postprocess import finish_output, prepare_input

SIGMA = 141.1161085195641


@pytest.fixture(scope="module")
def ref():
    pytest.importorskip("tensorflow")
    from tests import tf_reference

    return tf_reference


@pytest.fixture(scope="module")
def terrain() -> np.ndarray:
    cbook = pytest.importorskip("matplotlib.cbook")
    return cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(np.float32)


@pytest.mark.parametrize("shape", [(101, 91), (100, 90)], ids=["odd", "even-faithful"])
def test_normalised_crop_matches_prepare_input(ref, terrain, shape):
    dem = terrain[50 : 50 + shape[0], 80 : 80 + shape[1]]
    for k in (0, 45, 137, 270, 359):
        expected = ref.normalised_crop(dem, k, SIGMA).numpy()[0, :, :, 0]
        got = prepare_input(dem, k, SIGMA)
        assert got.shape == expected.shape
        # Bit-identical rotation; float64 sums in a different order: at most 1 float32 ulp.
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_finish_output_matches_reference(ref):
    s = 57
    rng = np.random.default_rng(5)
    u = rng.normal(3, 1, (s, s)).astype(np.float32)
    v = rng.normal(0, 1, (s, s)).astype(np.float32)
    u[0, :5] = [0, 0, 1e-6, -1, 2]
    v[0, :5] = [0, 1, 1e-6, 1, 0]
    for k in (0, 45, 200, 270):
        acc, alpha = finish_output(u, v, k)
        speed, a = ref.speed_alpha(u, v)
        back = ref.back_rotate(np.stack([speed / 3.0, a], axis=-1)[None], k).numpy()[0]
        outside = np.isnan(acc)
        np.testing.assert_array_equal(back[..., 0] == -1, outside)
        np.testing.assert_array_equal(back[..., 1] == -1, outside)
        np.testing.assert_array_equal(np.isnan(alpha), outside)
        np.testing.assert_allclose(acc[~outside], back[..., 0][~outside], rtol=1e-6)
        np.testing.assert_allclose(alpha[~outside], back[..., 1][~outside], rtol=0, atol=1e-6)


def test_reference_table_shape_and_outside(ref, terrain):
    from devine_onnx_convert.synthetic import synthetic_weights

    dem = terrain[100:181, 150:235]  # 81 x 85: s = 57, UNet input padded to 64 x 64
    g = CropGeometry(*dem.shape)
    angles = [45, 270]
    acc, alpha = ref.reference_table(dem, synthetic_weights(3), SIGMA, angles)
    assert acc.shape == alpha.shape == (2, g.s, g.s)
    assert acc.dtype == alpha.dtype == np.float32
    for i, k in enumerate(angles):
        nan_acc, _ = finish_output(np.ones((g.s, g.s)), np.zeros((g.s, g.s)), k)
        outside = np.isnan(nan_acc)
        np.testing.assert_array_equal(acc[i] == -1, outside)
        np.testing.assert_array_equal(alpha[i] == -1, outside)
        assert np.isfinite(acc[i]).all() and (acc[i][~outside] > 0).all()
    assert (acc[0] == -1).any() and not (acc[1] == -1).any()
    # The synthetic weights keep u near the 3 m/s inflow: accelerations near 1.
    assert 0.3 < np.median(acc[acc != -1]) < 3
