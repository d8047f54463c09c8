"""Concurrent runs, signals and leftovers (issue 20 #1, #3, #6, #7), with real processes.

Each test starts ``devine-onnx`` commands as separate Python processes (the CLI entry point,
with a small patch for timing where needed), as a user would in two terminals or a batch
system: the lock, the signal handling and the sweeping of leftovers are only meaningful
across processes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from devine_onnx.downscaling.api import downscale
from devine_onnx.io.atomic import lock_path, partial_path
from devine_onnx.sample_data import sample_nwp

pytest.importorskip("rioxarray")

ROOT = Path(__file__).resolve().parent.parent
ANGLES = ",".join(str(a) for a in range(0, 360, 10))  # 36 directions


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A DEM GeoTIFF, a 36-direction table (NetCDF, whole-grid chunks) and an NWP file."""
    from tests.downscaling.test_downscale import make_table
    from tests.tables.test_corrections import terrain

    folder = tmp_path_factory.mktemp("inputs")
    dem = folder / "dem.tif"
    terrain((90, 110), offset=(40, 60)).rio.to_raster(dem, driver="GTiff")
    table = folder / "table.nc"
    make_table((61, 81), n_angles=36).to_netcdf(table)
    nwp = folder / "nwp.nc"
    sample_nwp(n_times=6).to_netcdf(nwp)
    return {"dem": dem, "table": table, "nwp": nwp}


def command(args, pre: str = "") -> list[str]:
    """``python -c`` running the CLI entry point on ``args`` after the code ``pre``."""
    code = (
        textwrap.dedent(pre)
        + f"\nfrom devine_onnx.cli import main\nmain({[str(a) for a in args]!r})\n"
    )
    return [sys.executable, "-c", code]


def start(args, pre: str = "", env=None) -> subprocess.Popen:
    return subprocess.Popen(
        command(args, pre),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout=300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(predicate, proc: subprocess.Popen, timeout=240.0) -> None:
    """Poll ``predicate`` until true; fail with the child's output if it ended first."""
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the first run ended early ({proc.returncode}): {out}\n{err}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("timed out waiting for the first run")
        time.sleep(0.1)


def leftovers(folder: Path, keep=()) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


#: The first table run writes one direction, then waits for the file named by $GO.
SLOW_TABLE = """
import os, time
import devine_onnx.io.writers as w
_write = w._NetCDFWriter.write
def write(self, a, b, arrays):
    if a >= 1:
        end = time.monotonic() + 120
        while not os.path.exists(os.environ["GO"]) and time.monotonic() < end:
            time.sleep(0.05)
    return _write(self, a, b, arrays)
w._NetCDFWriter.write = write
"""


# --------------------------------------------------------------------------- item 1
def test_second_table_run_on_the_same_output_is_refused(files, tmp_path):
    """Two `corrections` on one .nc, HDF5 file locking off: the second (also with
    --no-resume) stops with one line naming the first, which completes all directions."""
    out = tmp_path / "table.nc"
    go = tmp_path / "go"
    env = {"HDF5_USE_FILE_LOCKING": "FALSE", "GO": str(go)}
    args = ["corrections", files["dem"], "--engine", "micromet", "--angles", ANGLES, "-o", out]
    first = start(args, SLOW_TABLE, env)
    try:
        wait_for(lambda: partial_path(out).exists() and lock_path(out).exists(), first)
        second = [start(args, env=env), start([*args, "--no-resume"], env=env)]
        results = [finish(p) for p in second]
        assert first.poll() is None  # still running: the refusals were made while it ran
        for rc, _, err in results:
            lines = err.strip().splitlines()
            assert rc == 1 and len(lines) == 1, err
            assert "in use by another run" in lines[0] and f"pid {first.pid} " in lines[0]
            assert "--no-resume" not in lines[0] and "Traceback" not in err
        assert partial_path(out).exists()  # the first run's partial was not deleted
    finally:
        go.touch()
    rc, stdout, err = finish(first)
    assert rc == 0, err
    assert "wrote" in stdout
    with xr.open_dataset(out) as ds:
        assert ds.sizes["angle"] == 36 and "directions_done" not in ds.attrs
        assert np.isfinite(ds.acceleration.values).any(axis=(1, 2)).all()  # every direction
    assert leftovers(tmp_path, keep={"table.nc", "go"}) == []


def test_held_lock_refuses_downscale_regrid_and_distributed_before_work(files, tmp_path):
    """A lock held by another live process: downscale, regrid --output and a distributed
    table stop at once with one line; a cache write skips caching silently."""
    from devine_onnx.errors import OutputError
    from devine_onnx.regrid.cache import build_weights, load_or_build
    from devine_onnx.tables.build import compute_corrections

    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from devine_onnx.io.atomic import output_lock
            with output_lock(sys.argv[1]), output_lock(sys.argv[2]), output_lock(sys.argv[3]):
                print("held", flush=True)
                time.sleep(120)
            """), tmp_path / "w.nc", tmp_path / "t.zarr", tmp_path / "weights.nc"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        expected = rf"in use by another run \(pid {holder.pid} on host"
        with pytest.raises(OutputError, match=expected):
            downscale(files["nwp"], files["table"], output=tmp_path / "w.nc", cache_dir=False)
        with pytest.raises(OutputError, match=expected):
            build_weights(files["nwp"], files["table"], output=tmp_path / "weights.nc")
        t0 = time.monotonic()
        with pytest.raises(OutputError, match=expected):
            compute_corrections(
                files["dem"], engine="micromet", angles=[0], output=tmp_path / "t.zarr", workers=2
            )
        assert time.monotonic() - t0 < 20  # refused before a cluster starts
        # The weights cache: a file being written by another run is not written again.
        import tests.regrid.test_weights as tw

        cache = tmp_path / "cache"
        cache.mkdir(mode=0o700)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning either
            first = load_or_build(cache, tw.LON, tw.LAT, "EPSG:4326", tw.TX, tw.TY, "EPSG:2154")
        assert first.path is not None
        first.path.unlink()
        other = subprocess.Popen(
            [sys.executable, "-c", "import sys,time\nfrom devine_onnx.io.atomic import output_lock\n"
             "with output_lock(sys.argv[1]):\n print('held', flush=True)\n time.sleep(120)",
             first.path],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert other.stdout.readline().strip() == "held"
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                again = load_or_build(cache, tw.LON, tw.LAT, "EPSG:4326", tw.TX, tw.TY, "EPSG:2154")
            assert again.path is None and not first.path.exists()
            np.testing.assert_array_equal(again.indices, first.indices)
        finally:
            other.kill()
            other.wait()
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "w.nc").exists() and not (tmp_path / "t.zarr").exists()


def test_locked_calls_keep_warnings_at_the_callers_line(tmp_path):
    """Holding the output's lock adds no stack frame: a warning meant for the caller of
    downscale still names the caller's line (here: this file)."""
    from devine_onnx.errors import DevineWarning
    from tests.downscaling.test_downscale import make_table

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = downscale(
            sample_nwp(n_times=2), make_table((61, 81), n_angles=12), output=tmp_path / "w.nc",
            cache_dir=False, quiet=True,
        )  # fmt: skip
    ds.close()
    ours = [w for w in rec if issubclass(w.category, DevineWarning)]
    assert ours and all(w.filename == __file__ for w in ours), [
        (w.filename, w.message) for w in ours
    ]


# --------------------------------------------------------------------------- item 3
def test_planted_partial_symlink_is_never_followed(files, tmp_path):
    """A link OUTPUT.partial -> victim: downscale neither writes the victim nor turns the
    output into a link; corrections refuses the link in one line."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in ("w.nc", "w.zarr"):
        out = tmp_path / name
        partial_path(out).symlink_to(victim)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = downscale(files["nwp"], files["table"], output=out, cache_dir=False)
        ds.close()
        assert victim.read_text() == "precious"
        assert not out.is_symlink() and (out.is_file() or out.is_dir())
        assert partial_path(out).is_symlink()  # left alone
    # export: GeoTIFF, ESRI ASCII grids and KMZ (several files each)
    from devine_onnx.export import export_file

    wind = tmp_path / "w.nc"
    for fmt, names in (("geotiff", ["w_wind_speed.tif"]), ("asc", []), ("kmz", ["w.kmz"])):
        folder = tmp_path / fmt
        folder.mkdir()
        for name in names:
            partial_path(folder / name).symlink_to(victim)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_file(wind, folder, fmt)
        assert victim.read_text() == "precious"
        made = [p for p in folder.iterdir() if not p.name.endswith(".partial")]
        assert made and not any(p.is_symlink() or p.name.startswith(".") for p in made)
    table = tmp_path / "table.nc"
    partial_path(table).symlink_to(victim)
    args = ["corrections", files["dem"], "--engine", "micromet", "--angles", "0,90", "-o", table]
    rc, _, err = finish(start(args))
    assert rc == 1 and len(err.strip().splitlines()) == 1, err
    assert "symbolic link" in err and str(partial_path(table)) in err
    assert victim.read_text() == "precious" and not table.exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root (chown)")
def test_partial_of_another_user_is_refused(files, tmp_path):
    from devine_onnx.errors import OutputError
    from devine_onnx.tables.build import compute_corrections

    out = tmp_path / "table.nc"
    partial_path(out).write_text("someone else's")
    os.chown(partial_path(out), 54321, 54321)
    for resume in (True, False):
        with pytest.raises(OutputError, match="belongs to another user"):
            compute_corrections(
                files["dem"], engine="micromet", angles=[0], output=out, resume=resume
            )
    assert partial_path(out).read_text() == "someone else's"


# --------------------------------------------------------------------------- item 6
#: Block mode pauses after the scratch copy of the table exists and tells the test.
PAUSE_IN_BLOCKS = """
import os, pathlib, time
import devine_onnx.downscaling.blocks as b
def _run_blocks(*args, **kwargs):
    pathlib.Path(os.environ["READY"]).touch()
    time.sleep(120)
b._run_blocks = _run_blocks
"""


def block_run(files, out, ready):
    args = ["downscale", files["nwp"], "-t", files["table"], "-o", out, "--block-size", "16"]
    return start([*args, "--no-cache"], PAUSE_IN_BLOCKS, {"READY": str(ready)})


def test_sigterm_cleans_up_like_ctrl_c(files, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    ready = tmp_path / "ready"
    proc = block_run(files, out_dir / "w.nc", ready)
    wait_for(ready.exists, proc)
    names = leftovers(out_dir)
    assert any(n.startswith(".devine-onnx-table-") for n in names), names  # the scratch copy
    assert "w.nc.lock" in names
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc, timeout=60)
    assert rc == 143 and err.strip().splitlines()[-1] == "terminated", err
    assert "Traceback" not in err
    assert leftovers(out_dir) == []  # scratch table, temporary output and lock removed


def test_sigterm_keeps_the_resumable_table_partial(files, tmp_path):
    out = tmp_path / "table.nc"
    go = tmp_path / "go"
    args = ["corrections", files["dem"], "--engine", "micromet", "--angles", ANGLES, "-o", out]
    proc = start(args, SLOW_TABLE, {"GO": str(go)})
    wait_for(lambda: partial_path(out).exists(), proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc, timeout=60)
    assert rc in (130, 143) and "Traceback" not in err, err
    assert "partial table" in err and "kept" in err
    assert leftovers(tmp_path) == ["table.nc.partial"]  # no lock left
    rc, stdout, err = finish(start(args))
    assert rc == 0 and "resuming" in err, err
    assert leftovers(tmp_path) == ["table.nc"]


def test_killed_run_leftovers_are_swept_by_the_next_run(files, tmp_path, caplog):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    ready = tmp_path / "ready"
    proc = block_run(files, out_dir / "w.nc", ready)
    wait_for(ready.exists, proc)
    proc.kill()  # kill -9: no cleanup at all
    proc.wait()
    names = leftovers(out_dir)
    assert "w.nc.lock" in names and any(n.startswith(".devine-onnx-table-") for n in names)
    assert all(str(proc.pid) in n for n in names if n.startswith(".devine-onnx-"))
    with caplog.at_level(logging.INFO, logger="devine_onnx"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = downscale(
            files["nwp"], files["table"], output=out_dir / "w.nc", cache_dir=False, block_size=16
        )
    ds.close()
    assert "took over the lock" in caplog.text and f"pid {proc.pid}" in caplog.text
    assert "no longer running" in caplog.text
    assert leftovers(out_dir) == ["w.nc"]


# --------------------------------------------------------------------------- item 7
#: In every process: a worker dies on the second task it runs (after writing Zarr chunks).
KILL_HOOK = """
import os
flag = os.environ.get("DEVINE_TEST_KILL_FLAG")
if flag:
    import devine_onnx.engines.micromet as mm
    _batches = mm.MicroMetEngine.batches
    _seen = []
    def batches(self, angles, batch):
        _seen.append(1)
        if len(_seen) == 2 and not os.path.exists(flag):
            open(flag, "w").close()
            os._exit(1)
        yield from _batches(self, angles, batch)
    mm.MicroMetEngine.batches = batches
"""


@pytest.mark.slow
def test_dead_worker_leaves_no_semaphore_warning(files, tmp_path):
    pytest.importorskip("distributed")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_HOOK)
    flag = tmp_path / "killed"
    env = {
        "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "DEVINE_TEST_KILL_FLAG": str(flag),
    }
    out = tmp_path / "t.zarr"
    args = ["corrections", files["dem"], "--engine", "micromet", "--angles", "0,30,60,90,120,150",
            "-o", out, "--workers", "2"]  # fmt: skip
    rc, stdout, err = finish(start(args, env=env), timeout=600)
    assert flag.exists()  # a worker died
    assert rc == 0 and "wrote" in stdout, err
    assert "leaked" not in err and "warnings.warn" not in err, err
