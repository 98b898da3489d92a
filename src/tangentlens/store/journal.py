"""Rollback journal that makes each HDF5 write session atomic under process death.

HDF5 updates metadata in place and has no journal, so a process killed while the library
writes can lose data that was complete before (docs/file-format.md has the measurement).
The writer therefore opens the run file through
h5py's ``fileobj`` driver with a :class:`JournaledFile`: before any byte that existed when the
session began is overwritten (or truncated away), its old contents are appended to
``<file>-journal``; bytes past the old end of file need no record.  Deleting the journal commits
the session.  :func:`rollback` undoes an uncommitted session (restore the old bytes newest
first, truncate to the old length); :class:`SnapshotFile` shows readers the same rolled-back
state without modifying anything.

Journal format: ``MAGIC`` + old length (``<Q``), then records ``<QQ`` (offset, n) + n old bytes.
A torn trailing record is ignored: it was written before the overwrite it protects.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

MAGIC = b"TLJRNL01"
_HEAD = struct.Struct("<Q")
_REC = struct.Struct("<QQ")


def journal_path(path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(path)}-journal")


def _pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _read_journal(path: str | os.PathLike) -> tuple[int, list[tuple[int, bytes]]] | None:
    """(old length, records) of a journal; None if it is gone or its header was never written."""
    try:
        data = journal_path(path).read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < len(MAGIC) + _HEAD.size or not data.startswith(MAGIC):
        return None
    pos = len(MAGIC) + _HEAD.size
    (length,) = _HEAD.unpack_from(data, len(MAGIC))
    records = []
    while pos + _REC.size <= len(data):
        offset, n = _REC.unpack_from(data, pos)
        pos += _REC.size
        if pos + n > len(data):
            break
        records.append((offset, data[pos : pos + n]))
        pos += n
    return length, records


def rollback(path: str | os.PathLike) -> bool:
    """Undo an uncommitted write session of ``path``; True if there was one.  Idempotent."""
    jpath = journal_path(path)
    if not jpath.exists():
        return False
    state = _read_journal(path)
    if state is not None:
        length, records = state
        fd = os.open(path, os.O_RDWR)
        try:
            for offset, old in reversed(records):
                _pwrite_all(fd, old, offset)
            os.ftruncate(fd, length)
        finally:
            os.close(fd)
    jpath.unlink()
    return True


class _Positioned:
    """``tell``/``read`` for the file-like classes below (they define ``_pos``, ``readinto``)."""

    _pos: int

    def tell(self) -> int:
        return self._pos

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        self.readinto(buf)
        return bytes(buf)


class JournaledFile(_Positioned):
    """Read/write file object for h5py's ``fileobj`` driver; :meth:`commit` ends the session."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._old_len = os.fstat(self._fd).st_size
        try:
            self._jfd = os.open(journal_path(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            os.close(self._fd)
            raise FileExistsError(
                f"{journal_path(path)} exists: another writer is active, or one "
                "died; RunWriter(..., resume=True) rolls its session back"
            ) from None
        os.write(self._jfd, MAGIC + _HEAD.pack(self._old_len))
        self._pos = 0

    def _save(self, start: int, stop: int) -> None:
        """Append the current bytes of [start, stop) ∩ [0, old length) to the journal."""
        stop = min(stop, self._old_len)
        if start < stop:
            old = os.pread(self._fd, stop - start, start)
            os.write(self._jfd, _REC.pack(start, len(old)) + old)

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence == 2:
            pos += os.fstat(self._fd).st_size
        self._pos = pos
        return self._pos

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        data = os.pread(self._fd, len(view), self._pos)
        view[: len(data)] = data
        view[len(data) :] = bytes(len(view) - len(data))  # past the end of file reads as zeros
        self._pos += len(view)
        return len(view)

    def write(self, buf) -> int:
        n = memoryview(buf).nbytes
        self._save(self._pos, self._pos + n)
        _pwrite_all(self._fd, buf, self._pos)
        self._pos += n
        return n

    def truncate(self, size: int) -> int:
        self._save(size, os.fstat(self._fd).st_size)
        os.ftruncate(self._fd, size)
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Release the file without committing (then :func:`rollback` undoes the session)."""
        os.close(self._fd)
        os.close(self._jfd)

    def commit(self) -> None:
        """Make the session permanent (call after the h5py file is closed)."""
        self.close()
        journal_path(self.path).unlink()


class SnapshotFile(_Positioned):
    """Read-only file object showing ``path`` as it was before its uncommitted session."""

    def __init__(self, path: str | os.PathLike):
        state = _read_journal(path)
        self._fd = os.open(path, os.O_RDONLY)
        self._len, self._records = state if state is not None else (os.fstat(self._fd).st_size, [])
        self._pos = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = {0: 0, 1: self._pos, 2: self._len}[whence] + pos
        return self._pos

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        start, stop = self._pos, self._pos + len(view)
        data = os.pread(self._fd, max(0, min(stop, self._len) - start), start)
        view[: len(data)] = data
        view[len(data) :] = bytes(len(view) - len(data))
        for offset, old in reversed(self._records):  # oldest record wins: it holds the original
            lo, hi = max(start, offset), min(stop, offset + len(old))
            if lo < hi:
                view[lo - start : hi - start] = old[lo - offset : hi - offset]
        self._pos = stop
        return len(view)

    def write(self, buf) -> int:
        raise OSError("read-only snapshot")

    def flush(self) -> None:
        pass

    def __del__(self) -> None:
        if hasattr(self, "_fd"):
            os.close(self._fd)
