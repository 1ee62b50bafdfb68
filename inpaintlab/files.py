"""Output files: atomic writes with ordinary permissions, and output folders checked before any work starts.

Every file inpaintlab writes (PNGs, checkpoints, sweep rows, grids) goes through `write_atomic`: it is written under a
temporary name in the target folder and renamed, so a reader never sees half a file and an interrupted run leaves none.
`tempfile.mkstemp` creates files with mode 0600; the file gets the mode a plain `open()` would give it instead
(0666 minus the caller's umask) before it is renamed into place.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator


def _umask() -> int:
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path`; on success it is given the usual mode and renamed to `path`, else removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(handle)` on a binary handle to a temporary file, then rename it to `path` (see module docstring)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
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
        raise ValueError(f"{what} {path}: cannot write there ({reason})") from None
    return path
