"""Nearest-neighbour rotation (docs/method.md §3.1) against TensorFlow's ImageProjectiveTransformV3."""

from __future__ import annotations

import numpy as np
import pytest

from devine_onnx.engines.devine.rotation import (
    DEG_TO_RAD_F32,
    rotate_nearest,
    rotation_angle,
    rotation_offsets,
    rotation_source_indices,
)

SHAPES = [(79, 69), (80, 72), (101, 101), (64, 130), (257, 200), (4, 3), (1, 1)]
# Multiples of 45° (the most tie-prone), the identity (270) and odd directions.
ANGLES = [0, 1, 7, 19, 33, 45, 60, 89, 90, 91, 135, 137, 180, 201, 225, 263, 270, 271, 299, 315]
ANGLES += [324, 333, 347, 359]


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def tf_rotate(tf, image, coefficients, fill):
    """ImageProjectiveTransformV3 with the transform [c, -s, x_off, s, c, y_off, 0, 0]."""
    c, s, x_off, y_off = coefficients
    transform = np.array([[c, -s, x_off, s, c, y_off, 0, 0]], np.float32)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None, :, :, None],
        transforms=transform,
        output_shape=np.array(image.shape, np.int32),
        fill_value=np.float32(fill),
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )
    return out.numpy()[0, :, :, 0]


def _image(shape, seed=0):
    # Distinct positive values, so that any wrong source pixel or fill shows.
    rng = np.random.default_rng(seed)
    return (rng.permutation(shape[0] * shape[1]).reshape(shape) + 1).astype(np.float32)


def test_rotation_angle_rounding():
    f = np.float32
    assert rotation_angle(0) == f(np.pi / 2)
    assert rotation_angle(0, inverse=True) == f(-np.pi / 2)
    for k in (1, 44, 90, 137, 270, 359):
        theta = rotation_angle(k)
        phi = rotation_angle(k, inverse=True)
        assert isinstance(theta, np.float32) and isinstance(phi, np.float32)
        assert theta == f(f(np.pi / 2) + f(f(k) * DEG_TO_RAD_F32))
        assert phi == f(f(-np.pi / 2) - f(k * 0.01745329))
    # The two products are rounded differently: phi is not always -theta.
    assert rotation_angle(44, inverse=True) != -rotation_angle(44)
    # 0.01745329 < pi/180: theta(270) falls short of 2 pi.
    assert 0 < 2 * np.pi - float(rotation_angle(270)) < 1e-6


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "back"])
def test_index_arithmetic_matches_tensorflow(tf, inverse):
    """Same transform coefficients fed to TF and to us: the rounding/bounds logic is exact."""
    total = differ = 0
    for shape in SHAPES:
        image = _image(shape)
        for k in ANGLES:
            theta = rotation_angle(k, inverse)
            expected = tf_rotate(tf, image, rotation_offsets(shape, theta), -1.0)
            got = rotate_nearest(image, theta, -1.0)
            differ += np.count_nonzero(got != expected)
            total += got.size
    assert total > 2e5
    assert differ == 0, f"{differ} of {total} pixels differ"


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "back"])
def test_matches_tensorflow_own_cos_sin(tf, inverse):
    """Against tfa.image.rotate's arithmetic with TF's own float32 cos/sin and offsets."""
    from tests.tf_reference import phi, rotate, theta

    total = differ = 0
    for shape in SHAPES:
        image = _image(shape, seed=1)
        for k in ANGLES:
            angle = phi(k) if inverse else theta(k)
            assert angle.numpy() == rotation_angle(k, inverse)
            expected = rotate(image[None, :, :, None], angle, -1.0)[0, :, :, 0]
            got = rotate_nearest(image, rotation_angle(k, inverse), -1.0)
            differ += np.count_nonzero(got != expected.numpy())
            total += got.size
    # docs/method.md §3.1 tolerates a few per 10**7; the cos/sin table makes it exact in practice.
    assert differ <= total / 1e6, f"{differ} of {total} pixels differ"


def test_crop_back_rotation_matches_tensorflow(tf):
    """Back-rotation of an s x s crop with NaN fill (the table's step 6)."""
    total = differ = 0
    for s in (55, 57, 141):
        image = _image((s, s), seed=s)
        for k in range(0, 360, 13):
            phi = rotation_angle(k, inverse=True)
            expected = tf_rotate(tf, image, rotation_offsets((s, s), phi), np.nan)
            got = rotate_nearest(image, phi, np.nan)
            differ += np.count_nonzero(~((got == expected) | (np.isnan(got) & np.isnan(expected))))
            total += got.size
    assert differ == 0, f"{differ} of {total} pixels differ"


def test_quarter_turns_on_odd_squares():
    """theta(0), theta(90), theta(180) are (float32-rounded) quarter turns counter-clockwise."""
    n = 5
    image = np.zeros((n, n), np.float32)
    image[0, 1] = 7.0  # north edge, one pixel east of the north-west corner
    r0 = rotate_nearest(image, rotation_angle(0), -1.0)
    # A counter-clockwise quarter turn takes it to the west edge, one pixel north of the
    # south-west corner: out[i, j] = in[j, n-1-i] -> (row 3, col 0).
    assert r0[3, 0] == 7.0 and np.count_nonzero(r0) == 1
    np.testing.assert_array_equal(r0, np.rot90(image, 1))
    big = _image((101, 101))
    for quarter, k in enumerate((0, 90, 180)):
        np.testing.assert_array_equal(
            rotate_nearest(big, rotation_angle(k)), np.rot90(big, 1 + quarter)
        )
    # The back-rotation phi(0) ~ -pi/2 undoes theta(0).
    np.testing.assert_array_equal(rotate_nearest(r0, rotation_angle(0, inverse=True)), image)


@pytest.mark.parametrize("shape", [(101, 101), (80, 72), (64, 130), (7, 4)])
def test_k270_is_identity(shape):
    # theta(270) is 3e-7 rad short of 2 pi: displacements < 1e-4 px, no pixel moves.
    image = _image(shape)
    np.testing.assert_array_equal(rotate_nearest(image, rotation_angle(270), -1.0), image)


def test_ties_round_half_away_from_zero():
    """H - W odd at 90°: the source column lands exactly on .5 ties (hand-computed)."""
    theta = rotation_angle(0)  # ~ +90°
    c, s, x_off, y_off = rotation_offsets((4, 3), theta)
    assert x_off == np.float32(2.5)  # ((W-1) - (c(W-1) - s(H-1))) / 2 = (2 + 3) / 2
    rows, cols, valid = rotation_source_indices((4, 3), (4, 3), theta)
    # Column j = 0 reads x = 2.5 - i exactly: i = 0 -> 3 (outside, W = 3), i = 1 -> 2,
    # i = 2 -> 1 (np.round would give 0), i = 3 -> x = -0.5 -> -1: outside (np.round: 0).
    np.testing.assert_array_equal(valid[:, 0], [False, True, True, False])
    np.testing.assert_array_equal(cols[1:3, 0], [2, 1])
    # Row: y = (s*0 + c*i) + y_off with y_off = 0.5 + 2**-24 and c*i = -4.4e-8 * i in float32:
    # i = 1 gives exactly 0.5 (a tie: row 1); i = 2 gives 0.5 - 2**-25, which rounds to row 0
    # (in float32, y + 0.5 would round up to 1.0: the +0.5 must be exact).
    assert y_off == np.float32(0.5) + np.float32(2**-24)
    y = [np.float32(np.float32(c * np.float32(i)) + y_off) for i in (1, 2)]
    assert y == [np.float32(0.5), np.float32(0.5) - np.float32(2**-25)]
    assert np.float32(y[1] + np.float32(0.5)) == 1.0
    np.testing.assert_array_equal(rows[1:3, 0], [1, 0])


def test_source_indices_match_rotate():
    image = _image((80, 72))
    theta = rotation_angle(33)
    rows, cols, valid = rotation_source_indices(image.shape, image.shape, theta)
    expected = np.where(valid, image[np.where(valid, rows, 0), np.where(valid, cols, 0)], -1.0)
    np.testing.assert_array_equal(rotate_nearest(image, theta, -1.0), expected)
    # A window of the output grid is the same window of the full mapping.
    r2, c2, v2 = rotation_source_indices(
        image.shape, image.shape, theta, rows=slice(10, 50), cols=slice(5, 71)
    )
    np.testing.assert_array_equal(v2, valid[10:50, 5:71])
    np.testing.assert_array_equal(r2[v2], rows[10:50, 5:71][v2])
    np.testing.assert_array_equal(c2[v2], cols[10:50, 5:71][v2])


def test_stack_window_dtype_and_fill():
    image = _image((57, 57))
    stack = np.stack([image, -image, 2 * image])
    theta = rotation_angle(200, inverse=True)
    full = rotate_nearest(stack, theta, np.nan)
    assert full.shape == stack.shape and full.dtype == np.float32
    for i in range(3):
        np.testing.assert_array_equal(full[i], rotate_nearest(stack[i], theta, np.nan))
    assert np.isnan(full[:, 0, 0]).all()  # a corner at an oblique angle
    window = rotate_nearest(stack, theta, np.nan, rows=slice(3, 40), cols=slice(20, 57))
    np.testing.assert_array_equal(window, full[:, 3:40, 20:57])
    ints = rotate_nearest(np.arange(12, dtype=np.int16).reshape(3, 4), rotation_angle(45), -7)
    assert ints.dtype == np.int16 and (ints == -7).any()
    np.testing.assert_array_equal(rotate_nearest(np.ones((2, 0, 5)), theta).shape, (2, 0, 5))


def test_explicit_center():
    image = _image((81, 81))
    theta = rotation_angle(0)
    # Rotating about the array centre given explicitly: same quarter turn.
    np.testing.assert_array_equal(rotate_nearest(image, theta, center=(40, 40)), np.rot90(image))
    # About the north-west corner pixel: out[i, j] reads (row j, col -i), so only row 0 of the
    # output is inside the frame and holds column 0 of the input.
    out = rotate_nearest(image, theta, -1.0, center=(0, 0))
    np.testing.assert_array_equal(out[0], image[:, 0])
    assert (out[1:] == -1).all()
