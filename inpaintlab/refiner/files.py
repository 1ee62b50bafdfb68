"""Finding the refiner's file from what the settings name (torch-free, so the command line checks it before loading).

A1111 names a checkpoint by its file stem (`Refiner: sd_xl_refiner_1.0 [7440042bbd]` reads back as
`sd_xl_refiner_1.0`); inpaintlab looks for the path as given, then `<name>.safetensors` in each search folder (the
working directory, then the folder of the main checkpoint when the command line knows it).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import MissingFileError

SUFFIXES = (".safetensors", ".ckpt")


def find_refiner(name: str | os.PathLike, folders: tuple[str | os.PathLike, ...] = ()) -> Path:
    """The refiner file `name` refers to, or MissingFileError (one line naming it and where it was looked for)."""
    given = Path(name)
    candidates = [given]
    for folder in (Path("."), *map(Path, folders)):
        base = given if given.is_absolute() else folder / given
        candidates += [base] + ([base.with_name(base.name + s) for s in SUFFIXES] if given.suffix not in SUFFIXES
                                else [])
    for path in dict.fromkeys(candidates):
        if path.is_file():
            return path
    where = ", ".join(str(f) for f in dict.fromkeys([Path("."), *map(Path, folders)]))
    raise MissingFileError(f"refiner checkpoint {str(name)!r}: file not found (looked for it and for "
                           f"{given.name}{SUFFIXES[0]} in {where}); pass --refiner-checkpoint FILE")
