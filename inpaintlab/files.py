"""Output files: atomic writes with ordinary permissions, and output folders checked before any work starts.

Every file inpaintlab writes (PNGs, checkpoints, sweep rows, grids) goes through `write_atomic`: it is written under a
temporary name in the target folder and renamed, so a reader never sees half a file and an interrupted run leaves none.
`tempfile.mkstemp` creates files with mode 0600; the file gets the mode a plain `open()` would give it instead
(0666 minus the caller's umask) before it is renamed into place.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

from .errors import FileError, WriteError


def _umask() -> int:
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, exclusive: bool = False) -> Iterator[Path]:
    """A temporary path beside `path`; on success it is given the usual mode and renamed to `path`, else removed.

    exclusive: never replace an existing `path` (FileExistsError instead): the file is hard-linked into place, which
    fails atomically when the name is taken, so two processes can never overwrite each other's file. Any failure to
    write (a full disk, a folder that turned read-only) is a WriteError naming `path`, not the temporary file.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise WriteError(f"{path}: cannot write ({error.strerror or error})") from error
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        if exclusive:
            _link_exclusive(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(error, OSError) and not isinstance(error, (FileExistsError, WriteError)):
            raise WriteError(f"{path}: cannot write ({error.strerror or error})") from error
        raise


_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


def _link_exclusive(tmp: str, path: Path) -> None:
    try:
        os.link(tmp, path)
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        # No hard links here (some network and FAT file systems): reserve the name, then move the file over it.
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (flock on the folder itself, no lock file), where the system has one.

    Serialises A1111's "next free number" between processes saving into the same folder; exclusive creation
    (`atomic_path(exclusive=True)`) still guarantees that nothing is overwritten where locks are unavailable.
    """
    try:
        import fcntl
    except ImportError:  # Windows: exclusive creation alone
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None], *, exclusive: bool = False) -> Path:
    """Call `write(handle)` on a binary handle to a temporary file, then rename it to `path` (see module docstring)."""
    with atomic_path(path, exclusive=exclusive) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def prepare_out_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create `path` (with parents) and prove a file can be written there, before any model is loaded.

    Raises ValueError with one line naming the folder and the reason (a file in the way, no permission, ...).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise FileError(f"{what} {path}: cannot write there ({reason})") from None
    return path


def remove_empty_tree(top: str | os.PathLike | None) -> None:
    """Remove `top` and the folders under it if they hold no file: what a failed run created and left empty."""
    if top is None or not Path(top).is_dir():
        return
    for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):  # not empty (or not ours to remove): keep it
            os.rmdir(folder)


def first_missing_folder(path: str | os.PathLike | None) -> Path | None:
    """The outermost folder of `path` that does not exist yet (what a failed run should not leave behind)."""
    if path is None:
        return None
    missing = None
    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            break
        missing = folder
    return missing
