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

An optional "script" runs one of A1111's img2img scripts (`inpaintlab.scripts.run_script`: "Poor man's outpainting",
"Outpainting mk2", "SD upscale", "Loopback") in every cell instead of a plain inpaint; its arguments
(`inpaintlab.scripts.SCRIPTS`, e.g. "pixels", "direction", "noise_q") may then be base settings and axes, and the
spec needs no mask:

      "script": "Outpainting mk2", "base": {"prompt": "a wide valley", "direction": ["left", "right"]},
      "x": {"pixels": [64, 128]}, "y": {"noise_q": [0.5, 1.0, 2.0]}

The base settings and every cell are checked by `inpaintlab.settings` (script arguments by `scripts.rows`) when the
spec is read, before a model is loaded. Relative paths are resolved against the spec file's directory.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import FileError, MissingFileError, SettingsError
from .. import settings as registry
from ..networks import set_lora_weight
from ..scripts.rows import script_arg_names, script_args

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
    mask: Path | None
    base: dict[str, Any]
    x: tuple[str, list]
    y: tuple[str, list]
    z: tuple[str, list] | None
    seeds: list[int]
    intermediates: bool = False
    device: str = "cpu"
    kernels: str = "auto"
    lora_dir: Path | None = None
    script: str | None = None   # an A1111 img2img script run in every cell (its arguments sit among the settings)

    def script_split(self, settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(script arguments, generation settings) of a cell's settings; ({}, settings) without a script."""
        names = script_arg_names(self.script) if self.script else ()
        return {k: v for k, v in settings.items() if k in names}, {k: v for k, v in settings.items() if k not in names}

    def cells(self) -> list[Cell]:
        """All cells in a fixed order (z, seed, y, x): every rank enumerates the same list."""
        zs = [(self.z[0], v) for v in self.z[1]] if self.z else [None]
        out = []
        for index, (z, seed, y, x) in enumerate(itertools.product(
                zs, self.seeds, [(self.y[0], v) for v in self.y[1]], [(self.x[0], v) for v in self.x[1]])):
            out.append(Cell(index, x, y, z, seed))
        return out


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"{path}: sweep spec not found") from None
    except OSError as error:
        raise FileError(f"{path}: cannot read the sweep spec ({error.strerror or error})") from None
    if path.suffix.lower() == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        try:
            return tomllib.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise SettingsError(f"{path}: not valid TOML ({error})") from None
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SettingsError(f"{path}: not valid JSON ({error})") from None


_TYPES = {"model": str, "vae": str, "image": str, "mask": str, "lora_dir": str, "script": str, "base": dict, "seeds": list,
          "intermediates": bool, "device": str, "kernels": str, "x": dict, "y": dict, "z": dict}


def _check_types(raw: Any) -> None:
    if not isinstance(raw, dict):
        raise SettingsError(f"sweep spec: must be a table of keys (a JSON object), got {type(raw).__name__}")
    for key, value in raw.items():
        kind = _TYPES.get(key)
        if kind is str and isinstance(value, Path):
            continue
        if kind is not None and not (key in ("vae", "lora_dir", "x", "y", "z") and value is None) and not isinstance(value, kind):
            raise SettingsError(f"sweep spec: {key!r} must be a {_TYPE_NAMES[kind]}, got {value!r}")
    for key in ("x", "y", "z"):
        axis = raw.get(key) or {}
        if not all(isinstance(name, str) for name in axis):
            raise SettingsError(f"sweep spec: axis {key!r} must name a setting")
        for values in axis.values():
            if isinstance(values, list) and any(isinstance(v, dict) and not all(isinstance(k, str) for k in v)
                                                for v in values):
                raise SettingsError(f"sweep spec: axis {key!r} groups must map setting names to values")


_TYPE_NAMES = {str: "string (a path)", dict: "table", list: "list", bool: "true or false"}


def _axis(raw: dict[str, Any], name: str, required: bool, script: str | None = None) -> tuple[str, list] | None:
    axis = raw.get(name)
    if axis is None:
        if required:
            raise SettingsError(f"sweep spec: axis {name!r} is required")
        return None
    if not isinstance(axis, dict) or len(axis) != 1:
        raise SettingsError(f"sweep spec: axis {name!r} must be one setting name mapped to a list of values")
    (setting, values), = axis.items()
    if setting.startswith(LORA_AXIS):
        if not setting[len(LORA_AXIS):] or not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise SettingsError(f"sweep spec: axis {name!r} ({setting}) needs a network name and a list of weights")
        return setting, values
    if setting in MASK_AXES:
        if not isinstance(values, list) or not values or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 100 for v in values):
            raise ValueError(f"sweep spec: axis {name!r} ({setting}) needs a list of pixel counts from 0 to 100")
        if len(set(values)) != len(values):
            raise ValueError(f"sweep spec: axis {name!r} lists a value twice: {values}")
        return setting, values
    if script and setting in script_arg_names(script):  # the script's own argument (before a same-named setting)
        if not isinstance(values, list) or not values:
            raise SettingsError(f"sweep spec: axis {name!r} needs a non-empty list of values")
        try:
            values = [script_args(script, {setting: v})[setting] for v in values]
        except ValueError as error:
            raise SettingsError(f"sweep spec: axis {name!r}: {error}") from None
        if len(set(map(repr, values))) != len(values):
            raise SettingsError(f"sweep spec: axis {name!r} lists a value twice: {values}")
        return setting, values
    if isinstance(values, list) and values and all(isinstance(v, dict) for v in values):
        groups = []
        for group in values:
            unknown = set(group_settings(group)) - set(setting_names())
            if unknown or "seed" in group:
                raise SettingsError(f"sweep spec: axis {name!r} group {group} names unknown settings "
                                 f"{sorted(unknown or {'seed'})}; known: {', '.join(setting_names())}")
            try:
                groups.append({k: v if k == "label" else registry.coerce(k, v) for k, v in group.items()})
            except ValueError as error:
                raise SettingsError(f"sweep spec: axis {name!r}: {error}") from None
        return setting, groups
    if setting not in setting_names():
        raise SettingsError(f"sweep spec: axis {name!r} names unknown setting {setting!r}; known: {', '.join(setting_names())}"
                         f", or {LORA_AXIS}NAME for a network's weight")
    if not isinstance(values, list) or not values:
        raise SettingsError(f"sweep spec: axis {name!r} needs a non-empty list of values")
    try:
        values = [registry.coerce(setting, value) for value in values]
    except ValueError as error:
        raise SettingsError(f"sweep spec: axis {name!r}: {error}") from None
    if len(set(map(repr, values))) != len(values):
        raise SettingsError(f"sweep spec: axis {name!r} lists a value twice: {values}")
    return setting, values


def load_spec(source: str | Path | dict[str, Any], root: Path | None = None) -> SweepSpec:
    """Read and validate a spec from a file (JSON or TOML) or a dict; paths are resolved against its directory."""
    if not isinstance(source, (str, Path)):
        raw, root = source, root or Path.cwd()
    else:
        path = Path(source)
        raw, root = _read(path), path.resolve().parent
    _check_types(raw)
    unknown = set(map(str, raw)) - {"model", "vae", "image", "mask", "base", "x", "y", "z", "seeds", "intermediates", "device",
                          "kernels", "lora_dir", "script"}
    if unknown:
        raise SettingsError(f"sweep spec: unknown keys {sorted(unknown)}")
    script = raw.get("script")
    if script is not None:
        script_arg_names(script)  # an unknown script name fails here
        if raw.get("intermediates"):
            raise SettingsError("sweep spec: a script's cells have no single latent to keep; leave intermediates off")
    for key in ("model", "image") + (() if script else ("mask",)):
        if key not in raw:
            raise SettingsError(f"sweep spec: {key!r} is required")
    base = dict(raw.get("base", {}))
    script_base = {k: base.pop(k) for k in list(base) if script and k in script_arg_names(script)}
    try:
        script_base = script_args(script, script_base) if script else {}
    except ValueError as error:
        raise SettingsError(f"sweep spec: base: {error}") from None
    bad = set(base) - set(setting_names())
    if bad:
        raise SettingsError(f"sweep spec: unknown base settings {sorted(bad)}")
    if "seed" in base:
        raise SettingsError("sweep spec: give seeds in 'seeds', not in 'base'")
    base.setdefault("prompt", "")
    seeds = raw.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise SettingsError("sweep spec: 'seeds' must be a non-empty list of non-negative integers")
    x, y, z = _axis(raw, "x", True, script), _axis(raw, "y", True, script), _axis(raw, "z", False, script)
    names = [n for a in (x, y, z) if a
             for n in ({k for v in a[1] for k in group_settings(v)} if isinstance(a[1][0], dict) else {a[0]})]
    if len(set(names)) != len(names):
        raise SettingsError(f"sweep spec: the axes must name different settings, got {names}")

    if isinstance(base.get("controlnet"), str):  # a model file, relative to the spec like the checkpoint
        base["controlnet"] = str((root / base["controlnet"]).resolve())
    try:
        base = registry.validate(base, "inpaint")
    except ValueError as error:
        raise SettingsError(f"sweep spec: base: {error}") from None

    def resolve(p: str | None) -> Path | None:
        return None if p is None else (root / p).resolve()

    spec = SweepSpec(resolve(raw["model"]), resolve(raw.get("vae")), resolve(raw["image"]), resolve(raw.get("mask")),
                     {**base, **script_base}, x, y, z, list(seeds), bool(raw.get("intermediates", False)),
                     raw.get("device", "cpu"), raw.get("kernels", "auto"), resolve(raw.get("lora_dir")), script)
    for cell in spec.cells():
        # Combinations too (a sampler on one axis, a schedule on another): a bad cell fails now, not mid-sweep.
        try:
            _, settings = spec.script_split(cell.settings(spec.base))
            registry.validate({k: v for k, v in settings.items() if k not in MASK_AXES}, "inpaint")
        except ValueError as error:
            raise SettingsError(f"sweep spec: cell {cell.index} ({_describe(cell)}): {error}") from None
    return spec


def _describe(cell: Cell) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in (cell.x, cell.y) + ((cell.z,) if cell.z else ()))
