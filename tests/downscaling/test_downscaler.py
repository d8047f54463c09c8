"""The downscaler object (built once, two stages), its options and the module layering."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import devine_onnx.downscaling.downscaler as dsc
from devine_onnx.downscaling.api import downscale
from devine_onnx.downscaling.downscaler import TableDownscaler, open_wind
from devine_onnx.downscaling.options import DownscaleOptions, check_mode
from devine_onnx.errors import OptionError
from devine_onnx.regrid.cache import build_weights
from devine_onnx.sample_data import sample_nwp
from devine_onnx.wind import meridian_convergence, uv_to_speed_dir

from .test_downscale import ALPHA, make_table

pytest.importorskip("rioxarray")

PACKAGE = Path(dsc.__file__).parent


@pytest.fixture(scope="module")
def table():
    """36 directions every 10°, acceleration[k] = 1 + k/1000, alpha = 0.1 rad."""
    t = make_table(shape=(30, 40), n_angles=36)
    return t.assign_coords(angle=t["angle"] * 10.0)


def test_two_stages_equal_the_whole(table):
    nwp = sample_nwp(n_times=3)
    opts = DownscaleOptions(angular_interpolation="linear", coarsen=2)
    ds = TableDownscaler(table, build_weights(nwp, table), opts)
    winds = open_wind(nwp, opts)
    u, v = np.asarray(winds.u.values), np.asarray(winds.v.values)
    ug, vg = ds.interpolate(u, v)
    assert ug.shape == (3, 30, 40) and ug.dtype == np.float32
    staged = ds.correct(ug, vg)
    whole = ds(u, v)
    ref = downscale(nwp, table, cache_dir=False, quiet=True, angular_interpolation="linear",
                    coarsen=2)  # fmt: skip
    names = ("wind_speed", "wind_from_direction", "eastward_wind", "northward_wind")
    for a, b, name in zip(staged, whole, names, strict=True):
        assert a.shape == (3, 15, 20)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, ref[name].values)


def test_correct_by_hand_on_the_table_grid(table):
    """A westerly of 5 m/s given on the table grid: speed x acceleration[k], turned by alpha.

    Grid-relative (no rotation): FROM 270 uses k = 27 (10° steps), acceleration 1.027; the
    direction becomes 270 - degrees(0.1).
    """
    nwp = sample_nwp(n_times=1)
    ds = TableDownscaler(table, build_weights(nwp, table), DownscaleOptions(grid_relative=True))
    u = np.full((2, 30, 40), 5.0, np.float32)
    v = np.zeros_like(u)
    speed, dirs, uo, vo = ds.correct(u, v)
    np.testing.assert_allclose(speed, 5.0 * 1.027, rtol=1e-6)
    np.testing.assert_allclose(dirs, 270.0 - np.degrees(ALPHA), atol=1e-4)
    s, d = uv_to_speed_dir(uo, vo)
    np.testing.assert_allclose(s, speed, rtol=1e-5)
    np.testing.assert_allclose(d, dirs, atol=1e-4)


@pytest.mark.filterwarnings("ignore::devine_onnx.downscaling.lookup.CoarseTableWarning")
@pytest.mark.parametrize("kw", [{}, {"block_size": 10}])
def test_meridian_convergence_computed_once(tmp_path, table, monkeypatch, kw):
    calls = []

    def counting(x, y, crs):
        calls.append(np.broadcast_shapes(np.shape(x), np.shape(y)))
        return meridian_convergence(x, y, crs)

    monkeypatch.setattr(dsc, "meridian_convergence", counting)
    downscale(sample_nwp(n_times=2), table, cache_dir=False, quiet=True,
              output=tmp_path / "w.nc", **kw)  # fmt: skip
    assert calls == [(30, 40)]


def test_options_checked_once():
    opts = DownscaleOptions(coarsen=1, max_memory="2GB", block_size="4x6", chunk_time=np.int64(3))
    assert opts.coarsen is None and opts.max_memory == 2 * 10**9 and opts.block_size == (4, 6)
    assert opts.chunk_time == 3 and type(opts.chunk_time) is int
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.coarsen = 3
    with pytest.raises(OptionError, match="chunk_time"):
        DownscaleOptions(chunk_time=0)
    with pytest.raises(OptionError, match="angular_interpolation"):
        DownscaleOptions(angular_interpolation="cubic")
    with pytest.raises(OptionError, match="complevel"):
        DownscaleOptions(complevel=10)
    with pytest.raises(OptionError, match="multiples of 3"):
        DownscaleOptions(coarsen=3, block_size=10)
    with pytest.raises(OptionError, match="per-step"):
        DownscaleOptions(per_step=True, block_size=64)
    # per-step mode sizes its passes and time chunk from max_memory (issue 17)
    assert DownscaleOptions(per_step=True, max_memory="1GB").max_memory == 10**9
    with pytest.raises(OptionError, match="per-step"):
        DownscaleOptions(per_step=True, angular_interpolation="linear")
    assert check_mode(table="t.nc", per_step=False, model=None, dem=None) is False
    assert check_mode(table=None, per_step=True, model="m.onnx", dem="dem.tif") is True
    with pytest.raises(OptionError, match="instead of a table"):
        check_mode(table="t.nc", per_step=False, model=None, dem="dem.tif")
    with pytest.raises(OptionError, match="no correction table"):
        check_mode(table=None, per_step=False, model=None, dem=None)
    with pytest.raises(OptionError, match="dem_crs"):
        check_mode(table="t.nc", per_step=False, model=None, dem=None, dem_crs="EPSG:2154")
    with pytest.raises(OptionError, match="do not combine"):
        check_mode(table="t.nc", per_step=False, model=None, dem=None, grid_relative=True,
                   nwp_wind_frame="earth")  # fmt: skip


def test_output_layout_is_frozen(table):
    nwp = sample_nwp(n_times=2)
    ds = TableDownscaler(table, build_weights(nwp, table), DownscaleOptions(coarsen=2))
    layout = ds.layout(open_wind(nwp, ds.options))
    assert layout.shape == (15, 20) and layout.names[0] == "wind_speed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.spatial_chunks = (4, 4)
    blocked = ds.layout(open_wind(nwp, ds.options), block=(10, 10))
    assert blocked.spatial_chunks == (5, 5) and layout.spatial_chunks is None
    assert "blocks of 10x10 table pixels" in blocked.global_attrs["history"]
    assert "blocks" not in layout.global_attrs["history"]


def _imports(path: Path) -> set[str]:
    """Modules of devine_onnx.downscaling that ``path`` imports (relative or absolute)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1:
                out.add(mod.split(".")[0] if mod else "")
                if not mod:
                    out.update(a.name for a in node.names)
            elif mod.startswith("devine_onnx.downscaling."):
                out.add(mod.split(".")[2])
            elif mod == "devine_onnx.downscaling":
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("devine_onnx.downscaling."):
                    out.add(a.name.split(".")[2])
    return out - {""}


def test_drivers_import_no_other_driver_and_nothing_imports_api():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}
    drivers = {"stream", "blocks", "per_step"}
    for name, deps in graph.items():
        assert "api" not in deps, name
        if name in drivers:
            assert not deps & (drivers - {name}), (name, deps)
    # No cycle between the modules of the package.
    seen: dict[str, int] = {}

    def visit(n, stack):
        if seen.get(n) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*stack, n])}")
        if seen.get(n) == 2:
            return
        seen[n] = 1
        for d in graph.get(n, ()):
            visit(d, [*stack, n])
        seen[n] = 2

    for n in graph:
        visit(n, [])
