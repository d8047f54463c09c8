"""Writing NetCDF without importing dask.distributed (devine_onnx.io._dask_probe).

Each check runs in a fresh interpreter: whether ``distributed`` is imported is a property of
the process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("distributed")


def run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


WRITE = """
    import sys
    import dask, dask.array as da, numpy as np, xarray as xr
    from xarray.backends import locks, writers
    from devine_onnx.io._dask_probe import local_scheduler, no_distributed_probe

    a = da.from_array(np.arange(12.0).reshape(3, 4), chunks=(3, 2))
    ds = xr.Dataset({"a": (("y", "x"), a)})
    original = locks.get_dask_scheduler
    before = dask.config.get("scheduler", None)
    path = sys.argv[1] if len(sys.argv) > 1 else "{path}"
    with no_distributed_probe():
        with no_distributed_probe():  # re-entrant
            ds.to_netcdf(path, engine="netcdf4")
        inner = locks.get_dask_scheduler()
    back = xr.load_dataset(path)
    print("distributed" in sys.modules, inner, locks.get_dask_scheduler is original,
          writers.get_dask_scheduler is original, dask.config.get("scheduler", None) == before,
          bool((back["a"].values == np.arange(12.0).reshape(3, 4)).all()),
          local_scheduler() is not None)
"""


def test_to_netcdf_without_distributed(tmp_path):
    out = run(WRITE.replace("{path}", str(tmp_path / "a.nc")))
    # not imported; xarray's answer unchanged ("threaded"); everything restored; data written
    assert out == "False threaded True True True True True"


def test_without_the_block_xarray_imports_it(tmp_path):
    """The cost exists (else the probe would be pointless): plain to_netcdf imports it."""
    code = f"""
        import sys
        import dask.array as da, numpy as np, xarray as xr
        a = da.from_array(np.arange(4.0), chunks=2)
        xr.Dataset({{"a": ("x", a)}}).to_netcdf(r"{tmp_path / "b.nc"}")
        print("distributed" in sys.modules)
    """
    assert run(code) == "True"


def test_other_schedulers_left_to_dask(tmp_path):
    """A scheduler function chosen by the user, or distributed already imported: unchanged."""
    own = "dask.config.set(scheduler=lambda *a, **k: dask.local.get_sync(*a, **k))"
    code = WRITE.replace("{path}", str(tmp_path / "c.nc")).replace(
        "original = locks", own + "\n    original = locks"
    )
    out = run(code).split()
    assert out[0] == "True" and out[1] == "threaded" and out[-1] == "False"
    code = WRITE.replace("{path}", str(tmp_path / "d.nc")).replace(
        "import sys", "import sys, distributed"
    )
    out = run(code).split()
    assert out[0] == "True" and out[1] == "threaded" and out[-1] == "False"
