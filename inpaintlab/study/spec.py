"""Sweep specifications: JSON or TOML files naming a model, an image, a mask, base settings, axes and seeds.

    {
      "model": "v1-5-pruned-emaonly.safetensors", "vae": null,
      "image": "room.png", "mask": "mask.png",
      "base": {"prompt": "a black cat on the sofa", "negative_prompt": "blurry", "steps": 20},
      "x": {"masked_content": ["fill", "original", "latent_noise", "latent_nothing"]},
      "y": {"denoising_strength": [0.5, 0.75, 1.0]},
      "z": {"mask_blur": [0, 30, 64]},
      "seeds": [2976823394],
      "intermediates": false
    }

Each axis names one `Pipeline.inpaint` setting (or `prompt` / `negative_prompt`) and lists its values; values may use
A1111's labels ("latent noise", "Only masked"). The base settings and every cell are checked by `inpaintlab.settings`
when the spec is read, before a model is loaded. Relative paths are resolved against the spec file's directory.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from .. import settings as registry

# Settings a cell may set (every setting `inpaint` takes; the seed comes from "seeds").
SETTING_NAMES = registry.for_command("inpaint")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the sweep: its index in the full enumeration, axis values and seed."""

    index: int
    x: tuple[str, Any]
    y: tuple[str, Any]
    z: tuple[str, Any] | None
    seed: int

    def settings(self, base: dict[str, Any]) -> dict[str, Any]:
        axes = dict([self.x, self.y] + ([self.z] if self.z else []))
        return {**base, **axes, "seed": self.seed}


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    model: Path
    vae: Path | None
    image: Path
    mask: Path
    base: dict[str, Any]
    x: tuple[str, list]
    y: tuple[str, list]
    z: tuple[str, list] | None
    seeds: list[int]
    intermediates: bool = False
    device: str = "cpu"
    kernels: str = "auto"

    def cells(self) -> list[Cell]:
        """All cells in a fixed order (z, seed, y, x): every rank enumerates the same list."""
        zs = [(self.z[0], v) for v in self.z[1]] if self.z else [None]
        out = []
        for index, (z, seed, y, x) in enumerate(itertools.product(
                zs, self.seeds, [(self.y[0], v) for v in self.y[1]], [(self.x[0], v) for v in self.x[1]])):
            out.append(Cell(index, x, y, z, seed))
        return out


def _read(path: Path) -> dict[str, Any]:
    text = path.read_bytes()
    if path.suffix.lower() == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        return tomllib.loads(text.decode("utf-8"))
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _axis(raw: dict[str, Any], name: str, required: bool) -> tuple[str, list] | None:
    axis = raw.get(name)
    if axis is None:
        if required:
            raise ValueError(f"sweep spec: axis {name!r} is required")
        return None
    if not isinstance(axis, dict) or len(axis) != 1:
        raise ValueError(f"sweep spec: axis {name!r} must be one setting name mapped to a list of values")
    (setting, values), = axis.items()
    if setting not in SETTING_NAMES:
        raise ValueError(f"sweep spec: axis {name!r} names unknown setting {setting!r}; known: {', '.join(SETTING_NAMES)}")
    if not isinstance(values, list) or not values:
        raise ValueError(f"sweep spec: axis {name!r} needs a non-empty list of values")
    try:
        values = [registry.coerce(setting, value) for value in values]
    except ValueError as error:
        raise ValueError(f"sweep spec: axis {name!r}: {error}") from None
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f"sweep spec: axis {name!r} lists a value twice: {values}")
    return setting, values


def load_spec(source: str | Path | dict[str, Any], root: Path | None = None) -> SweepSpec:
    """Read and validate a spec from a file (JSON or TOML) or a dict; paths are resolved against its directory."""
    if isinstance(source, dict):
        raw, root = source, root or Path.cwd()
    else:
        path = Path(source)
        raw, root = _read(path), path.resolve().parent
    unknown = set(raw) - {"model", "vae", "image", "mask", "base", "x", "y", "z", "seeds", "intermediates", "device",
                          "kernels"}
    if unknown:
        raise ValueError(f"sweep spec: unknown keys {sorted(unknown)}")
    for key in ("model", "image", "mask"):
        if key not in raw:
            raise ValueError(f"sweep spec: {key!r} is required")
    base = dict(raw.get("base", {}))
    bad = set(base) - set(SETTING_NAMES)
    if bad:
        raise ValueError(f"sweep spec: unknown base settings {sorted(bad)}")
    if "seed" in base:
        raise ValueError("sweep spec: give seeds in 'seeds', not in 'base'")
    base.setdefault("prompt", "")
    seeds = raw.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError("sweep spec: 'seeds' must be a non-empty list of non-negative integers")
    x, y, z = _axis(raw, "x", True), _axis(raw, "y", True), _axis(raw, "z", False)
    names = [a[0] for a in (x, y, z) if a]
    if len(set(names)) != len(names):
        raise ValueError(f"sweep spec: the axes must name different settings, got {names}")

    if isinstance(base.get("controlnet"), str):  # a model file, relative to the spec like the checkpoint
        base["controlnet"] = str((root / base["controlnet"]).resolve())
    try:
        base = registry.validate(base, "inpaint")
    except ValueError as error:
        raise ValueError(f"sweep spec: base: {error}") from None

    def resolve(p: str | None) -> Path | None:
        return None if p is None else (root / p).resolve()

    spec = SweepSpec(resolve(raw["model"]), resolve(raw.get("vae")), resolve(raw["image"]), resolve(raw["mask"]), base,
                     x, y, z, list(seeds), bool(raw.get("intermediates", False)), raw.get("device", "cpu"),
                     raw.get("kernels", "auto"))
    for cell in spec.cells():
        # Combinations too (a sampler on one axis, a schedule on another): a bad cell fails now, not mid-sweep.
        try:
            registry.validate(cell.settings(spec.base), "inpaint")
        except ValueError as error:
            raise ValueError(f"sweep spec: cell {cell.index} ({_describe(cell)}): {error}") from None
    return spec


def _describe(cell: Cell) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in (cell.x, cell.y) + ((cell.z,) if cell.z else ()))
