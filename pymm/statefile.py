"""Durable, crash-safe storage for the memory-manager state file.

The kubelet keeps its memory-manager checkpoint in ``<root>/memory_manager_state`` and rewrites
it on every allocation. pymm keeps the same file, so a write must never leave a torn file: a
process killed (or a machine powered off) at any instant has to leave either the old or the new
content. This module holds only the file-system layer; encoding and checksums live elsewhere.

Guarantees and their limits:

* :func:`atomic_write` writes a sibling temporary file, fsyncs it, renames it over the target
  and fsyncs the directory, so the rename is the single commit point and survives power loss.
* A symlink at the target is refused rather than replaced or followed: a state directory is
  often root-owned and shared, and a planted symlink must not redirect a root write.
  The check and the rename are separate system calls, so an attacker who can write the state
  directory can still race it; the directory itself must not be writable by untrusted users.
* :class:`StateDirLock` serialises pymm processes (``flock`` on ``<dir>/.pymm.lock``). It is
  advisory: the kubelet does not take it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from pymm import _engine
from pymm.errors import ConfigError, StateFileError, StateLockedError, StateNotDurableError

__all__ = [
    "CONFIG_FILE_NAME",
    "LOCK_FILE_NAME",
    "STATE_FILE_NAME",
    "StateDirLock",
    "atomic_write",
    "check_state_directory",
    "clean_stale_temporaries",
    "fsync_baseline",
    "read_file",
]

#: The kubelet's file name for the memory-manager checkpoint (the engine's, named once).
STATE_FILE_NAME: str = _engine.STATE_FILE_NAME

LOCK_FILE_NAME = ".pymm.lock"

CONFIG_FILE_NAME = "pymm-config.json"
"""The configuration the ``pymm`` command line created a state directory with."""

_TMP_MARKER = ".tmp-"
# Temporaries are named ".<target>.tmp-<pid>-<hex>": hidden (a leading dot keeps them out of
# naive globs of the state directory) and recognisable, so a later run can clean up after a
# process that was killed between creating and renaming one.
_TMP_PATTERN = re.compile(r"\.(?P<target>.+)\.tmp-(?P<pid>[0-9]+)-(?P<rand>[0-9a-f]+)")

_CHUNK = 1 << 20
# Poll interval for StateDirLock(wait=<seconds>); flock has no timed variant.
_LOCK_POLL_SECONDS = 0.02


def _file_error(
    cls: type[StateFileError], what: str, path: Path | str, exc: OSError
) -> StateFileError:
    """Build a one-line error naming the path and the OS reason, keeping errno.

    Only ``errno`` is set (not ``strerror``/``filename``), so ``str(err)`` stays exactly the
    message instead of OSError's ``[Errno n] ...: 'path'`` layout.
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    err = cls(f"{what} {path}: {reason}")
    err.errno = exc.errno
    return err


def _symlink_error(what: str, path: Path) -> StateFileError:
    err = StateFileError(f"{what} {path}: it is a symbolic link; refusing to follow or replace it")
    err.errno = errno.ELOOP
    return err


def _is_symlink(path: Path) -> bool:
    # Any lstat failure counts as "no symlink": the open or rename that follows fails with the
    # real reason, and rename replaces a symlink without ever following it.
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, mode: int = 0o600, syncing: Callable[[], None] | None = None
) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, never a mix.

    The file gets exactly ``mode`` (the umask is not applied). Raises :class:`StateFileError`
    when the target is a symbolic link or any step fails; the temporary file is removed then.
    If only the final directory fsync fails, the new content is already in place but may not
    survive a power loss: that raises :class:`StateNotDurableError`, so a caller can tell a
    write that did not happen from one that did.

    ``syncing`` is called just before the file's fsync, the write's long wait, during which
    this thread holds no GIL: a server can run its other Python work then.
    """
    path = Path(path)
    directory = path.parent
    what = "cannot write state file"
    # Checked before creating anything so the common mistake fails without side effects;
    # checked again just before the rename to narrow the window.
    if _is_symlink(path):
        raise _symlink_error(what, path)
    tmp = directory / f".{path.name}{_TMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}"
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode)
    except OSError as exc:
        raise _file_error(StateFileError, what, path, exc) from exc
    renamed = False
    try:
        try:
            os.fchmod(fd, mode)
            _write_all(fd, data)
            if syncing is not None:
                syncing()
            os.fsync(fd)
        finally:
            os.close(fd)
        if _is_symlink(path):
            raise _symlink_error(what, path)
        os.rename(tmp, path)
        renamed = True
        _fsync_directory(directory)
    except StateFileError:
        _discard(tmp)
        raise
    except OSError as exc:
        if renamed:
            err = StateNotDurableError(
                f"replaced state file {path} but could not fsync its directory, so the new "
                f"content may not survive a power loss: {exc.strerror or exc}"
            )
            err.errno = exc.errno
            raise err from exc
        _discard(tmp)
        raise _file_error(StateFileError, what, path, exc) from exc
    except BaseException:
        # KeyboardInterrupt and friends: still do not leave the temporary behind.
        if not renamed:
            _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def clean_stale_temporaries(directory: Path, name: str = STATE_FILE_NAME) -> list[Path]:
    """Remove temporaries that :func:`atomic_write` left for ``<directory>/<name>``.

    Only a process killed mid-write leaves one, and the target file is intact either way, so
    deleting them loses nothing. Call this while holding :class:`StateDirLock`: the lock is what
    guarantees no other pymm writer is between creating and renaming its temporary (a PID check
    would not, since containers reuse small PIDs). Returns the removed paths; a missing
    directory is not an error.
    """
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    except OSError as exc:
        raise _file_error(StateFileError, "cannot list state directory", directory, exc) from exc
    for entry in entries:
        match = _TMP_PATTERN.fullmatch(entry.name)
        if match is None or match["target"] != name:
            continue
        if entry.is_dir(follow_symlinks=False):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _file_error(
                StateFileError, "cannot remove stale temporary", entry.path, exc
            ) from exc
        removed.append(Path(entry.path))
    return removed


def read_file(path: Path) -> bytes | None:
    """Return the content of ``path``, or ``None`` if it (or its directory) does not exist.

    A symbolic link, a non-regular file or an unreadable file raises :class:`StateFileError`.
    """
    path = Path(path)
    what = "cannot read state file"
    # O_NONBLOCK so that a FIFO planted at the path cannot hang the open; it is rejected below.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP and _is_symlink(path):
            raise _symlink_error(what, path) from exc
        raise _file_error(StateFileError, what, path, exc) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            err = StateFileError(f"{what} {path}: not a regular file")
            err.errno = errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL
            raise err
        chunks: list[bytes] = []
        while chunk := os.read(fd, max(_CHUNK, st.st_size + 1)):
            chunks.append(chunk)
        return b"".join(chunks)
    except StateFileError:
        raise
    except OSError as exc:
        raise _file_error(StateFileError, what, path, exc) from exc
    finally:
        os.close(fd)


def fsync_baseline(path: Path, size: int) -> None:
    """Overwrite ``path`` in place with ``size`` bytes and fsync it.

    This is the floor a durable write cannot beat: a benchmark compares :func:`atomic_write`
    against it to measure what the temporary file, rename and directory fsync cost on top.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
        try:
            # Non-zero bytes: some file systems special-case zero pages.
            block = b"x" * min(size, _CHUNK)
            remaining = size
            while remaining:
                _write_all(fd, block[: min(remaining, len(block))])
                remaining -= min(remaining, len(block))
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _file_error(StateFileError, "cannot write baseline file", path, exc) from exc


def check_state_directory(directory: Path) -> Path:
    """The real path of an existing state directory, refused (:class:`StateFileError`, with
    the fix) when another user owns it or its group or others may write it.

    Whoever can write the directory can replace the state file between pymm's check and its
    rename, or plant files the root-run kubelet or pymm will trust; ssh refuses key
    directories for the same reason. A symlinked directory is resolved and the real one is
    checked, so a safe-looking link cannot lead somewhere unsafe.
    """
    real = Path(os.path.realpath(directory))
    try:
        st = os.stat(real)
    except OSError as exc:
        raise _file_error(StateFileError, "cannot use state directory", real, exc) from exc
    shown = str(directory) if real == Path(directory) else f"{directory} (really {real})"
    if not stat.S_ISDIR(st.st_mode):
        err = StateFileError(f"state directory {shown} exists but is not a directory")
        err.errno = errno.ENOTDIR
        raise err
    me = os.geteuid()
    if st.st_uid != me:
        err = StateFileError(
            f"refusing state directory {shown}: it is owned by uid {st.st_uid}, not by uid {me} "
            f"who runs pymm, so its owner could change the state under pymm; fix: chown {me} "
            f"{real} (and chmod 700 {real}), or use a directory of your own"
        )
        err.errno = errno.EPERM
        raise err
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        writers = [
            w for w, bit in (("group", stat.S_IWGRP), ("world", stat.S_IWOTH)) if st.st_mode & bit
        ]
        who = "- and ".join(writers) + "-writable"
        err = StateFileError(
            f"refusing state directory {shown}: it is {who} (mode "
            f"{stat.S_IMODE(st.st_mode):04o}), so other users could replace the state file; "
            f"fix: chmod 700 {real}"
        )
        err.errno = errno.EPERM
        raise err
    return real


def _read_holder_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0)
    except OSError:
        return None
    try:
        pid = int(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None
    return pid if pid > 0 else None


class StateDirLock:
    """Exclusive lock on a state directory, held through ``flock`` on ``<dir>/.pymm.lock``.

    ``wait=False`` fails at once with :class:`StateLockedError`, ``wait=True`` blocks until the
    lock is free, and ``wait=<seconds>`` polls until that deadline. The kernel drops the lock
    when the holder exits, even on SIGKILL, so a crashed process never leaves it stuck.

    The holder writes its PID into the lock file so that the error can name it. The lock file
    is never deleted: unlinking a flock'd file lets two processes lock two different inodes.
    """

    def __init__(self, directory: Path, *, wait: bool | float = False) -> None:
        if not isinstance(wait, bool):
            if not isinstance(wait, int | float) or math.isnan(wait) or wait < 0:
                raise ConfigError(
                    f"lock_wait must be a bool or a number of seconds >= 0, got {wait!r}",
                    key="lock_wait",
                )
        self._directory = Path(directory)
        self._wait = wait
        self._fd: int | None = None

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def path(self) -> Path:
        """The lock file."""
        return self._directory / LOCK_FILE_NAME

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"lock on {self._directory} is already held by this object")
        self._make_directory()
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP and _is_symlink(self.path):
                raise _symlink_error("cannot open lock file", self.path) from exc
            raise _file_error(StateFileError, "cannot open lock file", self.path, exc) from exc
        try:
            self._lock(fd)
            # The previous holder's PID may still be there (it died or released); overwrite.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except StateFileError:
            os.close(fd)
            raise
        except OSError as exc:
            os.close(fd)
            raise _file_error(StateFileError, "cannot write lock file", self.path, exc) from exc
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _make_directory(self) -> None:
        directory = self._directory
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not directory.is_dir():
                err = StateFileError(f"state directory {directory} exists but is not a directory")
                err.errno = errno.ENOTDIR
                raise err from None
            return
        except FileNotFoundError:
            try:
                os.makedirs(directory.parent, exist_ok=True)
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
            except OSError as exc:
                raise _file_error(
                    StateFileError, "cannot create state directory", directory, exc
                ) from exc
        except OSError as exc:
            raise _file_error(
                StateFileError, "cannot create state directory", directory, exc
            ) from exc
        # mkdir applies the umask; the state directory must be private whatever it is.
        with contextlib.suppress(OSError):
            os.chmod(directory, 0o700)

    def _lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as exc:
            raise _file_error(StateFileError, "cannot lock", self.path, exc) from exc
        if self._wait is True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise _file_error(StateFileError, "cannot lock", self.path, exc) from exc
            return
        timeout = 0.0 if self._wait is False else float(self._wait)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(_LOCK_POLL_SECONDS, remaining))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                continue
        raise self._locked_error(fd, timeout)

    def _locked_error(self, fd: int, timeout: float) -> StateLockedError:
        pid = _read_holder_pid(fd)
        holder = f"process {pid}" if pid is not None else "another process"
        if pid == os.getpid():
            holder = f"this process ({pid})"
        waited = f" (gave up after {timeout:g} s)" if timeout > 0 else ""
        err = StateLockedError(
            f"state directory {self._directory} is locked by {holder}{waited}; "
            f"stop that pymm process or wait for it to finish (lock file: {self.path})"
        )
        err.errno = errno.EWOULDBLOCK
        return err

    def release(self) -> None:
        """Release the lock; calling it again (or without holding the lock) does nothing."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Clear the PID first so nobody reads a stale holder after we are gone.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> StateDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        # A forgotten lock is released by the kernel at exit anyway; this only frees the fd early.
        if getattr(self, "_fd", None) is not None:
            self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "not held"
        return f"StateDirLock({str(self._directory)!r}, {state})"
