"""ADetailer's first tab as setting rows: every ``ad_*`` setting is a keyword of txt2img / img2img / inpaint (through
``**settings``), a CLI flag (``--ad-model face_yolov8n.pt``), a sweep axis, and reads back from its infotext key.

Tabs 2, 3 …: the ``ad_more_tabs`` setting (a list of ADetailerUnit, or of dicts of ``ad_*`` settings; JSON on the
command line), read back from their " 2nd", " 3rd" … infotext keys by one whole-infotext reader; or
``techniques=[ADetailer([ADetailerUnit(...), ADetailerUnit(...)])]`` from Python.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

from ..settings import ALL, INFOTEXT_READERS, Setting, register, register_infotext_key
from .unit import FILTER_METHODS, KEYS, MERGE_MODES, ADetailerUnit, suffix, tab_keys, unit_from_infotext

HELP = {
    "ad_model": "ADetailer: detector of tab 1, a YOLOv8 .pt/.safetensors file such as face_yolov8n.pt (None = off)",
    "ad_model_classes": "ADetailer: classes for YOLO-World models (comma-separated; other models ignore it)",
    "ad_tab_enable": "ADetailer: tab 1 enabled",
    "ad_prompt": "ADetailer: prompt of the passes ([SEP] splits it per mask, [PROMPT] = the main prompt; "
                 "empty = the main prompt)",
    "ad_negative_prompt": "ADetailer: negative prompt of the passes (as ad_prompt)",
    "ad_confidence": "ADetailer: detection confidence threshold, 0-1",
    "ad_mask_filter_method": "ADetailer: what decides the top k masks (Area or Confidence)",
    "ad_mask_k": "ADetailer: keep only the top k detections (0 = all)",
    "ad_mask_min_ratio": "ADetailer: smallest bbox area / image area kept, 0-1",
    "ad_mask_max_ratio": "ADetailer: largest bbox area / image area kept, 0-1",
    "ad_x_offset": "ADetailer: move masks right by this many pixels (wraps around)",
    "ad_y_offset": "ADetailer: move masks up by this many pixels (wraps around)",
    "ad_dilate_erode": "ADetailer: grow (> 0) or shrink (< 0) masks with a square of this size",
    "ad_mask_merge_invert": "ADetailer: None, Merge (one mask) or Merge and Invert",
    "ad_mask_blur": "ADetailer: mask blur of the passes",
    "ad_denoising_strength": "ADetailer: denoising strength of the passes, 0-1",
    "ad_inpaint_only_masked": "ADetailer: inpaint only the masked area (crop, upscale, paste back)",
    "ad_inpaint_only_masked_padding": "ADetailer: only-masked padding in pixels",
    "ad_use_inpaint_width_height": "ADetailer: use ad_inpaint_width/height instead of the main size",
    "ad_inpaint_width": "ADetailer: width of the passes (with ad_use_inpaint_width_height)",
    "ad_inpaint_height": "ADetailer: height of the passes (with ad_use_inpaint_width_height)",
    "ad_use_steps": "ADetailer: use ad_steps", "ad_steps": "ADetailer: steps of the passes (with ad_use_steps)",
    "ad_use_cfg_scale": "ADetailer: use ad_cfg_scale",
    "ad_cfg_scale": "ADetailer: CFG scale of the passes (with ad_use_cfg_scale)",
    "ad_use_checkpoint": "ADetailer: use ad_checkpoint",
    "ad_checkpoint": "ADetailer: checkpoint file of the passes (with ad_use_checkpoint; 'name [hash]' as A1111 "
                     "writes it is looked up as that file in the working directory)",
    "ad_use_vae": "ADetailer: use ad_vae",
    "ad_vae": "ADetailer: VAE file of the passes (with ad_use_vae; 'None' / 'Automatic' = the checkpoint's own)",
    "ad_use_sampler": "ADetailer: use ad_sampler / ad_scheduler",
    "ad_sampler": "ADetailer: sampler of the passes (with ad_use_sampler)",
    "ad_scheduler": "ADetailer: schedule type of the passes ('Use same scheduler' = the main one)",
    "ad_use_noise_multiplier": "ADetailer: use ad_noise_multiplier",
    "ad_noise_multiplier": "ADetailer: img2img noise multiplier of the passes, 0.5-1.5 (with ad_use_noise_multiplier)",
    "ad_use_clip_skip": "ADetailer: use ad_clip_skip",
    "ad_clip_skip": "ADetailer: CLIP skip of the passes (with ad_use_clip_skip)",
    "ad_restore_face": "ADetailer: restore faces after each pass (not supported: refused)",
    "ad_controlnet_model": "ADetailer: ControlNet of the passes: None (main job's units off), Passthrough (they run), "
                           "or an SD1.x ControlNet file / 'name [hash]' (one unit on the pass's own image)",
    "ad_controlnet_module": "ADetailer: ControlNet preprocessor (None = by the model's kind: inpaint -> "
                            "inpaint_global_harmonious, tile -> tile_resample, ...)",
    "ad_controlnet_weight": "ADetailer: ControlNet weight", "ad_controlnet_guidance_start": "ADetailer: ControlNet start",
    "ad_controlnet_guidance_end": "ADetailer: ControlNet end",
}


def _range(low: float, high: float | None = None) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v < low or (high is not None and v > high):
            return f"must be in [{low}, {high}]" if high is not None else f"must be >= {low}"
        return None
    return check


def _size(v: int) -> str | None:
    return None if v >= 64 and v % 8 == 0 else "must be a multiple of 8, >= 64"


CHECKS = {"ad_confidence": _range(0, 1), "ad_mask_k": _range(0), "ad_mask_min_ratio": _range(0, 1),
          "ad_mask_max_ratio": _range(0, 1), "ad_mask_blur": _range(0), "ad_denoising_strength": _range(0, 1),
          "ad_inpaint_only_masked_padding": _range(0), "ad_inpaint_width": _size, "ad_inpaint_height": _size,
          "ad_steps": _range(1), "ad_clip_skip": _range(1, 12), "ad_cfg_scale": _range(0),
          "ad_noise_multiplier": _range(0.5, 1.5), "ad_controlnet_weight": _range(0, 1),
          "ad_controlnet_guidance_start": _range(0, 1), "ad_controlnet_guidance_end": _range(0, 1)}
CHOICES = {"ad_mask_filter_method": FILTER_METHODS, "ad_mask_merge_invert": MERGE_MODES}
KINDS = {"bool": bool, "int": int, "float": float}


def rows() -> list[Setting]:
    out = []
    for f in dataclasses.fields(ADetailerUnit):
        default = "None" if f.name == "ad_model" else f.default  # off unless a detector is named
        out.append(Setting(f.name, KINDS.get(str(f.type), str), default, HELP[f.name], ALL, infotext=KEYS[f.name],
                           choices=CHOICES.get(f.name, ()), check=CHECKS.get(f.name), keyword=False))
    return out


def more_tabs(value: Any) -> tuple[ADetailerUnit, ...]:
    """``ad_more_tabs`` as units: None, or a list of ADetailerUnit / dicts of ad_* settings (a JSON list from the CLI).
    ValueError (one line) otherwise."""
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("ad_more_tabs: expected a JSON list of {\"ad_model\": ...} objects") from None
    if isinstance(value, (ADetailerUnit, dict)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"ad_more_tabs: expected a list of ADetailer tabs, got {type(value).__name__}")
    out = []
    for n, tab in enumerate(value):
        if isinstance(tab, dict):
            try:
                tab = ADetailerUnit(**tab)
            except TypeError as error:  # an unknown ad_* name
                raise ValueError(f"ad_more_tabs tab {n + 2}: {error}") from None
        if not isinstance(tab, ADetailerUnit):
            raise ValueError(f"ad_more_tabs tab {n + 2}: expected an ADetailerUnit or a dict, got {type(tab).__name__}")
        out.append(tab)
    return tuple(out)


def _more_tabs_check(value: Any) -> str | None:
    try:
        more_tabs(value)
    except ValueError as error:
        return str(error).removeprefix("ad_more_tabs").lstrip(": ") or "is not a list of tabs"
    return None


MORE_TABS = Setting("ad_more_tabs", object, None, "ADetailer: tabs 2, 3 … as a JSON list of objects of ad_* settings "
                    "(Python: a list of ADetailerUnit); read back from the ' 2nd', ' 3rd' … infotext keys", ALL,
                    check=_more_tabs_check, keyword=False)


def read_more_tabs(fields: dict[str, str]) -> tuple[list[str], dict[str, Any], list[str]]:
    """Tabs 2, 3 … of an infotext (a whole-infotext reader): (their keys, {"ad_more_tabs": units}, problems).
    A tab with a value ADetailer refuses is left out and named; the tabs after it still replay."""
    keys: list[str] = []
    units: list[ADetailerUnit] = []
    problems: list[str] = []
    for n in range(1, 64):
        if "ADetailer model" + suffix(n) not in fields:
            break
        keys += sorted(tab_keys(fields, n), key=lambda k: k != "ADetailer model" + suffix(n))
        try:
            units.append(unit_from_infotext(fields, n))
        except ValueError as error:
            problems.append(f"ADetailer model{suffix(n)}: {error}")
    return keys, ({"ad_more_tabs": tuple(units)} if units else {}), problems


def register_rows() -> None:
    for row in rows():
        register(row)
    register(MORE_TABS)
    INFOTEXT_READERS["ADetailer tabs 2, 3 ..."] = read_more_tabs
    register_infotext_key("ADetailer version")


register_rows()  # when the technique is imported (inpaintlab.techniques imports it with the built-ins)
