"""What `inpaintlab info` prints: for one picture (`describe`), the stored infotext, the command and settings that
replay it and what is not applied; for a folder (`info --check DIR`, `check_folder`), which pictures inpaintlab can
reproduce, as a table.

Each image (PNG, JPEG, WebP, in the folder itself) is read as `--from-png` reads it and counted as replaying with
every key applied, replaying with warnings (the keys not applied are counted over the folder) or refused (the reason
is counted). Nothing is loaded but the image's metadata: a large folder is checked in seconds.
"""
from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path
from typing import Any

from . import settings as registry
from .errors import FileError, InpaintlabError
from .infotext import parse_infotext
from .replay import read_replay

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


def short(value: Any, limit: int = 80) -> str:
    """repr() of a value, cut in the middle when long (a 10,000-token prompt would fill the terminal)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...{text[-limit // 4:]} ({len(str(value))} characters)"


def describe(text: str, source: object) -> str:
    """The stored keys, then how `--from-png` replays them (see `inpaintlab.replay`)."""
    lines = [f"stored in {source}:"]
    lines += [f"  {key}: {value}" for key, value in parse_infotext(text).items()
              if value or key not in ("Prompt", "Negative prompt")]
    replay = read_replay(text)
    if replay.refused:
        return "\n".join(lines + ["", f"cannot be replayed: {replay.refused}"])
    command = replay.command
    lines += ["", f"replayed by `inpaintlab {command} --from-png` as:"]
    if replay.note:
        lines.append(f"  ({replay.note})")
    for name in registry.for_command(command):
        if name not in replay.settings:
            continue
        note = ""
        if replay.origin[name] == "absent":
            # A key A1111 omits at its default: the value is A1111's (or inpaintlab's, for inpaintlab's own keys).
            whose = "inpaintlab's" if registry.SETTINGS[name].infotext in registry.OWN_INFOTEXT_KEYS else "A1111's"
            note = f"   (absent: {whose} value when the key is missing)"
        lines.append(f"  {name}: {short(replay.settings[name])}{note}")
    unrecorded = [n for n in registry.for_command(command)  # a whole-infotext reader may have read one
                  if registry.SETTINGS[n].infotext is None and n not in replay.settings]
    if unrecorded:
        lines.append("  never recorded in infotexts (flags or defaults): " + ", ".join(unrecorded))
    if replay.problems:
        lines.append("not applied by inpaintlab: " + "; ".join(map(str, replay.problems)))
    return "\n".join(lines + replay.notes)
