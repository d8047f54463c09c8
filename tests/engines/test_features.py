"""Terrain features and the feature-network engine (devine-torch models).

References: a plain-loop transcription of the equations of docs/method.md §11 (math module only),
xarray's coarsen + rolling for the relative DEM (the form the specification gives), a PyTorch
float64 transcription on a real DEM (matplotlib's Jacksboro sample, used as a projected grid
with an assumed 90 m cell), and direct PyTorch runs of the same network. Models have synthetic
weights: nothing here is physical.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr

from devine_onnx.engines import engine_for_model
from devine_onnx.engines.features import (
    NETWORK_BYTES_PER_PIXEL,
    FeatureNetwork,
    FeatureNetworkEngine,
    FeatureStepKernel,
    ResolutionWarning,
    alpha_from_uv,
    images_per_pass,
    pipeline,
)
from devine_onnx.engines.terrain_features import (
    NetworkInput,
    block_size,
    coarse_elevation,
    direction_features,
    normalise,
    terrain_geometry,
)
from devine_onnx.errors import DEMError, ModelError, OptionError
from devine_onnx.feature_maps import compute_features
from tests.feature_models import (
    constant_model,
    convert_folder,
    norm_of,
    torch_module,
    torch_net,
    torch_run,
)

JACKSBORO_CELL = 90.0  # assumed: the sample is a 3 arc-second grid, used here as projected


# --------------------------------------------------------------------------- fixtures
def dem_array(z, cell=30.0, x0=9.0e5, y0=6.46e6):
    import rioxarray  # noqa: F401

    ny, nx = z.shape
    da = xr.DataArray(
        np.asarray(z, dtype=np.float32),
        dims=("y", "x"),
        coords={"y": y0 - cell * np.arange(ny), "x": x0 + cell * np.arange(nx)},
        name="elevation",
    )
    return da.rio.write_crs("EPSG:2154")


@pytest.fixture(scope="module")
def jacksboro():
    from matplotlib import cbook

    with cbook.get_sample_data("jacksboro_fault_dem.npz") as data:
        return np.asarray(data["elevation"], dtype=np.float64)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return convert_folder(tmp_path_factory.mktemp("features"), seed=5)


def hills(ny=41, nx=53, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx]
    z = 800.0 + 3.0 * xx - 2.0 * yy
    for _ in range(5):
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        z += rng.uniform(50, 300) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(20, 90))
    z[10:14, 30:34] = 900.0  # a flat plateau: aspect falls back to 180
    return z


# --------------------------------------------------------------------------- references
def loop_geometry(z, cell):
    """q and azi (degrees) of the interior, one cell at a time (docs/method.md §11)."""
    ny, nx = z.shape
    q = np.empty((ny - 4, nx - 4))
    azi = np.empty_like(q)
    for i in range(2, ny - 2):
        for j in range(2, nx - 2):
            dn = (z[i - 1, j] - z[i, j]) / cell
            de = (z[i, j + 1] - z[i, j]) / cell
            sx = 0.5 * cell * (z[i, j] - z[i, j + 1] + z[i - 1, j] - z[i - 1, j + 1]) / cell**2
            sy = 0.5 * cell * (z[i, j] + z[i, j + 1] - z[i - 1, j] - z[i - 1, j + 1]) / cell**2
            n = math.sqrt(sx * sx + sy * sy + 1.0)
            slope = math.acos(1.0 / n)
            if sx > 0:
                a = math.pi / 2 + math.atan(-(sy / n) / (sx / n))
            elif sx < 0:
                a = 3 * math.pi / 2 + math.atan(-(sy / n) / (sx / n))
            elif sy < 0:
                a = math.pi
            else:
                a = 0.0
            if round(math.degrees(slope)) == 0:  # Python rounds half to even, like numpy
                a = math.pi
            q[i - 2, j - 2] = de * de + dn * dn
            azi[i - 2, j - 2] = math.degrees(a)
    return q, azi


def loop_reldem(zi, numb):
    """z - zc with block means and the centred moving mean written as loops."""
    ny, nx = zi.shape
    blocks = {}
    for bi in range(0, ny, numb):
        for bj in range(0, nx, numb):
            cells = [
                zi[i, j]
                for i in range(bi, min(bi + numb, ny))
                for j in range(bj, min(bj + numb, nx))
            ]
            blocks[bi // numb, bj // numb] = sum(cells) / len(cells)
    expanded = np.array([[blocks[i // numb, j // numb] for j in range(nx)] for i in range(ny)])
    zc = np.empty_like(zi)
    h = numb // 2
    for i in range(ny):
        for j in range(nx):
            win = expanded[
                max(0, i - h) : min(ny, i - h + numb), max(0, j - h) : min(nx, j - h + numb)
            ]
            zc[i, j] = win.mean()
    return zi - zc


def loop_direction(q, azi, theta):
    defl = np.empty_like(q)
    ydsc = np.empty_like(q)
    for idx in np.ndindex(q.shape):
        a, qq = azi[idx], q[idx]
        d = theta - a if a <= theta else theta - a + 360.0
        if d >= 180.0:
            d = 360.0 - d
        dpsi = (90.0 - d) * math.pi / 180.0
        ydsc[idx] = (-0.087122 - 0.4788 * dpsi + 2.068 * math.erf(0.6298 * dpsi)) * (
            -0.046577 + math.sqrt(qq / 2.0) ** 0.72451
        )
        sigma = math.atan(math.sqrt(qq)) * math.cos(math.radians(theta - a))
        defl[idx] = -0.5 * abs(sigma) * math.sin(2.0 * math.radians(a - theta))
    return defl, ydsc


def xarray_reldem(zi, numb):
    """The specification's reference: coarsen (pad) mean, expand, rolling centred mean."""
    da = xr.DataArray(zi, dims=("y", "x"))
    coarse = da.coarsen(y=numb, x=numb, boundary="pad").mean().values
    expanded = np.repeat(np.repeat(coarse, numb, 0), numb, 1)[: zi.shape[0], : zi.shape[1]]
    rolled = xr.DataArray(expanded, dims=("y", "x")).rolling(
        y=numb, x=numb, center=True, min_periods=1
    )
    return zi - rolled.mean().values


def torch_features(z, cell, theta, numb):
    """Float64 PyTorch transcription of the direction-dependent features (not the kernels)."""
    torch = torch_module()
    t = torch.from_numpy(np.asarray(z, dtype=np.float64))
    c, n_, e, ne = t[2:-2, 2:-2], t[1:-3, 2:-2], t[2:-2, 3:-1], t[1:-3, 3:-1]
    q = ((e - c) / cell) ** 2 + ((n_ - c) / cell) ** 2
    sx = 0.5 * cell * (c - e + n_ - ne) / cell**2
    sy = 0.5 * cell * (c + e - n_ - ne) / cell**2
    n = torch.sqrt(sx**2 + sy**2 + 1)
    slope = torch.acos(1 / n)
    r = torch.atan(-(sy / n) / (sx / n))
    pi = torch.tensor(math.pi, dtype=torch.float64)  # a bare Python scalar in where is float32
    azi = torch.where(
        sx > 0,
        pi / 2 + r,
        torch.where(sx < 0, 1.5 * pi + r, torch.where(sy < 0, pi, 0.0 * pi)),
    )
    # explicit constants: torch.deg2rad/rad2deg use a float32 factor even on float64
    deg = 180.0 / math.pi
    azi = torch.where(torch.round(slope * deg) == 0, pi, azi) * deg
    d = torch.where(azi <= theta, theta - azi, theta - azi + 360)
    d = torch.where(d >= 180, 360 - d, d)
    dpsi = (90 - d) / deg
    ydsc = (-0.087122 - 0.4788 * dpsi + 2.068 * torch.special.erf(0.6298 * dpsi)) * (
        -0.046577 + torch.sqrt(q / 2) ** 0.72451
    )
    sigma = torch.atan(torch.sqrt(q)) * torch.cos((theta - azi) / deg)
    defl = -0.5 * sigma * torch.sign(sigma) * torch.sin(2 * (azi - theta) / deg)
    return defl.numpy(), ydsc.numpy(), q.numpy(), azi.numpy()


# --------------------------------------------------------------------------- kernels
def test_block_size():
    assert block_size(1000, 50) == 20
    assert block_size(1000, 30) == 33  # floor, as devine-torch's //
    assert block_size(1000, 25.0000001) == 40
    with pytest.raises(ValueError, match="smaller than"):
        block_size(20, 30)


@pytest.mark.parametrize("theta", [0.0, 37.0, 180.0, 271.5])
def test_features_equal_loop_transcription(theta):
    z = hills()
    cell = 25.0
    geom = terrain_geometry(z, cell, coarse_cell=150.0)
    q, azi = loop_geometry(z, cell)
    np.testing.assert_allclose(geom.q, q, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(geom.azi, azi, rtol=0, atol=1e-9)
    assert np.any(geom.azi == 180.0) and geom.numb == 6
    np.testing.assert_allclose(geom.reldem, loop_reldem(z[2:-2, 2:-2], 6), atol=1e-9)
    defl, ydsc = direction_features(geom, theta)
    ref_defl, ref_ydsc = loop_direction(q, azi, theta)
    np.testing.assert_allclose(defl, ref_defl, atol=1e-12)
    np.testing.assert_allclose(ydsc, ref_ydsc, atol=1e-12)


def test_dpsi_signs_on_a_plane():
    """A plane descending to the east (aspect 90): a wind FROM the east faces the slope."""
    yy, xx = np.mgrid[0:20, 0:20]
    z = 1000.0 - 10.0 * xx  # 1 m per cell of 10 m: slope ~5.7 deg
    geom = terrain_geometry(z, 10.0)
    np.testing.assert_allclose(geom.azi, 90.0)
    # windward (theta = aspect): dpsi = +pi/2; lee: -pi/2; across: deflLis = 0, ydsc sign
    defl_w, ydsc_w = direction_features(geom, 90.0)
    defl_l, ydsc_l = direction_features(geom, 270.0)
    assert np.all(ydsc_w > 0) and np.all(ydsc_l < 0)
    np.testing.assert_allclose(defl_w, 0.0, atol=1e-12)
    defl_45, _ = direction_features(geom, 45.0)  # sin(2 (90 - 45)) = 1: deflLis < 0
    assert np.all(defl_45 < 0)


@pytest.mark.parametrize("numb", [1, 4, 11, 50])
def test_reldem_equals_xarray_reference(jacksboro, numb):
    zi = jacksboro[2:-2, 2:-2]
    got = zi - coarse_elevation(zi, numb)
    np.testing.assert_allclose(got, xarray_reldem(zi, numb), atol=1e-9)


def test_jacksboro_features_equal_torch_and_loops(jacksboro):
    geom = terrain_geometry(jacksboro, JACKSBORO_CELL)
    assert geom.numb == 11
    for theta in (0.0, 123.0, 270.0):
        defl, ydsc = direction_features(geom, theta)
        t_defl, t_ydsc, t_q, t_azi = torch_features(jacksboro, JACKSBORO_CELL, theta, geom.numb)
        np.testing.assert_allclose(geom.q, t_q, rtol=1e-12)
        np.testing.assert_allclose(geom.azi, t_azi, atol=1e-9)
        np.testing.assert_allclose(defl, t_defl, atol=1e-12)
        np.testing.assert_allclose(ydsc, t_ydsc, atol=1e-12)
    # The loop transcription on a corner of the real DEM (kept small: pure Python).
    crop = jacksboro[100:150, 200:260]
    q, azi = loop_geometry(crop, JACKSBORO_CELL)
    sub = terrain_geometry(crop, JACKSBORO_CELL)
    np.testing.assert_allclose(sub.azi, azi, atol=1e-9)
    ref = loop_direction(q, azi, 200.0)
    for got, want in zip(direction_features(sub, 200.0), ref, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_direction_field_broadcasts():
    geom = terrain_geometry(hills(), 30.0)
    field = np.stack([np.full(geom.shape, 10.0), np.full(geom.shape, 250.0)])
    d2, y2 = direction_features(geom, field)
    d0, y0 = direction_features(geom, 10.0)
    d1, y1 = direction_features(geom, 250.0)
    np.testing.assert_array_equal(d2, np.stack([d0, d1]))
    np.testing.assert_array_equal(y2, np.stack([y0, y1]))
    x = normalise(d2, geom.reldem, y2, [0, 1, 0], [2, 4, 8])
    assert x.shape == (2, 3) + geom.shape and x.dtype == np.float32
    np.testing.assert_allclose(x[1, 1], (geom.reldem - 1) / 4, rtol=1e-6)


def test_directions_taken_modulo_360():
    """-100 deg is 260 deg and 460 is 100 (issue 16 #6): ydsc used to differ."""
    geom = terrain_geometry(hills(), 30.0)
    for a, b in ((-100.0, 260.0), (460.0, 100.0), (360.0, 0.0), (-720.0, 0.0)):
        d_a, y_a = direction_features(geom, a)
        d_b, y_b = direction_features(geom, b)
        np.testing.assert_allclose(y_a, y_b, rtol=0, atol=1e-12)
        np.testing.assert_allclose(d_a, d_b, rtol=0, atol=1e-12)
    # the loop transcription of the equations at 260 is the reference for -100
    q, azi = loop_geometry(hills(), 30.0)
    _, y_ref = loop_direction(q, azi, 260.0)
    np.testing.assert_allclose(direction_features(geom, -100.0)[1], y_ref, atol=1e-12)


def reference_input(geom, theta, mean, std):
    """The transcription's network input: direction_features + normalise (float64 -> f32)."""
    defl, ydsc = direction_features(geom, theta)
    return normalise(defl, geom.reldem, ydsc, mean, std)


def test_network_input_equals_transcription(jacksboro):
    """The fast input (angle addition, atan2) equals the equations within float32 rounding."""
    geom = terrain_geometry(jacksboro, JACKSBORO_CELL)
    mean, std = [0.01, 5.0, -0.03], [0.1, 120.0, 0.27]
    fast = NetworkInput(geom, mean, std)
    angles = np.array([0.0, 0.5, 45.0, 90.0, 179.0, 180.0, 271.5, 359.9, -100.0, 725.0])
    got = fast.from_angles(angles)
    ref = reference_input(geom, angles.reshape(-1, 1, 1), mean, std)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_array_equal(got[:, 1], ref[:, 1])  # reldem: the same float64 formula
    np.testing.assert_allclose(got, ref, rtol=2e-7, atol=1e-7)
    assert np.mean(got == ref) > 0.9999  # float64 differences of 1e-15 rarely flip a rounding
    # flat cells (aspect 180 by convention) and a plane are covered too
    plane = terrain_geometry(hills(), 30.0)
    np.testing.assert_allclose(
        NetworkInput(plane, mean, std).from_angles([10.0, 200.0]),
        reference_input(plane, np.array([10.0, 200.0]).reshape(-1, 1, 1), mean, std),
        rtol=2e-7,
        atol=1e-7,
    )


def test_network_input_from_components():
    """Direction fields from (u, v): theta = FROM direction; calm and NaN pixels take the
    circular mean direction of the step (270 when the step has none)."""
    geom = terrain_geometry(hills(), 30.0)
    mean, std = [0.0, 0.0, -0.03], [0.1, 120.0, 0.27]
    rng = np.random.default_rng(4)
    theta = rng.uniform(0, 360, (3,) + geom.shape)
    speed = rng.uniform(0.5, 9.0, theta.shape)
    u = (-speed * np.sin(np.radians(theta))).astype(np.float32)
    v = (-speed * np.cos(np.radians(theta))).astype(np.float32)
    u[0, :4, :6] = np.nan
    v[0, :4, :6] = np.nan
    u[1, 7, 7] = v[1, 7, 7] = 0.0
    u[2] = np.nan  # a step without any wind
    got = NetworkInput(geom, mean, std).from_components(u, v)
    # reference: the direction in float64 from the same float32 components, filled by hand
    th = np.mod(np.degrees(np.arctan2(-u.astype(np.float64), -v.astype(np.float64))), 360.0)
    defined = np.hypot(u.astype(np.float64), v.astype(np.float64)) > 0
    for k in range(3):
        if defined[k].any():
            r = np.radians(th[k][defined[k]])
            fill = np.degrees(np.arctan2(np.sin(r).sum(), np.cos(r).sum()))
        else:
            fill = 270.0
        th[k][~defined[k]] = fill
    ref = reference_input(geom, th, mean, std)
    np.testing.assert_allclose(got, ref, rtol=2e-7, atol=1e-7)
    np.testing.assert_array_equal(got[2], reference_input(geom, 270.0, mean, std)[0])


def test_images_per_pass():
    px = 320 * 360
    assert images_per_pass((320, 360), 4 * px * NETWORK_BYTES_PER_PIXEL) == 4
    assert images_per_pass((320, 360), 1) == 1  # at least one
    assert images_per_pass((320, 360), None, max_pixels=3 * px) == 3
    # a tiled domain: the memory of a pass is that of its tiles
    assert images_per_pass((4000, 4000), 2 * 1000 * NETWORK_BYTES_PER_PIXEL, max_pixels=1000) == 2


def test_pipeline_order_and_overlap():
    import threading
    import time

    seen = []

    def network(x):
        seen.append(threading.current_thread().name)
        time.sleep(0.01)
        return x * 10

    items = list(range(5))
    got = list(pipeline(network, lambda i: np.array([i]), items))
    assert [i for i, _ in got] == items
    assert [int(out[0]) for _, out in got] == [0, 10, 20, 30, 40]
    assert all(name.startswith("devine-network") for name in seen)
    assert list(pipeline(network, lambda i: np.array([i]), [])) == []
    # a consumer that stops early leaves no pass running
    gen = pipeline(network, lambda i: np.array([i]), items)
    next(gen)
    gen.close()
    with pytest.raises(ZeroDivisionError):
        list(pipeline(network, lambda i: np.array([1 / (i - 2)]), items))


def test_alpha_from_uv_convention():
    # FROM 270 (blowing east); output blowing north = turned left by 90 deg
    assert alpha_from_uv(0.0, 1.0, 270.0) == pytest.approx(math.pi / 2)
    assert alpha_from_uv(0.0, -1.0, 270.0) == pytest.approx(-math.pi / 2)
    assert alpha_from_uv(1.0, 0.0, 270.0) == pytest.approx(0.0)
    assert abs(alpha_from_uv(-1.0, 0.0, 270.0)) == pytest.approx(math.pi)


# --------------------------------------------------------------------------- sign conventions
@pytest.mark.parametrize(
    ("theta", "uvw", "acc", "alpha", "vertical"),
    [
        (270, (3.0, 0.0, 0.0), 1.0, 0.0, 0.0),  # westerly kept
        (270, (0.0, 3.0, 1.5), 1.0, math.pi / 2, 0.5),  # turned to blow north: left
        (0, (3.0, 0.0, -0.3), 1.0, math.pi / 2, -0.1),  # northerly turned to blow east: left
        (90, (0.0, -1.5, 0.0), 0.5, math.pi / 2, 0.0),  # easterly turned to blow south: left
        (180, (3.0, 0.0, 0.0), 1.0, -math.pi / 2, 0.0),  # southerly turned to blow east: right
        (45, (-6.0 / math.sqrt(2), -6.0 / math.sqrt(2), 3.0), 2.0, 0.0, 1.0),  # NE, doubled
    ],
)
def test_constant_network_gives_known_table(tmp_path, theta, uvw, acc, alpha, vertical):
    path = constant_model(tmp_path / "const.onnx", uvw)
    engine = FeatureNetworkEngine(path, device="cpu")
    dem = dem_array(hills(25, 31))
    window = engine.coverage(dem)
    assert window.shape == (21, 27)
    engine.bind(dem, window)
    (ks, values), *_ = list(engine.batches(np.array([theta]), 1))
    assert list(values) == ["acceleration", "alpha", "vertical"]
    np.testing.assert_allclose(values["acceleration"], acc, atol=1e-6)
    np.testing.assert_allclose(values["alpha"], alpha, atol=1e-6)
    np.testing.assert_allclose(values["vertical"], vertical, atol=1e-6)
    # the downscaled FROM direction is theta - degrees(alpha): that of the output vector
    u, v = uvw[0], uvw[1]
    from_dir = (180.0 + math.degrees(math.atan2(u, v))) % 360.0
    assert (theta - math.degrees(alpha) - from_dir + 180.0) % 360.0 - 180.0 == pytest.approx(0.0)


# --------------------------------------------------------------------------- engine vs PyTorch
def expected_table(folder, dem_z, cell, angles):
    """acceleration, alpha, vertical from a direct PyTorch run on the exact interior."""
    mean, std = norm_of(folder)
    geom = terrain_geometry(dem_z, cell)
    out = {"acceleration": [], "alpha": [], "vertical": []}
    net = torch_net(folder)
    for theta in angles:
        defl, ydsc = direction_features(geom, float(theta))
        x = np.stack([defl, geom.reldem, ydsc])
        x = ((x - mean[:, None, None]) / std[:, None, None]).astype(np.float32)[None]
        u, v, w = torch_run(net, x)[0].astype(np.float64)
        out["acceleration"].append(np.sqrt(u * u + v * v) / 3.0)
        from_dir = np.mod(180.0 + np.degrees(np.arctan2(u, v)), 360.0)
        out["alpha"].append(np.radians((theta - from_dir + 180.0) % 360.0 - 180.0))
        out["vertical"].append(w / 3.0)
    return {k: np.stack(v) for k, v in out.items()}


def test_engine_matches_pytorch_on_real_dem(model, jacksboro):
    folder, onnx_path = model
    z = jacksboro[:101, :137]  # interior 97 x 133: not multiples of 8
    dem = dem_array(z, JACKSBORO_CELL)
    engine = FeatureNetworkEngine(onnx_path, device="cpu")
    notes = []
    engine.prepare_dem(dem, notes)
    window = engine.coverage(dem)
    engine.bind(dem, window)
    angles = np.array([0, 95, 270])
    got = {k: [] for k in engine.variables}
    for _ks, values in engine.batches(angles, 2):
        for k in values:
            got[k].append(values[k])
    got = {k: np.concatenate(v) for k, v in got.items()}
    ref = expected_table(folder, z, JACKSBORO_CELL, angles)
    for name in ("acceleration", "vertical"):
        np.testing.assert_allclose(got[name], ref[name], atol=1e-4 / 3)
    dalpha = (got["alpha"] - ref["alpha"] + np.pi) % (2 * np.pi) - np.pi
    speed = ref["acceleration"] * 3
    assert np.max(np.abs(dalpha)[speed > 0.05]) < 1e-4 / 0.05
    assert np.std(got["acceleration"]) > 0.01  # the terrain matters


def test_step_kernel_matches_pytorch(model, jacksboro):
    """Per step: the local direction field, one PyTorch pass per step, scaled by S / 3."""
    folder, onnx_path = model
    z = jacksboro[:60, :77]
    geom = terrain_geometry(z, JACKSBORO_CELL)
    net = FeatureNetwork(onnx_path, device="cpu")
    # memory for 2 steps per pass: 5 steps run as 2 + 2 + 1
    memory = 2 * geom.shape[0] * geom.shape[1] * NETWORK_BYTES_PER_PIXEL
    kernel = FeatureStepKernel(net, geom, memory=memory)
    assert kernel.steps_per_pass == 2
    rng = np.random.default_rng(7)
    n = 5
    theta = (200.0 + 60.0 * rng.standard_normal((n, 1, 1))) + np.linspace(0, 40, geom.shape[1])
    speed = rng.uniform(1.0, 8.0, (n,) + geom.shape)
    u = (-speed * np.sin(np.radians(theta))).astype(np.float32)
    v = (-speed * np.cos(np.radians(theta))).astype(np.float32)
    u[3, 10:20, 5:9] = v[3, 10:20, 5:9] = np.nan
    got = kernel.uvw(u, v)
    mean, std = norm_of(folder)
    th = np.mod(np.degrees(np.arctan2(-u.astype(np.float64), -v.astype(np.float64))), 360.0)
    nan = ~np.isfinite(th[3])
    r = np.radians(th[3][~nan])
    th[3][nan] = np.degrees(np.arctan2(np.sin(r).sum(), np.cos(r).sum()))
    ref = torch_run(torch_net(folder), reference_input(geom, th, mean, std))
    s = np.sqrt(u * u + v * v) / np.float32(3.0)
    for c in range(3):
        assert got[c].dtype == np.float32 and got[c].shape == u.shape
        np.testing.assert_allclose(got[c], ref[:, c] * s, atol=1e-4 * 8 / 3)
    assert np.isnan(got[0][3, 10:20, 5:9]).all() and np.isfinite(got[0][2]).all()
    assert kernel.pass_bytes() == memory and kernel.step_bytes == 12 * u[0].size
    # the DEM's own order: a south-up DEM gives the same values, flipped
    flipped = FeatureStepKernel(net, geom, (True, False), memory=memory)
    back = flipped.uvw(u[:, ::-1], v[:, ::-1])
    np.testing.assert_allclose(back[2][:, ::-1], got[2], atol=1e-6)


def test_window_restricts_without_changing_values(model):
    from devine_onnx.engines.base import TableWindow

    _, onnx_path = model
    dem = dem_array(hills(45, 60))
    full = FeatureNetworkEngine(onnx_path, device="cpu")
    full.bind(dem, full.coverage(dem))
    (_, ref), *_ = list(full.batches(np.array([200]), 1))
    part = FeatureNetworkEngine(onnx_path, device="cpu")
    part.bind(dem, TableWindow(slice(10, 20), slice(5, 40)))
    (_, got), *_ = list(part.batches(np.array([200]), 1))
    np.testing.assert_array_equal(got["alpha"], ref["alpha"][:, 8:18, 3:38])
    with pytest.raises(OptionError, match="frame"):
        part.bind(dem, TableWindow(slice(0, 20), slice(5, 40)))


def test_tiling_is_an_approximation(model):
    """Halo tiling differs from the whole-domain pass (align_corners): finite and bounded."""
    _, onnx_path = model
    net = FeatureNetwork(onnx_path, device="cpu")
    geom = terrain_geometry(hills(164, 164, seed=3), 30.0)
    defl, ydsc = direction_features(geom, 300.0)
    x = normalise(defl[None], geom.reldem, ydsc[None], net.mean, net.std)
    whole = net.predict(x, max_pixels=None)
    tiled = net.predict(x, max_pixels=96 * 96, halo=16)
    assert tiled.shape == whole.shape and np.all(np.isfinite(tiled))
    diff = np.abs(tiled - whole)
    assert diff.max() > 0  # not exact: the trap is real
    assert np.median(diff) < 0.25 * np.std(whole)


def test_network_reuses_an_open_session(model):
    from devine_onnx.engines.runtime import open_model_session

    _, onnx_path = model
    opened = open_model_session(onnx_path, device="cpu")
    net = FeatureNetwork(onnx_path, device="cpu", opened=opened)
    assert net._session is opened[1] and net.path == onnx_path
    x = np.zeros((1, 3, 16, 24), np.float32)
    np.testing.assert_array_equal(net.run(x), FeatureNetwork(onnx_path, device="cpu").run(x))


def test_engine_for_model_opens_the_model_once(model, monkeypatch):
    """The session engine_for_model opens to read the model kind is the network's."""
    from devine_onnx.engines import runtime

    _, onnx_path = model
    calls = []
    real = runtime._session

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime, "_session", counting)
    engine = engine_for_model(onnx_path, device="cpu", threads=1)
    assert len(calls) == 1
    assert engine.network.threads == 1 and engine.network.config == FeatureNetwork.SESSION_CONFIG


def test_no_spinning_gives_the_same_outputs(model):
    """Session configuration entries reach ONNX Runtime; spinning off changes no value."""
    _, onnx_path = model
    x = np.random.default_rng(3).normal(size=(2, 3, 40, 48)).astype(np.float32)
    quiet = FeatureNetwork(onnx_path, device="cpu", threads=2)
    spinning = FeatureNetwork(onnx_path, device="cpu", threads=2, config={})
    assert quiet.config["session.intra_op.allow_spinning"] == "0" and spinning.config == {}
    got = quiet._session.get_session_options().get_session_config_entry(
        "session.intra_op.allow_spinning"
    )
    assert got == "0"
    np.testing.assert_array_equal(quiet.run(x), spinning.run(x))
    clone = pickle.loads(pickle.dumps(quiet))
    assert clone.config == quiet.config
    np.testing.assert_array_equal(clone.run(x), spinning.run(x))


def test_engine_pickles(model):
    _, onnx_path = model
    engine = FeatureNetworkEngine(onnx_path, device="cpu", coarse_cell=500)
    clone = pickle.loads(pickle.dumps(engine))
    dem = dem_array(hills(30, 30))
    for e in (engine, clone):
        e.bind(dem, e.coverage(dem))
    (_, a), *_ = list(engine.batches(np.array([10]), 1))
    (_, b), *_ = list(clone.batches(np.array([10]), 1))
    np.testing.assert_array_equal(a["acceleration"], b["acceleration"])
    attrs = clone.attrs()
    assert attrs["engine"] == "features" and attrs["features_coarse_cell"] == 500.0
    assert attrs["synthetic_weights"] == "true" and set(FeatureNetworkEngine.resume_keys) <= set(
        attrs
    )


# --------------------------------------------------------------------------- refusals, hooks
def test_engine_for_model(model, demo_model_file):
    _, onnx_path = model
    assert isinstance(engine_for_model(onnx_path, device="cpu"), FeatureNetworkEngine)
    assert engine_for_model(demo_model_file, device="cpu").name == "devine"


def test_rotation_model_refused(demo_model_file):
    with pytest.raises(ModelError, match="rotation model") as info:
        FeatureNetworkEngine(demo_model_file, device="cpu")
    assert "\n" not in str(info.value)


def test_small_dem_refused(tmp_path):
    engine = FeatureNetworkEngine(constant_model(tmp_path / "c.onnx", (3, 0, 0)), device="cpu")
    with pytest.raises(DEMError, match="12 x 12"):
        engine.prepare_dem(dem_array(hills(11, 40)), [])


def test_resolution_warning(tmp_path):
    path = constant_model(
        tmp_path / "c.onnx", (3, 0, 0), extra_meta={"devine.training_resolution": "50.0"}
    )
    engine = FeatureNetworkEngine(path, device="cpu")
    notes = []
    with pytest.warns(ResolutionWarning, match="trained at 50 m"):
        engine.prepare_dem(dem_array(hills(20, 20), cell=30.0), notes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResolutionWarning)
        engine.prepare_dem(dem_array(hills(20, 20), cell=50.0), [])


# --------------------------------------------------------------------------- features API/CLI
def test_compute_features_layout(tmp_path, model):
    from devine_onnx.sample_data import sample_dem

    _, onnx_path = model
    dem = sample_dem((81, 91), 30.0)
    ds = compute_features(dem, [270, 90], output=tmp_path / "f.nc")
    assert list(ds.data_vars) == ["deflLis", "reldem", "ydsc"]
    assert ds["deflLis"].dims == ("n", "y", "x")
    assert ds.sizes == {"n": 2, "y": 77, "x": 87}
    np.testing.assert_array_equal(ds["reldem"][0], ds["reldem"][1])
    np.testing.assert_array_equal(ds["x"], dem.x.values[2:-2])
    geom = terrain_geometry(dem.values.astype(np.float64), 30.0)
    np.testing.assert_array_equal(ds["ydsc"][1], direction_features(geom, 90.0)[1])
    normed = compute_features(dem, [270, 90], model=onnx_path, normalised=True)
    mean, std = FeatureNetwork(onnx_path, "cpu").mean, FeatureNetwork(onnx_path, "cpu").std
    for k, name in enumerate(["deflLis", "reldem", "ydsc"]):
        # the raw features (the transcription, float64) normalised by hand
        by_hand = ((ds[name].values - mean[k]) / std[k]).astype(np.float32)
        np.testing.assert_allclose(normed[name], by_hand, rtol=1e-5, atol=1e-5)
    # the network's output on them is the table engine's for the same directions
    engine = FeatureNetworkEngine(onnx_path, device="cpu")
    prepared = engine.prepare_dem(dem, [])
    engine.bind(prepared, engine.coverage(prepared))
    x = np.stack([normed[n].values for n in ("deflLis", "reldem", "ydsc")], axis=1)
    np.testing.assert_array_equal(engine.network.run(x), engine.uvw([270, 90]))
    with pytest.raises(OptionError, match="model"):
        compute_features(dem, [270], normalised=True)
    with xr.open_dataset(tmp_path / "f.nc", engine="netcdf4") as back:
        np.testing.assert_array_equal(back["deflLis"], ds["deflLis"])


def test_features_file_is_georeferenced(tmp_path):
    """CF grid mapping and projected y/x coordinates: GDAL (QGIS) places it on the map."""
    import rasterio

    from devine_onnx.sample_data import sample_dem

    dem = sample_dem((41, 51), 30.0)
    out = tmp_path / "f.nc"
    compute_features(dem, [0, 270], output=out)
    with xr.open_dataset(out, engine="netcdf4", decode_coords="all") as back:
        assert back["ydsc"].dims == ("n", "y", "x")
        assert back["x"].attrs["standard_name"] == "projection_x_coordinate"
        assert back["y"].attrs["units"] == "m"
        for name in ("deflLis", "reldem", "ydsc"):
            assert back[name].encoding["grid_mapping"] == "spatial_ref"
        assert pyproj_crs(back["spatial_ref"].attrs["crs_wkt"]) == pyproj_crs(dem.rio.crs)
    with rasterio.open(f"netcdf:{out}:ydsc") as src:
        assert src.count == 2 and (src.height, src.width) == (37, 47)
        assert pyproj_crs(src.crs.to_wkt()) == pyproj_crs(dem.rio.crs)
        # the upper-left corner of the first interior pixel (the DEM minus its 2-cell frame)
        assert src.transform.c == pytest.approx(float(dem.x[2]) - 15.0)
        assert src.transform.f == pytest.approx(float(dem.y[2]) + 15.0)
        assert src.transform.a == pytest.approx(30.0) and src.transform.e == pytest.approx(-30.0)
        band = src.read(2)  # band 2 = second direction (270)
    geom = terrain_geometry(dem.values.astype(np.float64), 30.0)
    np.testing.assert_allclose(band, direction_features(geom, 270.0)[1], rtol=1e-12)


def pyproj_crs(value):
    from pyproj import CRS

    return CRS.from_user_input(value)


def test_features_cli(tmp_path, demo_model_file):
    from typer.testing import CliRunner

    from devine_onnx.cli import app
    from devine_onnx.sample_data import sample_dem

    tif = tmp_path / "dem.tif"
    sample_dem((81, 81), 30.0).rio.to_raster(tif)
    out = tmp_path / "f.nc"
    runner = CliRunner()
    result = runner.invoke(app, ["features", str(tif), "--angles", "0,270", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 directions on a 77 x 77 grid" in result.output and out.is_file()
    bad = runner.invoke(
        app,
        [
            "features",
            str(tif),
            "--angles",
            "0",
            "-o",
            str(tmp_path / "g.nc"),
            "-m",
            str(demo_model_file),
        ],
    )
    assert bad.exit_code == 1
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rotation model" in errors[0]


def test_runtime_never_imports_torch(tmp_path):
    path = constant_model(tmp_path / "c.onnx", (3, 0, 0))
    code = (
        "import sys, numpy as np, xarray as xr, rioxarray\n"
        "from devine_onnx.engines.features import FeatureNetworkEngine\n"
        "import devine_onnx.cli, devine_onnx.downscaling.per_step\n"
        f"e = FeatureNetworkEngine({str(path)!r}, device='cpu')\n"
        "z = np.add.outer(np.arange(20.), np.arange(20.)) * 5\n"
        "d = xr.DataArray(z, dims=('y','x'), coords={'y': -30*np.arange(20.), 'x': 30*np.arange(20.)})\n"
        "e.bind(d, e.coverage(d)); list(e.batches(np.array([0, 90]), 2))\n"
        "bad = [m for m in ('torch', 'tensorflow', 'lightning', 'tf2onnx') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_corrections_cli_coarse_cell(tmp_path):
    """--coarse-cell reaches the features engine; other engines refuse it in one line."""
    import xarray as xr
    from typer.testing import CliRunner

    from devine_onnx.cli import app
    from devine_onnx.sample_data import sample_dem

    tif = tmp_path / "dem.tif"
    sample_dem((81, 81), 30.0).rio.to_raster(tif)
    model = constant_model(tmp_path / "c.onnx", (3, 0, 0))
    runner = CliRunner()
    out = tmp_path / "t.nc"
    args = ["corrections", str(tif), "-m", str(model), "-o", str(out), "--angles", "270", "-q"]
    result = runner.invoke(app, [*args, "--coarse-cell", "600"])
    assert result.exit_code == 0, result.output
    with xr.open_dataset(out) as table:
        assert table.attrs["engine"] == "features"
        assert float(table.attrs["features_coarse_cell"]) == 600.0
    bad = runner.invoke(
        app,
        ["corrections", str(tif), "--engine", "micromet", "-o", str(tmp_path / "m.nc")]
        + ["--coarse-cell", "600", "-q"],
    )
    assert bad.exit_code == 1
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--coarse-cell 600" in errors[0] and "micromet" in errors[0]
    assert not (tmp_path / "m.nc").exists()
