"""Reading checkpoint files: safetensors tensor by tensor (no memory map), pickles only on request and with
`torch.load(weights_only=True)`; file hashes as A1111 writes them."""
from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import torch

from .layout import (
    _SUPPORTED,
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    CheckpointError,
    _preview,
)

log = logging.getLogger(__name__)


def read_state_dict(path: str | Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a flat {key: tensor} dict from a `.safetensors` file or, with `allow_pickle=True`, a torch pickle.

    Pickles are refused by default: unpickling can run code. When allowed they are read with
    `torch.load(weights_only=True)` and nested "state_dict" levels are unwrapped. The file is never modified.
    """
    path = existing_file(path)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        sd = _read_safetensors(path)
    elif suffix in PICKLE_SUFFIXES:
        sd = _read_pickle(path, allow_pickle)
    else:
        raise CheckpointError(
            f"{path}: unknown checkpoint extension {path.suffix!r}; expected .safetensors "
            f"or (with allow_pickle=True) one of {', '.join(PICKLE_SUFFIXES)}"
        )
    if not sd:
        raise CheckpointError(f"{path}: the file holds no tensors, so it is not a checkpoint")
    return sd


def existing_file(path: str | Path) -> Path:
    """`path` as a Path when it is a file; CheckpointError for a folder (naming a diffusers folder as such),
    FileNotFoundError when there is nothing."""
    path = Path(path)
    if path.is_dir():
        if (path / "model_index.json").is_file() or (path / "unet").is_dir() or (path / "config.json").is_file():
            raise CheckpointError(
                f"{path}: diffusers-format folders are not supported; {_SUPPORTED} "
                "(.safetensors, or .ckpt with allow_pickle=True)"
            )
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    return path


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file with plain reads into fresh CPU tensors, in the file's dtypes.

    The format is an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} and the
    raw little-endian data. Reading instead of memory-mapping keeps the resident memory at the tensors alone (a
    mapped file's touched pages count as resident too, doubling the peak for a multi-gigabyte checkpoint).
    """

    def corrupt(reason: str) -> CheckpointError:
        return CheckpointError(f"{path}: not a valid safetensors file (truncated or corrupt?): {reason}")

    if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
        raise CheckpointError(f"{path}: reading safetensors needs a little-endian machine")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise corrupt(f"{size} bytes, shorter than the 8-byte header length")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise corrupt(f"header length {n} exceeds the file size {size}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise corrupt(f"header is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise corrupt("header is not a JSON object")
        header.pop("__metadata__", None)
        entries = []
        for name, info in header.items():
            try:
                dtype = _SAFETENSORS_DTYPES[info["dtype"]]
                shape = [int(d) for d in info["shape"]]
                begin, end = (int(o) for o in info["data_offsets"])
            except (KeyError, TypeError, ValueError) as e:
                raise corrupt(f"bad header entry for {name!r}: {info!r} ({e!r})") from None
            nbytes = dtype.itemsize * torch.Size(shape).numel()
            if end - begin != nbytes or begin < 0 or 8 + n + end > size:
                raise corrupt(f"tensor {name!r} ({info['dtype']} {shape}) has data offsets [{begin}, {end}] that do "
                              f"not fit its size {nbytes} or the file ({size} bytes)")
            entries.append((begin, name, dtype, shape, nbytes))
        sd: dict[str, torch.Tensor] = {}
        for begin, name, dtype, shape, nbytes in sorted(entries, key=lambda e: e[0]):
            buffer = torch.empty(nbytes, dtype=torch.uint8)
            f.seek(8 + n + begin)
            if nbytes and f.readinto(buffer.numpy()) != nbytes:
                raise corrupt(f"tensor {name!r} is cut off")
            sd[name] = buffer.view(dtype).reshape(shape)
    return {name: sd[name] for name in header}  # the file's key order


def _read_pickle(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if not allow_pickle:
        raise CheckpointError(
            f"{path}: refusing to read a pickle checkpoint ({path.suffix}); unpickling can run arbitrary code. "
            "Convert it to .safetensors, or pass allow_pickle=True to read it with torch.load(weights_only=True)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise CheckpointError(f"{path}: could not be read by torch.load(weights_only=True): {e}") from e
    # diffusers descends while "state_dict" is present; A1111 pops one level. Lightning files nest one level.
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CheckpointError(f"{path}: not a flat state dict; non-tensor entries: {_preview(map(repr, bad))}")
    return dict(obj)


def file_sha256(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints are gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def legacy_model_hash(path: str | Path) -> str:
    """A1111's old short model hash: the first 8 hex digits of the sha256 of the 64 KiB at offset 1 MiB (of nothing
    for a file under 1 MiB). sd-webui-controlnet writes it in its `ControlNet N` entries."""
    with open(path, "rb") as f:
        f.seek(0x100000)
        return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]


def short_hash(path: str | Path) -> str:
    """The first 10 hex digits of the file's sha256: A1111's "Model hash" / "VAE hash" in the infotext."""
    return file_sha256(path)[:10]


# ------------------------------------------------------------------------------------- architecture and splitting
