"""The MicroMet engine against hand computations and a loop transcription of the equations.

Conventions checked: FROM directions in degrees clockwise from grid north, rows of a north-up
DEM run south, alpha > 0 = flow turned left (downscaled FROM direction = theta - deg(alpha)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from devine_onnx.engines.micromet import (
    MicroMetEngine,
    curvature,
    curvature_step,
    edge_band,
    micromet_factors,
    slope_aspect,
)
from devine_onnx.errors import OptionError, cli_spelling

RES = 30.0


# --- independent references (plain loops over the equations of the specification) ----------


def loop_slope_aspect(z, res):
    """Slope and aspect with explicit differences; aspect = azimuth of the vector -grad z."""
    ny, nx = z.shape
    beta = np.zeros((ny, nx))
    xi = np.zeros((ny, nx))
    for i in range(ny):
        for j in range(nx):
            if j == 0:
                dzdx = (z[i, 1] - z[i, 0]) / res
            elif j == nx - 1:
                dzdx = (z[i, j] - z[i, j - 1]) / res
            else:
                dzdx = (z[i, j + 1] - z[i, j - 1]) / (2 * res)
            # Rows run south: the northern neighbour is row i - 1.
            if i == 0:
                dzdy = (z[0, j] - z[1, j]) / res
            elif i == ny - 1:
                dzdy = (z[i - 1, j] - z[i, j]) / res
            else:
                dzdy = (z[i - 1, j] - z[i + 1, j]) / (2 * res)
            beta[i, j] = math.atan(math.sqrt(dzdx**2 + dzdy**2))
            # Downslope vector (east, north) = (-dzdx, -dzdy); azimuth from north, clockwise.
            xi[i, j] = math.atan2(-dzdx, -dzdy) % (2 * math.pi)
    return beta, xi


def loop_curvature(z, res, eta):
    ny, nx = z.shape
    inc = max(1, int(math.floor(eta / res + 0.5)))
    e = inc * res
    out = np.zeros((ny, nx))

    def at(i, j):
        return z[min(max(i, 0), ny - 1), min(max(j, 0), nx - 1)]

    for i in range(ny):
        for j in range(nx):
            # Row i - inc is north, column j + inc is east.
            zn, zs, zw, ze = at(i - inc, j), at(i + inc, j), at(i, j - inc), at(i, j + inc)
            zne, zsw = at(i - inc, j + inc), at(i + inc, j - inc)
            znw, zse = at(i - inc, j - inc), at(i + inc, j + inc)
            c = z[i, j]
            out[i, j] = 0.25 * (
                (c - (zw + ze) / 2) / (2 * e)
                + (c - (zs + zn) / 2) / (2 * e)
                + (c - (zsw + zne) / 2) / (2 * math.sqrt(2) * e)
                + (c - (znw + zse) / 2) / (2 * math.sqrt(2) * e)
            )
    return out


def loop_factors(beta, xi, oc, theta_deg, gs=0.58, gc=0.42, sref=None, cref=None):
    """One direction, pixel by pixel; domain references as max over all pixels; scaled terms
    clipped to +-0.5 and SnowModel's 45 degree cap on the diverting angle."""
    th = math.radians(theta_deg)
    ny, nx = beta.shape
    omega_s = np.array(
        [[beta[i, j] * math.cos(th - xi[i, j]) for j in range(nx)] for i in range(ny)]
    )
    if sref is None:
        sref = max(max(abs(v) for v in omega_s.ravel()), 0.001)
    if cref is None:
        cref = max(max(abs(v) for v in oc.ravel()), 0.001)
    acc = np.zeros((ny, nx))
    alpha = np.zeros((ny, nx))
    for i in range(ny):
        for j in range(nx):
            ws = min(max(omega_s[i, j] / (2 * sref), -0.5), 0.5)
            wc = min(max(oc[i, j] / (2 * cref), -0.5), 0.5)
            acc[i, j] = 1 + gs * ws + gc * wc
            rel = (math.degrees(xi[i, j]) - theta_deg + 180.0) % 360.0 - 180.0
            if beta[i, j] > 0 and abs(rel) <= 90.0:
                # SnowModel: 0.5 * min(wind_slope * rad2deg, 45) * sin(2 dirdiff), in degrees.
                capped = math.radians(min(math.degrees(ws), 45.0))
                alpha[i, j] = 0.5 * capped * math.sin(2 * (xi[i, j] - th))
    return acc, alpha, sref, cref


# --- test terrain ------------------------------------------------------------------------------


def grid(n_rows, n_cols, res=RES):
    """Eastings X and northings Y (metres) of pixel centres, row 0 = north, centred on 0."""
    x = (np.arange(n_cols) - (n_cols - 1) / 2) * res
    y = -(np.arange(n_rows) - (n_rows - 1) / 2) * res
    return np.meshgrid(x, y)


def gaussian_hill(n=101, height=300.0, sigma=500.0, x0=0.0, y0=0.0):
    X, Y = grid(n, n)
    return height * np.exp(-((X - x0) ** 2 + (Y - y0) ** 2) / (2 * sigma**2))


def bumpy(n_rows=41, n_cols=57, seed=3):
    """Asymmetric terrain: a few hills and hollows of random size and place."""
    rng = np.random.default_rng(seed)
    X, Y = grid(n_rows, n_cols)
    z = np.full(X.shape, 1200.0)
    for _ in range(6):
        x0, y0 = rng.uniform(-700, 700, 2)
        s = rng.uniform(120, 400)
        h = rng.uniform(-150, 250)
        z += h * np.exp(-((X - x0) ** 2 + (Y - y0) ** 2) / (2 * s**2))
    return z


def factors(z, theta, res=RES, eta=500.0, **kw):
    beta, xi = slope_aspect(z, res)
    oc = curvature(z, res, eta)
    return micromet_factors(beta, xi, oc, theta, **kw)


def as_dem(z, res=RES):
    """A north-up DataArray (x increasing, y decreasing, square pixels) in EPSG:2154."""
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr

    ny, nx = z.shape
    x = 700000.0 + res * np.arange(nx)
    y = 6400000.0 - res * np.arange(ny)
    da = xr.DataArray(z.astype(np.float32), dims=("y", "x"), coords={"y": y, "x": x})
    return da.rio.write_crs("EPSG:2154")


def run_engine(engine, da, angles, window=None, batch=7):
    window = engine.coverage(da) if window is None else window
    engine.bind(da, window)
    angles = np.asarray(angles, dtype=np.int64)
    acc, alpha, seen = [], [], []
    for ks, arrs in engine.batches(angles, batch):
        assert set(arrs) == {"acceleration", "alpha"}
        for v in arrs.values():
            assert v.dtype == np.float32 and v.shape == (len(ks), *window.shape)
        seen.extend(ks.tolist())
        acc.append(arrs["acceleration"])
        alpha.append(arrs["alpha"])
    assert seen == angles.tolist()
    return np.concatenate(acc), np.concatenate(alpha)


# --- geometry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gx", "gy", "aspect_deg"),
    [
        (0.1, 0.0, 270.0),  # rises to the east: the slope descends (faces) west
        (-0.1, 0.0, 90.0),  # rises to the west: faces east
        (0.0, 0.1, 180.0),  # rises to the north: faces south
        (0.0, -0.1, 0.0),  # rises to the south: faces north
        (0.1, 0.1, 225.0),  # rises to the north-east: faces south-west
        (-0.1, 0.1, 135.0),  # rises to the north-west: faces south-east
    ],
)
def test_slope_aspect_of_tilted_planes(gx, gy, aspect_deg):
    X, Y = grid(9, 11)
    z = 500.0 + gx * X + gy * Y
    beta, xi = slope_aspect(z, RES)
    np.testing.assert_allclose(beta, math.atan(math.hypot(gx, gy)), rtol=1e-12)
    # Compare azimuths on the circle (0 and 360 are the same direction).
    diff = (np.degrees(xi) - aspect_deg + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(diff, 0.0, atol=1e-9)
    assert np.all((xi >= 0) & (xi < 2 * np.pi))


def test_slope_aspect_matches_loop_transcription():
    z = bumpy(13, 17)
    beta, xi = slope_aspect(z, RES)
    rb, rx = loop_slope_aspect(z, RES)
    np.testing.assert_allclose(beta, rb, rtol=1e-12, atol=1e-15)
    diff = (xi - rx + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(diff[rb > 0], 0.0, atol=1e-10)


def test_curvature_step_rounds_half_up():
    assert curvature_step(100.0, 100.0) == 1
    assert curvature_step(30.0, 500.0) == 17  # 16.67
    assert curvature_step(30.0, 75.0) == 3  # 2.5 rounds up, like Fortran's nint
    assert curvature_step(100.0, 10.0) == 1  # never below one pixel


def test_curvature_by_hand_on_5x5():
    z = np.array(
        [
            [10.0, 12.0, 15.0, 11.0, 9.0],
            [13.0, 20.0, 18.0, 14.0, 8.0],
            [16.0, 22.0, 30.0, 17.0, 7.0],
            [12.0, 19.0, 21.0, 13.0, 6.0],
            [11.0, 14.0, 16.0, 10.0, 5.0],
        ]
    )
    r2 = math.sqrt(2.0)

    def omega(c, w, e, s, n, sw, ne, nw, se, eta):
        return 0.25 * (
            (c - (w + e) / 2) / (2 * eta)
            + (c - (s + n) / 2) / (2 * eta)
            + (c - (sw + ne) / 2) / (2 * r2 * eta)
            + (c - (nw + se) / 2) / (2 * r2 * eta)
        )

    # length scale 100 m with 100 m pixels: inc = 1, eta' = 100.
    oc = curvature(z, 100.0, 100.0)
    # Centre (row 2, col 2): W=22 E=17 S=21 N=18 SW=19 NE=14 NW=20 SE=13.
    assert oc[2, 2] == pytest.approx(omega(30, 22, 17, 21, 18, 19, 14, 20, 13, 100.0), rel=1e-12)
    # Corner (0, 0), clamped: W=z[0,0] E=z[0,1] S=z[1,0] N=z[0,0] SW=z[1,0] NE=z[0,1]
    # NW=z[0,0] SE=z[1,1].
    want = omega(10, 10, 12, 13, 10, 13, 12, 10, 20, 100.0)
    assert oc[0, 0] == pytest.approx(want, rel=1e-12)
    # Edge (4, 3) (south edge): W=z[4,2]=16 E=z[4,4]=5 S=z[4,3]=10 N=z[3,3]=13
    # SW=z[4,2]=16 NE=z[3,4]=6 NW=z[3,2]=21 SE=z[4,4]=5. A wrap-around would use row 0.
    want = omega(10, 16, 5, 10, 13, 16, 6, 21, 5, 100.0)
    assert oc[4, 3] == pytest.approx(want, rel=1e-12)

    # length scale 200 m: inc = 2, eta' = 200.
    oc2 = curvature(z, 100.0, 200.0)
    # Centre: W=z[2,0]=16 E=z[2,4]=7 S=z[4,2]=16 N=z[0,2]=15
    # SW=z[4,0]=11 NE=z[0,4]=9 NW=z[0,0]=10 SE=z[4,4]=5.
    want = omega(30, 16, 7, 16, 15, 11, 9, 10, 5, 200.0)
    assert oc2[2, 2] == pytest.approx(want, rel=1e-12)
    # (0, 1): W=z[0,0]=10 (clamped from col -1) E=z[0,3]=11 S=z[2,1]=22 N=z[0,1]=12 (clamped)
    # SW=z[2,0]=16 NE=z[0,3]=11 NW=z[0,0]=10 SE=z[2,3]=17.
    want = omega(12, 10, 11, 22, 12, 16, 11, 10, 17, 200.0)
    assert oc2[0, 1] == pytest.approx(want, rel=1e-12)
    # (3, 4): W=z[3,2]=21 E=z[3,4]=6 S=z[4,4]=5 N=z[1,4]=8 SW=z[4,2]=16 NE=z[1,4]=8
    # NW=z[1,2]=18 SE=z[4,4]=5.
    want = omega(6, 21, 6, 5, 8, 16, 8, 18, 5, 200.0)
    assert oc2[3, 4] == pytest.approx(want, rel=1e-12)


def test_curvature_matches_loop_transcription_and_sign():
    z = bumpy(15, 12)
    for eta in (30.0, 75.0, 200.0):
        np.testing.assert_allclose(curvature(z, RES, eta), loop_curvature(z, RES, eta), rtol=1e-12)
    hill = gaussian_hill(41)
    assert curvature(hill, RES, 300.0)[20, 20] > 0  # summit: convex
    assert curvature(-hill, RES, 300.0)[20, 20] < 0  # hollow: concave


# --- factors -----------------------------------------------------------------------------------


def test_factors_match_loop_transcription():
    z = bumpy(15, 19)
    beta, xi = slope_aspect(z, RES)
    oc = curvature(z, RES, 120.0)
    thetas = [0, 37, 90, 181, 270, 333]
    acc, alpha, sref, cref = micromet_factors(beta, xi, oc, thetas)
    assert acc.shape == alpha.shape == (len(thetas), *z.shape)
    assert acc.dtype == alpha.dtype == np.float32
    for i, th in enumerate(thetas):
        ra, rl, rs, rc = loop_factors(beta, xi, oc, th)
        assert sref[i] == pytest.approx(rs, rel=1e-12)
        assert cref == pytest.approx(rc, rel=1e-12)
        np.testing.assert_allclose(acc[i], ra, rtol=0, atol=2e-6)
        np.testing.assert_allclose(alpha[i], rl, rtol=0, atol=2e-6)
    # Fixed references, other weights.
    acc, alpha, sref, cref = micromet_factors(
        beta, xi, oc, 123.0, slope_weight=0.3, curvature_weight=0.9,
        slope_reference=0.2, curvature_reference=0.05,
    )  # fmt: skip
    ra, rl, _, _ = loop_factors(beta, xi, oc, 123.0, 0.3, 0.9, sref=0.2, cref=0.05)
    assert sref.tolist() == [0.2] and cref == 0.05
    np.testing.assert_allclose(acc[0], ra, rtol=0, atol=5e-6)
    np.testing.assert_allclose(alpha[0], rl, rtol=0, atol=5e-6)


def test_domain_slope_reference_is_the_maximum_over_all_pixels():
    """The references of many directions equal max |beta cos(theta - xi)| over the pixels."""
    z = gaussian_hill(61) + bumpy(61, 61) + 0.002 * grid(61, 61)[0] ** 2 / RES
    beta, xi = slope_aspect(z, RES)
    oc = curvature(z, RES)
    thetas = np.arange(0.0, 360.0, 7.5)
    _, _, sref, _ = micromet_factors(beta, xi, oc, thetas)
    for th, s in zip(thetas, sref, strict=True):
        direct = np.max(np.abs(beta * np.cos(np.radians(th) - xi)))
        assert s == pytest.approx(direct, rel=1e-12)
    # A plane (degenerate set of slope vectors): beta |cos(theta - xi)| or the 0.001 floor.
    X, Y = grid(31, 31)
    beta, xi = slope_aspect(0.2 * X, RES)  # faces west
    _, _, sref, _ = micromet_factors(beta, xi, np.zeros_like(beta), [270.0, 0.0, 300.0])
    b = math.atan(0.2)
    np.testing.assert_allclose(sref, [b, 0.001, b * math.cos(math.radians(30))], rtol=1e-9)


def test_flat_terrain_is_exactly_neutral():
    z = np.full((21, 25), 812.5)
    acc, alpha, sref, cref = factors(z, np.arange(0, 360, 15))
    assert np.all(acc == 1.0) and np.all(alpha == 0.0)
    assert np.all(sref == 0.001) and cref == 0.001


def test_flat_pixels_of_rough_terrain_are_not_turned():
    X, Y = grid(41, 41)
    z = gaussian_hill(41, sigma=200.0)
    z[np.hypot(X, Y) > 420] = 0.0  # a wide flat plain around the hill
    beta, xi = slope_aspect(z, RES)
    flat = beta == 0
    assert flat.sum() > 100
    acc, alpha, _, _ = factors(z, np.arange(0, 360, 10))
    assert np.all(alpha[:, flat] == 0.0)


def test_theta_and_theta_plus_360_are_identical():
    z = bumpy()
    a1, l1, s1, _ = factors(z, [10.0, 200.0])
    a2, l2, s2, _ = factors(z, [370.0, -160.0])
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(s1, s2)


@pytest.mark.parametrize("fixed", [True, False])
def test_rotating_the_dem_shifts_the_direction(fixed):
    """np.rot90 turns the map counter-clockwise: a slope facing north (xi = 0) then faces
    west (xi = 270), every azimuth decreases by 90. The wind from theta + 90 on the original
    DEM meets the terrain as the wind from theta meets the rotated DEM:
    table(rot90(z), theta) = rot90(table(z, theta + 90))."""
    z = bumpy(41, 57)  # not square: an axis mix-up would fail on the shapes
    zr = np.rot90(z)
    kw = {"slope_reference": 0.3, "curvature_reference": 0.04} if fixed else {}
    thetas = np.array([0.0, 45.0, 100.0, 270.0])
    ar, lr, sr, cr = factors(zr, thetas, **kw)
    ao, lo, so, co = factors(z, thetas + 90.0, **kw)
    np.testing.assert_allclose(ar, np.rot90(ao, axes=(1, 2)), rtol=0, atol=2e-6)
    np.testing.assert_allclose(lr, np.rot90(lo, axes=(1, 2)), rtol=0, atol=2e-6)
    np.testing.assert_allclose(sr, so, rtol=1e-12)
    assert cr == pytest.approx(co, rel=1e-12)
    # The other shift is wrong (guards against a test that cannot fail).
    aw, _, _, _ = factors(z, thetas - 90.0, **kw)
    assert not np.allclose(ar, np.rot90(aw, axes=(1, 2)), atol=1e-3)


def test_gaussian_hill_wind_from_west():
    z = gaussian_hill(101)  # 300 m high, sigma 500 m, 30 m pixels, summit at (50, 50)
    acc, alpha, _, _ = factors(z, 270.0)
    acc, alpha = acc[0], alpha[0]
    c, d = 50, 17  # d pixels = 510 m, about one sigma
    assert 1.3 <= acc[c, c - d] <= 1.4  # windward (west) flank
    assert 0.7 <= acc[c, c + d] <= 0.8  # lee (east) flank
    assert acc[c, c] > 1.0  # summit
    # North-west flank (row above = north): turned left (north, around the hill), alpha > 0;
    # south-west flank: turned right, alpha < 0; symmetric.
    assert alpha[c - 12, c - 12] > 0.05
    assert alpha[c + 12, c - 12] == pytest.approx(-alpha[c - 12, c - 12], rel=1e-6)
    # The west flank on the axis faces the wind squarely: not turned.
    assert abs(alpha[c, c - d]) < 1e-6
    # Lee side (every pixel east of the summit column): not turned.
    assert np.all(alpha[:, c + 1 :] == 0.0)
    assert np.all(np.abs(alpha) <= 0.25)


def test_valley_from_240():
    """N-S valley along x = 0; the wind from WSW blows up the EAST wall (which faces west)."""
    X, _ = grid(61, 101)
    z = 1500.0 + 400.0 * (1.0 - np.exp(-(X**2) / (2 * 500.0**2)))
    acc, alpha, _, _ = factors(z, 240.0)
    acc = acc[0]
    row, floor, d = 30, 50, 17
    assert acc[row, floor] < 1.0  # concave floor
    assert acc[row, floor + d] > 1.0  # east wall: windward
    assert acc[row, floor - d] < 1.0  # west wall: lee
    assert alpha[0, row, floor + d] != 0.0 and alpha[0, row, floor - d] == 0.0


def test_fixed_references_make_values_local():
    X, Y = grid(81, 121)
    near = 250.0 * np.exp(-((X + 600) ** 2 + Y**2) / (2 * 300.0**2))
    far = 900.0 * np.exp(-((X - 1500) ** 2 + Y**2) / (2 * 200.0**2))  # 2.1 km away
    px = (30, 30)  # north-west flank of the near hill, 420 m from its summit
    fixed = {"slope_reference": 0.5, "curvature_reference": 0.1}
    a1, l1, s1, c1 = factors(near, 250.0, **fixed)
    a2, l2, s2, c2 = factors(near + far, 250.0, **fixed)
    assert a1[0][px] == a2[0][px] and l1[0][px] == l2[0][px]
    assert s1.tolist() == s2.tolist() == [0.5] and c1 == c2 == 0.1
    # Domain references: the steep distant hill raises both references, the pixel changes.
    a1, l1, s1, c1 = factors(near, 250.0)
    a2, l2, s2, c2 = factors(near + far, 250.0)
    assert s2[0] > s1[0] and c2 > c1
    assert abs(a2[0][px] - a1[0][px]) > 0.01 and abs(l2[0][px] - l1[0][px]) > 1e-3


# --- the engine --------------------------------------------------------------------------------


def test_engine_matches_the_kernels_and_reports_references():
    z = bumpy(31, 45)
    da = as_dem(z)
    angles = np.arange(0, 360, 20)
    engine = MicroMetEngine(length_scale=150.0)
    attrs = engine.attrs()
    assert attrs["micromet_curvature_reference"] == "domain maximum"  # not bound yet
    acc, alpha = run_engine(engine, da, angles)
    z32 = da.values.astype(np.float64)
    # The engine's references leave out the edge band (inc = 5 px here).
    inside = ~edge_band(z.shape, 5)
    ra, rl, sref, cref = factors(z32, angles, eta=150.0, reference_mask=inside)
    np.testing.assert_array_equal(acc, ra)
    np.testing.assert_array_equal(alpha, rl)
    np.testing.assert_array_equal(engine.slope_references(angles), sref)
    attrs = engine.attrs()
    assert attrs["engine"] == "micromet"
    assert attrs["engine_title"] == MicroMetEngine.title
    assert "doi:10.1175/JHM486.1" in attrs["engine_citation"]
    assert attrs["micromet_length_scale"] == 150.0
    assert attrs["micromet_slope_weight"] == 0.58
    assert attrs["micromet_curvature_weight"] == 0.42
    assert attrs["micromet_slope_reference"] == "domain maximum per direction"
    assert attrs["micromet_curvature_reference"] == cref
    assert attrs["micromet_reference_mode"] == "domain"
    assert set(MicroMetEngine.resume_keys) <= set(attrs)
    for value in attrs.values():
        assert isinstance(value, (str, float))

    engine = MicroMetEngine(slope_reference=0.4, curvature_reference=0.07)
    run_engine(engine, da, [5])
    attrs = engine.attrs()
    assert attrs["micromet_slope_reference"] == 0.4
    assert attrs["micromet_curvature_reference"] == 0.07
    assert attrs["micromet_reference_mode"] == "fixed"
    np.testing.assert_array_equal(engine.slope_references([5, 6]), [0.4, 0.4])


@pytest.mark.parametrize("fixed", [True, False])
def test_engine_target_window_equals_full_table(fixed):
    z = bumpy(41, 57)
    da = as_dem(z)
    kw = {"slope_reference": 0.3, "curvature_reference": 0.05} if fixed else {}
    angles = np.arange(0, 360, 30)
    engine = MicroMetEngine(**kw)
    full_acc, full_alpha = run_engine(engine, da, angles)
    x, y = da.x.values, da.y.values
    bounds = (float(x[10]), float(y[30]), float(x[25]), float(y[5]))
    window = engine.target_window(da, bounds)
    assert window.shape == (26, 16)
    acc, alpha = run_engine(engine, da, angles, window=window, batch=5)
    np.testing.assert_array_equal(acc, full_acc[:, window.rows, window.cols])
    np.testing.assert_array_equal(alpha, full_alpha[:, window.rows, window.cols])


def test_engine_on_flat_dem():
    engine = MicroMetEngine()
    acc, alpha = run_engine(engine, as_dem(np.full((15, 21), 400.0)), np.arange(360), batch=64)
    assert np.all(acc == 1.0) and np.all(alpha == 0.0)


def test_engine_south_up_dem_gives_the_north_up_values():
    """A DEM whose rows run north is handled as the same terrain (values in its own order)."""
    z = bumpy(21, 27)
    da = as_dem(z)
    flipped = da.isel(y=slice(None, None, -1))
    a1, l1 = run_engine(MicroMetEngine(), da, [30, 200])
    a2, l2 = run_engine(MicroMetEngine(), flipped, [30, 200])
    np.testing.assert_array_equal(a2, a1[:, ::-1])
    np.testing.assert_array_equal(l2, l1[:, ::-1])


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"length_scale": 0.0}, "--length-scale"),
        ({"length_scale": -100.0}, "--length-scale"),
        ({"length_scale": float("nan")}, "--length-scale"),
        ({"length_scale": float("inf")}, "--length-scale"),
        ({"length_scale": "wide"}, "--length-scale"),
        ({"slope_weight": -0.1}, "--slope-weight"),
        ({"slope_weight": 1.5}, "--slope-weight"),
        ({"slope_weight": float("nan")}, "--slope-weight"),
        ({"curvature_weight": 1.01}, "--curvature-weight"),
        ({"curvature_weight": -1.0}, "--curvature-weight"),
        ({"slope_reference": 0.0}, "--slope-reference"),
        ({"slope_reference": -0.3}, "--slope-reference"),
        ({"slope_reference": float("nan")}, "--slope-reference"),
        ({"curvature_reference": 0.0}, "--curvature-reference"),
        ({"curvature_reference": -2.0}, "--curvature-reference"),
        ({"curvature_reference": float("inf")}, "--curvature-reference"),
    ],
)
def test_invalid_options_name_the_option(kwargs, option):
    # From Python the message names the parameter (name=value) ...
    with pytest.raises(OptionError) as info:
        MicroMetEngine(**kwargs)
    message = str(info.value)
    name = next(iter(kwargs))
    assert message.startswith(name + "=")
    assert "\n" not in message and "expected" in message
    # ... and on the command line the option as typed.
    with cli_spelling(), pytest.raises(OptionError) as info:
        MicroMetEngine(**kwargs)
    assert str(info.value).startswith(option + " ")


def test_valid_edge_options_are_accepted():
    engine = MicroMetEngine(length_scale=1.0, slope_weight=0.0, curvature_weight=1.0)
    assert engine.attrs()["micromet_slope_weight"] == 0.0


# --- issue 16: clipping of the scaled terms, the edge band -------------------------------------


def test_fixed_references_on_a_steep_hill_keep_speeds_positive():
    """Sref = 0.05, Cref = 0.02 on a 600 m hill (slopes up to 0.74 rad): before the clipping
    the acceleration reached -2.5..7.4 and |alpha| 2.8 rad. Now Ws, Wc are clipped to +-0.5."""
    z = gaussian_hill(101, height=600.0, sigma=400.0)
    thetas = np.arange(0, 360, 15)
    gs, gc = 0.58, 0.42
    acc, alpha, _, _ = factors(z, thetas, slope_reference=0.05, curvature_reference=0.02)
    assert acc.min() >= 1 - (gs + gc) / 2 - 1e-6 and acc.max() <= 1 + (gs + gc) / 2 + 1e-6
    assert acc.min() == pytest.approx(0.5, abs=1e-6)  # the limits are reached: clipping acts
    assert acc.max() == pytest.approx(1.5, abs=1e-6)
    assert np.abs(alpha).max() <= 0.25 + 1e-7  # 0.5 * 0.5 rad
    # Pixel by pixel against the loop transcription, for a few directions.
    beta, xi = slope_aspect(z, RES)
    oc = curvature(z, RES, 500.0)
    for i in (0, 5, 18):
        ra, rl, _, _ = loop_factors(beta, xi, oc, float(thetas[i]), sref=0.05, cref=0.02)
        np.testing.assert_allclose(acc[i], ra, rtol=0, atol=2e-6)
        np.testing.assert_allclose(alpha[i], rl, rtol=0, atol=2e-6)
    # Other weights: the bounds follow 1 +- (gs + gc) / 2.
    acc, _, _, _ = factors(
        z, thetas, slope_weight=0.3, curvature_weight=0.2, slope_reference=0.05,
        curvature_reference=0.02,
    )  # fmt: skip
    assert acc.min() == pytest.approx(0.75, abs=1e-6) and acc.max() == pytest.approx(1.25, abs=1e-6)


def test_domain_references_leave_values_unclipped():
    """With domain references |Ws|, |Wc| <= 0.5 already: the loop without clipping agrees."""
    z = bumpy(21, 27)
    beta, xi = slope_aspect(z, RES)
    oc = curvature(z, RES, 120.0)
    acc, alpha, sref, cref = micromet_factors(beta, xi, oc, [33.0])
    th = math.radians(33.0)
    ws = beta * np.cos(th - xi) / (2 * sref[0])
    wc = oc / (2 * cref)
    assert np.abs(ws).max() <= 0.5 + 1e-12 and np.abs(wc).max() <= 0.5 + 1e-12
    np.testing.assert_allclose(acc[0], 1 + 0.58 * ws + 0.42 * wc, rtol=0, atol=2e-6)


def test_edge_band_by_hand():
    band = edge_band((6, 7), 2)
    expected = np.ones((6, 7), bool)
    expected[2:4, 2:5] = False
    np.testing.assert_array_equal(band, expected)
    assert edge_band((3, 3), 2).all()


def test_tilted_plane_curvature_artefact_is_in_the_band_only():
    """A plane tilted at 0.3: the clamped stencil gives curvature +-0.045 within inc = 17 px of
    the west and east edges, none inside; the flag covers exactly that band and the interior
    acceleration for a westerly is uniform."""
    X, _ = grid(61, 81)
    z = 0.3 * X
    oc = curvature(z, RES, 500.0)
    inc = curvature_step(RES, 500.0)
    assert inc == 17
    band = edge_band(z.shape, inc)
    assert np.abs(oc[~band]).max() < 1e-12
    assert np.abs(oc[:, :inc]).max() == pytest.approx(0.045, abs=2e-3)
    engine = MicroMetEngine()
    da = as_dem(z)
    acc, _ = run_engine(engine, da, [270])
    flag = engine.static_variables()["edge_influence"]
    assert flag.dtype == np.uint8 and flag.dims == ("y", "x")
    np.testing.assert_array_equal(flag.values, band.astype(np.uint8))
    assert "clamped" in flag.attrs["comment"]
    inside = acc[0][~band]
    assert inside.max() - inside.min() < 1e-6
    # Interior: Ws = 0.5 (the plane is its own slope reference), Wc = 0: 1 + 0.58/2.
    assert inside[0] == pytest.approx(1.29, abs=1e-6)
    # The plane has no curvature outside the band: Cref is the 0.001 floor, not 0.045.
    assert engine.attrs()["micromet_curvature_reference"] == pytest.approx(0.001)


def test_ridge_curvature_reference_ignores_the_edge_band():
    """A 200 m ridge on a 0.5 tilt: the largest |Omega_c| (0.166) is the edge artefact of the
    tilt; the reference must be the ridge's own (0.090: the curvature of the ridge alone, the
    tilt adds none away from the edges), as computed away from the band."""
    X, Y = grid(81, 101)
    ridge_only = 200.0 * np.exp(-(X**2) / (2 * 300.0**2))
    z = 0.5 * Y + ridge_only
    oc = curvature(z, RES, 500.0)
    band = edge_band(z.shape, curvature_step(RES, 500.0))
    ridge = float(np.abs(curvature(ridge_only, RES, 500.0)).max())
    assert np.abs(oc).max() > 1.5 * ridge  # the artefact, on the band
    assert float(np.abs(oc[~band]).max()) == pytest.approx(ridge, rel=1e-9)
    engine = MicroMetEngine()
    run_engine(engine, as_dem(z), [0])
    cref = engine.attrs()["micromet_curvature_reference"]
    # float32 DEM in the engine: compare loosely.
    assert cref == pytest.approx(ridge, rel=1e-4)
    # The slope reference is also taken away from the band.
    beta, xi = slope_aspect(np.asarray(as_dem(z).values, np.float64), RES)
    direct = np.max(np.abs(beta * np.cos(-xi))[~band])
    assert engine.slope_references([0])[0] == pytest.approx(direct, rel=1e-9)


def test_small_dem_without_interior_uses_every_pixel():
    z = bumpy(11, 13)
    engine = MicroMetEngine()  # inc = 17 > the DEM: every pixel is in the band
    run_engine(engine, as_dem(z), [90])
    assert engine.static_variables()["edge_influence"].values.all()
    oc = curvature(as_dem(z).values.astype(np.float64), RES, 500.0)
    expected = max(float(np.abs(oc).max()), 0.001)
    assert engine.attrs()["micromet_curvature_reference"] == pytest.approx(expected, rel=1e-12)


def test_micromet_table_carries_edge_influence(tmp_path):
    """The table writer stores the engine's edge band (CorrectionTable.edge_influence)."""
    from devine_onnx.tables.build import compute_corrections

    z = bumpy(41, 57)
    ds = compute_corrections(as_dem(z), engine="micromet", angles=[0, 90], quiet=True)
    assert "edge_influence" in ds
    band = edge_band(z.shape, curvature_step(RES, 500.0))
    np.testing.assert_array_equal(np.asarray(ds["edge_influence"].values) == 1, band)
