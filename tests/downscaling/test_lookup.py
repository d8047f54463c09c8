"""Applying a correction table (docs/method.md §4): index by FROM direction, alpha turns left."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pyproj import Transformer

from devine_onnx.downscaling.lookup import (
    CoarseTableWarning,
    TableLookup,
    angular_step,
    apply_table,
    downscale_uv,
    warn_if_coarse,
)
from devine_onnx.errors import OptionError, TableError
from devine_onnx.wind import (
    meridian_convergence,
    speed_dir_to_uv,
    uv_to_speed_dir,
)

NY, NX = 3, 4
ALPHA = 0.1  # rad
ALPHA_DEG = np.degrees(ALPHA)  # 5.7296°


def _synthetic_table(ny=NY, nx=NX):
    """acceleration[k] = 1 + k/1000 everywhere, alpha = 0.1 rad."""
    k = np.arange(360, dtype=np.float64)
    acc = np.broadcast_to((1 + k / 1000)[:, None, None], (360, ny, nx)).copy()
    alpha = np.full((360, ny, nx), ALPHA)
    return acc, alpha


def _field(value, shape=(2, NY, NX)):
    return np.full(shape, value, dtype=np.float64)


def test_westerly_uses_k270_and_southerly_k180():
    acc, alpha = _synthetic_table()
    s, d = apply_table(_field(5.0), _field(270.0), acc, alpha)
    np.testing.assert_allclose(s, 5 * 1.27)
    np.testing.assert_allclose(d, 270 - ALPHA_DEG)
    s, d = apply_table(_field(5.0), _field(180.0), acc, alpha)
    np.testing.assert_allclose(s, 5 * 1.18)


def test_alpha_turns_flow_to_the_left():
    acc, alpha = _synthetic_table()
    # Westerly from components: blows toward the east.
    speed_out, dir_out, u_out, v_out = downscale_uv(_field(5.0), _field(0.0), acc, alpha, None)
    np.testing.assert_allclose(speed_out, 5 * 1.27)
    np.testing.assert_allclose(dir_out, 270 - 5.729578, atol=1e-6)
    # Turned to the left (counter-clockwise) looking downwind: toward the north-east-ish.
    assert np.all(u_out > 0) and np.all(v_out > 0)
    np.testing.assert_allclose(v_out, 5 * 1.27 * np.sin(ALPHA), rtol=1e-12)
    np.testing.assert_allclose(u_out, 5 * 1.27 * np.cos(ALPHA), rtol=1e-12)


def test_earth_westerly_in_lambert93_uses_k268():
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:2154", always_xy=True).transform(6.15, 45.2)
    xs = x + np.array([-30.0, 0.0, 30.0, 60.0])
    ys = y + np.array([-30.0, 0.0, 30.0])
    gamma = meridian_convergence(xs[None, :], ys[:, None], "EPSG:2154")
    acc, alpha = _synthetic_table()
    speed, d_true, u, v = downscale_uv(_field(5.0), _field(0.0), acc, alpha, None, gamma=gamma)
    np.testing.assert_allclose(speed, 5 * 1.268)  # k = round(270 - 2.29) = 268
    # Output direction is from true north: 270 - alpha (gamma cancels out).
    np.testing.assert_allclose(d_true, 270 - ALPHA_DEG, atol=1e-9)
    s2, d2 = uv_to_speed_dir(u, v)
    np.testing.assert_allclose(s2, speed, rtol=1e-12)
    np.testing.assert_allclose(d2, d_true, atol=1e-9)
    # Without the rotation the table would be indexed at 270.
    s_nogamma, *_ = downscale_uv(_field(5.0), _field(0.0), acc, alpha, None)
    np.testing.assert_allclose(s_nogamma, 5 * 1.27)


@pytest.mark.parametrize(
    ("d", "k"),
    [(10.5, 11), (10.49, 10), (359.6, 0), (359.5, 0), (359.49, 359), (0.4, 0), (0.5, 1)],
)
def test_half_up_rounding(d, k):
    acc, alpha = _synthetic_table()
    s, _ = apply_table(_field(1.0), _field(d), acc, alpha)
    np.testing.assert_allclose(s, 1 + k / 1000)


def _subset_table():
    angles = np.array([0.0, 90.0, 180.0, 270.0])
    acc = np.broadcast_to(np.array([1.0, 2.0, 3.0, 4.0])[:, None, None], (4, NY, NX)).copy()
    alpha = np.broadcast_to(np.array([0.0, 0.1, 0.2, 0.3])[:, None, None], (4, NY, NX)).copy()
    return angles, acc, alpha


@pytest.mark.parametrize(
    ("d", "acc_expected", "alpha_expected"),
    [
        (300.0, 4.0, 0.3),
        (314.9, 4.0, 0.3),
        (315.0, 1.0, 0.0),  # tie: the larger (clockwise) neighbour, 360 = 0
        (350.0, 1.0, 0.0),  # circular wrap
        (45.0, 2.0, 0.1),  # tie
        (44.9, 1.0, 0.0),
        (100.0, 2.0, 0.1),
    ],
)
def test_subset_nearest_by_hand(d, acc_expected, alpha_expected):
    angles, acc, alpha = _subset_table()
    s, out = apply_table(_field(2.0), _field(d), acc, alpha, angles)
    np.testing.assert_allclose(s, 2 * acc_expected)
    np.testing.assert_allclose(out, np.mod(d - np.degrees(alpha_expected), 360))


@pytest.mark.parametrize(
    ("d", "acc_expected", "alpha_expected"),
    [
        (300.0, 4 * 2 / 3 + 1 / 3, 0.3 * 2 / 3),  # between 270 and 360 (=0)
        (45.0, 1.5, 0.05),
        (90.0, 2.0, 0.1),
        (0.0, 1.0, 0.0),
        (202.5, 3.25, 0.225),
    ],
)
def test_subset_linear_by_hand(d, acc_expected, alpha_expected):
    angles, acc, alpha = _subset_table()
    s, out = apply_table(_field(2.0), _field(d), acc, alpha, angles, method="linear")
    np.testing.assert_allclose(s, 2 * acc_expected, rtol=1e-12)
    np.testing.assert_allclose(out, np.mod(d - np.degrees(alpha_expected), 360), rtol=1e-12)


def test_subset_without_zero_wraps():
    angles = np.array([30.0, 120.0, 210.0, 300.0])
    acc = np.broadcast_to(np.array([1.0, 2.0, 3.0, 4.0])[:, None, None], (4, NY, NX)).copy()
    alpha = np.zeros_like(acc)
    s, _ = apply_table(_field(1.0), _field(10.0), acc, alpha, angles)  # 20° from 30, 70 from 300
    np.testing.assert_allclose(s, 1.0)
    s, _ = apply_table(_field(1.0), _field(10.0), acc, alpha, angles, method="linear")
    np.testing.assert_allclose(s, 4 * 20 / 90 + 1 * 70 / 90)  # t = 70/90 toward 30


def test_full_table_linear():
    acc, alpha = _synthetic_table()
    s, _ = apply_table(_field(1.0), _field(10.25), acc, alpha, method="linear")
    np.testing.assert_allclose(s, 1 + 10.25 / 1000, rtol=1e-12)
    s, _ = apply_table(_field(1.0), _field(359.5), acc, alpha, method="linear")
    np.testing.assert_allclose(s, 0.5 * 1.359 + 0.5 * 1.0, rtol=1e-12)


def test_calm_and_nan_propagation():
    acc, alpha = _synthetic_table()
    acc[:, 0, 1] = np.nan  # pixel outside the valid disc for every angle
    acc[270, 0, 2] = np.nan  # no data for one direction only
    alpha[270, 0, 3] = np.nan
    s = np.full((NY, NX), 5.0)
    d = np.full((NY, NX), 270.0)
    s[1, 0], d[1, 0] = 0.0, np.nan  # calm
    s[1, 1], d[1, 1] = np.nan, np.nan  # outside the NWP hull
    s[2, 0], d[2, 0] = 0.0, np.nan  # calm too
    s[0, 1], d[0, 1] = 0.0, np.nan  # calm on a pixel without data
    speed_out, dir_out = apply_table(s, d, acc, alpha)
    assert speed_out[1, 0] == 0 and np.isnan(dir_out[1, 0])
    assert speed_out[2, 0] == 0 and np.isnan(dir_out[2, 0])
    assert np.isnan(speed_out[0, 1]) and np.isnan(dir_out[0, 1])
    assert np.isnan(speed_out[1, 1]) and np.isnan(dir_out[1, 1])
    assert np.isnan(speed_out[0, 2]) and np.isnan(dir_out[0, 2])  # NaN acceleration
    assert np.isnan(speed_out[0, 3]) and np.isnan(dir_out[0, 3])  # NaN alpha
    ok = np.ones((NY, NX), bool)
    ok[[1, 2, 0, 1, 0, 0], [0, 0, 1, 1, 2, 3]] = False
    np.testing.assert_allclose(speed_out[ok], 5 * 1.27)
    # Calm through the full chain: zero components, NaN direction.
    sp, dd, u, v = downscale_uv(np.zeros((NY, NX)), np.zeros((NY, NX)), acc, alpha, None)
    assert np.all(u[~np.isnan(sp)] == 0) and np.all(v[~np.isnan(sp)] == 0)
    assert np.all(np.isnan(dd))


def _naive(speed, from_dir, acc, alpha, angles, method):
    """Per-pixel Python reference."""
    out_s = np.full(speed.shape, np.nan)
    out_d = np.full(speed.shape, np.nan)
    n = len(angles)
    ext = np.concatenate([angles - 360, angles, angles + 360])
    for idx in np.ndindex(speed.shape):
        s, d = speed[idx], from_dir[idx]
        i, j = idx[-2], idx[-1]
        if np.isnan(s) or np.isnan(d):
            continue
        d = d % 360
        lo = max(m for m in range(3 * n) if ext[m] <= d)
        hi = lo + 1
        t = (d - ext[lo]) / (ext[hi] - ext[lo])
        klo, khi = lo % n, hi % n
        if method == "nearest":
            k = khi if t >= 0.5 else klo
            a, al = acc[k, i, j], alpha[k, i, j]
        else:
            a = (1 - t) * acc[klo, i, j] + t * acc[khi, i, j]
            al = (1 - t) * alpha[klo, i, j] + t * alpha[khi, i, j]
        if np.isnan(a) or np.isnan(al):
            continue
        out_s[idx] = a * s
        out_d[idx] = (d - np.degrees(al)) % 360
    return out_s, out_d


@pytest.mark.parametrize("method", ["nearest", "linear"])
@pytest.mark.parametrize("subset", [False, True])
def test_gather_equals_naive_loop(method, subset):
    rng = np.random.default_rng(42)
    angles = np.sort(rng.choice(360, 17, replace=False)).astype(float) if subset else None
    n = 17 if subset else 360
    acc = rng.uniform(0.5, 2.0, (n, NY, NX))
    alpha = rng.uniform(-0.5, 0.5, (n, NY, NX))
    acc[rng.uniform(size=acc.shape) < 0.05] = np.nan
    alpha[rng.uniform(size=acc.shape) < 0.05] = np.nan
    speed = rng.uniform(0, 15, (5, NY, NX))
    from_dir = rng.uniform(0, 360, (5, NY, NX))
    speed[0, 0, 0] = np.nan
    from_dir[1, 1, 1] = np.nan
    ref_angles = angles if subset else np.arange(360.0)
    exp_s, exp_d = _naive(speed, from_dir, acc, alpha, ref_angles, method)
    got_s, got_d = apply_table(speed, from_dir, acc, alpha, angles, method=method)
    np.testing.assert_array_equal(np.isnan(got_s), np.isnan(exp_s))
    np.testing.assert_allclose(got_s, exp_s, rtol=1e-12)
    np.testing.assert_array_equal(np.isnan(got_d), np.isnan(exp_d))
    np.testing.assert_allclose(got_d, exp_d, rtol=1e-12)


def test_float32_chunk_and_leading_shape():
    acc, alpha = _synthetic_table()
    acc32, alpha32 = acc.astype(np.float32), alpha.astype(np.float32)
    rng = np.random.default_rng(3)
    u = rng.normal(0, 5, (2, 3, NY, NX)).astype(np.float32)
    v = rng.normal(0, 5, (2, 3, NY, NX)).astype(np.float32)
    lk = TableLookup(acc32, alpha32)
    s32, d32, u32, v32 = lk.downscale_uv(u, v, gamma=np.float32(2.0))
    s64, d64, u64, v64 = downscale_uv(u.astype(float), v.astype(float), acc, alpha, None, 2.0)
    assert s32.shape == (2, 3, NY, NX) and s32.dtype == np.float32 and u32.dtype == np.float32
    np.testing.assert_allclose(s32, s64, rtol=1e-5)
    np.testing.assert_allclose(u32, u64, atol=1e-4)
    diff = np.mod(d32 - d64 + 180, 360) - 180
    np.testing.assert_allclose(diff, 0, atol=1e-3)
    assert np.all((d32 >= 0) & (d32 < 360))


def test_round_trip_without_correction():
    """acceleration 1 and alpha 0 leave the wind unchanged, with and without gamma."""
    acc = np.ones((360, NY, NX))
    alpha = np.zeros((360, NY, NX))
    rng = np.random.default_rng(7)
    u = rng.normal(0, 5, (4, NY, NX))
    v = rng.normal(0, 5, (4, NY, NX))
    gamma = rng.uniform(-3, 3, (NY, NX))
    for g in (None, gamma):
        s, d, u2, v2 = downscale_uv(u, v, acc, alpha, np.arange(360), gamma=g)
        np.testing.assert_allclose(u2, u, atol=1e-12)
        np.testing.assert_allclose(v2, v, atol=1e-12)
        np.testing.assert_allclose(speed_dir_to_uv(s, d)[0], u, atol=1e-12)


def test_bad_inputs():
    acc, alpha = _synthetic_table()
    with pytest.raises(TableError, match="strictly ascending"):
        TableLookup(acc[:3], alpha[:3], [0.0, 20.0, 10.0])
    with pytest.raises(TableError, match="strictly ascending"):
        TableLookup(acc[:2], alpha[:2], [0.0, 360.0])
    with pytest.raises(TableError, match="angles"):
        TableLookup(acc, alpha, np.arange(359))
    with pytest.raises(TableError, match="same shape"):
        TableLookup(acc, alpha[:, :2])
    with pytest.raises(OptionError, match="nearest, linear"):
        TableLookup(acc, alpha, method="cubic")
    with pytest.raises(TableError, match="grid shape"):
        TableLookup(acc, alpha)(np.ones((2, NY + 1, NX)), np.ones((2, NY + 1, NX)))


@pytest.mark.parametrize("block", [5, 63, 65536])
def test_threaded_equals_serial(block, monkeypatch):
    """Splitting the pixel blocks between threads gives exactly the serial result."""
    import devine_onnx.downscaling.lookup as lookup
    from devine_onnx.downscaling.lookup import TableLookup

    monkeypatch.setattr(lookup, "CACHE_BLOCK", block)

    rng = np.random.default_rng(3)
    acc = (1 + 0.3 * rng.random((360, 7, 9))).astype(np.float32)
    alpha = (0.2 * rng.standard_normal((360, 7, 9))).astype(np.float32)
    acc[:, 0, 0] = np.nan
    u = rng.normal(0, 5, (11, 7, 9)).astype(np.float32)
    v = rng.normal(0, 5, (11, 7, 9)).astype(np.float32)
    u[2, 3, 3] = v[2, 3, 3] = 0.0  # calm
    u[4, 1, 1] = np.nan
    gamma = rng.normal(0, 2, (7, 9))
    table = TableLookup(acc, alpha)
    serial = table.downscale_uv(u, v, gamma, threads=1)
    for threads in (2, 3, 16):
        for a, b in zip(table.downscale_uv(u, v, gamma, threads=threads), serial, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("block", [7, 65536])
@pytest.mark.parametrize("with_gamma", [True, False])
def test_fused_nearest_path_equals_generic_chain(with_gamma, block, monkeypatch):
    """The fused fast path (in blocks of any size) gives the generic chain's numbers."""
    import devine_onnx.downscaling.lookup as lookup
    from devine_onnx.downscaling.lookup import TableLookup

    monkeypatch.setattr(lookup, "CACHE_BLOCK", block)

    rng = np.random.default_rng(5)
    acc = (1 + 0.3 * rng.random((360, 9, 8))).astype(np.float32)
    alpha = (0.3 * rng.standard_normal((360, 9, 8))).astype(np.float32)
    acc[:, 0, 0] = np.nan  # a pixel without data
    alpha[100:200, 1, 1] = np.nan  # alpha missing for some directions only
    u = rng.normal(0, 6, (13, 9, 8)).astype(np.float32)
    v = rng.normal(0, 6, (13, 9, 8)).astype(np.float32)
    u[0, 2, 2] = v[0, 2, 2] = 0.0  # calm
    u[0, 0, 0] = v[0, 0, 0] = 0.0  # calm where the table has no data
    u[1, 3, 3] = np.nan
    gamma = rng.normal(0, 3, (9, 8)) if with_gamma else None
    table = TableLookup(acc, alpha)
    fast = table.downscale_uv(u, v, gamma, threads=1)  # the fused nearest path
    slow = table._downscale_uv_generic(u, v, gamma)
    for name, a, b in zip(("speed", "dir", "u", "v"), fast, slow, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        ok = ~np.isnan(a)
        diff = np.abs(a[ok] - b[ok])
        if name == "dir":
            diff = np.minimum(diff, 360 - diff)
            assert diff.max() < 1e-3, name
        else:
            assert diff.max() < 1e-4, name


def test_out_buffers_receive_the_result():
    """``out=`` fills the caller's arrays (same numbers as without) and returns them."""
    rng = np.random.default_rng(11)
    acc = (1 + 0.3 * rng.random((360, 6, 5))).astype(np.float32)
    alpha = (0.2 * rng.standard_normal((360, 6, 5))).astype(np.float32)
    u = rng.normal(0, 5, (4, 6, 5)).astype(np.float32)
    v = rng.normal(0, 5, (4, 6, 5)).astype(np.float32)
    table = TableLookup(acc, alpha)
    expected = table.downscale_uv(u, v, 1.5)
    out = tuple(np.full((4, 6, 5), -7.0, dtype=np.float32) for _ in range(4))
    got = table.downscale_uv(u, v, 1.5, out=out)
    assert all(g is o for g, o in zip(got, out, strict=True))
    for a, b in zip(out, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    # The generic path (linear interpolation) honours out= as well.
    lin = TableLookup(acc, alpha, method="linear")
    out_lin = tuple(np.empty((4, 6, 5), dtype=np.float32) for _ in range(4))
    lin.downscale_uv(u, v, 1.5, out=out_lin)
    for a, b in zip(out_lin, lin.downscale_uv(u, v, 1.5), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: tuple(np.empty((4, 6, 5), np.float32) for _ in range(3)),  # three arrays
        lambda: tuple(np.empty((4, 6, 5), np.float64) for _ in range(4)),  # wrong dtype
        lambda: tuple(np.empty((4, 6, 6), np.float32) for _ in range(4)),  # wrong shape
        lambda: tuple(np.empty((4, 6, 10), np.float32)[..., ::2] for _ in range(4)),  # strided
    ],
)
def test_bad_out_buffers_are_refused(bad):
    acc = np.ones((360, 6, 5), dtype=np.float32)
    u = np.ones((4, 6, 5), dtype=np.float32)
    with pytest.raises(OptionError, match="C-contiguous float32 arrays of shape"):
        TableLookup(acc, 0 * acc).downscale_uv(u, u, out=bad())


def test_empty_time_axis():
    acc = np.ones((360, 3, 4), dtype=np.float32)
    u = np.ones((0, 3, 4), dtype=np.float32)
    res = TableLookup(acc, 0 * acc).downscale_uv(u, u, 2.0)
    assert all(r.shape == (0, 3, 4) and r.dtype == np.float32 for r in res)


def test_angular_step_and_coarse_warning():
    assert angular_step(np.arange(360)) == 1.0
    assert angular_step(np.arange(0, 360, 10)) == 10.0
    assert angular_step([0, 90, 100, 350]) == 250.0  # the widest gap, circularly 100..350
    assert angular_step([45]) == 360.0
    with pytest.warns(CoarseTableWarning, match=r"t\.nc: 36 directions up to 10° apart"):
        warn_if_coarse(np.arange(0, 360, 10), "nearest", "t.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_coarse(np.arange(0, 360, 10), "linear", "t.nc")
        warn_if_coarse(np.arange(360), "nearest", "t.nc")
    assert issubclass(CoarseTableWarning, UserWarning)


@pytest.mark.parametrize("uniform", [True, False])
def test_linear_alpha_blends_along_the_shorter_arc(uniform):
    """alpha 3.10 and -3.10 rad at neighbouring directions are 0.083 rad apart across ±pi:
    halfway between them the wind turns by about pi (180°), not by their mean 0."""
    angles = np.arange(0, 360, 10.0) if uniform else np.array([0.0, 10.0, 20.0, 200.0])
    n = angles.size
    acc = np.ones((n, 1, 1))
    alpha = np.zeros((n, 1, 1))
    alpha[0], alpha[1] = 3.10, -3.10  # directions 0° and 10°
    speed, dirs = TableLookup(acc, alpha, angles, "linear")(
        np.full((1, 1, 1), 5.0), _field(5.0, (1, 1, 1))
    )
    # Hand computation: alpha(5°) = 3.10 + 0.5 * (2 pi - 6.20) = pi - 0.0 (to 1e-3 rad);
    # dir = 5 - degrees(alpha) mod 360 = 5 - 180.0 + 360.
    expected_alpha = 3.10 + 0.5 * (2 * np.pi - 6.20)
    assert expected_alpha == pytest.approx(np.pi, abs=1e-3)
    assert dirs[0, 0, 0] == pytest.approx((5.0 - np.degrees(expected_alpha)) % 360.0, abs=1e-6)
    assert dirs[0, 0, 0] == pytest.approx(185.0, abs=0.1)
    assert speed[0, 0, 0] == pytest.approx(5.0)
    # A quarter of the way: alpha = 3.10 + 0.25 * 0.0832 = 3.1208 rad.
    _, dirs = TableLookup(acc, alpha, angles, "linear")(
        np.full((1, 1, 1), 5.0), _field(2.5, (1, 1, 1))
    )
    a = 3.10 + 0.25 * (2 * np.pi - 6.20)
    assert dirs[0, 0, 0] == pytest.approx((2.5 - np.degrees(a)) % 360.0, abs=1e-6)
