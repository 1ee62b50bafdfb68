"""`inpaintlab info --check DIR`: which pictures of a folder inpaintlab can reproduce, as a table.

Each image (PNG, JPEG, WebP, in the folder itself) is read as `--from-png` reads it and counted as replaying with
every key applied, replaying with warnings (the keys not applied are counted over the folder) or refused (the reason
is counted). Nothing is loaded but the image's metadata: a large folder is checked in seconds.
"""
from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path

from .errors import FileError, InpaintlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclasses.dataclass
class FolderCheck:
    """Per image: "complete", "warnings" or "refused", with the keys not applied or the reason refused."""

    images: dict[str, tuple[str, list[str]]] = dataclasses.field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for kind, _ in self.images.values() if kind == status)

    def reasons(self, status: str) -> collections.Counter:
        """How many images name each key (warnings) or reason (refused)."""
        return collections.Counter(item for kind, items in self.images.values() if kind == status
                                   for item in dict.fromkeys(items))


def check_image(path: Path) -> tuple[str, list[str]]:
    from .infotext import read_png_infotext
    from .replay import read_replay

    try:
        replay = read_replay(read_png_infotext(path))
    except InpaintlabError as error:
        reason = str(error)
        return "refused", [reason[len(str(path)) + 2:] if reason.startswith(f"{path}: ") else reason]
    if replay.refused:
        return "refused", [replay.refused]
    if replay.problems:
        return "warnings", [problem.key for problem in replay.problems]
    return "complete", []


def check(folder: str | os.PathLike) -> FolderCheck:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileError(f"{folder}: not a folder (info --check takes a folder of images)")
    result = FolderCheck()
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        result.images[path.name] = check_image(path)
    return result


def format_table(result: FolderCheck) -> str:
    width = max([len(name) for name in result.images] + [10])
    lines = [f"{'image':<{width}}  replay"]
    for name, (status, items) in result.images.items():
        detail = {"complete": "every key applied", "warnings": "with warnings: " + ", ".join(dict.fromkeys(items)),
                  "refused": "refused: " + "; ".join(items)}[status]
        lines.append(f"{name:<{width}}  {detail}")
    total = len(result.images)
    lines += ["", f"{total} images:",
              f"  {result.count('complete'):>5}  replay with every key applied",
              f"  {result.count('warnings'):>5}  replay with warnings",
              f"  {result.count('refused'):>5}  refused"]
    for status, title in (("warnings", "keys not applied"), ("refused", "reasons refused")):
        counts = result.reasons(status)
        if counts:
            lines += ["", f"{title} (images):"]
            lines += [f"  {n:>5}  {item}" for item, n in counts.most_common()]
    return "\n".join(lines)


def check_folder(folder: str | os.PathLike) -> str:
    """The `info --check` table for `folder`."""
    return format_table(check(folder))
