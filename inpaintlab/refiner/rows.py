"""The refiner's settings rows (torch-free: only `inpaintlab.settings`, `inpaintlab.errors` and the
standard library are imported).

A1111's API fields `refiner_checkpoint` / `refiner_switch_at`, and its options `refiner_switch_by_sample_steps` and
`hires_fix_refiner_pass`, with the infotext keys A1111 writes when the switch happens (`Refiner`, `Refiner switch
at`, `Refiner switch by sampling steps`, `Hires refiner`). Rows for txt2img, img2img and inpaint; `Hires refiner`
for txt2img's hires fix only. The keys are written only when a switch happens, so the rows carry no `example` for
the registry's write -> read test; `tests/refiner` replays them end to end.

`find_refiner` finds the file a name refers to, so the command line checks it before loading anything: A1111 names a
checkpoint by its file stem (`Refiner: sd_xl_refiner_1.0 [7440042bbd]` reads back as `sd_xl_refiner_1.0`); the path
as given is tried, then `<name>.safetensors` (or `.ckpt`) in the working directory and the search folders (the main
checkpoint's folder, when the command line knows it).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import MissingFileError
from ..settings import ALL, MISSING, SETTINGS, Setting, register

OFF = ("", "none")  # A1111: an empty checkpoint name, "None" or "none" means no refiner
HIRES_PASSES = ("first pass", "second pass", "both passes")
_TITLE = re.compile(r"^(.*?)\s*\[[0-9a-fA-F]{8,64}\]\s*$")


def refiner_name(text: str) -> str | None:
    """A1111's `Refiner: name [hash]` (its checkpoint `short_title`) -> the name, or None for no refiner."""
    text = text.strip()
    if text.lower() in OFF:
        return None
    match = _TITLE.match(text)
    return match.group(1) if match else text


def _check_refiner(value: Any) -> str | None:
    if value is None or isinstance(value, (str, os.PathLike)):
        return None
    if hasattr(value, "unet") and hasattr(value, "config"):  # a loaded Pipeline (not imported: this module is torch-free)
        return None
    return "must be a checkpoint file, an A1111 checkpoint name or a loaded Pipeline"


def _switch_at(value: float) -> str | None:
    return None if 0.0 < value <= 1.0 else "must be in (0, 1]"


def _old_refiner_timeline(fields: dict[str, str]) -> Any:
    """A1111's backcompat: pictures of A1111 before v1.8.0 with a refiner switched by sampling steps."""
    if "Refiner" not in fields:
        return MISSING
    from ..replay import _version

    version = _version(fields.get("Version", ""))
    return version is not None and version < (1, 8, 0, -1)


ROWS = (
    Setting("refiner_checkpoint", object, None, "refiner: a checkpoint file (or its A1111 name, found next to --model "
            "or in the working directory) that takes over sampling at refiner_switch_at; from Python also a loaded "
            "Pipeline", ALL, infotext="Refiner", parse=refiner_name, check=_check_refiner, keyword=False),
    Setting("refiner_switch_at", float, 0.8, "refiner: fraction of the way (by timestep) at which the refiner takes "
            "over", ALL, infotext="Refiner switch at", check=_switch_at, keyword=False),
    Setting("refiner_switch_by_sample_steps", bool, False, "refiner: switch by the fraction of sampling steps done "
            "(A1111 before v1.8.0) instead of by timestep", ALL, infotext="Refiner switch by sampling steps",
            infotext_default=_old_refiner_timeline, keyword=False),
    Setting("hires_fix_refiner_pass", str, "second pass", "hires fix: the pass(es) the refiner runs in", ("txt2img",),
            infotext="Hires refiner", choices=HIRES_PASSES, keyword=False),
)
for _row in ROWS:
    if _row.name not in SETTINGS:
        register(_row)


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
