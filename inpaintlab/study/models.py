"""`ModelDir`: checkpoint and VAE files below a folder, addressable by the names A1111 writes for them.

A1111 v1.10 names a checkpoint by its path relative to `models/Stable-diffusion` (`sd15/model.safetensors`), its
title adds the short hash (`sd15/model.safetensors [6ce0161689]`, the first 10 hex digits of the file's sha256), and
the infotext's `Model` is the stem (`model`). `get_closet_checkpoint_match` tries the exact names (path, title, stem,
path without extension, hashes), then the shortest title containing the text, then the same without the
`[hash]`. Here any folder plays the part of `models/` (searched recursively); the same lookups run, hashing files
only when the text carries a hash (A1111's own `models/` works: checkpoints are then looked up in
`Stable-diffusion/`, VAEs in `VAE/`) (a name that matches several files is settled by the hash; a file found by its
name whose hash differs is used with a warning, as A1111 would use it). VAE names are file names (`vae-ft-mse.pt`),
matched ignoring case; "Automatic" and "None" stand for the checkpoint's own VAE.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from ..checkpoint.read import file_sha256, legacy_model_hash
from ..errors import FileError

log = logging.getLogger(__name__)
CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt")
VAE_EXTENSIONS = (".safetensors", ".ckpt", ".pt")
_HASH = re.compile(r"(.*?)\s*\[([0-9a-fA-F]{8,64})\]\s*")
_HEX = re.compile(r"[0-9a-fA-F]{8}|[0-9a-fA-F]{10}|[0-9a-fA-F]{64}")
OWN_VAE = ("automatic", "auto", "none")


class ModelDir:
    """Checkpoint and VAE files below `root`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileError(f"models folder not found: {self.root}")
        # A1111's own models/ folder: checkpoints in Stable-diffusion/ (named relative to it), VAEs in VAE/.
        self.checkpoint_root = self.root / "Stable-diffusion" if (self.root / "Stable-diffusion").is_dir() else self.root
        vae_root = self.root / "VAE" if (self.root / "VAE").is_dir() else self.root
        self.checkpoints = sorted(p for p in self.checkpoint_root.rglob("*")
                                  if p.is_file() and p.suffix.lower() in CHECKPOINT_EXTENSIONS)
        self.vaes = sorted(p for p in vae_root.rglob("*") if p.is_file() and p.suffix.lower() in VAE_EXTENSIONS)
        self._sha: dict[Path, str] = {}

    def name(self, path: Path) -> str:
        """A1111's checkpoint name: the path relative to the checkpoint folder, with forward slashes."""
        return path.relative_to(self.checkpoint_root).as_posix()

    def sha256(self, path: Path) -> str:
        if path not in self._sha:
            self._sha[path] = file_sha256(path)
        return self._sha[path]

    def _hash_matches(self, path: Path, digest: str) -> bool:
        digest = digest.lower()
        return (len(digest) == 8 and legacy_model_hash(path) == digest) or self.sha256(path).startswith(digest)

    def checkpoint(self, text: str, what: str = "checkpoint") -> Path:
        """The checkpoint file `text` names (`what` names the value in messages, e.g. "X Values 'Checkpoint name'")."""
        text = text.strip()
        m = _HASH.fullmatch(text)
        name, digest = (m.group(1), m.group(2)) if m else (text, None)
        if not name and digest is None:
            raise FileError(f"{what}: an empty checkpoint name")
        found = self._by_name(name) if name else []
        if not found and digest is None and _HEX.fullmatch(name):
            digest = name
        if not found and digest is not None:
            found = [p for p in self.checkpoints if self._hash_matches(p, digest)]
        if not found:
            known = ", ".join(self.name(p) for p in self.checkpoints) or "none"
            raise FileError(f"{what}: no checkpoint {text!r} in {self.root} (checkpoints there: {known})")
        if digest is not None and name:
            same = [p for p in found if self._hash_matches(p, digest)]
            if same:
                return same[0]
            log.warning("%s: %s has another hash than %s; the replay uses it and will differ", what,
                        self.name(found[0]), digest)
        return found[0]

    def _by_name(self, name: str) -> list[Path]:
        def aliases(p: Path) -> set[str]:
            rel = self.name(p)
            return {rel, rel.rsplit(".", 1)[0], p.stem, p.name, rel.rsplit(".", 1)[0].replace("/", "_")}

        exact = [p for p in self.checkpoints if name in aliases(p)]
        if exact:
            return exact
        # A1111: the shortest title containing the text
        return sorted((p for p in self.checkpoints if name in self.name(p)), key=lambda p: len(self.name(p)))

    def vae(self, text: str, what: str = "VAE") -> Path | None:
        """The VAE file `text` names (its file name, any case); None for "Automatic" / "None" (the checkpoint's)."""
        key = text.strip().lower()
        if key in OWN_VAE:
            return None
        found = [p for p in self.vaes if p.name.lower() == key]
        if not found:
            known = ", ".join(p.name for p in self.vaes) or "none"
            raise FileError(f"{what}: no VAE file {text!r} in {self.root} (files there: {known})")
        return found[0]
