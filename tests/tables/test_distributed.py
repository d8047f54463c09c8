"""Correction tables on dask.distributed: equal to a local run, written into one Zarr store,
resumed after a failed task or a killed worker, refused for NetCDF outputs.

One LocalCluster of two worker processes serves the module. Worker-side behaviour (a failing
direction, a dying worker, counting the directions computed) is installed in the worker
processes with ``Client.run``.
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pytest
import xarray as xr

from devine_onnx.errors import MissingDependencyError, OptionError, OutputError
from devine_onnx.io.atomic import partial_path
from devine_onnx.io.writers import DONE_VARIABLE, inspect_output
from devine_onnx.tables import distributed as dist
from devine_onnx.tables.build import compute_corrections
from tests.tables.test_corrections import terrain

distributed = pytest.importorskip("distributed")

ANGLES = [0, 45, 90, 137, 180, 225, 270, 359]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    ) as lc:
        yield lc


@pytest.fixture()
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2)
        yield c
        c.run(_restore)


@pytest.fixture(scope="module")
def dem():
    return terrain((90, 110), offset=(40, 60))


@pytest.fixture(scope="module")
def local_table(dem):
    return compute_corrections(dem, engine="micromet", angles=ANGLES, quiet=True)


# --- worker-side hooks (run in the worker processes through Client.run) ---------------------
def _install(fail=None, kill=None, flag=None):
    """Count the directions MicroMet computes in this process; fail or die on one."""
    import devine_onnx.engines.micromet as mm

    cls = mm.MicroMetEngine
    original = cls.__dict__.get("_original_batches", cls.batches)
    cls._original_batches = original
    mm._computed = computed = []

    def batches(self, angles, batch):
        ks = [int(k) for k in angles]
        if fail in ks:
            raise RuntimeError("simulated failure\nsecond line")
        if kill in ks and not os.path.exists(flag):
            open(flag, "w").close()
            os._exit(1)
        computed.extend(ks)
        yield from original(self, angles, batch)

    cls.batches = batches


def _no_marks():
    from devine_onnx.io.writers import _ZarrWriter

    _ZarrWriter._original_mark_done = _ZarrWriter.mark_done
    _ZarrWriter.mark_done = lambda self, a, b, tile=0: None


def _restore():
    import devine_onnx.engines.micromet as mm
    from devine_onnx.io.writers import _ZarrWriter

    if "_original_batches" in mm.MicroMetEngine.__dict__:
        mm.MicroMetEngine.batches = mm.MicroMetEngine._original_batches
        del mm.MicroMetEngine._original_batches
    if "_original_mark_done" in _ZarrWriter.__dict__:
        _ZarrWriter.mark_done = _ZarrWriter._original_mark_done
        del _ZarrWriter._original_mark_done
    mm._computed = []


def _computed():
    import devine_onnx.engines.micromet as mm

    return list(getattr(mm, "_computed", []))


def computed(client) -> list[int]:
    return sorted(k for ks in client.run(_computed).values() for k in ks)


def done_angles(out) -> list[int]:
    state = inspect_output(partial_path(out), "angle", "acceleration", "zarr")
    return [int(a) for a in state["records"][state["done"].all(axis=1)]]


def assert_same(ds, ref, names=("acceleration", "alpha", "elevation")):
    np.testing.assert_array_equal(ds.angle.values, ref.angle.values)
    np.testing.assert_array_equal(ds.x.values, ref.x.values)
    np.testing.assert_array_equal(ds.y.values, ref.y.values)
    for name in names:  # bit-identical, NaN where NaN
        np.testing.assert_array_equal(ds[name].values, ref[name].values)


# --- tests ------------------------------------------------------------------------------------
def test_local_cluster_equals_local_run(client, dem, local_table, tmp_path, monkeypatch):
    monkeypatch.setattr(dist, "TABLE_CHUNK", 32)  # several spatial chunks per direction
    advances = []

    class Bar:
        def advance(self, n=1):
            advances.append(n)

    from contextlib import contextmanager

    @contextmanager
    def recording_bar(total, description, quiet=False):
        advances.append(("total", total))
        yield Bar()

    monkeypatch.setattr(dist, "progress_bar", recording_bar)
    out = tmp_path / "table.zarr"
    client.run(_install)
    ds = compute_corrections(
        dem, engine="micromet", angles=ANGLES, batch=3, output=out, scheduler=client
    )
    assert_same(ds, local_table)
    for key in ("engine", "micromet_curvature_reference", "dem_fingerprint", "software"):
        assert ds.attrs[key] == local_table.attrs[key]
    assert ds.acceleration.encoding["chunks"] == (1, 32, 32)
    assert ds.rio.crs.to_epsg() == 2154
    assert DONE_VARIABLE not in ds.variables and "directions_done" not in ds.attrs
    ds.close()
    assert out.exists() and not partial_path(out).exists()
    assert (out / ".zmetadata").exists()
    # Each direction computed once; the bar advanced once per task, as tasks completed.
    assert computed(client) == ANGLES
    assert advances[0] == ("total", len(ANGLES)) and sorted(advances[1:]) == [2, 3, 3]


def test_devine_engine_on_scheduler_address(cluster, demo_model_file, tmp_path):
    dem = terrain((185, 185), offset=(100, 150))
    angles = [0, 45, 270]
    ref = compute_corrections(dem, demo_model_file, angles, quiet=True)
    out = tmp_path / "devine.zarr"
    ds = compute_corrections(
        dem, demo_model_file, angles, output=out, scheduler=cluster.scheduler_address, quiet=True
    )
    assert set(ds.data_vars) == set(ref.data_vars)  # static variables (edge_influence) too
    assert_same(ds, ref, tuple(ref.data_vars))
    assert ds.attrs["model_sha256"] == ref.attrs["model_sha256"]
    assert ds.attrs["valid_radius"] == ref.attrs["valid_radius"]
    ds.close()


def test_failed_task_then_resume_computes_only_missing(client, dem, local_table, tmp_path):
    out = tmp_path / "table.zarr"
    client.run(_install, fail=180)
    with pytest.raises(dist.WorkerError) as info:
        compute_corrections(dem, engine="micromet", angles=ANGLES, output=out, scheduler=client)
    msg = str(info.value)
    assert "\n" not in msg and "direction 180°" in msg and "simulated failure" in msg
    assert "rerun the same command" in msg and str(partial_path(out)) in msg
    # Not complete: only the partial store exists, with its done markers.
    assert not out.exists() and partial_path(out).exists()
    before = done_angles(out)
    assert 180 not in before and f"{len(before)} of {len(ANGLES)} directions" in msg
    # A local run does not take over a distributed partial store.
    with pytest.raises(OutputError, match="distributed run"):
        compute_corrections(dem, engine="micromet", angles=ANGLES, output=out, quiet=True)
    client.run(_install)  # no failure now; count
    ds = compute_corrections(
        dem, engine="micromet", angles=ANGLES, output=out, scheduler=client, quiet=True
    )
    assert computed(client) == sorted(set(ANGLES) - set(before))
    assert f"{len(before)} of {len(ANGLES)} directions already done" in ds.attrs["notes"]
    assert_same(ds, local_table)
    ds.close()
    assert out.exists() and not partial_path(out).exists()


def test_killed_worker_then_resume(client, cluster, dem, local_table, tmp_path):
    out = tmp_path / "table.zarr"
    flag = tmp_path / "killed"
    client.run(_install, kill=90, flag=str(flag))
    allowed = cluster.scheduler.allowed_failures
    cluster.scheduler.allowed_failures = 0  # the first death is final
    try:
        with pytest.raises(dist.WorkerError, match="died") as info:
            compute_corrections(
                dem, engine="micromet", angles=ANGLES, output=out, scheduler=client, quiet=True
            )
    finally:
        cluster.scheduler.allowed_failures = allowed
    # Every task assigned to the dying worker failed with it; the first one is reported.
    assert flag.exists() and "\n" not in str(info.value)
    assert not out.exists()
    before = done_angles(out)
    assert 90 not in before
    client.wait_for_workers(2)  # the nanny restarted the worker
    client.run(_install)
    ds = compute_corrections(
        dem, engine="micromet", angles=ANGLES, output=out, scheduler=client, quiet=True
    )
    assert computed(client) == sorted(set(ANGLES) - set(before))
    assert_same(ds, local_table)
    ds.close()


def test_renamed_only_when_every_direction_is_marked(client, dem, tmp_path):
    out = tmp_path / "table.zarr"
    client.run(_no_marks)  # tasks write values but no marker
    with pytest.raises(dist.WorkerError, match="not marked done"):
        compute_corrections(
            dem, engine="micromet", angles=[0, 90], output=out, scheduler=client, quiet=True
        )
    assert not out.exists() and partial_path(out).exists() and done_angles(out) == []


def test_takes_over_a_local_partial(client, dem, local_table, tmp_path, monkeypatch):
    from devine_onnx.engines.micromet import MicroMetEngine

    out = tmp_path / "table.zarr"
    original = MicroMetEngine.batches

    def failing(self, angles, batch):
        for i, item in enumerate(original(self, angles, batch)):
            if i == 3:
                raise RuntimeError("simulated crash")
            yield item

    monkeypatch.setattr(MicroMetEngine, "batches", failing)
    with pytest.raises(RuntimeError):
        compute_corrections(dem, engine="micromet", angles=ANGLES, output=out, quiet=True)
    monkeypatch.undo()
    client.run(_install)
    ds = compute_corrections(
        dem, engine="micromet", angles=ANGLES, output=out, scheduler=client, quiet=True
    )
    assert computed(client) == ANGLES[3:]
    assert_same(ds, local_table)
    ds.close()


def test_workers_one(dem, local_table, tmp_path):
    out = tmp_path / "table.zarr"
    angles = ANGLES[:3]
    ds = compute_corrections(
        dem, engine="micromet", angles=angles, output=out, workers=1, quiet=True
    )
    assert_same(ds, local_table.sel(angle=angles))
    ds.close()


def test_engine_specs(demo_model_file, tmp_path, monkeypatch):
    """Workers open the engine from a picklable spec: name, model path, options, device."""
    import pickle
    from dataclasses import replace

    from devine_onnx.engines.devine.model import DevineModel
    from tests.feature_models import constant_model

    _, spec = dist.driver_engine(None, demo_model_file, "cuda", {})
    assert spec.name == "devine" and spec.model == str(demo_model_file.resolve())
    assert spec.device == "cuda"  # for the workers; the driver opened it on the CPU
    assert pickle.loads(pickle.dumps(spec)) == spec and isinstance(hash(spec), int)
    opened = replace(spec, device="cpu", threads=1).open()
    assert opened.name == "devine" and opened.model.path == demo_model_file.resolve()
    # An open model travels as its path, with its tile size.
    _, spec = dist.driver_engine("devine", DevineModel(demo_model_file, tile=None), "cpu", {})
    assert spec.model == str(demo_model_file.resolve()) and dict(spec.options) == {"tile": None}
    # $DEVINE_ONNX_MODEL is resolved on the driver (workers may not have it).
    monkeypatch.setenv("DEVINE_ONNX_MODEL", str(demo_model_file))
    _, spec = dist.driver_engine(None, None, "auto", {})
    assert spec.name == "devine" and spec.model == str(demo_model_file.resolve())
    _, spec = dist.driver_engine("micromet", None, "auto", {"length_scale": 300.0})
    assert spec.model is None and spec.options == (("length_scale", 300.0),)
    assert replace(spec, threads=1).open().length_scale == 300.0
    path = constant_model(tmp_path / "constant.onnx", [3.0, 0.0, 0.0])
    _, spec = dist.driver_engine(None, path, "cpu", {})
    opened = replace(spec, threads=1).open()
    assert spec.name == opened.name == "features" and opened.network.threads == 1


def test_refusals(dem, tmp_path, monkeypatch):
    nc = tmp_path / "table.nc"
    with pytest.raises(OutputError) as info:
        compute_corrections(dem, engine="micromet", angles=[0], output=nc, workers=2)
    msg = str(info.value)
    assert "\n" not in msg and "NetCDF" in msg and "table.zarr" in msg
    assert not nc.exists() and not partial_path(nc).exists()
    with pytest.raises(OutputError, match="Zarr store"):
        compute_corrections(dem, engine="micromet", angles=[0], workers=2)
    with pytest.raises(OptionError, match="not both"):
        compute_corrections(
            dem, engine="micromet", output=tmp_path / "t.zarr", workers=2, scheduler="tcp://x:1"
        )
    with pytest.raises(OptionError, match="positive number"):
        compute_corrections(dem, engine="micromet", output=tmp_path / "t.zarr", workers=0)
    from devine_onnx.engines.micromet import MicroMetEngine

    with pytest.raises(OptionError, match="engine instance"):
        compute_corrections(
            dem, engine=MicroMetEngine(), output=tmp_path / "t.zarr", workers=1, quiet=True
        )
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(OptionError, match="cannot connect"):
            compute_corrections(
                dem,
                engine="micromet",
                angles=[0],
                output=tmp_path / "t.zarr",
                scheduler="tcp://127.0.0.1:9",
                quiet=True,
            )
    assert not (tmp_path / "t.zarr").exists()
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingDependencyError, match=r"devine-onnx\[distributed\]"):
        compute_corrections(dem, engine="micromet", output=tmp_path / "t.zarr", workers=2)


def test_cli_workers(tmp_path, local_table, dem):
    from tests.cli.helpers import assert_refused, invoke

    tif = tmp_path / "dem.tif"
    dem.rio.to_raster(tif, driver="GTiff")
    out = tmp_path / "table.zarr"
    angles = ",".join(str(a) for a in ANGLES)
    args = ["corrections", tif, "--engine", "micromet", "--angles", angles, "-o", out]
    result = invoke([*args, "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "Traceback" not in result.output
    assert "warning" not in result.stderr, result.stderr
    with xr.open_zarr(out, decode_coords="all") as ds:
        assert_same(ds, local_table)
    nc = tmp_path / "table.nc"
    refused = invoke(["corrections", tif, "--engine", "micromet", "-o", nc, "--workers", "2"])
    assert_refused(refused, "table.nc", ".zarr", "NetCDF", outputs=[nc])
