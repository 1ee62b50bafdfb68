"""Network files: reading, A1111's file hash, and the directory of networks that prompt tags name.

A1111 v1.10 finds networks under `--lora-dir` (recursively; `.safetensors`, `.pt`, `.ckpt`), by file stem or by the
`ss_output_name` metadata alias. Its infotext hash is the kohya "addnet" SHA-256 (of the bytes after the safetensors
header) for safetensors files and the whole file's SHA-256 otherwise, unless the metadata carries `sshs_model_hash`.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, file_sha256, read_state_dict
from .modules import NetworkError

EXTENSIONS = (".safetensors", ".pt", ".ckpt")
# Aliases A1111 never lets stand in for a file name.
_FORBIDDEN_ALIASES = {"none", "addams"}


def read_metadata(path: str | Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors header ({} for other files or when absent)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return {}
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise NetworkError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise NetworkError(f"{path}: unreadable safetensors header: {e}") from e
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()}


def addnet_hash(path: str | Path) -> str:
    """kohya's "addnet" SHA-256 of a safetensors file: the bytes after the 8-byte length and the JSON header."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(n + 8)
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def network_hash(path: str | Path, metadata: dict[str, str] | None = None) -> str:
    """A1111's full hash of a network file: `sshs_model_hash` metadata, else the addnet hash (safetensors) or the
    file's SHA-256. The infotext carries its first 12 hex digits."""
    path = Path(path)
    metadata = read_metadata(path) if metadata is None else metadata
    if metadata.get("sshs_model_hash"):
        return metadata["sshs_model_hash"]
    if path.suffix.lower() == ".safetensors":
        return addnet_hash(path)
    return file_sha256(path)


@dataclass
class NetworkFile:
    """A network read from disk: its tensors (file keys), metadata and identity."""

    path: Path
    name: str                       # file stem
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    hash: str = ""

    @property
    def shorthash(self) -> str:
        return self.hash[:12]

    @property
    def alias(self) -> str:
        return self.metadata.get("ss_output_name", self.name)


def read_network(path: str | Path, *, allow_pickle: bool = False) -> NetworkFile:
    """Read a network file; pickles (`.pt`/`.ckpt`) only with allow_pickle=True, then with weights_only=True."""
    path = Path(path)
    if path.suffix.lower() not in EXTENSIONS:
        raise NetworkError(f"{path}: unknown network file extension {path.suffix!r}; expected {', '.join(EXTENSIONS)}")
    try:
        sd = read_state_dict(path, allow_pickle=allow_pickle)
    except CheckpointError as e:
        raise NetworkError(str(e).replace("checkpoint", "network file")) from e
    metadata = read_metadata(path)
    return NetworkFile(path, path.stem, sd, metadata, network_hash(path, metadata))


@dataclass
class NetworkEntry:
    name: str
    path: Path
    alias: str


class NetworkLibrary:
    """The networks in a directory (searched recursively), by name and alias, as A1111's Lora list."""

    def __init__(self, directory: str | Path | None):
        self.directory = None if directory is None else Path(directory)
        self.entries: dict[str, NetworkEntry] = {}
        self.aliases: dict[str, NetworkEntry] = {}
        self._hashes: dict[Path, str] = {}
        if self.directory is None:
            return
        if not self.directory.is_dir():
            raise NetworkError(f"network directory not found: {self.directory}")
        files = sorted(p for p in self.directory.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
        alias_count: dict[str, int] = {}
        for path in files:
            try:
                alias = read_metadata(path).get("ss_output_name", path.stem)
            except (NetworkError, OSError, struct.error):
                alias = path.stem
            entry = NetworkEntry(path.stem, path, alias)
            self.entries[path.stem] = entry
            alias_count[alias] = alias_count.get(alias, 0) + 1
        for entry in self.entries.values():
            self.aliases[entry.name] = entry
        for entry in self.entries.values():
            usable = alias_count[entry.alias] == 1 and entry.alias.lower() not in _FORBIDDEN_ALIASES
            if usable and entry.alias not in self.aliases:
                self.aliases[entry.alias] = entry

    def names(self) -> list[str]:
        return sorted(self.aliases)

    def find(self, name: str) -> Path:
        """The file a prompt tag's name refers to; a clear error listing what is available otherwise."""
        entry = self.aliases.get(name)
        if entry is not None:
            return entry.path
        if self.directory is None:
            raise NetworkError(f"network {name!r} named in the prompt, but no network directory is set "
                               "(pass lora_dir= to inpaintlab.load, or --lora-dir)")
        available = ", ".join(self.names()) or "none"
        raise NetworkError(f"network {name!r} not found in {self.directory}; available: {available}")

    def hash_of(self, path: Path) -> str:
        if path not in self._hashes:
            self._hashes[path] = network_hash(path)
        return self._hashes[path]

    def find_by_shorthash(self, shorthash: str) -> NetworkEntry | None:
        for entry in self.entries.values():
            if self.hash_of(entry.path)[:12] == shorthash:
                return entry
        return None

    def name_for_hash(self, shorthash: str) -> str | None:
        """The name A1111 writes into a pasted prompt for the file with this short hash: its alias when the alias
        identifies it, else its file stem."""
        entry = self.find_by_shorthash(shorthash)
        if entry is None:
            return None
        return entry.alias if self.aliases.get(entry.alias) is entry else entry.name
