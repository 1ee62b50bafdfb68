"""One ADetailer tab ("unit"): every ``ad_*`` setting of Bing-su/adetailer 25.3.0, and its infotext keys.

Keys are written as ADetailer's ``extra_params`` writes them: the tabs in order, each tab's keys in ``ALL_ARGS`` order,
the second tab's with the suffix " 2nd", the third's " 3rd" …, many only when not at their default, and
``ADetailer version`` last. Reading accepts the older key names ADetailer itself still reads.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

ADETAILER_VERSION = "25.3.0"
SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULER = "Use same scheduler"
FILTER_METHODS = ("Area", "Confidence")
MERGE_MODES = ("None", "Merge", "Merge and Invert")
# ADetailer's default preprocessor per ControlNet model kind (controlnet_ext/common.py), matched in this order on the
# model's name, case-sensitively; a "union" model matches none of them.
CONTROLNET_MODULES = (("inpaint", "inpaint_global_harmonious"), ("scribble", "t2ia_sketch_pidi"),
                      ("lineart", "lineart_coarse"), ("openpose", "openpose_full"), ("tile", "tile_resample"),
                      ("depth", "depth_midas"))


@dataclasses.dataclass
class ADetailerUnit:
    """ADetailer's per-tab settings with its defaults (tab 1's model: the first built-in, face_yolov8n.pt).

    ad_model names the detector: a YOLOv8 ``.pt``/``.safetensors`` file, or a name that the technique's
    ``detectors`` mapping resolves (a loaded Detector, or a Python callable returning masks).
    """
    ad_model: str = "face_yolov8n.pt"
    ad_model_classes: str = ""
    ad_tab_enable: bool = True
    ad_prompt: str = ""
    ad_negative_prompt: str = ""
    ad_confidence: float = 0.3
    ad_mask_filter_method: str = "Area"
    ad_mask_k: int = 0
    ad_mask_min_ratio: float = 0.0
    ad_mask_max_ratio: float = 1.0
    ad_x_offset: int = 0
    ad_y_offset: int = 0
    ad_dilate_erode: int = 4
    ad_mask_merge_invert: str = "None"
    ad_mask_blur: int = 4
    ad_denoising_strength: float = 0.4
    ad_inpaint_only_masked: bool = True
    ad_inpaint_only_masked_padding: int = 32
    ad_use_inpaint_width_height: bool = False
    ad_inpaint_width: int = 512
    ad_inpaint_height: int = 512
    ad_use_steps: bool = False
    ad_steps: int = 28
    ad_use_cfg_scale: bool = False
    ad_cfg_scale: float = 7.0
    ad_use_checkpoint: bool = False
    ad_checkpoint: str | None = None
    ad_use_vae: bool = False
    ad_vae: str | None = None
    ad_use_sampler: bool = False
    ad_sampler: str = "DPM++ 2M Karras"
    ad_scheduler: str = SAME_SCHEDULER
    ad_use_noise_multiplier: bool = False
    ad_noise_multiplier: float = 1.0
    ad_use_clip_skip: bool = False
    ad_clip_skip: int = 1
    ad_restore_face: bool = False
    ad_controlnet_model: str = "None"
    ad_controlnet_module: str = "None"
    ad_controlnet_weight: float = 1.0
    ad_controlnet_guidance_start: float = 0.0
    ad_controlnet_guidance_end: float = 1.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # pydantic-like coercion: "0.4" → 0.4, 4.0 → 4
            value = getattr(self, f.name)
            kind = {"bool": bool, "int": int, "float": float}.get(str(f.type))
            if kind is bool and isinstance(value, str):
                value = {"true": True, "false": False}.get(value.strip().lower(), value)
            elif kind in (int, float) and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                value = kind(float(value)) if kind is int else float(value)
            setattr(self, f.name, value)
        problems = check_unit(self)
        if problems:
            raise ValueError(f"ADetailer unit: {problems}")

    @property
    def active(self) -> bool:
        return self.ad_tab_enable and str(self.ad_model) != "None"

    @property
    def controlnet_module(self) -> str | None:
        """The preprocessor of the tab's ControlNet unit: ad_controlnet_module, or for "None" ADetailer's default for
        the model's kind (None when the name names no kind, e.g. a union model)."""
        if self.ad_controlnet_module not in ("None", "", None):
            return self.ad_controlnet_module
        name = Path(str(self.ad_controlnet_model)).name  # the list name A1111 shows, not the folder holding it
        return next((module for kind, module in CONTROLNET_MODULES if kind in name), None)


def check_unit(u: ADetailerUnit) -> str | None:
    """ADetailer's field constraints (its pydantic model), as one line, or None."""
    if not 0 <= u.ad_confidence <= 1:
        return f"ad_confidence {u.ad_confidence} must lie in [0, 1]"
    if u.ad_mask_filter_method not in FILTER_METHODS:
        return f"ad_mask_filter_method {u.ad_mask_filter_method!r}: expected one of {', '.join(FILTER_METHODS)}"
    if u.ad_mask_k < 0:
        return f"ad_mask_k {u.ad_mask_k} must be >= 0"
    if not 0 <= u.ad_mask_min_ratio <= u.ad_mask_max_ratio <= 1:
        return f"ad_mask_min_ratio {u.ad_mask_min_ratio} / max {u.ad_mask_max_ratio} must satisfy 0 <= min <= max <= 1"
    if u.ad_mask_merge_invert not in MERGE_MODES:
        return f"ad_mask_merge_invert {u.ad_mask_merge_invert!r}: expected one of {', '.join(MERGE_MODES)}"
    if not 0 <= u.ad_denoising_strength <= 1:
        return f"ad_denoising_strength {u.ad_denoising_strength} must lie in [0, 1]"
    if u.ad_mask_blur < 0 or u.ad_inpaint_only_masked_padding < 0:
        return "ad_mask_blur and ad_inpaint_only_masked_padding must be >= 0"
    if u.ad_steps < 1 or u.ad_clip_skip < 1:
        return "ad_steps and ad_clip_skip must be >= 1"
    if u.ad_clip_skip > 12:
        return f"ad_clip_skip {u.ad_clip_skip} must lie in [1, 12]"
    if not 0.5 <= u.ad_noise_multiplier <= 1.5:
        return f"ad_noise_multiplier {u.ad_noise_multiplier} must lie in [0.5, 1.5]"
    for name in ("ad_controlnet_weight", "ad_controlnet_guidance_start", "ad_controlnet_guidance_end"):
        if not 0 <= getattr(u, name) <= 1:
            return f"{name} {getattr(u, name)} must lie in [0, 1]"
    if u.ad_inpaint_width % 8 or u.ad_inpaint_height % 8 or min(u.ad_inpaint_width, u.ad_inpaint_height) < 64:
        return f"ad_inpaint_width/height {u.ad_inpaint_width}×{u.ad_inpaint_height} must be multiples of 8, >= 64"
    return None


# (attribute, infotext key) in ADetailer's ALL_ARGS order
ALL_ARGS = (
    ("ad_model", "ADetailer model"), ("ad_model_classes", "ADetailer model classes"),
    ("ad_tab_enable", "ADetailer tab enable"), ("ad_prompt", "ADetailer prompt"),
    ("ad_negative_prompt", "ADetailer negative prompt"), ("ad_confidence", "ADetailer confidence"),
    ("ad_mask_filter_method", "ADetailer method to decide top k masks"), ("ad_mask_k", "ADetailer mask only top k"),
    ("ad_mask_min_ratio", "ADetailer mask min ratio"), ("ad_mask_max_ratio", "ADetailer mask max ratio"),
    ("ad_x_offset", "ADetailer x offset"), ("ad_y_offset", "ADetailer y offset"),
    ("ad_dilate_erode", "ADetailer dilate erode"), ("ad_mask_merge_invert", "ADetailer mask merge invert"),
    ("ad_mask_blur", "ADetailer mask blur"), ("ad_denoising_strength", "ADetailer denoising strength"),
    ("ad_inpaint_only_masked", "ADetailer inpaint only masked"),
    ("ad_inpaint_only_masked_padding", "ADetailer inpaint padding"),
    ("ad_use_inpaint_width_height", "ADetailer use inpaint width height"),
    ("ad_inpaint_width", "ADetailer inpaint width"), ("ad_inpaint_height", "ADetailer inpaint height"),
    ("ad_use_steps", "ADetailer use separate steps"), ("ad_steps", "ADetailer steps"),
    ("ad_use_cfg_scale", "ADetailer use separate CFG scale"), ("ad_cfg_scale", "ADetailer CFG scale"),
    ("ad_use_checkpoint", "ADetailer use separate checkpoint"), ("ad_checkpoint", "ADetailer checkpoint"),
    ("ad_use_vae", "ADetailer use separate VAE"), ("ad_vae", "ADetailer VAE"),
    ("ad_use_sampler", "ADetailer use separate sampler"), ("ad_sampler", "ADetailer sampler"),
    ("ad_scheduler", "ADetailer scheduler"),
    ("ad_use_noise_multiplier", "ADetailer use separate noise multiplier"),
    ("ad_noise_multiplier", "ADetailer noise multiplier"),
    ("ad_use_clip_skip", "ADetailer use separate CLIP skip"), ("ad_clip_skip", "ADetailer CLIP skip"),
    ("ad_restore_face", "ADetailer restore face"), ("ad_controlnet_model", "ADetailer ControlNet model"),
    ("ad_controlnet_module", "ADetailer ControlNet module"), ("ad_controlnet_weight", "ADetailer ControlNet weight"),
    ("ad_controlnet_guidance_start", "ADetailer ControlNet guidance start"),
    ("ad_controlnet_guidance_end", "ADetailer ControlNet guidance end"),
)
KEYS = dict(ALL_ARGS)
# Older names ADetailer still reads (renamed 2023-10-26; "top k largest" v23.8 – v24.9, area method implied)
LEGACY_KEYS = {"ADetailer dilate/erode": "ad_dilate_erode", "ADetailer mask merge/invert": "ad_mask_merge_invert",
               "ADetailer use inpaint width/height": "ad_use_inpaint_width_height",
               "ADetailer mask only top k largest": "ad_mask_k"}


def ordinal(n: int) -> str:
    """1 → "1st", 2 → "2nd", 11 → "11th" …"""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def suffix(n: int) -> str:
    """Key suffix of tab n (0-based): "" for the first, " 2nd", " 3rd" … after."""
    return "" if n == 0 else f" {ordinal(n + 1)}"


def _written(u: ADetailerUnit) -> dict[str, Any]:
    """The attributes ADetailer's extra_params writes for this tab (ADetailerArgs.extra_params rules)."""
    d = {name: getattr(u, name) for name, _ in ALL_ARGS}
    drop = {"ad_tab_enable"}
    for name in ("ad_model_classes", "ad_prompt", "ad_negative_prompt"):
        if not d[name]:
            drop.add(name)
    if d["ad_mask_k"] == 0:
        drop |= {"ad_mask_filter_method", "ad_mask_k"}
    defaults = {"ad_mask_min_ratio": 0.0, "ad_mask_max_ratio": 1.0, "ad_x_offset": 0, "ad_y_offset": 0,
                "ad_mask_merge_invert": "None", "ad_restore_face": False}
    drop |= {k for k, v in defaults.items() if d[k] == v}
    if not d["ad_inpaint_only_masked"]:
        drop.add("ad_inpaint_only_masked_padding")
    pairs = {"ad_use_inpaint_width_height": ("ad_inpaint_width", "ad_inpaint_height"), "ad_use_steps": ("ad_steps",),
             "ad_use_cfg_scale": ("ad_cfg_scale",), "ad_use_checkpoint": ("ad_checkpoint",),
             "ad_use_vae": ("ad_vae",), "ad_use_sampler": ("ad_sampler", "ad_scheduler"),
             "ad_use_noise_multiplier": ("ad_noise_multiplier",), "ad_use_clip_skip": ("ad_clip_skip",)}
    for flag, values in pairs.items():
        if not d[flag]:
            drop |= {flag, *values}
    if d["ad_scheduler"] == SAME_SCHEDULER:
        drop.add("ad_scheduler")
    if d["ad_controlnet_model"] == "None":
        drop |= {k for k in d if k.startswith("ad_controlnet_")}
    else:
        cn_defaults = {"ad_controlnet_module": "None", "ad_controlnet_weight": 1.0,
                       "ad_controlnet_guidance_start": 0.0, "ad_controlnet_guidance_end": 1.0}
        drop |= {k for k, v in cn_defaults.items() if d[k] == v}
    return {k: v for k, v in d.items() if k not in drop}


def unit_infotext(units: list[ADetailerUnit]) -> dict[str, Any]:
    """Every ADetailer key for the active tabs, in ADetailer's order, ``ADetailer version`` last ({} if none)."""
    out: dict[str, Any] = {}
    for n, unit in enumerate(u for u in units if u.active):
        for name, value in _written(unit).items():
            if name == "ad_model":  # ADetailer names models by file name (its models folder holds them)
                value = Path(str(value)).name
            out[KEYS[name] + suffix(n)] = value
    if out:
        out["ADetailer version"] = ADETAILER_VERSION
    return out


def tab_keys(fields: dict[str, str], n: int) -> set[str]:
    """The keys of tab n (0-based) present in `fields`, older names included."""
    sfx = suffix(n)
    return {key + sfx for key in (*KEYS.values(), *LEGACY_KEYS) if key + sfx in fields}


def unit_from_infotext(fields: dict[str, str], n: int) -> ADetailerUnit | None:
    """Tab n (0-based) as the infotext describes it (None when it has no "ADetailer model[ suffix]" key); absent keys
    at ADetailer's defaults, older key names accepted. ValueError (one line) for a value ADetailer refuses."""
    names = {**{key: name for name, key in ALL_ARGS}, **LEGACY_KEYS}
    sfx = suffix(n)
    if "ADetailer model" + sfx not in fields:
        return None
    values: dict[str, Any] = {}
    for key, name in names.items():
        if key + sfx in fields:
            values[name] = fields[key + sfx]
    if "ADetailer mask only top k largest" + sfx in fields:
        values.setdefault("ad_mask_filter_method", "Area")
    for flag, value in (("ad_use_steps", "ad_steps"), ("ad_use_cfg_scale", "ad_cfg_scale"),
                        ("ad_use_sampler", "ad_sampler"), ("ad_use_noise_multiplier", "ad_noise_multiplier"),
                        ("ad_use_clip_skip", "ad_clip_skip"), ("ad_use_checkpoint", "ad_checkpoint"),
                        ("ad_use_vae", "ad_vae")):
        values.setdefault(flag, value in values)
    try:
        return ADetailerUnit(**values)
    except (TypeError, ValueError) as error:  # float("abc") names no setting: say which tab
        raise ValueError(f"ADetailer tab {n + 1}: {error}") from None


def units_from_infotext(fields: dict[str, str]) -> list[ADetailerUnit]:
    """The tabs an infotext describes (each "ADetailer model[ suffix]" key starts one), absent keys at ADetailer's
    defaults, older key names accepted."""
    units = []
    for n in range(64):
        unit = unit_from_infotext(fields, n)
        if unit is None:
            break
        units.append(unit)
    return units
