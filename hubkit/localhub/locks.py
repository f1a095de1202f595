"""File locks that hold across processes: one server per root, one writer of refs at a time."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hubkit.localhub.errors import LocalHubError

SERVER_LOCK = ".server.lock"
WRITE_LOCK = ".write.lock"


class RootInUse(LocalHubError):
    """Another server holds the root."""


class ServerLock:
    """An exclusive lock on a hub root, held from :meth:`acquire` until :meth:`release` (or process exit)."""

    def __init__(self, root: Path) -> None:
        self.path = root / SERVER_LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RootInUse(
                f"{self.path.parent} is already served by another hubkit localhub (pid {holder}); "
                "stop it or serve another --root"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class WriteLock:
    """Serialises writers of one store, between threads (re-entrant) and between processes (flock)."""

    def __init__(self, root: Path) -> None:
        self.path = root / WRITE_LOCK
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                    os.close(self._fd)
                    self._fd = None
