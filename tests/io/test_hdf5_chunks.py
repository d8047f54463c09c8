"""Pre-compressed chunk appends (hdf5_chunks) against the HDF5 library's own filters."""

from __future__ import annotations

import zlib

import h5py
import netCDF4
import numpy as np
import pytest

from devine_onnx.io import hdf5_chunks
from devine_onnx.io.hdf5_chunks import ChunkAppender, deflate, shuffle


def _create(path, ny=6, nx=5, tchunk=4, complevel=1, shuffle_=True, names=("a", "b")):
    """A NetCDF-4 file made by netCDF-C, like the downscale writer's."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", None)
        nc.createDimension("y", ny)
        nc.createDimension("x", nx)
        nc.createVariable("time", "f8", ("time",))
        for name in names:
            nc.createVariable(
                name,
                "f4",
                ("time", "y", "x"),
                zlib=complevel > 0,
                complevel=max(complevel, 1),
                shuffle=shuffle_ and complevel > 0,
                chunksizes=(tchunk, ny, nx),
                fill_value=np.float32(np.nan),
            )


def _data(nt, ny=6, nx=5, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 5, (nt, ny, nx)).astype(np.float32)
    a[0, 1, 2] = np.nan
    return a


def test_shuffle_is_hdf5s_byte_order(tmp_path):
    """Our shuffle equals what HDF5 stores: inflate a chunk the library wrote itself."""
    path = tmp_path / "lib.nc"
    _create(path)
    data = _data(4)
    with h5py.File(path, "r+") as h:
        h["a"].resize(4, axis=0)
        h["a"][:] = data  # compressed by the HDF5 library's shuffle + deflate
        mask, stored = h["a"].id.read_direct_chunk((0, 0, 0))
    assert mask == 0
    assert zlib.decompress(stored) == shuffle(data)


@pytest.mark.parametrize("level", [1, 2, 3, 4, 9])
def test_deflate_gives_zlib_streams(level):
    payload = shuffle(_data(3))
    assert zlib.decompress(deflate(payload, level)) == payload


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("nt", [8, 10, 3])
def test_appended_chunks_read_back_everywhere(tmp_path, nt, threads):
    """Whole and partial (last) chunks decode with netCDF-C and h5py, time length right."""
    path = tmp_path / "out.nc"
    _create(path)
    a, b = _data(nt, seed=1), _data(nt, seed=2)
    times = np.arange(nt, dtype=float)
    with h5py.File(path, "r+") as h:
        app = ChunkAppender(h, ["a", "b"], threads=threads)
        assert all(level == 1 for level in app._direct.values())  # the direct path is used
        for s in range(0, nt, 4):
            e = min(nt, s + 4)
            app.append(s, e, [a[s:e], b[s:e]], time_name="time", times=times[s:e])
    with netCDF4.Dataset(path) as nc:
        assert len(nc.dimensions["time"]) == nt
        assert nc["a"].filters()["zlib"] and nc["a"].filters()["shuffle"]
        np.testing.assert_array_equal(nc["a"][:].filled(np.nan), a)
        np.testing.assert_array_equal(nc["b"][:].filled(np.nan), b)
        np.testing.assert_array_equal(nc["time"][:], times)
    with h5py.File(path) as h:
        np.testing.assert_array_equal(h["b"][:], b)


def test_blocks_of_several_chunks(tmp_path):
    """One append of 10 steps into 4-step chunks writes 3 chunks (the last partial)."""
    path = tmp_path / "out.nc"
    _create(path, names=("a",))
    a = _data(10)
    with h5py.File(path, "r+") as h:
        ChunkAppender(h, ["a"]).append(0, 10, [a])
        assert h["a"].id.get_num_chunks() == 3
    with netCDF4.Dataset(path) as nc:
        np.testing.assert_array_equal(nc["a"][:].filled(np.nan), a)


@pytest.mark.parametrize("kind", ["uncompressed", "deflate without shuffle"])
def test_other_pipelines_fall_back_to_library_writes(tmp_path, kind, monkeypatch):
    """Variables without the shuffle + deflate pipeline are written by HDF5 itself."""
    calls = []
    monkeypatch.setattr(hdf5_chunks, "deflate", lambda d, lvl: calls.append(lvl))
    path = tmp_path / "out.nc"
    _create(
        path,
        complevel=0 if kind == "uncompressed" else 1,
        shuffle_=kind != "deflate without shuffle",
        names=("a",),
    )
    a = _data(9)
    with h5py.File(path, "r+") as h:
        app = ChunkAppender(h, ["a"])
        assert app._direct["a"] is None
        app.append(0, 9, [a])
    assert calls == []
    with netCDF4.Dataset(path) as nc:
        np.testing.assert_array_equal(nc["a"][:].filled(np.nan), a)


def test_block_off_a_chunk_boundary_is_written_by_hdf5(tmp_path, monkeypatch):
    """A block starting inside a chunk goes through HDF5, which updates our direct chunk."""
    calls = []

    def counting(data, level):
        calls.append(level)
        return deflate(data, level)

    monkeypatch.setattr(hdf5_chunks, "deflate", counting)
    path = tmp_path / "out.nc"
    _create(path, names=("a",))
    a = _data(9)
    with h5py.File(path, "r+") as h:
        app = ChunkAppender(h, ["a"])
        app.append(0, 3, [a[:3]])  # on a boundary: one direct (padded) chunk
        assert calls == [1]
        app.append(3, 9, [a[3:]])  # starts at 3 inside chunk [0, 4): HDF5 writes it
        assert calls == [1]
    with netCDF4.Dataset(path) as nc:
        np.testing.assert_array_equal(nc["a"][:].filled(np.nan), a)
