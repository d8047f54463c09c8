"""dask.distributed for both cluster paths: tables (``corrections --workers``) and blocks.

One place that imports :mod:`distributed` (an optional dependency), checks the
``workers``/``scheduler`` options and opens a client: on a new local cluster of worker
processes, on a scheduler address, on a cluster object or on a client the caller made. The
lowest layer of the package: it imports nothing of devine-onnx but :mod:`devine_onnx.errors`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np

from devine_onnx.errors import DevineError, MissingDependencyError, OptionError, option

__all__ = [
    "DISTRIBUTED_INSTALL",
    "WorkerError",
    "check_workers",
    "cluster_client",
    "import_distributed",
    "release_memory",
]

#: How to install the optional dependency.
DISTRIBUTED_INSTALL = 'pip install "devine-onnx[distributed]"'


class WorkerError(DevineError):
    """A task failed on a worker (or a worker died, or none started) during a cluster run."""


def check_workers(workers, scheduler) -> None:
    """Check the cluster options before any work.

    Parameters
    ----------
    workers : int or None
        Worker processes of a new local cluster (>= 1).
    scheduler : str, distributed.Client, cluster or None
        An existing cluster.

    Raises
    ------
    OptionError
        Both given, or ``workers`` not a positive integer.
    """
    if workers is not None and scheduler is not None:
        raise OptionError(
            f"give either {option('workers')} (a local cluster) or {option('scheduler')} (an "
            "existing one), not both"
        )
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1
    ):
        raise OptionError(
            f"{option('workers', workers)}: expected a positive number of worker processes"
        )


def import_distributed():
    """The ``distributed`` module, or :class:`MissingDependencyError` with the install hint."""
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError(
            f"{option('workers')} and {option('scheduler')} need dask.distributed, which is not "
            f"installed: {DISTRIBUTED_INSTALL}"
        ) from None
    return distributed


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


@contextmanager
def cluster_client(distributed, workers, scheduler):
    """A :class:`distributed.Client` for the run, closed on exit if opened here.

    Parameters
    ----------
    distributed : module
        From :func:`import_distributed`.
    workers : int or None
        Start a :class:`distributed.LocalCluster` of that many single-threaded worker
        processes (closed on exit).
    scheduler : str, distributed.Client, cluster or None
        An address (``tcp://HOST:8786``) or cluster object to connect to, or a client (used
        as is, left open).

    Raises
    ------
    OptionError
        The scheduler cannot be reached.
    WorkerError
        The local workers cannot start.
    """
    if scheduler is not None:
        if isinstance(scheduler, distributed.Client):
            yield scheduler
            return
        try:
            client = distributed.Client(scheduler, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise OptionError(
                f"{option('scheduler', scheduler)}: cannot connect to the dask scheduler "
                f"({_first_line(exc)}); give its address (tcp://HOST:8786) and check that it "
                "is running"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    _quiet_resource_tracker()
    try:
        # dask sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns off glibc's adaptive
        # mmap threshold: every direction's arrays would then be fresh pages (measured: 10x
        # the page faults); the workers keep the allocator of an ordinary process instead.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = distributed.LocalCluster(
                n_workers=int(workers),
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",  # no fixed port (8787 may be taken)
                silence_logs=logging.CRITICAL,  # errors are reported by the driver, in one line
            )
    except Exception as exc:  # noqa: BLE001 - spawn failures, ports, resources
        raise WorkerError(
            f"{option('workers', workers)}: could not start the local workers "
            f"({_first_line(exc)}); in a Python script, make the call under "
            "`if __name__ == '__main__':` (worker processes import the main module)"
        ) from None
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


#: Warning filter (``-W`` syntax) for the resource tracker's notice, see _quiet_resource_tracker.
TRACKER_FILTER = "ignore::UserWarning:multiprocessing.resource_tracker"


def _quiet_resource_tracker() -> None:
    """Silence the two-line "leaked semaphore objects" notice printed after a worker died.

    numcodecs' Blosc codec (Zarr chunks) creates a ``multiprocessing.Lock`` in each worker
    process the first time it compresses; with dask's ``spawn`` start method the semaphore
    is registered with the resource tracker that the workers share with this process. A
    worker that dies (killed, out of memory) cannot unregister it, so at exit the tracker
    removes it and prints a ``UserWarning`` saying it cleans up a "leaked semaphore": nothing
    is leaked, and the dead worker is already reported (its tasks are rerun or the run stops
    with one line). The tracker is a separate process started at the first spawn with this
    interpreter's ``-W`` options: a filter in :data:`sys.warnoptions` silences exactly this
    warning there (a tracker already running keeps its options).
    """
    import sys

    if TRACKER_FILTER not in sys.warnoptions:
        sys.warnoptions.append(TRACKER_FILTER)


_TRIM = None


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Readers decode chunks in threads, whose malloc arenas keep freed memory: without this the
    resident size would keep the peak of every earlier block's reading.
    """
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            pass
    if _TRIM:
        _TRIM(0)
