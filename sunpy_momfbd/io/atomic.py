"""
Crash-safe file writing: write to a hidden temporary file, flush it, and rename it into place.

A failed, interrupted or crashed write leaves no partial file under the target's name, and an
existing file is never replaced unless asked. A killed writer's hidden temporary file
(``.<name>.*.part``) is removed by the next write of the same name; a live writer holds a lock
on its own, so that nobody removes it.
"""

import contextlib
import os
import tempfile
from glob import escape as glob_escape
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: stale temporary files are left (they are hidden)
    fcntl = None

__all__ = ["atomic_write"]

#: Suffix of the temporary files of an atomic write.
_PART = ".part"


def atomic_write(path, writer, overwrite):
    """
    Write a file with ``writer(temporary_path)`` and rename it into place.

    Parameters
    ----------
    path : str or `pathlib.Path`
        Target file; its directory must exist.
    writer : callable
        ``writer(temporary_path)`` writes the whole file to the path it is given.
    overwrite : bool
        Whether an existing file may be replaced.

    Returns
    -------
    `pathlib.Path`
        The path written.

    Raises
    ------
    FileExistsError
        If the file exists (or appears while writing) and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it"
        raise FileExistsError(msg)
    _remove_stale_parts(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_PART)
    temporary = Path(temporary)
    umask = os.umask(0)
    os.umask(umask)
    temporary.chmod(0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        _lock(handle)  # held while writing: tells a later writer that this file is not stale
        writer(temporary)
        os.fsync(handle)  # the same file: its data reach the disk before the name points to it
        if overwrite:
            temporary.replace(path)
        else:
            _link_new(temporary, path)
        _fsync_directory(path.parent)  # the rename itself survives a crash
    finally:
        temporary.unlink(missing_ok=True)
        os.close(handle)
    return path


def _link_new(temporary, path):
    """Give ``temporary`` the name ``path``, failing if that file appeared meanwhile: never clobber."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError:  # file systems without hard links
        if path.exists():
            msg = f"{path} already exists; pass overwrite=True to replace it"
            raise FileExistsError(msg) from None
        temporary.replace(path)


def _lock(handle, *, wait=True):
    """Lock an open file exclusively (``wait=False``: return False if another process holds it)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _remove_stale_parts(path):
    """Remove temporary files of ``path`` left by killed writers: those no live writer holds locked."""
    if fcntl is None:
        return
    for part in path.parent.glob(f".{glob_escape(path.name)}.*{_PART}"):
        with contextlib.suppress(OSError), open(part, "rb") as stream:
            if _lock(stream.fileno(), wait=False):
                part.unlink()


def _fsync_directory(directory):
    with contextlib.suppress(OSError):  # some platforms and file systems cannot open directories
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
