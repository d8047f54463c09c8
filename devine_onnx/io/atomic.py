"""Outputs that are written whole or not at all, by one run at a time.

Three mechanisms, used by every command that writes a file or a Zarr store:

**The output lock** (:func:`output_lock`, :func:`locks_output`). A run that writes ``OUTPUT``
first creates ``OUTPUT.lock`` with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (atomic: of two runs
exactly one creates it) and keeps it for the whole run; the file holds the process id, host
name, start time (UTC) and command line of its run, and is deleted at the end. A second run
on the same output finds the lock and stops with one line naming the first run. A lock whose
run is gone is *stale*: on the same host a process id that no longer exists (or that was
started after the lock, i.e. reused) is detected and the lock taken over, with a note. A lock
written on another host cannot be checked: the message says so and how to remove it. The lock
is re-entrant within one thread: a library function that locks its output may call another
that locks the same output.

**Temporary outputs** (:func:`atomic_output`). A non-resumable output is written inside a
private folder (mode 0700, created with a unique name in the output's folder, so the final
rename is atomic) under its final file name, then renamed to ``OUTPUT``: an existing file or
symbolic link is never followed or overwritten, whatever its name. A resumable output
(correction tables) uses the fixed name ``OUTPUT.partial`` so that a later run finds it; a
``.partial`` that is a symbolic link or belongs to another user is refused
(:func:`check_partial`), and only the partial this run created or resumed under its lock is
renamed. The rename replaces ``OUTPUT`` itself, never a file a link points to.

**Scratch folders** (:func:`scratch_dir`) are named ``.devine-onnx-<kind>-<host>-<pid>-<random>`` (host: name and pid namespace).
A run that is killed (``kill -9``, power loss) cannot remove them; the next run that locks an
output or makes a scratch folder in the same folder removes those of dead runs of the same
host (:func:`sweep_stale`), with a note.

What this does not cover (documented in the README): file systems on which ``O_EXCL`` is not
atomic across hosts (some NFS setups), runs on other hosts (their process ids cannot be
checked), programs that ignore the lock (older devine-onnx versions, other tools).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from devine_onnx.errors import OutputError

__all__ = [
    "LOCK_SUFFIX",
    "LockInfo",
    "OutputLockedError",
    "atomic_output",
    "check_partial",
    "check_writable",
    "lock_path",
    "locks_output",
    "maybe_output_lock",
    "note_created",
    "output_lock",
    "partial_path",
    "pid_alive",
    "remove_path",
    "scratch_dir",
    "sweep_stale",
    "temporary_file",
]

LOGGER = logging.getLogger("devine_onnx")

#: Suffix of the lock file of an output: ``OUTPUT.lock``.
LOCK_SUFFIX = ".lock"
#: Prefix of scratch folders (temporary outputs, reordered tables).
SCRATCH_PREFIX = ".devine-onnx-"
#: ``.devine-onnx-<kind>-<host>-<pid>-<random>`` (mkdtemp's random part: 8 characters).
_SCRATCH_RE = re.compile(r"^\.devine-onnx-(?P<kind>[a-z]+)-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]{8}$")
#: A lock file still unreadable after this many seconds is not being written: it is broken.
_UNREADABLE_GRACE = 5.0
#: Seconds of tolerance between a lock's start time and its process's start time.
_START_SLACK = 2.0

_HELD_GUARD = threading.Lock()
#: Locks held by this process: resolved output path -> [thread id, depth, LockInfo].
_HELD: dict[str, list] = {}
#: Identity (st_dev, st_ino) of resumable partial outputs created by this process.
_CREATED: dict[str, tuple[int, int]] = {}


# ----------------------------------------------------------------------------- basics
def partial_path(path: str | os.PathLike) -> Path:
    """Fixed temporary name of a *resumable* output: ``OUTPUT.partial`` (same folder)."""
    p = Path(path)
    return p.with_name(p.name + ".partial")


def lock_path(path: str | os.PathLike) -> Path:
    """Lock file of an output: ``OUTPUT.lock`` (same folder)."""
    p = Path(path)
    return p.with_name(p.name + LOCK_SUFFIX)


def check_writable(path: str | os.PathLike) -> Path:
    """Raise :class:`OutputError` if the folder of ``path`` does not exist or is not writable."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(
            f"{p}: output folder {folder} does not exist; create it or choose another output path"
        )
    if not os.access(folder, os.W_OK):
        raise OutputError(
            f"{p}: output folder {folder} is not writable; choose another output path"
        )
    return p


def remove_path(path: str | os.PathLike) -> None:
    """Remove a file, link or folder (Zarr stores are folders) if it exists; never follows a
    link (a link is removed, not what it points to)."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def _key(path: str | os.PathLike) -> str:
    """The output's path with its folder resolved (one key per output, however spelled)."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    return str(folder.resolve() / p.name)


def _hostname() -> str:
    return socket.gethostname() or "localhost"


def _pid_namespace() -> str:
    """Id of this process's pid namespace (Linux), "" elsewhere: containers that share a host
    name but not their process ids have different ones."""
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    except OSError:
        return ""


def _node() -> str:
    """Where process ids are meaningful: host name (safe characters) + pid namespace."""
    ns = _pid_namespace()
    return _safe_host(_hostname()) + (f".{ns}" if ns else "")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state != ["Z"]


def _process_start(pid: int) -> float | None:
    """Start time of ``pid`` (seconds since the epoch) from /proc, or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        ticks = int(fields[19])  # field 22 of proc(5): starttime, after "pid (comm)"
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _command_line() -> str:
    args = list(sys.argv) or ["python"]
    args[0] = Path(args[0]).name or args[0]
    text = " ".join(args)
    return text if len(text) <= 300 else text[:297] + "..."


# ----------------------------------------------------------------------------- lock
@dataclass(frozen=True)
class LockInfo:
    """What a lock file says about the run that holds it.

    Attributes
    ----------
    pid : int
        Process id of the run, on ``host``.
    host : str
        Host name of the run.
    started : float
        When the lock was taken, seconds since the epoch (shown in UTC).
    command : str
        The command line of the run.
    token : str
        Random identity of this lock (a lock taken over or replaced has another).
    pidns : str
        Pid namespace of the run (Linux; "" when unknown): process ids are checked only
        within the same host and namespace.
    """

    pid: int
    host: str
    started: float
    command: str
    token: str
    pidns: str = ""

    @classmethod
    def mine(cls) -> LockInfo:
        return cls(
            os.getpid(), _hostname(), time.time(), _command_line(), uuid.uuid4().hex,
            _pid_namespace(),
        )  # fmt: skip

    def to_json(self) -> str:
        when = datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds")
        return json.dumps(
            {
                "pid": self.pid,
                "host": self.host,
                "started": when,
                "started_epoch": self.started,
                "command": self.command,
                "token": self.token,
                "pidns": self.pidns,
                "note": "devine-onnx output lock: deleted when the run ends",
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> LockInfo | None:
        try:
            d = json.loads(text)
            return cls(
                int(d["pid"]), str(d["host"]), float(d["started_epoch"]),
                str(d.get("command", "?")), str(d.get("token", "")), str(d.get("pidns", "")),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def local(self) -> bool:
        # Same host name and, where known, same pid namespace (a container sharing the host
        # name but not the process ids counts as another host: its pids cannot be checked).
        return self.host == _hostname() and (not self.pidns or self.pidns == _pid_namespace())

    def stale(self) -> bool:
        """True when the run is certainly gone: same host, and its process id is not running
        or belongs to a process started after the lock (the id was reused)."""
        if not self.local:
            return False
        if not pid_alive(self.pid):
            return True
        start = _process_start(self.pid)
        return start is not None and start > self.started + _START_SLACK

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.started, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return f"pid {self.pid} on host {self.host} since {since} UTC: {self.command}"


class OutputLockedError(OutputError):
    """Another run holds the lock of the output (its :class:`LockInfo` is ``holder``)."""

    def __init__(self, message: str, holder: LockInfo | None = None):
        super().__init__(message)
        self.holder = holder


def _read_lock(lock: Path) -> LockInfo | None:
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as f:
            return LockInfo.from_json(f.read(4096))
    except OSError:
        return None


def _create_lock(lock: Path, info: LockInfo) -> bool:
    """Create ``lock`` holding ``info``; False when it exists already."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(lock, flags, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(info.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    return True


def _take_over(lock: Path, stale: LockInfo) -> bool:
    """Remove the stale ``lock`` unless another run replaced it meanwhile; True if removed."""
    aside = lock.with_name(f"{lock.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(lock, aside)  # atomic: of several runs taking over, one moves this file
    except FileNotFoundError:
        return False
    moved = _read_lock(aside)
    if moved is None or moved.token != stale.token or moved.pid != stale.pid:
        # Another run took over just before us and this is its fresh lock: put it back.
        try:
            os.link(aside, lock)
        except OSError:
            pass
        aside.unlink(missing_ok=True)
        return False
    aside.unlink(missing_ok=True)
    return True


def _busy_message(path: Path, lock: Path, holder: LockInfo | None) -> str:
    if holder is None:
        return (
            f"{path}: locked by {lock}, which cannot be read (not a devine-onnx lock, or "
            f"broken); if no other run writes {path.name}, delete {lock} and run again"
        )
    if holder.local:
        return (
            f"{path}: in use by another run ({holder.describe()}); wait for it to finish or "
            f"choose another output (its partial output is in use: do not delete it)"
        )
    return (
        f"{path}: in use by a run on another host ({holder.describe()}), which cannot be "
        f"checked from here; wait for it to finish, or if you are sure it no longer runs, "
        f"delete {lock} and run again"
    )


def _acquire(path: Path, lock: Path) -> tuple[LockInfo | None, LockInfo | None]:
    """(our lock, None) when taken; (None, holder or None if unreadable) when busy."""
    if lock.is_symlink():
        raise OutputError(
            f"{path}: its lock file {lock} is a symbolic link (not made by devine-onnx); "
            "delete it and run again"
        )
    info = LockInfo.mine()
    first_unreadable = None
    for _ in range(200):
        try:
            if _create_lock(lock, info):
                return info, None
        except PermissionError:
            raise OutputError(
                f"{path}: cannot create the lock file {lock} (permission denied); choose a "
                "folder you can write to"
            ) from None
        except OSError as exc:
            raise OutputError(
                f"{path}: cannot create the lock file {lock} ({exc.strerror or exc}); check "
                "the folder and its free space"
            ) from None
        holder = _read_lock(lock)
        if holder is None:
            if not (lock.exists() or lock.is_symlink()):
                continue  # released meanwhile
            # Another run is writing it right now, or it is broken.
            first_unreadable = first_unreadable or time.monotonic()
            if time.monotonic() - first_unreadable > _UNREADABLE_GRACE:
                return None, None
            time.sleep(0.05)
            continue
        if not holder.stale():
            return None, holder
        if _take_over(lock, holder):
            LOGGER.info(
                "%s: took over the lock %s of a run that is no longer running (%s)",
                path, lock, holder.describe(),
            )  # fmt: skip
    return None, _read_lock(lock)


def _release(lock: Path, info: LockInfo) -> None:
    current = _read_lock(lock)
    if current is not None and current.token == info.token:
        lock.unlink(missing_ok=True)
    else:
        LOGGER.warning("%s: the lock of this run was removed or replaced while it ran", lock)


@contextmanager
def output_lock(path: str | os.PathLike, *, busy: str = "error") -> Iterator[bool]:
    """Hold the lock of the output ``path`` (``OUTPUT.lock``) while the block runs.

    Parameters
    ----------
    path : str or os.PathLike
        The output (file or Zarr store) that the block writes.
    busy : {"error", "skip"}
        When another run holds the lock: raise :class:`OutputLockedError` (one line naming
        that run: pid, host, since when, command), or yield False and let the block skip its
        writing (e.g. a cache write).

    Yields
    ------
    bool
        True when the lock is held (always with ``busy="error"``).

    Raises
    ------
    OutputError
        Missing or read-only folder (as :func:`check_writable`), a lock file that is a
        symbolic link, or (``OutputLockedError``) another run holds the lock.
    """
    final = check_writable(path)
    key = _key(final)
    me = threading.get_ident()
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held[0] == me:
            held[1] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield True
        finally:
            with _HELD_GUARD:
                _HELD[key][1] -= 1
        return
    if held is not None:  # another thread of this process
        if busy == "skip":
            yield False
            return
        raise OutputLockedError(
            f"{final}: in use by another thread of this process; write to another output",
            held[2],
        )
    lock = lock_path(final)
    info, holder = _acquire(final, lock)
    if info is None:
        if busy == "skip":
            yield False
            return
        raise OutputLockedError(_busy_message(final, lock, holder), holder)
    with _HELD_GUARD:
        _HELD[key] = [me, 1, info]
    try:
        sweep_stale(final.parent if str(final.parent) else Path("."))
        yield True
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)
            _CREATED.pop(_key(partial_path(final)), None)
        _release(lock, info)


def maybe_output_lock(output) -> AbstractContextManager:
    """:func:`output_lock` of ``output`` when it is a path; a no-op context for None (or an
    in-memory target). Write ``with maybe_output_lock(output):`` around a function's body:
    unlike a decorator it adds no stack frame, so ``stacklevel`` of warnings stays right."""
    if isinstance(output, str | os.PathLike):
        return output_lock(output)
    return nullcontext()


def locks_output(param: str = "output"):
    """Decorator: hold the lock of the function's output (argument ``param``) for the whole
    call, when it is a path (nothing is locked for ``None``).

    The lock is taken before the function runs, so a second run on the same output stops at
    once rather than after its preparations; see :func:`output_lock`. The wrapper is one more
    stack frame: for functions that emit warnings with a ``stacklevel`` meant for their
    caller, use ``with maybe_output_lock(output):`` in the body instead.
    """

    def decorate(func):
        sig = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                value = sig.bind_partial(*args, **kwargs).arguments.get(param)
            except TypeError:
                value = None  # the function reports its own argument error
            if not isinstance(value, str | os.PathLike):
                return func(*args, **kwargs)
            with output_lock(value):
                return func(*args, **kwargs)

        return wrapper

    return decorate


# ----------------------------------------------------------------------------- partials
def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def note_created(path: str | os.PathLike) -> None:
    """Remember the identity of a resumable partial output this process just created.

    :func:`atomic_output` renames it only if it is still the same file or store
    (called by :func:`devine_onnx.io.writers.create_writer`).
    """
    if not str(path).endswith(".partial"):
        return  # other temporary outputs live in private folders
    ident = _identity(Path(path))
    if ident is not None:
        _CREATED[_key(path)] = ident


def check_partial(path: str | os.PathLike) -> None:
    """Refuse a resumable partial output that is a symbolic link or not the user's.

    Nothing happens when ``path`` does not exist. Raises :class:`OutputError` (one line).
    """
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return
    import stat

    if stat.S_ISLNK(st.st_mode):
        raise OutputError(
            f"{p}: the partial output is a symbolic link (not made by devine-onnx); delete the "
            "link (what it points to is not touched) and run again"
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise OutputError(
            f"{p}: the partial output belongs to another user (uid {st.st_uid}); it is not "
            "resumed or replaced: choose another output, or ask its owner to delete it"
        )
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise OutputError(f"{p}: the partial output is not a file or folder; delete it")


def _commit(tmp: Path, final: Path, aside_dir: Path | None) -> None:
    """Rename ``tmp`` to ``final`` without following links; an old folder ``final`` is moved
    into ``aside_dir`` first (deleted by the caller)."""
    if tmp.is_symlink() or not tmp.exists():
        raise OutputError(
            f"{final}: the temporary output {tmp} is missing or was replaced by a link; "
            "nothing was renamed: run again"
        )
    old = None
    if final.is_dir() and not final.is_symlink():
        old = aside_dir / (final.name + ".old")  # never the name of tmp
        os.rename(final, old)  # deleted with aside_dir once the new output is in place
    elif tmp.is_dir() and (final.exists() or final.is_symlink()):
        final.unlink()  # a file or link where a store goes: rename cannot replace it
    try:
        os.replace(tmp, final)  # replaces a file or a link itself, never what a link points to
    except BaseException:
        if old is not None and not (final.exists() or final.is_symlink()):
            os.rename(old, final)  # put the old store back
        raise


@contextmanager
def atomic_output(path: str | os.PathLike, keep_partial: bool = False) -> Iterator[Path]:
    """Yield a temporary path for the output ``path``; rename it to ``path`` on success.

    The output's lock (:func:`output_lock`) is held meanwhile (re-entrant: callers that
    locked the output already keep their lock).

    Parameters
    ----------
    path : str or os.PathLike
        The final file or Zarr store.
    keep_partial : bool
        False: the temporary path is ``<private folder>/<name of path>`` inside a new scratch
        folder of the output's folder (mode 0700, unique name): nothing existing is followed
        or overwritten; on an exception it is removed. True (resumable work): the fixed
        ``OUTPUT.partial``, kept on an exception for the next run; it must not be a link or
        another user's (:func:`check_partial`), and only the partial that this run created
        (:func:`note_created`) or found when it started is renamed.

    Raises
    ------
    OutputError
        Folder missing or read-only, output in use by another run, a partial that is a link
        or another user's, or a partial replaced while the run wrote it.
    """
    final = check_writable(path)
    with output_lock(final):
        folder = final.parent if str(final.parent) else Path(".")
        if keep_partial:
            tmp = partial_path(final)
            check_partial(tmp)
            before = _identity(tmp)
            yield tmp  # kept on an exception: the next run resumes it
            check_partial(tmp)
            expected = before if before is not None else _CREATED.get(_key(tmp))
            now = _identity(tmp)
            if expected is not None and now != expected:
                raise OutputError(
                    f"{tmp}: replaced by another program while this run wrote it; not renamed "
                    f"to {final.name}: check what else writes to this folder, then run again"
                )
            aside = scratch_dir("old", folder)
            try:
                _commit(tmp, final, aside)
            finally:
                _CREATED.pop(_key(tmp), None)
                shutil.rmtree(aside, ignore_errors=True)
            return
        work = scratch_dir("out", folder)
        try:
            tmp = work / final.name
            yield tmp
            _commit(tmp, final, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- scratch
def _safe_host(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", host) or "host"


def scratch_dir(kind: str, folder: str | os.PathLike | None = None) -> Path:
    """A new private folder (mode 0700) ``.devine-onnx-<kind>-<host>-<pid>-<random>`` (host: name and pid namespace).

    Created in ``folder`` (default: the system's temporary folder) after sweeping the scratch
    folders of dead runs there (:func:`sweep_stale`). The caller removes it when done; if the
    run is killed, the next run sweeps it.
    """
    if not re.fullmatch(r"[a-z]+", kind):
        raise ValueError(f"kind {kind!r}: expected lowercase letters")
    where = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    sweep_stale(where)
    prefix = f"{SCRATCH_PREFIX}{kind}-{_node()}-{os.getpid()}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=where))


def temporary_file(path: str | os.PathLike) -> Path:
    """A new empty file with a unique name in the folder of ``path``, to write ``path`` into.

    Created with ``O_EXCL`` (never an existing file or link), named like a scratch folder
    (``.devine-onnx-out-<host>-<pid>-<random>``: swept if the run dies) and with the usual
    permissions (``0666`` less the umask) so that the final file gets them after the rename.
    The caller writes it, then renames it to ``path`` (``os.replace``) or removes it.
    """
    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    sweep_stale(folder)
    prefix = f"{SCRATCH_PREFIX}out-{_node()}-{os.getpid()}-"
    fd, name = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        if hasattr(os, "fchmod"):  # POSIX: mkstemp's 0600 would stay on the final file
            mask = os.umask(0o022)
            os.umask(mask)
            os.fchmod(fd, 0o666 & ~mask)
    finally:
        os.close(fd)
    return Path(name)


def sweep_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the scratch folders (and temporary files) of dead runs of this host in ``folder``
    (not recursive).

    Folders of live runs and of other hosts are kept. Each removal is logged as a note.

    Returns
    -------
    list of pathlib.Path
        The folders removed.
    """
    removed = []
    host = _node()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(SCRATCH_PREFIX):
            continue
        m = _SCRATCH_RE.match(entry.name)
        if m is None or m["host"] != host or pid_alive(int(m["pid"])):
            continue
        try:
            if entry.is_symlink():
                continue
            if hasattr(os, "getuid") and entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)  # a temporary file (temporary_file)
        except OSError:
            continue
        removed.append(Path(entry.path))
        LOGGER.info(
            "removed %s, left behind by a run that is no longer running (pid %s)",
            entry.path, m["pid"],
        )  # fmt: skip
    return removed
