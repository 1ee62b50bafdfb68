"""inpaintlab's exceptions: one base class, `InpaintlabError`, and one subclass per kind of problem.

    try:
        pipe = inpaintlab.load(path)
    except inpaintlab.InpaintlabError as error:   # any problem inpaintlab detected, message in one line
        ...

* `SettingsError`: a setting, a sweep spec, a prompt or a command-line flag that cannot be used;
* `FileError`: a file or folder that cannot be read or written; `CheckpointError` (a subclass) for model files
  (checkpoints, VAEs, ControlNets, LoRA and embedding files) that are not loadable;
* `InfotextError`: an infotext (or the image carrying it) that cannot be replayed, or is refused with `strict=True`.

The base class derives from ValueError, so code written against earlier versions (`except ValueError`) keeps working.
Messages are one line and name the setting, file or key at fault.
"""
from __future__ import annotations


class InpaintlabError(ValueError):
    """Base class of every error inpaintlab raises about its input (settings, files, infotexts)."""

    def __str__(self) -> str:
        # One line, whatever a wrapped message (a library's, a file's text) brought with it.
        return " ".join(part.strip() for part in super().__str__().splitlines() if part.strip())


class SettingsError(InpaintlabError):
    """A setting, sweep spec, prompt or command-line value that cannot be used."""


class FileError(InpaintlabError):
    """A file or folder that cannot be read or written (the message names it)."""


class CheckpointError(FileError):
    """A model file (checkpoint, VAE, ControlNet, LoRA, embedding) or state dict that cannot be loaded."""


class InfotextError(InpaintlabError):
    """An infotext that cannot be read or replayed, or holds something inpaintlab does not apply under strict=True."""


class MissingFileError(FileError, FileNotFoundError):
    """A file or folder that does not exist (also a FileNotFoundError, as earlier versions raised)."""


class WriteError(FileError, OSError):
    """A file that could not be written (a full disk, a read-only folder); also an OSError. No partial file is left."""
