"""File locks between processes: ``filelock``'s ``flock`` locks, in two forms.

- :func:`locked`: wait for an exclusive lock (a results file being rewritten, a pre-processing cache
  entry being built), however long its holder takes.
- :class:`RunLock`: refuse at once an output folder that another live run holds, naming that
  run's process.

Both are ``flock`` locks, never a marker file whose presence means "locked": the operating system
releases one when its process dies, however it dies, so a lock file left behind is never taken
for a live lock (not even when its pid has been reused by another process). A filesystem without
``flock`` is an error (``OSError``), never a silent fall back to a weaker lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

# RunLock waits this long (seconds) before it refuses a folder: enough for a holder whose release
# is under way (it unlinks the lock file, then unlocks) to finish, too short to notice otherwise.
HANDOVER_SECONDS = 0.2


@contextlib.contextmanager
def locked(lock_path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (made when missing, kept afterwards) for the block,
    waiting as long as another process (or another lock object of this thread) holds it.

    Raises:
        OSError: the lock file cannot be made, or its filesystem has no ``flock``.
        RuntimeError: this thread already holds the lock through another object (a wait that
            could never end).
    """
    with FileLock(lock_path, fallback_to_soft=False):
        yield


class RunInUseError(ValueError):
    """An output folder is locked by another live run (a second sweep working on the same runs)."""


class RunLock:
    """An exclusive lock on an output folder: an ``flock`` on ``<folder>/.lock``, which holds the
    owner's pid (the error that refuses the folder names it) and is removed on release.

    Two runs writing into one folder at once would overwrite each other's record.

    Raises (on entry):
        RunInUseError: another process (or another RunLock in this one) holds the folder; the
            message names the folder and the holder's pid.
        OSError: the folder cannot hold the lock file, or its filesystem has no ``flock``; the
            lock is not held and no descriptor is left open.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self._lock = FileLock(self.path, timeout=HANDOVER_SECONDS, fallback_to_soft=False,
                              on_acquired=_write_pid)

    def __enter__(self) -> "RunLock":
        try:
            self._lock.acquire()
        except Timeout:
            raise RunInUseError(f"{self.path.parent} is in use by another run (process {self._owner()}); "
                                "wait for it or use another --out folder") from None
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)  # before unlocking: a waiter then sees a new inode
        self._lock.release()

    def _owner(self) -> str:
        try:
            return self.path.read_text(errors="replace")[:32].strip() or "unknown"
        except OSError:
            return "unknown"


def _write_pid(fd: int) -> None:
    """The lock file's contents, once it is held: this process's pid."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
