"""Output locks, temporary outputs and scratch folders (devine_onnx.io.atomic, issue 20)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from devine_onnx.errors import OutputError
from devine_onnx.io import atomic
from devine_onnx.io.atomic import (
    LockInfo,
    OutputLockedError,
    atomic_output,
    check_partial,
    lock_path,
    locks_output,
    output_lock,
    partial_path,
    scratch_dir,
    sweep_stale,
    temporary_file,
)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def write_lock(path, *, pid, host=None, started=None, token="t0ken", pidns=None):
    info = {
        "pidns": atomic._pid_namespace() if pidns is None else pidns,
        "pid": pid,
        "host": host or socket.gethostname(),
        "started": "2026-01-01T00:00:00+00:00",
        "started_epoch": time.time() if started is None else started,
        "command": "devine-onnx corrections dem.tif -o t.nc",
        "token": token,
    }
    lock_path(path).write_text(json.dumps(info))


def test_lock_file_holds_pid_host_time_and_command_and_is_removed(tmp_path):
    out = tmp_path / "t.nc"
    with output_lock(out) as held:
        assert held
        info = json.loads(lock_path(out).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert info["started"].endswith("+00:00") and info["command"]
        # Re-entrant in the same thread (a locked function calling another).
        with output_lock(tmp_path / "." / "t.nc") as again:
            assert again
        assert lock_path(out).exists()
    assert not lock_path(out).exists()


def test_live_lock_is_refused_naming_the_run(tmp_path):
    out = tmp_path / "t.nc"
    write_lock(out, pid=1)  # pid 1 is alive and older than the lock
    with pytest.raises(OutputLockedError) as info:
        with output_lock(out):
            pass
    msg = str(info.value)
    assert "\n" not in msg and "in use by another run (pid 1 on host" in msg
    assert "devine-onnx corrections dem.tif" in msg and "UTC" in msg
    assert "--no-resume" not in msg
    assert lock_path(out).exists()  # not ours: left alone
    with output_lock(out, busy="skip") as held:
        assert held is False


def test_stale_lock_is_taken_over_with_a_note(tmp_path, caplog):
    out = tmp_path / "t.nc"
    pid = dead_pid()
    write_lock(out, pid=pid)
    with caplog.at_level(logging.INFO, logger="devine_onnx"):
        with output_lock(out):
            assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    assert "took over the lock" in caplog.text and f"pid {pid} " in caplog.text
    assert not lock_path(out).exists()


def test_reused_pid_is_stale(tmp_path):
    """A lock naming a live process that started after the lock (the pid was reused)."""
    out = tmp_path / "t.nc"
    if atomic._process_start(os.getpid()) is None:
        pytest.skip("no /proc")
    write_lock(out, pid=os.getppid() if os.getppid() > 1 else os.getpid(), started=1000.0)
    holder = LockInfo.from_json(lock_path(out).read_text())
    assert holder.stale()
    with output_lock(out):
        pass


def test_lock_of_another_host_says_how_to_remove_it(tmp_path):
    out = tmp_path / "t.zarr"
    write_lock(out, pid=dead_pid(), host="elsewhere.example")
    with pytest.raises(OutputLockedError, match="another host") as info:
        with output_lock(out):
            pass
    assert f"delete {lock_path(out)}" in str(info.value)
    assert "cannot be checked" in str(info.value)


def test_lock_of_another_pid_namespace_is_not_judged(tmp_path):
    """A container sharing the host name but not the process ids: its pid cannot be checked."""
    out = tmp_path / "t.nc"
    write_lock(out, pid=dead_pid(), pidns="4026599999")
    with pytest.raises(OutputLockedError, match="another host"):
        with output_lock(out):
            pass


def test_unreadable_or_linked_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_UNREADABLE_GRACE", 0.2)
    out = tmp_path / "t.nc"
    lock_path(out).write_text("garbage")
    with pytest.raises(OutputError, match=f"delete {lock_path(out)}"):
        with output_lock(out):
            pass
    lock_path(out).unlink()
    lock_path(out).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match="symbolic link"):
        with output_lock(out):
            pass
    assert not (tmp_path / "elsewhere").exists()


def test_other_thread_of_the_process_is_refused(tmp_path):
    out = tmp_path / "t.nc"
    errors = []

    def other():
        try:
            with output_lock(out):
                pass
        except OutputError as exc:
            errors.append(str(exc))

    with output_lock(out):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert errors and "another thread" in errors[0]


def test_locks_output_decorator(tmp_path):
    seen = []

    @locks_output("output")
    def work(x, *, output=None):
        """Docstring kept."""
        seen.append(lock_path(output).exists() if output is not None else None)
        return x

    assert work(1) == 1 and work(2, output=tmp_path / "o.nc") == 2
    assert seen == [None, True] and not lock_path(tmp_path / "o.nc").exists()
    assert work.__doc__ == "Docstring kept."
    write_lock(tmp_path / "busy.nc", pid=1)
    with pytest.raises(OutputLockedError):
        work(3, output=tmp_path / "busy.nc")
    assert seen == [None, True]  # not called


def test_maybe_output_lock(tmp_path):
    out = tmp_path / "o.zarr"
    with atomic.maybe_output_lock(None):
        pass
    with atomic.maybe_output_lock(out):
        assert lock_path(out).exists()
    assert not lock_path(out).exists()


# ----------------------------------------------------------------------------- temporary outputs
def test_atomic_output_never_follows_links(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out.txt"
    partial_path(out).symlink_to(victim)  # a planted fixed temporary name: irrelevant
    with atomic_output(out) as tmp:
        assert tmp.parent.name.startswith(".devine-onnx-out-") and tmp.name == "out.txt"
        assert (tmp.parent.stat().st_mode & 0o777) == 0o700
        tmp.write_text("new")
    assert out.read_text() == "new" and not out.is_symlink()
    assert victim.read_text() == "precious"
    # The final name is a link: it is replaced by the file, the target is untouched.
    out.unlink()
    out.symlink_to(victim)
    with atomic_output(out) as tmp:
        tmp.write_text("newer")
    assert not out.is_symlink() and out.read_text() == "newer"
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.txt",
        "out.txt.partial",
        "victim.txt",
    ]


def test_atomic_output_failure_leaves_nothing(tmp_path):
    out = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError):
        with atomic_output(out) as tmp:
            tmp.mkdir()
            (tmp / "chunk").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_replaces_a_store(tmp_path):
    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / "old").write_text("old")
    with atomic_output(out) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_resumable_partial_checks(tmp_path):
    out = tmp_path / "t.nc"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    partial_path(out).symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link"):
        check_partial(partial_path(out))
    with pytest.raises(OutputError, match="symbolic link"):
        with atomic_output(out, keep_partial=True):
            pass
    partial_path(out).unlink()
    check_partial(partial_path(out))  # missing: fine
    # Kept on failure, renamed on success.
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(out, keep_partial=True) as tmp:
            tmp.write_text("half")
            atomic.note_created(tmp)
            raise KeyboardInterrupt
    assert partial_path(out).read_text() == "half" and not lock_path(out).exists()
    with atomic_output(out, keep_partial=True) as tmp:
        tmp.write_text("whole")
    assert out.read_text() == "whole" and not partial_path(out).exists()


def test_partial_replaced_during_the_run_is_not_renamed(tmp_path):
    out = tmp_path / "t.nc"
    with pytest.raises(OutputError, match="replaced by another program"):
        with atomic_output(out, keep_partial=True) as tmp:
            tmp.write_text("mine")
            atomic.note_created(tmp)
            tmp.rename(tmp_path / "moved")  # (kept: its inode cannot be reused meanwhile)
            tmp.write_text("someone else's")  # same name, another file
    assert not out.exists() and partial_path(out).read_text() == "someone else's"


# ----------------------------------------------------------------------------- scratch
def test_scratch_folders_of_dead_runs_are_swept(tmp_path, caplog):
    host = atomic._node()
    dead = tmp_path / f".devine-onnx-table-{host}-{dead_pid()}-abcd1234"
    live = tmp_path / f".devine-onnx-table-{host}-{os.getpid()}-abcd1234"
    remote = tmp_path / f".devine-onnx-table-elsewhere-{dead_pid()}-abcd1234"
    unrelated = tmp_path / ".devine-onnx-notes"
    for p in (dead, live, remote, unrelated):
        p.mkdir()
        (p / "data").write_text("x")
    with caplog.at_level(logging.INFO, logger="devine_onnx"):
        assert sweep_stale(tmp_path) == [dead]
    assert "no longer running" in caplog.text
    assert live.exists() and remote.exists() and unrelated.exists() and not dead.exists()
    new = scratch_dir("table", tmp_path)
    assert new.name.startswith(f".devine-onnx-table-{host}-{os.getpid()}-")
    assert atomic._SCRATCH_RE.match(new.name)
    assert (new.stat().st_mode & 0o777) == 0o700


def test_temporary_file_is_new_private_named_and_swept(tmp_path):
    final = tmp_path / "map.tif"
    a, b = temporary_file(final), temporary_file(final)
    assert a != b and a.parent == tmp_path and a.stat().st_size == 0 and not a.is_symlink()
    assert atomic._SCRATCH_RE.match(a.name) and f"-{os.getpid()}-" in a.name
    mask = os.umask(0o022)
    os.umask(mask)
    assert (a.stat().st_mode & 0o777) == 0o666 & ~mask  # the final file's usual permissions
    host = atomic._node()
    dead = tmp_path / f".devine-onnx-out-{host}-{dead_pid()}-abcd1234"
    dead.write_text("half")
    assert sweep_stale(tmp_path) == [dead] and a.exists() and b.exists()
