"""Issue 20 #2: weights files are validated on load, an unsafe cache is not trusted.

Every tampered file is written by the test from weights it built itself.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr

from devine_onnx.errors import InputFileError
from devine_onnx.regrid.cache import CacheWarning, cache_file, load_or_build
from devine_onnx.regrid.weights import RegridWeights

LON = np.linspace(5.6, 6.4, 9)
LAT = np.linspace(45.5, 44.9, 7)
TX = np.linspace(905_000.0, 935_000.0, 12)
TY = np.linspace(6_470_000.0, 6_440_000.0, 10)
N_SOURCE = LON.size * LAT.size

posix_owner = pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners only")


@pytest.fixture(scope="module")
def weights():
    return RegridWeights.from_grids(LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")


def tampered(tmp_path, weights, name, edit):
    """Write the weights, change their variables with ``edit(ds)``, save as ``name``."""
    ds = weights.to_dataset()
    ds = edit(ds) or ds
    path = tmp_path / name
    enc = {"weights": {"_FillValue": None}}
    ds.to_netcdf(path, engine="netcdf4", encoding=enc)
    return path


def _set(var, fn):
    def edit(ds):
        ds[var] = (ds[var].dims, fn(ds[var].values.copy()))

    return edit


def _first_valid_row(values, new, valid):
    row = int(np.flatnonzero(valid)[0])
    values[row] = new
    return values


CASES = {
    "index-far-out": (_set("indices", lambda a: a + 10**9), "outside the source grid"),
    "index-just-past": (_set("indices", lambda a: a + N_SOURCE), "outside the source grid"),
    "index-negative": (_set("indices", lambda a: a - N_SOURCE), "outside the source grid"),
    "weights-x3": (_set("weights", lambda a: a * 3), "summing to 1"),
    "weights-negative": (_set("weights", lambda a: a[:, [1, 0, 2]] * [[-1, 1, 1]]), "[0, 1]"),
    "weights-inf": (_set("weights", lambda a: np.where(a > 0.5, np.inf, a)), "not finite"),
    "valid-but-nan": (_set("weights", lambda a: np.where(a >= 0, np.nan, a)), "not finite"),
    "invalid-with-weights": (
        _set("valid", lambda a: np.where(np.arange(a.size) % 2, 0, a).astype(np.int8)),
        "marked invalid",
    ),
    "valid-not-a-flag": (_set("valid", lambda a: (a * 7).astype(np.int8)), "0 and 1"),
    "indices-float": (_set("indices", lambda a: a.astype(np.float64) + 0.5), "integers"),
}


@pytest.mark.parametrize("case", CASES)
def test_tampered_weights_file_is_refused(tmp_path, weights, case):
    edit, needle = CASES[case]
    path = tampered(tmp_path, weights, f"{case}.nc", edit)
    with pytest.raises(InputFileError) as info:
        RegridWeights.from_netcdf(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg and needle in msg and "delete the file" in msg


def test_untampered_file_round_trips(tmp_path, weights):
    path = tampered(tmp_path, weights, "same.nc", lambda ds: None)
    got = RegridWeights.from_netcdf(path)
    np.testing.assert_array_equal(got.indices, weights.indices)
    np.testing.assert_array_equal(got.weights, weights.weights)


def test_tampered_cached_file_is_rebuilt_with_a_warning(tmp_path, weights):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    path = cache_file(cache, weights.source_fingerprint, weights.target_fingerprint)
    tampered(cache, weights, path.name, _set("weights", lambda a: a * 3))
    with pytest.warns(CacheWarning, match="rebuilding the cached regridding weights.*summing"):
        got = load_or_build(cache, LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")
    np.testing.assert_array_equal(got.weights, weights.weights)
    np.testing.assert_array_equal(RegridWeights.from_netcdf(path).weights, weights.weights)


@posix_owner
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o757])
def test_cache_folder_writable_by_others_is_ignored(tmp_path, weights, mode):
    cache = tmp_path / "shared"
    cache.mkdir()
    path = cache_file(cache, weights.source_fingerprint, weights.target_fingerprint)
    # A planted file with valid-looking but wrong weights (another table's, say): the name is
    # all the cache looks at, so it must not be read from a folder others can write to.
    planted = RegridWeights(
        weights.indices[:, [1, 2, 0]], weights.weights, weights.valid, weights.source_shape,
        weights.target_shape, source_fingerprint=weights.source_fingerprint,
        target_fingerprint=weights.target_fingerprint,
    )  # fmt: skip
    planted.to_netcdf(path)
    os.chmod(cache, mode)
    with pytest.warns(CacheWarning, match=r"ignoring the regridding weights cache .*writable by"):
        got = load_or_build(cache, LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")
    np.testing.assert_array_equal(got.indices, weights.indices)
    assert got.path is None  # built in memory, nothing written to the unsafe folder
    np.testing.assert_array_equal(RegridWeights.from_netcdf(path).indices, planted.indices)


@posix_owner
def test_cache_file_writable_by_others_or_a_link_is_ignored(tmp_path, weights):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    path = cache_file(cache, weights.source_fingerprint, weights.target_fingerprint)
    weights.to_netcdf(path)
    os.chmod(path, 0o666)
    with pytest.warns(CacheWarning, match="writable by other users"):
        load_or_build(cache, LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")
    path.unlink()
    target = tmp_path / "elsewhere.nc"
    weights.to_netcdf(target)
    path.symlink_to(target)
    with pytest.warns(CacheWarning, match="not a regular file"):
        load_or_build(cache, LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")


@posix_owner
def test_sticky_shared_folder_and_private_cache_are_used(tmp_path, weights):
    for mode in (0o1777, 0o700, 0o755):
        cache = tmp_path / f"c{mode:o}"
        cache.mkdir()
        os.chmod(cache, mode)
        assert stat.S_IMODE(cache.stat().st_mode) == mode
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheWarning)
            first = load_or_build(cache, LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")
            again = load_or_build(cache, LON, LAT, "EPSG:4326", TX, TY, "EPSG:2154")
        assert first.path is not None and again.path == first.path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small table, an NWP file and their weights, written once."""
    from devine_onnx.regrid.cache import build_weights
    from devine_onnx.sample_data import sample_dem, sample_nwp

    folder = tmp_path_factory.mktemp("hostile")
    dem = sample_dem(shape=(30, 40))
    n = 4
    table = xr.Dataset(
        {
            "acceleration": (("angle", "y", "x"), np.ones((n, 30, 40), np.float32)),
            "alpha": (("angle", "y", "x"), np.zeros((n, 30, 40), np.float32), {"units": "radian"}),
        },
        coords={"angle": np.arange(n) * 90.0, "y": dem.y.values, "x": dem.x.values},
    ).rio.write_crs("EPSG:2154")
    table.to_netcdf(folder / "table.nc")
    sample_nwp(n_times=2).to_netcdf(folder / "nwp.nc")
    w = build_weights(folder / "nwp.nc", folder / "table.nc", output=folder / "w.nc")
    return folder, w


@pytest.mark.parametrize("case", ["index-far-out", "index-just-past", "weights-x3"])
def test_cli_downscale_refuses_a_tampered_weights_file(tmp_path, files, case):
    """Before: exit 139 (segmentation fault), or exit 0 with values from beyond the forecast
    array or every speed x3. Now: one line, exit 1, no output nor partial left."""
    folder, w = files
    bad = tampered(tmp_path, w, "w.nc", CASES[case][0])
    out = tmp_path / "out.nc"
    args = ["downscale", str(folder / "nwp.nc"), "-t", str(folder / "table.nc"),
            "-w", str(bad), "-o", str(out), "-q"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", "from devine_onnx.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(bad) in errors[0] and "tampered" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.nc"]
