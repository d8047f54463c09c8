"""Writing NetCDF with xarray without importing dask.distributed (start-up cost).

``xarray.Dataset.to_netcdf`` asks which dask scheduler is active (to choose its file lock and
whether to close files between writes): ``xarray.backends.locks.get_dask_scheduler`` calls
``dask.base.get_scheduler``, which imports ``distributed`` to look for a client, and then
imports ``dask.distributed`` itself. Where distributed is installed this costs 0.3-0.8 s
(its modules and YAML configuration) on every command that writes a file, though no client
can exist in a process that has not imported distributed.

The same happens in ``dask.compute`` (dask-backed variables of the written dataset, NWP
chunks read by the time loop) whenever dask's scheduler is unset or named by a string.

:func:`no_distributed_probe` avoids both imports in exactly the case where they cannot find
anything: ``distributed`` not imported yet and dask's scheduler unset or one of its local
threaded schedulers (by name). Then xarray's probe answers ``"threaded"`` directly, and the
scheduler is given to dask as the function itself (``dask.threaded.get`` when unset: the
scheduler of dask arrays) instead of its name. In every other case nothing changes, so the
scheduler, xarray's lock and the results are those dask and xarray would have chosen.
"""

from __future__ import annotations

import importlib
import sys
import threading
from contextlib import contextmanager

__all__ = ["local_scheduler", "no_distributed_probe"]

#: dask's names of its local schedulers that xarray reports as ``"threaded"``.
_THREADED = {"threads", "threading", "sync", "synchronous", "single-threaded"}
_LOCK = threading.Lock()
_DEPTH = 0
_SAVED: list = []


def _no_client_possible(get, collection) -> bool:
    """True when xarray's probe would answer ``"threaded"`` without any client to find."""
    if get is not None or collection is not None or "distributed" in sys.modules:
        return False
    dask = sys.modules.get("dask")
    config = getattr(dask, "config", None)
    if config is None:
        return False
    if config.get("get", None):
        return False
    scheduler = config.get("scheduler", None)
    if not scheduler:
        return True
    if isinstance(scheduler, str):
        return scheduler.lower() in _THREADED
    from dask.base import named_schedulers

    return any(scheduler is named_schedulers.get(name) for name in _THREADED)


def local_scheduler():
    """The scheduler function to give ``dask.compute(..., scheduler=)`` so that it does not
    import dask.distributed (see the module notes), or None: leave dask's choice."""
    if not _no_client_possible(None, None):
        return None
    import dask
    from dask.base import named_schedulers

    name = dask.config.get("scheduler", None)
    if not name:
        import dask.threaded

        return dask.threaded.get
    return named_schedulers.get(name.lower())


@contextmanager
def no_distributed_probe():
    """Within the block, neither xarray's dask-scheduler probe nor ``dask.compute`` imports
    dask.distributed when no distributed client can exist (see the module notes); otherwise
    unchanged. Re-entrant and thread-safe: the first block entered patches xarray's probe and
    pins the scheduler in dask's configuration, the last one left restores both. xarray
    versions without the probe are left alone (the scheduler is pinned all the same)."""
    global _DEPTH
    try:
        import dask
        from xarray.backends import locks
    except ImportError:
        yield
        return
    modules = [locks]
    for name in ("writers", "api"):  # where xarray versions import the probe by name
        try:
            modules.append(importlib.import_module(f"xarray.backends.{name}"))
        except ImportError:
            pass
    with _LOCK:
        if _DEPTH == 0:
            original = getattr(locks, "get_dask_scheduler", None)
            if original is not None:

                def probe(get=None, collection=None):
                    if _no_client_possible(get, collection):
                        return "threaded"
                    return original(get, collection)

                for module in modules:
                    if getattr(module, "get_dask_scheduler", None) is original:
                        _SAVED.append((module, "get_dask_scheduler", original))
                        module.get_dask_scheduler = probe
            pinned = local_scheduler()
            if pinned is not None:
                config = dask.config.set(scheduler=pinned)
                _SAVED.append((config, None, None))
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                while _SAVED:
                    target, name, original = _SAVED.pop()
                    if name is None:
                        target.__exit__(None, None, None)
                    else:
                        setattr(target, name, original)
