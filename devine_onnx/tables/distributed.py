"""Correction tables on dask.distributed: tasks write their chunks into one Zarr store.

``compute_corrections(..., workers=N)`` (a :class:`distributed.LocalCluster` of N worker
processes) or ``scheduler=ADDRESS`` (an existing cluster: LocalCluster, SLURM through
dask-jobqueue, Kubernetes..., or a :class:`distributed.Client`) runs the table as tasks on the
cluster; the command line says ``--workers N`` / ``--scheduler ADDRESS``. The driver (the
calling process) reads the DEM, opens the engine once on the CPU to prepare the DEM and make
the table's template (coordinates and attributes), creates the store and waits; the workers
compute and write.

**Tasks.** A task is a :class:`TableTask`: the directions ``angles[a:b]`` (one ``batch``, the
same batches as a local run, so the values are bit-identical) over one tile of the table.
Today a tile is the whole table window (``tile = 0``): the engines compute a direction from the
whole DEM. A task binds its worker's engine to the DEM, computes ``engine.batches(ks, batch)``,
writes the region ``[a:b, rows, cols]`` of every variable, then sets its done marker. Engines
that compute windows can later split the table into more tiles: the task key, the region and
the done markers already carry the tile.

**Engines on workers.** ONNX Runtime sessions do not pickle: a worker receives an
:class:`EngineSpec` (registry name, options, model path, device, threads) and opens the engine
itself, once per worker process (cached in this module, keyed by the spec, rebound when the
DEM changes). The prepared DEM goes to every worker once (``Client.scatter``). GPU workers:
one ONNX Runtime session per worker process, on the first GPU it sees; give each worker its
own GPU with ``CUDA_VISIBLE_DEVICES`` (one ``dask worker`` per GPU, or dask-cuda's
``LocalCUDACluster``). ``workers=N`` on a machine with several GPUs pins worker ``i`` to GPU
``i mod G`` itself.

**Store, resume and completion.** The store is written under ``OUTPUT.partial`` with chunks
``(1, <= 1024, <= 1024)`` along ``(angle, y, x)``: two tasks never write the same chunk.
Directions finish out of order, so there is no ``directions_done`` counter: a task sets
``done[a:b, tile] = 1`` (a uint8 variable ``done(angle, tile)``, one chunk per cell) after
its values are written. A rerun computes only the batches not marked done (a partial store of
a local run is taken over: its counter becomes markers). The driver renames the store to
``OUTPUT`` only when every marker is set, after deleting ``done`` and consolidating the
metadata. On a task's error the driver stops the others (queued tasks return at once, running
ones finish their batch), then raises one line; the partial store keeps what was done.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import xarray as xr

from devine_onnx._cluster import (
    DISTRIBUTED_INSTALL,
    WorkerError,
    check_workers,
    cluster_client,
    import_distributed,
)
from devine_onnx.errors import (
    DevineError,
    OptionError,
    OutputError,
    option,
)
from devine_onnx.io.atomic import atomic_output, check_partial, partial_path, remove_path
from devine_onnx.io.writers import create_writer, inspect_output, open_writer, output_format
from devine_onnx.progress import progress_bar

__all__ = [
    "DISTRIBUTED_INSTALL",
    "TABLE_CHUNK",
    "EngineSpec",
    "TableTask",
    "WorkerError",
    "check_distributed",
    "driver_engine",
    "run_distributed",
]

LOGGER = logging.getLogger("devine_onnx")

#: Spatial chunk size (rows and columns) of a distributed table store.
TABLE_CHUNK = 1024
#: Progress attribute of a partial table written by the local loop.
_DONE = "directions_done"
#: Engines kept open per worker process.
_CACHE_SIZE = 2


# ---------------------------------------------------------------------------- options
def check_distributed(workers, scheduler, output) -> None:
    """Refuse what a distributed run cannot do, before the DEM is read.

    Raises :class:`OptionError` (both ``workers`` and ``scheduler``, a bad ``workers``),
    :class:`OutputError` (no output, or not ``.zarr``) or :class:`MissingDependencyError`.
    """
    check_workers(workers, scheduler)
    if output is None:
        raise OutputError(
            f"{option('workers') if workers is not None else option('scheduler')}: a "
            "distributed table is written by the workers into a Zarr store; pass "
            f"{option('output', 'table.zarr')}"
        )
    if output_format(output) != "zarr":
        raise OutputError(
            f"{output}: a distributed run writes from several worker processes at once, which "
            "a NetCDF file cannot take; name the output .zarr (e.g. "
            f"{Path(output).with_suffix('.zarr').name}), or drop {option('workers')}/"
            f"{option('scheduler')} to write NetCDF from one process"
        )
    import_distributed()


# ---------------------------------------------------------------------------- engine spec
@dataclass(frozen=True)
class EngineSpec:
    """What a worker needs to open an engine: picklable and hashable (the cache key).

    Attributes
    ----------
    name : str
        Engine registry name (:data:`devine_onnx.engines.ENGINES`).
    model : str or None
        Absolute model path, ``"demo"``, or None (engines without a model).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    options : tuple of (str, value)
        Engine options, sorted.
    threads : int or None
        ONNX Runtime intra-op threads per worker (None: ONNX Runtime's default).
    gpus : tuple of str
        GPUs to spread the workers of a local cluster over (``CUDA_VISIBLE_DEVICES`` values);
        empty: leave the workers' environment alone.
    """

    name: str
    model: str | None = None
    device: str = "auto"
    options: tuple = ()
    threads: int | None = None
    gpus: tuple[str, ...] = ()

    def open(self, device: str | None = None):
        """Open the engine (unbound)."""
        from devine_onnx.engines import get_engine

        device = device or self.device
        model = self.model
        options = dict(self.options)
        if self.threads and model is not None:
            if self.name == "devine":
                from devine_onnx.engines.devine.model import DevineModel

                model = DevineModel(model, device=device, threads=self.threads)
            elif self.name == "features":
                options.setdefault("threads", self.threads)
        return get_engine(self.name, model, device=device, options=options)


def driver_engine(engine, model, device: str, options: dict):
    """The engine the driver prepares the DEM and the template with, and its spec.

    The driver opens model engines on the CPU: it never runs the network, and a login node
    may have no GPU. Workers open the spec on ``device``.
    """
    from devine_onnx.engines import ENGINES, TableEngine, get_engine
    from devine_onnx.engines.devine.model import DevineModel
    from devine_onnx.engines.runtime import MODEL_ENV

    if isinstance(engine, TableEngine):
        raise OptionError(
            f"{option('engine')}: an engine instance cannot be sent to workers (ONNX Runtime "
            "sessions do not pickle); give the engine by name with its options "
            "(engine='micromet', engine_options={...}) and the model as a path"
        )
    options = dict(options)
    if isinstance(model, DevineModel):
        options.setdefault("tile", model.tile)
    if model is not None and hasattr(model, "path") and not isinstance(model, str | os.PathLike):
        model = model.path  # an open DevineModel or FeatureNetwork: workers reopen the file
    needs_model = engine is None or ENGINES.get(engine, (0, 0, True))[2]
    if model is None and needs_model and os.environ.get(MODEL_ENV):
        model = os.environ[MODEL_ENV]  # workers may not have the variable
    if isinstance(model, str | os.PathLike) and not (isinstance(model, str) and model == "demo"):
        model = str(Path(model).expanduser().resolve())
    elif model is not None and not isinstance(model, str):
        raise OptionError(
            f"{option('model')}: give the model as a path (workers open their own ONNX Runtime "
            f"session), not a {type(model).__name__}"
        )
    eng = get_engine(engine, model, device="cpu", options=options)
    spec = EngineSpec(
        name=eng.name,
        model=model if ENGINES[eng.name][2] else None,
        device=device,
        options=tuple(sorted(options.items())),
    )
    return eng, spec


# ---------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class TableTask:
    """Records ``a:b`` (directions ``angles[a:b]``) of tile ``tile`` of the table window.

    Today ``tile = 0`` is the whole window: the engines compute a direction from the whole
    DEM. An engine that computes windows would number its tiles, bind a tile's window and
    write its region with :meth:`~devine_onnx.io.writers.BlockWriter.write_region`; the key and
    the done markers ``done(angle, tile)`` already carry the tile.
    """

    a: int
    b: int
    tile: int = 0

    def key(self, run: str) -> str:
        return f"devine-table-{self.a}-{self.b}-t{self.tile}-{run}"


class _OpenEngine:
    """An engine opened in a worker process, its lock and the DEM window it is bound to."""

    def __init__(self, engine):
        self.engine = engine
        self.lock = threading.Lock()
        self.bound = None


#: Engines open in this (worker) process, by spec.
_ENGINES: OrderedDict[EngineSpec, _OpenEngine] = OrderedDict()
_ENGINES_LOCK = threading.Lock()
_PINNED: list[str] = []


def _pin_gpu(spec: EngineSpec) -> None:
    """Worker ``i`` of a local cluster on GPU ``i mod G``, before its first CUDA session."""
    if not spec.gpus or spec.device == "cpu" or _PINNED:
        return
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return
    if isinstance(name, int | np.integer):
        gpu = spec.gpus[int(name) % len(spec.gpus)]
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        _PINNED.append(gpu)


def _worker_engine(spec: EngineSpec) -> _OpenEngine:
    with _ENGINES_LOCK:
        entry = _ENGINES.get(spec)
        if entry is None:
            _pin_gpu(spec)
            entry = _ENGINES[spec] = _OpenEngine(spec.open())
            while len(_ENGINES) > _CACHE_SIZE:
                _ENGINES.popitem(last=False)
        _ENGINES.move_to_end(spec)
        return entry


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "(local)"


def run_task(
    spec: EngineSpec,
    dem: xr.DataArray,
    bind_key: tuple,
    store: str,
    label: str,
    names: tuple[str, ...],
    angles: np.ndarray,
    batch: int,
    round16: bool,
    task: TableTask,
    stop: str | None = None,
) -> int:
    """Compute one task on a worker and write it; returns the directions written (0 when the
    run was stopped before it started)."""
    from devine_onnx.engines.base import TableWindow

    if stop is not None:
        from distributed import Event

        if Event(stop).is_set():
            return 0
    ks = np.asarray(angles[task.a : task.b], dtype=np.int64)
    try:
        entry = _worker_engine(spec)
        with entry.lock:
            if entry.bound != bind_key:
                entry.bound = None
                r0, r1, c0, c1 = bind_key[1]
                entry.engine.bind(dem, TableWindow(slice(r0, r1), slice(c0, c1)))
                entry.bound = bind_key
            writer = open_writer(store, names, fmt="zarr", label=label)
            pos = task.a
            for done_ks, values in entry.engine.batches(ks, batch):
                arrays = [values[name] for name in names]
                if round16:
                    arrays = [a.astype(np.float16).astype(np.float32) for a in arrays]
                writer.write(pos, pos + len(done_ks), arrays)
                pos += len(done_ks)
            if pos != task.b:
                raise RuntimeError(f"the engine returned {pos - task.a} of {len(ks)} directions")
            writer.mark_done(task.a, task.b, task.tile)
            writer.close()
    except DevineError as exc:
        text = f"worker {_worker_name()}: {exc}"
        try:
            new = type(exc)(text)
        except Exception:  # noqa: BLE001 - a subclass with another signature
            new = WorkerError(text)
        raise new from None
    except Exception as exc:  # noqa: BLE001 - anything else becomes one line on the driver
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise WorkerError(
            f"{_directions(ks)} failed on worker {_worker_name()}: {type(exc).__name__}"
            f"{': ' + first if first else ''}"
        ) from None
    return len(ks)


def _directions(ks) -> str:
    ks = [int(k) for k in ks]
    if len(ks) == 1:
        return f"direction {ks[0]}°"
    return f"directions {ks[0]}..{ks[-1]}°"


# ---------------------------------------------------------------------------- driver
def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _visible_gpus() -> tuple[str, ...]:
    """GPUs of this machine for a local cluster: ``CUDA_VISIBLE_DEVICES``, else nvidia-smi."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return tuple(g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1")
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    n = sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return tuple(str(i) for i in range(n))


def _resume_state(tmp: Path, template, resume_keys, resume: bool, notes: list, out_path):
    """Per-direction done flags of a matching partial store, or None to start a new one."""
    from devine_onnx.tables.table import mismatches

    check_partial(tmp)  # never a link or another user's partial
    if not (tmp.exists() or tmp.is_symlink()):
        return None
    if not resume:
        remove_path(tmp)
        note = f"removed the partial output {tmp} (--no-resume); starting over"
        notes.append(note)
        LOGGER.info(note)
        return None
    state = inspect_output(tmp, "angle", "acceleration", "zarr")
    if state is None:
        raise OutputError(
            f"{tmp}: a partial output of an earlier run that cannot be read; delete it or "
            f"rerun with --no-resume to start {out_path} over"
        )
    attrs = dict(state["attrs"])
    if state["done"] is not None:
        attrs.setdefault(_DONE, 0)  # markers instead of a counter: progress is known
    differ = mismatches({**state, "attrs": attrs}, template, resume_keys)
    if differ:
        raise OutputError(
            f"{tmp}: a partial output of an earlier run with other settings "
            f"({'; '.join(differ[:3])}); rerun that command to finish it, or pass --no-resume "
            "to delete it and start over"
        )
    n = template.sizes["angle"]
    if state["done"] is not None:
        done = state["done"].all(axis=1)
    else:  # a local run's partial store: its counter
        done = np.arange(n) < int(attrs[_DONE])
    note = f"resuming {tmp}: {int(done.sum())} of {n} directions already done"
    notes.append(note)
    LOGGER.info(note)
    return done


def run_distributed(
    *,
    spec: EngineSpec,
    resume_keys,
    dem: xr.DataArray,
    window,
    template: xr.Dataset,
    variables: dict,
    angles: np.ndarray,
    batch: int,
    round16: bool,
    out_path: Path,
    resume: bool,
    notes: list[str],
    quiet: bool,
    workers: int | None,
    scheduler,
) -> xr.Dataset:
    """Write the table on the cluster into ``out_path`` (Zarr); see the module docstring."""
    distributed = import_distributed()
    tmp = partial_path(out_path)
    done = _resume_state(tmp, template, resume_keys, resume, notes, out_path)
    template.attrs["notes"] = "\n".join(notes)
    names = tuple(variables)
    n = len(angles)
    if workers is not None:
        gpus = _visible_gpus() if spec.model is not None and spec.device != "cpu" else ()
        spec = replace(
            spec,
            threads=spec.threads or max(1, _cpu_count() // int(workers)),
            gpus=gpus if len(gpus) > 1 else (),
        )
    with cluster_client(distributed, workers, scheduler) as client:
        with atomic_output(out_path, keep_partial=True) as tmp:
            if done is None:
                template.attrs.pop(_DONE, None)
                writer = create_writer(
                    tmp,
                    template,
                    "angle",
                    variables,
                    fmt="zarr",
                    label=out_path,
                    spatial_chunks=(TABLE_CHUNK, TABLE_CHUNK),
                    done_tiles=1,
                )
            else:
                writer = open_writer(tmp, names, fmt="zarr", label=out_path)
                if writer.done_markers() is None:
                    writer.add_done_markers(1, "angle", done)
            marked = writer.done_markers().all(axis=1)
            tasks = [
                TableTask(a, min(a + batch, n))
                for a in range(0, n, batch)
                if not marked[a : min(a + batch, n)].all()
            ]
            window_key = (
                window.rows.start, window.rows.stop, window.cols.start, window.cols.stop
            )  # fmt: skip
            bind_key = (template.attrs["dem_fingerprint"], window_key)
            _compute(
                distributed, client, spec, dem, bind_key, tmp, out_path, names, angles,
                batch, round16, tasks, quiet, writer,
            )  # fmt: skip
            marked = writer.done_markers().all(axis=1)
            if not marked.all():
                missing = angles[~marked]
                raise WorkerError(
                    f"{out_path}: the tasks finished but {len(missing)} directions (e.g. "
                    f"{int(missing[0])}°) are not marked done in {tmp}; the output must be on a "
                    "file system every worker writes to (a shared one on a cluster); rerun "
                    "the same command to compute them"
                )
            writer.finalize({"notes": template.attrs["notes"]}, remove=[_DONE])
            writer.close()
    return xr.open_zarr(str(out_path), decode_coords="all")


def _compute(
    distributed, client, spec, dem, bind_key, tmp, label, names, angles, batch, round16,
    tasks, quiet, writer,
) -> None:  # fmt: skip
    """Submit the tasks, advance the progress bar as they complete, stop on the first error."""
    if not tasks:
        return
    run = uuid.uuid4().hex[:10]
    stop_name = f"devine-onnx-stop-{run}"
    stop = distributed.Event(stop_name, client=client)
    total = sum(t.b - t.a for t in tasks)
    [dem_future] = client.scatter([dem], broadcast=True, hash=False)
    futures = []
    by_key = {}
    for i, task in enumerate(tasks):
        fut = client.submit(
            run_task,
            spec,
            dem_future,
            bind_key,
            str(Path(tmp).resolve()),
            str(label),
            names,
            np.asarray(angles),
            batch,
            round16,
            task,
            stop_name,
            key=task.key(run),
            priority=-i,  # roughly in the order of the directions
        )
        futures.append(fut)
        by_key[fut.key] = task
    error = None
    completed = distributed.as_completed(futures, loop=client.loop)
    try:
        with progress_bar(total, "correction table", quiet) as bar:
            del futures[:]  # a result is released once seen: a lost worker recomputes nothing
            for fut in completed:
                task = by_key.pop(fut.key)
                if fut.status == "finished":
                    bar.advance(fut.result())
                elif error is None:
                    error = (task, _exception(fut))
                    stop.set()  # queued tasks return at once; running ones finish
                fut.release()
    except BaseException:
        stop.set()
        client.cancel(list(completed.futures))
        raise
    finally:
        del dem_future
    if error is not None:
        raise _driver_error(*error, angles, tmp, writer)


def _exception(fut) -> BaseException:
    try:
        exc = fut.exception()
    except BaseException as cancelled:  # noqa: BLE001 - CancelledError: scheduler lost the task
        return cancelled
    return exc


def _driver_error(task: TableTask, exc: BaseException, angles, tmp, writer) -> DevineError:
    """One line for the first failed task."""
    ks = angles[task.a : task.b]
    try:
        marked = int(writer.done_markers().all(axis=1).sum())
    except Exception:  # noqa: BLE001
        marked = None
    if not Path(tmp).exists():  # zarr reads the markers of a deleted store as 0: say so
        kept = (
            f"the partial store {tmp} no longer exists (deleted during the run?), nothing "
            "was kept; rerun the same command to compute the table"
        )
    elif marked is None:
        kept = (
            f"the done markers of {tmp} cannot be read; rerun the same command to compute "
            "what is missing (--no-resume starts over)"
        )
    else:
        kept = (
            f"{marked} of {len(angles)} directions are in {tmp}; rerun the same command to "
            "compute the rest (--no-resume starts over)"
        )
    if isinstance(exc, WorkerError):
        return WorkerError(f"{exc}; {kept}")
    if isinstance(exc, DevineError):
        return exc
    kind = type(exc).__name__
    if kind == "KilledWorker":
        return WorkerError(
            f"{_directions(ks)}: the workers running them died repeatedly (out of memory? see "
            f"the worker logs); {kept}"
        )
    if kind in ("CancelledError", "FutureCancelledError"):
        return WorkerError(
            f"{_directions(ks)}: cancelled by the dask scheduler (a worker or the scheduler was "
            f"lost); {kept}"
        )
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return WorkerError(f"{_directions(ks)}: {kind}{': ' + first if first else ''}; {kept}")
