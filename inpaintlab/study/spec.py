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
A1111's labels ("latent noise", "Only masked"). An axis may instead have a free name and list groups of settings, each
with an optional "label" for the grid, to vary several settings together (e.g. binary vs soft inpainting vs
Differential Diffusion):

      "x": {"blending": [{"label": "binary"}, {"label": "soft", "soft_inpainting": true},
                         {"label": "differential", "differential_diffusion": true}]}

The base settings and every cell are checked by `inpaintlab.settings` when the spec is read, before a model is loaded.
Relative paths are resolved against the spec file's directory.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from .. import settings as registry
from ..networks import set_lora_weight

LORA_AXIS = "lora:"  # an axis `lora:NAME` varies that network's weight
# Mask edits applied before inpainting (Inpaint Anything's "Expand mask region": a 3x3 dilation N times; 0 = none).
MASK_AXES = ("mask_expand",)
# Settings a cell may set (every setting `inpaint` takes; the seed comes from "seeds").
SETTING_NAMES = registry.for_command("inpaint")  # at import; rows a technique registers later count too:


def setting_names() -> tuple[str, ...]:
    """The settings a spec may name: every registered row `inpaint` takes, techniques' own rows included."""
    return registry.for_command("inpaint")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the sweep: its index in the full enumeration, axis values and seed."""

    index: int
    x: tuple[str, Any]
    y: tuple[str, Any]
    z: tuple[str, Any] | None
    seed: int

    def settings(self, base: dict[str, Any]) -> dict[str, Any]:
        axes: dict[str, Any] = {}
        for name, value in [self.x, self.y] + ([self.z] if self.z else []):
            axes.update(group_settings(value) if isinstance(value, dict) else {name: value})
        settings = {**base, **axes, "seed": self.seed}
        # A `lora:NAME` axis sets that network's weight in the prompt (the tag is added when the prompt lacks it), as
        # A1111's X/Y/Z "Prompt S/R" over `<lora:NAME:w>` does; the infotext then records it.
        for name in [n for n in settings if n.startswith(LORA_AXIS)]:
            settings["prompt"] = set_lora_weight(settings["prompt"], name[len(LORA_AXIS):], settings.pop(name))
        return settings


def group_settings(group: dict[str, Any]) -> dict[str, Any]:
    """The settings of one value of a grouped axis (its "label" is only for display)."""
    return {k: v for k, v in group.items() if k != "label"}


def axis_label(name: str, value: Any) -> str:
    """Grid label of an axis value: "setting: value", or a group's label (else its settings as k=v)."""
    if isinstance(value, dict):
        return str(value.get("label") or ", ".join(f"{k}={v}" for k, v in group_settings(value).items()) or name)
    return f"{name}: {value}"


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
    lora_dir: Path | None = None

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
    if setting.startswith(LORA_AXIS):
        if not setting[len(LORA_AXIS):] or not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"sweep spec: axis {name!r} ({setting}) needs a network name and a list of weights")
        return setting, values
    if setting in MASK_AXES:
        if not isinstance(values, list) or not values or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 100 for v in values):
            raise ValueError(f"sweep spec: axis {name!r} ({setting}) needs a list of pixel counts from 0 to 100")
        if len(set(values)) != len(values):
            raise ValueError(f"sweep spec: axis {name!r} lists a value twice: {values}")
        return setting, values
    if isinstance(values, list) and values and all(isinstance(v, dict) for v in values):
        groups = []
        for group in values:
            unknown = set(group_settings(group)) - set(setting_names())
            if unknown or "seed" in group:
                raise ValueError(f"sweep spec: axis {name!r} group {group} names unknown settings "
                                 f"{sorted(unknown or {'seed'})}; known: {', '.join(setting_names())}")
            try:
                groups.append({k: v if k == "label" else registry.coerce(k, v) for k, v in group.items()})
            except ValueError as error:
                raise ValueError(f"sweep spec: axis {name!r}: {error}") from None
        return setting, groups
    if setting not in setting_names():
        raise ValueError(f"sweep spec: axis {name!r} names unknown setting {setting!r}; known: {', '.join(setting_names())}"
                         f", or {LORA_AXIS}NAME for a network's weight")
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
                          "kernels", "lora_dir"}
    if unknown:
        raise ValueError(f"sweep spec: unknown keys {sorted(unknown)}")
    for key in ("model", "image", "mask"):
        if key not in raw:
            raise ValueError(f"sweep spec: {key!r} is required")
    base = dict(raw.get("base", {}))
    bad = set(base) - set(setting_names())
    if bad:
        raise ValueError(f"sweep spec: unknown base settings {sorted(bad)}")
    if "seed" in base:
        raise ValueError("sweep spec: give seeds in 'seeds', not in 'base'")
    base.setdefault("prompt", "")
    seeds = raw.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError("sweep spec: 'seeds' must be a non-empty list of non-negative integers")
    x, y, z = _axis(raw, "x", True), _axis(raw, "y", True), _axis(raw, "z", False)
    names = [n for a in (x, y, z) if a
             for n in ({k for v in a[1] for k in group_settings(v)} if isinstance(a[1][0], dict) else {a[0]})]
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
                     raw.get("kernels", "auto"), resolve(raw.get("lora_dir")))
    for cell in spec.cells():
        # Combinations too (a sampler on one axis, a schedule on another): a bad cell fails now, not mid-sweep.
        try:
            registry.validate({k: v for k, v in cell.settings(spec.base).items() if k not in MASK_AXES}, "inpaint")
        except ValueError as error:
            raise ValueError(f"sweep spec: cell {cell.index} ({_describe(cell)}): {error}") from None
    return spec


def _describe(cell: Cell) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in (cell.x, cell.y) + ((cell.z,) if cell.z else ()))
