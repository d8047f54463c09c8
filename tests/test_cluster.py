"""devine_onnx._cluster: the cluster options and the dask.distributed client of both cluster paths."""

from __future__ import annotations

import numpy as np
import pytest

from devine_onnx import _cluster
from devine_onnx.errors import DevineError, OptionError


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_bad_workers(workers):
    with pytest.raises(OptionError, match="expected a positive number of worker processes"):
        _cluster.check_workers(workers, None)


def test_workers_and_scheduler_exclusive():
    with pytest.raises(OptionError, match="not both"):
        _cluster.check_workers(2, "tcp://localhost:8786")
    _cluster.check_workers(np.int64(2), None)
    _cluster.check_workers(None, "tcp://localhost:8786")
    assert issubclass(_cluster.WorkerError, DevineError)


def test_unreachable_scheduler_is_one_line():
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(OptionError, match=r"scheduler='tcp://127\.0\.0\.1:9': cannot connect"):
            with _cluster.cluster_client(distributed, None, "tcp://127.0.0.1:9"):
                pass


def test_release_memory_runs():
    _cluster.release_memory()
    _cluster.release_memory()  # the second call reuses the looked-up function
