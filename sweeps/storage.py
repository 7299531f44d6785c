"""The filesystem Ray Tune writes a sweep's directory through: every file replaced whole, or not at all.

Tune rewrites its state files in place (``tuner.pkl``, ``experiment_state-*.json``, the searcher's and
the callbacks' state, each trial's results) every time it syncs the experiment, and writes each trial
checkpoint the same way. On a full disk such a write stops part-way and leaves a truncated file: the
sweep stopped cleanly, but ``--resume`` then died in ``Tuner.restore`` with "pickle data was truncated"
(CI, 7b0b838). Here each file is written beside its destination and renamed over it once complete
(``os.replace``: atomic on POSIX filesystems, NFS/EFS included), so a failed write leaves the previous
version as it was, and no half-written file behind.

Workers unpickle this filesystem with the trial's storage context: it must stay importable and light.
"""

from __future__ import annotations

import contextlib
import os
import secrets

import pyarrow
import pyarrow.fs
from fsspec.implementations.local import LocalFileSystem

PARTIAL_SUFFIX = ".partial"  # a file being written; not .json/.pkl, so Tune never reads one as its state


class _ReplaceOnClose:
    """A binary file that becomes ``path`` when closed after writes that all succeeded."""

    def __init__(self, path: str) -> None:
        folder, name = os.path.split(path)
        self._partial = os.path.join(folder, f".{name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        # Mode 0666 less the umask, as a file Tune's own local filesystem creates (mkstemp would give 0600).
        fd = os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self._path = path
        self._file = os.fdopen(fd, "wb")

    def write(self, data) -> int:
        try:
            return self._file.write(data)
        except BaseException:
            self._abandon()
            raise

    def close(self) -> None:
        if self._file.closed:  # closed already, or abandoned after a failed write
            return
        try:
            self._file.close()  # a full disk may only say so here, when the buffer is flushed (NFS: always)
            os.replace(self._partial, self._path)
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._partial)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __getattr__(self, name: str):  # flush, tell, writable, ... as the file has them
        return getattr(self._file, name)


class ReplacingLocalHandler(pyarrow.fs.FSSpecHandler):
    """The local filesystem, except that a file opened for writing replaces its destination on close."""

    def __init__(self) -> None:
        super().__init__(LocalFileSystem())

    def get_type_name(self) -> str:
        return "local-replace-on-close"

    def open_output_stream(self, path: str, metadata) -> pyarrow.NativeFile:
        return pyarrow.PythonFile(_ReplaceOnClose(path), mode="w")


def storage_filesystem() -> pyarrow.fs.FileSystem:
    """For ``RunConfig(storage_filesystem=...)`` and ``Tuner.restore(storage_filesystem=...)``; the
    storage path is then a plain absolute path on this machine (or a shared mount)."""
    return pyarrow.fs.PyFileSystem(ReplacingLocalHandler())
