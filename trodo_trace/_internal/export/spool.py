"""The disk spool: encoded OTLP request bodies kept on disk until the collector takes them.

One file per batch, in a directory per destination (``<store dir>/spool/<key>/``). A file is written
under ``.tmp/`` and renamed into place, so readers never see half a batch; its name says when it
was written, by which process, for which signal and how many items it holds::

    01732200000000000000-1f2a3b4c5d6e-00000003.traces.512.otlp
    <time ns>            <owner>      <seq>    <signal> <count>

Files are sent oldest first. A sender claims a file with an exclusive ``flock`` (released by the
kernel if the process dies) and deletes it only after the collector accepted it, so several
processes can share a spool, a crash never loses a file, and a file is sent twice at worst
(delivery is at-least-once). The total size is capped; past the cap :meth:`Spool.put` refuses.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".otlp"
#: Signals this SDK writes; files of any other (a crafted name, a newer release) expire.
KNOWN_SIGNALS = frozenset(("traces", "logs"))
_UNKNOWN_EXPIRY_S = 3600.0
TMP_DIR = ".tmp"
DESTINATION_FILE = "destination"
_STALE_TMP_S = 3600.0


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and each missing parent with mode 0700 (``mkdir(parents=True)`` gives
    parents the default mode: the spool must not make ``.trodo`` readable by other users)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)  # whatever the umask


@dataclass(frozen=True)
class SpoolFile:
    """One spooled batch."""

    path: Path
    written_ns: int
    owner: str
    signal: str
    count: int
    size: int

    @property
    def pid(self) -> int | None:
        try:
            return int(self.owner.split("x", 1)[0], 16)
        except ValueError:
            return None


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def describe_failure(exc: OSError) -> str:
    """What a failed spool write means, in words."""
    import errno

    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return "the disk holding the spool is full"
    if exc.errno == errno.EROFS:
        return "the spool's file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "the spool directory is not writable"
    return f"the spool could not be written ({exc.strerror or type(exc).__name__})"


def parse_name(path: Path, size: int = 0) -> SpoolFile | None:
    """The :class:`SpoolFile` a file name describes, or ``None`` for anything else."""
    name = path.name
    if not name.endswith(SUFFIX):
        return None
    try:
        stem, signal, count = name[: -len(SUFFIX)].split(".")
        written, owner, _seq = stem.split("-")
        return SpoolFile(path, int(written), owner, signal, int(count), size)
    except ValueError:
        return None


class Spool:
    """A bounded directory of spooled batches, shared safely between threads and processes."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, owner: str, destination: str = ""):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.owner = owner
        self.destination = destination
        self._lock = threading.Lock()
        self._seq = 0
        self._bytes = 0
        self._files = 0
        self._scanned = False
        #: Why the last put() failed on I/O, in words ("the disk is full", ...); None otherwise.
        self.last_failure: str | None = None

    def after_fork_in_child(self, owner: str) -> None:
        self.owner = owner
        self._lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------------
    def put(self, signal: str, body: bytes, count: int) -> bool:
        """Store one batch; ``False`` (nothing written) when it would pass the size cap or on I/O error."""
        size = len(body)
        if size > self.max_bytes:
            return False
        with self._lock:
            if not self._scanned or self._bytes + size > self.max_bytes:
                self._rescan()
            if self._bytes + size > self.max_bytes:
                return False
            self._seq += 1
            name = f"{time.time_ns():020d}-{self.owner}-{self._seq:08d}.{signal}.{count}{SUFFIX}"
            tmp = self.directory / TMP_DIR / name
            try:
                self._ensure_dirs()
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
                try:
                    view = memoryview(body)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                os.replace(tmp, self.directory / name)
            except OSError as exc:
                self.last_failure = describe_failure(exc)
                try:
                    os.unlink(tmp)  # a partial file (ENOSPC) must not keep the disk full
                except OSError:
                    pass
                return False
            self.last_failure = None
            self._bytes += size
            self._files += 1
            return True

    def _ensure_dirs(self) -> None:
        tmp = self.directory / TMP_DIR
        if not tmp.is_dir():
            make_private_dirs(tmp)
            marker = self.directory / DESTINATION_FILE
            if self.destination and not marker.exists():
                marker.write_text(self.destination + "\n", encoding="utf-8")

    # -- reading ---------------------------------------------------------------------------------
    def files(self) -> list[SpoolFile]:
        """Every spooled batch, oldest first (also refreshes the size estimate)."""
        with self._lock:
            return self._rescan()

    def _rescan(self) -> list[SpoolFile]:
        found = list(_list(self.directory))
        found.sort(key=lambda f: f.path.name)
        self._bytes = sum(f.size for f in found)
        self._files = len(found)
        self._scanned = True
        _remove_stale_tmp(self.directory / TMP_DIR)
        return found

    def has_files(self) -> bool:
        """Whether the last known state of the spool holds any batch (no I/O)."""
        return self._files > 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @contextmanager
    def claim(self, entry: SpoolFile) -> Iterator[Claim | None]:
        """Lock ``entry`` for sending: yields a :class:`Claim` (``None`` if another sender has it or
        it is gone). Call ``claim.delete()`` once the collector took it; otherwise it stays."""
        claim = _open_claim(entry)
        try:
            yield claim
        finally:
            if claim is not None:
                claim.release()
                if claim.deleted:
                    with self._lock:
                        self._bytes = max(0, self._bytes - entry.size)
                        self._files = max(0, self._files - 1)


class Claim:
    """A spooled batch locked by this process."""

    def __init__(self, entry: SpoolFile, fd: int, body: bytes):
        self.entry = entry
        self.body = body
        self._fd: int | None = fd
        self.deleted = False

    def delete(self) -> None:
        try:
            os.unlink(self.entry.path)
        except FileNotFoundError:
            pass
        self.deleted = True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also releases the flock
            self._fd = None


def list_files(directory: Path) -> list[SpoolFile]:
    """What :meth:`Spool.files` would send from ``directory``, read only (for ``trodo-trace status``)."""
    return list(_list(directory, expire=False))


def read_file(entry: SpoolFile) -> bytes | None:
    """The content of a spool file, never through a link; ``None`` if it cannot be read."""
    try:
        fd = os.open(entry.path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _open_claim(entry: SpoolFile) -> Claim | None:
    try:
        fd = os.open(entry.path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
    except OSError:
        os.close(fd)
        return None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return None
        try:
            same = os.stat(entry.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # sent and deleted by someone else between our open and our lock
            os.close(fd)
            return None
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        os.close(fd)
        return None
    return Claim(entry, fd, b"".join(chunks))


_UID = os.getuid() if hasattr(os, "getuid") else None


def _list(directory: Path, expire: bool = True) -> Iterator[SpoolFile]:
    """The spool files of ``directory``: regular files of this user with a spool name and a signal
    this SDK writes (with ``expire``, files of another signal older than an hour are removed)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not entry.name.endswith(SUFFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or (_UID is not None and info.st_uid != _UID):
            continue  # never a link (its target could be any file) nor a file we did not write
        parsed = parse_name(Path(entry.path), info.st_size)
        if parsed is None:
            continue
        if parsed.signal not in KNOWN_SIGNALS:
            if expire and time.time() - info.st_mtime > _UNKNOWN_EXPIRY_S:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass
            continue
        yield parsed


def _remove_stale_tmp(tmp: Path) -> None:
    """Remove half-written files of processes that died while writing (older than an hour)."""
    try:
        entries = list(os.scandir(tmp))
    except OSError:
        return
    cutoff = time.time() - _STALE_TMP_S
    for entry in entries:
        try:
            if entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
        except OSError:
            pass


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (unknown counts as alive)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) is not a probe there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
