"""Downscaling by spatial blocks (issue 11 item 3): equal to the in-memory run, bounded."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import xarray as xr

import devine_onnx.downscaling.kernel as dsmod
from devine_onnx.downscaling import blocks, options
from devine_onnx.downscaling.api import NWPNaNWarning, downscale
from devine_onnx.errors import OptionError
from devine_onnx.io.atomic import partial_path
from devine_onnx.regrid.cache import build_weights
from devine_onnx.regrid.weights import RegridWeights
from devine_onnx.sample_data import sample_nwp

from .test_downscale import make_table

pytest.importorskip("rioxarray")

SHAPE = (61, 81)


@pytest.fixture(scope="module")
def table():
    """A table with spatial structure, NaN corners (like a DEVINE disc) and vertical wind."""
    tbl = make_table(SHAPE, n_angles=36)
    rng = np.random.default_rng(3)
    field = rng.uniform(0.6, 1.4, (36, *SHAPE)).astype(np.float32)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    outside = (yy - 30) ** 2 + (xx - 40) ** 2 > 34**2
    field[:, outside] = np.nan
    alpha = rng.uniform(-0.3, 0.3, (36, *SHAPE)).astype(np.float32)
    alpha[:, outside] = np.nan
    vertical = rng.uniform(-0.2, 0.2, (36, *SHAPE)).astype(np.float32)
    vertical[:, outside] = np.nan
    tbl["acceleration"] = (("angle", "y", "x"), field)
    tbl["alpha"] = (("angle", "y", "x"), alpha, {"units": "radian"})
    tbl["vertical"] = (("angle", "y", "x"), vertical)
    return tbl


def run(nwp, table, **kw):
    kw.setdefault("cache_dir", False)
    kw.setdefault("quiet", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coarse table, outside hull: same in both runs
        return downscale(nwp, table, **kw)


def assert_same(got: xr.Dataset, ref: xr.Dataset) -> None:
    assert sorted(got.data_vars) == sorted(ref.data_vars)
    for name in ref.data_vars:
        a, b = ref[name].values, got[name].values
        assert a.shape == b.shape, name
        np.testing.assert_array_equal(b, a, err_msg=name)  # NaN == NaN here
    np.testing.assert_array_equal(got.x.values, ref.x.values)
    np.testing.assert_array_equal(got.y.values, ref.y.values)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
@pytest.mark.parametrize(
    ("kw", "block"),
    [
        ({}, "20x32"),
        ({"coarsen": 3}, 18),
        ({"grid_relative": True, "angular_interpolation": "linear"}, "27x81"),
    ],
)
def test_blocks_equal_in_memory_run(tmp_path, table, suffix, kw, block):
    nwp = sample_nwp(n_times=10)
    ref = run(nwp, table, output=tmp_path / f"ref{suffix}", chunk_time=4, **kw)
    got = run(nwp, table, output=tmp_path / f"blk{suffix}", chunk_time=4, block_size=block, **kw)
    assert "upward_air_velocity" in got.data_vars  # the vertical table is used block-wise too
    assert_same(got, ref)
    # The output is chunked by blocks (whole chunks written per block).
    enc = got.wind_speed.encoding
    chunks = enc.get("chunksizes") or enc.get("chunks")
    c = kw.get("coarsen", 1)
    rows, cols = options.parse_block_size(block, c)
    assert tuple(chunks[1:]) == (min(rows // c, got.sizes["y"]), min(cols // c, got.sizes["x"]))
    assert "blocks of" in got.attrs["history"]
    ref.close()
    got.close()


def test_blocks_from_table_files(tmp_path, table, caplog):
    """A NetCDF table with whole-grid chunks (reordered into a scratch store first) and a
    Zarr table chunked by blocks (read as it is)."""
    nwp = sample_nwp(n_times=6)
    ref = run(nwp, table)
    nc = tmp_path / "table.nc"
    table.to_netcdf(nc)
    zarr_path = tmp_path / "table.zarr"
    enc = {n: {"chunks": (36, 16, 16)} for n in ("acceleration", "alpha", "vertical")}
    table.to_zarr(zarr_path, encoding=enc, zarr_format=2)
    out = tmp_path / "out"
    out.mkdir()
    for source, reordered in ((nc, True), (zarr_path, False)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="devine_onnx"):
            got = run(nwp, source, block_size=16, output=out / "w.nc")
        assert ("scratch store" in caplog.text) is reordered
        assert_same(got, ref)
        got.close()
        assert [p.name for p in out.iterdir()] == ["w.nc"]  # no scratch left
        (out / "w.nc").unlink()
    # In memory too (the scratch store in the system's temporary folder).
    assert_same(run(nwp, nc, block_size=16), ref)


def test_in_memory_result_by_blocks(table):
    nwp = sample_nwp(n_times=5)
    assert_same(run(nwp, table, block_size="8x100"), run(nwp, table))


def test_block_weights_rows_and_box(table):
    nwp = sample_nwp(n_times=1)
    w = build_weights(nwp, table)
    sub, box = blocks.block_weights(w, 10, 25, 30, 47)
    assert sub.target_shape == (15, 17)
    assert sub.source_shape == (box[0].stop - box[0].start, box[1].stop - box[1].start)
    assert sub.source_shape[0] < w.source_shape[0] or sub.source_shape[1] < w.source_shape[1]
    field = np.random.default_rng(0).normal(size=(2, *w.source_shape)).astype(np.float32)
    whole = w.apply(field)[:, 10:25, 30:47]
    part = sub.apply(field[:, box[0], box[1]])
    np.testing.assert_array_equal(part, whole)
    # A block outside the NWP grid has no weights.
    outside = RegridWeights(w.indices, w.weights, np.zeros_like(w.valid), w.source_shape,
                            w.target_shape)  # fmt: skip
    assert blocks.block_weights(outside, 0, 5, 0, 5) is None


def test_blocks_without_values_are_not_computed(table, monkeypatch):
    calls = []
    real = dsmod.downscale_chunk

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dsmod, "downscale_chunk", counting)
    nwp = sample_nwp(n_times=3)
    got = run(nwp, table, block_size=12)  # 6 x 7 blocks; the corners lie outside the disc
    n_blocks = blocks.BlockPlan((12, 12), SHAPE).n_blocks
    assert 0 < len(calls) < n_blocks
    assert_same(got, run(nwp, table))


def test_nan_in_the_forecast_counted_once_over_blocks(tmp_path, table):
    nwp = sample_nwp(n_times=6)
    bad = nwp.copy(deep=True)
    bad["u10"][1, 4, 5] = np.nan
    bad["v10"][4, 5, 6] = np.nan
    messages = []
    for kw in ({}, {"block_size": 10}, {"block_size": 15, "coarsen": 3}, {"coarsen": 3}):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            downscale(bad, table, cache_dir=False, quiet=True, output=tmp_path / "w.nc", **kw)
        (nan_warning,) = [w for w in rec if issubclass(w.category, NWPNaNWarning)]
        messages.append(str(nan_warning.message))
        (tmp_path / "w.nc").unlink()
    assert "in 2 of 6 time steps" in messages[0]
    assert messages[1] == messages[0]  # the steps are not counted once per block
    assert messages[2] == messages[3]


def test_max_memory_switches_to_blocks(tmp_path, table, caplog):
    nwp = sample_nwp(n_times=4)
    w = build_weights(nwp, table)
    kw = dict(n_angles=36, n_tables=3, n_outputs=5, chunk_time=24, coarsen=1,
              weights_bytes=blocks._weights_bytes(w))  # fmt: skip
    whole = blocks.memory_need(SHAPE[0] * SHAPE[1], **kw)
    ref = run(nwp, table, output=tmp_path / "ref.nc")
    with caplog.at_level(logging.INFO, logger="devine_onnx"):
        fits = run(nwp, table, output=tmp_path / "fits.nc", max_memory=whole + 1)
    assert "blocks" not in caplog.text and "blocks" not in fits.attrs["history"]
    # Room for about a third of the table: blocks, and a note that says so.
    third = blocks.memory_need(SHAPE[0] * SHAPE[1] // 3, **kw)
    with caplog.at_level(logging.INFO, logger="devine_onnx"):
        got = run(nwp, table, output=tmp_path / "blk.nc", max_memory=f"{third}B")
    assert "downscaling by blocks of" in caplog.text and "more than max_memory" in caplog.text
    assert "blocks of" in got.attrs["history"]
    assert_same(got, ref)
    plan = blocks.plan_blocks(table, w, n_outputs=5, chunk_time=24, coarsen=None,
                              max_memory=third, block_size=None)  # fmt: skip
    assert plan.n_blocks >= 3
    assert blocks.memory_need(plan.block[0] * plan.block[1], **kw) <= third
    # Too little memory for any block: a clear error before any work.
    with pytest.raises(OptionError, match="max_memory.*too small"):
        run(nwp, table, output=tmp_path / "none.nc", max_memory="10MB")
    assert not (tmp_path / "none.nc").exists()


def test_blocks_align_on_coarsen_and_table_chunks(table):
    w = build_weights(sample_nwp(n_times=1), table)
    stored = table.copy()
    stored["acceleration"].encoding["preferred_chunks"] = {"angle": 36, "y": 16, "x": 16}
    kw = dict(n_angles=36, n_tables=3, n_outputs=5, chunk_time=24, coarsen=3,
              weights_bytes=blocks._weights_bytes(w))  # fmt: skip
    budget = blocks.memory_need(3000, **kw)
    plan = blocks.plan_blocks(stored, w, n_outputs=5, chunk_time=24, coarsen=3,
                              max_memory=budget, block_size=None)  # fmt: skip
    assert plan.block[0] % 3 == 0 and plan.block[1] % 3 == 0
    assert plan.block[1] == 48  # whole coarsen blocks and whole table chunks: lcm(3, 16)
    assert plan.extent == (60, 81)
    assert sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in plan.blocks()) == 60 * 81


def test_block_options_are_checked(tmp_path, table):
    nwp = sample_nwp(n_times=2)
    for bad in ("abc", "0", -5, "1x2x3", True):
        with pytest.raises(OptionError, match="block_size"):
            run(nwp, table, block_size=bad)
    with pytest.raises(OptionError, match="multiples of 3"):
        run(nwp, table, block_size=10, coarsen=3)
    for bad in ("lots", "-1GB", 0, True):
        with pytest.raises(OptionError, match="max_memory"):
            run(nwp, table, max_memory=bad)
    assert options.parse_memory("2GB") == 2 * 10**9
    assert options.parse_memory("1.5GiB") == 3 * 2**29
    assert options.parse_block_size("256x1024") == (256, 1024)
    # A lazy result is computed by dask with the whole table: no blocks there.
    with pytest.raises(OptionError, match="give an output"):
        run(nwp.chunk(time=1), table, block_size=16)


def test_no_file_left_when_a_block_fails(tmp_path, table, monkeypatch):
    calls = []
    real = dsmod.downscale_chunk

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(dsmod, "downscale_chunk", flaky)
    for suffix in (".nc", ".zarr"):
        calls.clear()
        out = tmp_path / f"fail{suffix}"
        with pytest.raises(RuntimeError, match="boom"):
            run(sample_nwp(n_times=4), table, output=out, block_size=20)
        assert not out.exists() and not partial_path(out).exists()


def test_cli_max_memory_and_block_size(tmp_path, table):
    from typer.testing import CliRunner

    from devine_onnx.cli import app

    table_nc, nwp_nc = tmp_path / "table.nc", tmp_path / "nwp.nc"
    table.to_netcdf(table_nc)
    sample_nwp(n_times=3).to_netcdf(nwp_nc)
    runner = CliRunner()
    base = ["downscale", str(nwp_nc), "--table", str(table_nc), "--cache-dir", str(tmp_path)]
    ref = runner.invoke(app, [*base, "-o", str(tmp_path / "ref.nc"), "-q"])
    assert ref.exit_code == 0, ref.output
    got = runner.invoke(app, [*base, "-o", str(tmp_path / "blk.zarr"), "--block-size", "16x40"])
    assert got.exit_code == 0, got.output
    assert "note: --block-size 16x40: downscaling by blocks of 16 x 40" in got.output
    with xr.open_dataset(tmp_path / "ref.nc") as a, xr.open_zarr(tmp_path / "blk.zarr") as b:
        assert_same(b.load(), a.load())
    bad = runner.invoke(app, [*base, "-o", str(tmp_path / "x.nc"), "--max-memory", "1MB"])
    assert bad.exit_code == 1
    assert "error: --max-memory 0.00 GB: too small" in bad.output
    bad = runner.invoke(app, [*base, "-o", str(tmp_path / "x.nc"), "--block-size", "ab"])
    assert bad.exit_code == 1 and "--block-size ab" in bad.output
    bad = runner.invoke(app, [*base, "-o", str(tmp_path / "x.nc"), "--workers", "2"])
    assert bad.exit_code == 1 and "--workers: the workers write" in bad.output


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_blocks_on_a_local_cluster_equal_local_run(tmp_path, table):
    pytest.importorskip("distributed")
    nwp_nc, table_nc = tmp_path / "nwp.nc", tmp_path / "table.nc"
    bad = sample_nwp(n_times=5)
    bad["u10"][1, 4, 5] = np.nan
    bad.to_netcdf(nwp_nc)
    table.to_netcdf(table_nc)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ref = downscale(nwp_nc, table_nc, output=tmp_path / "ref.nc", cache_dir=False,
                        quiet=True, coarsen=3)  # fmt: skip
        got = downscale(nwp_nc, table_nc, output=tmp_path / "cluster.zarr", cache_dir=False,
                        quiet=True, coarsen=3, workers=2, block_size=21)  # fmt: skip
    assert_same(got.load(), ref.load())
    nan_warnings = [str(w.message) for w in rec if issubclass(w.category, NWPNaNWarning)]
    assert len(nan_warnings) == 2 and nan_warnings[0] == nan_warnings[1]
    assert not list(tmp_path.glob(".devine-onnx-table-*"))  # the scratch table is gone
    # A cluster writes Zarr only.
    with pytest.raises(Exception, match=r"\.zarr"):
        downscale(nwp_nc, table_nc, output=tmp_path / "w.nc", workers=2, cache_dir=False)
    with pytest.raises(OptionError, match="not both"):
        downscale(nwp_nc, table_nc, output=tmp_path / "w.zarr", workers=2, scheduler="x")


@pytest.mark.parametrize("fmt", ["netcdf", "zarr", "memory"])
def test_region_writes_of_the_shared_writer(tmp_path, fmt):
    """``write_region`` (whole chunks written directly for NetCDF, else through the library)."""
    from devine_onnx.io.writers import MemoryWriter, create_writer

    t = xr.Dataset(coords={"time": np.arange(10), "y": np.arange(11.0), "x": np.arange(13.0)})
    rng = np.random.default_rng(0)
    full = {n: rng.normal(size=(10, 11, 13)).astype(np.float32) for n in "ab"}
    if fmt == "memory":
        w = MemoryWriter(t, "time", {"a": {}, "b": {}})
    else:
        path = tmp_path / ("out.nc" if fmt == "netcdf" else "out.zarr")
        w = create_writer(path, t, "time", {"a": {}, "b": {}}, fmt=fmt, chunk=3,
                          spatial_chunks=(4, 5))  # fmt: skip
    for y0 in range(0, 11, 4):  # whole chunks, cut by the end of the grid at the edges
        for x0 in range(0, 13, 5):
            for a in (0, 6):
                b = min(10, a + 6)
                w.write_region(a, b, y0, x0, [full[n][a:b, y0 : y0 + 4, x0 : x0 + 5] for n in "ab"])
    w.write_region(1, 2, 1, 2, {n: np.full((1, 2, 2), 7.0, np.float32) for n in "ab"})  # unaligned
    expected = full["b"].copy()
    expected[1, 1:3, 2:4] = 7
    if fmt == "memory":
        np.testing.assert_array_equal(w.result()["b"].values, expected)
        return
    w.finalize({})
    w.close()
    with xr.open_dataset(path, engine="zarr" if fmt == "zarr" else "netcdf4") as back:
        np.testing.assert_array_equal(back["b"].values, expected)
        chunks = back["b"].encoding.get("chunksizes") or back["b"].encoding.get("chunks")
        assert tuple(chunks) == (3, 4, 5)
