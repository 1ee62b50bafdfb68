"""What one ADetailer inpaint pass runs with (ADetailer 25.3.0 ``get_i2i_p``, ``fix_p2``, ``script_filter``): its
settings, its ControlNet unit, its checkpoint and VAE, its size and strength from the detection box, and which of the
main job's techniques act in it.

Extensions in the passes follow what A1111 does with ADetailer's inner ``process_images``: only the always-on
scripts of ADetailer's list (dynamic thresholding among them), soft inpainting and ControlNet (when the tab names a
ControlNet model) run there. FreeU, PAG and CFG rescale do not act; SEG's hooks, left installed by the main job, keep
blurring the uncond rows whenever they were on at the main job's last step.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import Any, Mapping

from .. import settings as registry
from ..pipeline.technique import TechniqueError
from .unit import SAME_SAMPLER, SAME_SCHEDULER, ADetailerUnit

log = logging.getLogger(__name__)

_CONTROLNET_EXTRA = ("controlnets", "controlnet_image", "controlnet_mask", "controlnet_lama")
_CONTROLNET = ("controlnet", "controlnet_preprocessor", "control_weight", "control_mode", "guidance_start",
               "guidance_end")
# Settings of extensions whose hooks do not act in ADetailer's passes (their rows' defaults switch them off).
_NOT_IN_PASSES = ("freeu_stages", "pag_scale", "cfg_rescale")
# Caller techniques (by `Technique.name`) that act in the passes: ADetailer's default "script names" option
# (dynamic_thresholding, …) plus the built-in scripts it always keeps (soft_inpainting, hypertile_script).
PASS_TECHNIQUES = ("dynamic thresholding", "soft inpainting")
MATCH_MODES = ("Off", "Strict (SDXL only)", "Free")
SDXL_BUCKETS = ((1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344),
                (1536, 640), (640, 1536))
_HASH = re.compile(r"^(.*?)\s*\[[0-9a-fA-F]+\]$")


def file_name(value: str) -> str:
    """A model name as A1111 lists it (``name [hash]``) without its hash; anything else unchanged."""
    match = _HASH.match(str(value))
    return match.group(1) if match else str(value)


def pass_settings(main: Mapping[str, Any], unit: ADetailerUnit, size: tuple[int, int], *,
                  seg_on_at_end: bool = False) -> dict[str, Any]:
    """The inner inpaint job's keywords (ADetailer's ``get_i2i_p``), seed, ControlNet unit and box-driven size /
    strength left to the caller. seg_on_at_end: SEG was on at the main job's last step (its hooks stay on)."""
    inner = set(registry.for_command("inpaint")) - {"prompt", "negative_prompt"}
    s = {k: v for k, v in main.items() if k in inner and not k.startswith("ad_")}  # passes run no ADetailer
    for k in _NOT_IN_PASSES:
        s.pop(k, None)
    if s.get("seg_blur_sigma"):  # SEG's leftover hooks: on for every step of the pass, or not at all
        if seg_on_at_end:
            s.update(seg_start=0, seg_end=max(150, int(s.get("seg_end", 150))))
        else:
            s.pop("seg_blur_sigma")
    if unit.ad_controlnet_model != "Passthrough":  # None: the main job's units are off; a model: only its unit
        for k in _CONTROLNET:
            s.pop(k, None)
    else:  # Passthrough: the main job's units run unchanged, with their own images if they had any
        s.update({k: main[k] for k in _CONTROLNET_EXTRA if main.get(k) is not None})
    width, height = (unit.ad_inpaint_width, unit.ad_inpaint_height) if unit.ad_use_inpaint_width_height else size
    s.update(width=width, height=height, resize_mode=0, mask_mode="masked", mask_blur=unit.ad_mask_blur,
             masked_content="original", denoising_strength=unit.ad_denoising_strength, batch_size=1,
             inpaint_area="only_masked" if unit.ad_inpaint_only_masked else "whole",
             padding=unit.ad_inpaint_only_masked_padding)
    if unit.ad_use_steps:
        s["steps"] = unit.ad_steps
    if unit.ad_use_cfg_scale:
        s["cfg_scale"] = unit.ad_cfg_scale
    if unit.ad_use_clip_skip:
        s["clip_skip"] = unit.ad_clip_skip
    if unit.ad_use_noise_multiplier:  # else A1111's global option, i.e. the main job's value
        s["initial_noise_multiplier"] = unit.ad_noise_multiplier
    if unit.ad_use_sampler and unit.ad_sampler != SAME_SAMPLER:
        s["sampler"] = unit.ad_sampler
        if unit.ad_scheduler != SAME_SCHEDULER:
            s["scheduler"] = unit.ad_scheduler
    return s


def pass_techniques(outside: list[Any], names: tuple[str, ...] = PASS_TECHNIQUES) -> list[Any]:
    """The caller's techniques that also act in the passes (ADetailer's script filter), never ADetailer itself."""
    from .technique import ADetailer

    return [t for t in outside if not isinstance(t, ADetailer) and getattr(t, "name", None) in names]


# --- the box: dynamic denoise and inpaint size matching (ADetailer's global options) ----------------------------

def dynamic_denoise_strength(strength: float, power: float, bbox: list[float], size: tuple[int, int]) -> float:
    """``strength · (1 − box area / image area) ** power`` (option "ad_dynamic_denoise_power"; 0 = off)."""
    if math.isclose(power, 0.0, abs_tol=1e-8) or len(bbox) != 4:
        return strength
    area = (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) / (size[0] * size[1])
    return strength * (1.0 - area) ** power


def matched_size(mode: str, width: int, height: int, bbox: list[float], *, sdxl: bool) -> tuple[int, int]:
    """Option "ad_match_inpaint_bbox_size": Off keeps width × height; Free gives the box's aspect at the long side
    (each side rounded up to a multiple of 8); Strict (SDXL only) the SDXL bucket nearest the box's aspect among
    those holding the box and reaching the size on one side (unchanged when none, or for other models)."""
    if mode not in MATCH_MODES:
        raise ValueError(f"unknown inpaint bbox size match mode {mode!r}; expected one of {', '.join(MATCH_MODES)}")
    if mode == "Off" or len(bbox) != 4:
        return width, height
    bw, bh = bbox[2] - bbox[0], bbox[3] - bbox[1]
    aspect = bw / bh
    if mode == "Free":
        side = max(width, height)
        w, h = (side, side / aspect) if aspect > 1 else (side * aspect, side)
        return int((w + 7) // 8 * 8), int((h + 7) // 8 * 8)
    if not sdxl:
        log.warning("ADetailer: strict inpaint bbox size matching is for SDXL only; keeping %dx%d", width, height)
        return width, height
    fits = [r for r in SDXL_BUCKETS if r[0] >= bw and r[1] >= bh and (r[0] >= width or r[1] >= height)]
    return min(fits, key=lambda r: abs(r[0] / r[1] - aspect)) if fits else (width, height)


# --- the pass's ControlNet unit (controlnet_ext.update_scripts_args) ---------------------------------------------

def controlnet_unit(unit: ADetailerUnit, controlnets: Mapping[str, Any] | None = None) -> Any:
    """The one ControlNet unit of a tab with a ControlNet model: the tab's module (or ADetailer's default for the
    model's kind), weight and window, Balanced, Pixel Perfect, no image of its own (the pass's image and mask, with
    A1111's resize mode of the pass: Just Resize). The model: a `controlnets` entry, else the file the name
    names (``name [hash]`` → ``name.safetensors`` in the working directory, as ``--from-png`` finds ControlNets).
    TechniqueError (one line) for a missing file or a preprocessor inpaintlab cannot run."""
    from ..controlnet.unit import ControlNetUnit, controlnet_path
    from ..errors import SettingsError

    name = unit.ad_controlnet_model
    model = (controlnets or {}).get(name)
    if model is None:
        path = controlnet_path(file_name(name))
        if not path.is_file():
            raise TechniqueError(f"ADetailer ControlNet model {name!r}: file not found at {path} (a name is looked "
                                 "up in the working directory; give the file's path)")
        model = path
    module = unit.controlnet_module or "none"  # a model of no known kind: the pass's image is the hint
    if module == "inpaint_only+lama":
        raise TechniqueError("ADetailer ControlNet module 'inpaint_only+lama' needs a LaMa model, which ADetailer "
                             "tabs cannot carry; use inpaint_global_harmonious or inpaint_only")
    try:
        return ControlNetUnit(model, preprocessor=module, weight=unit.ad_controlnet_weight,
                              guidance_start=unit.ad_controlnet_guidance_start,
                              guidance_end=unit.ad_controlnet_guidance_end, pixel_perfect=True)
    except (ValueError, SettingsError) as error:
        raise TechniqueError(f"ADetailer ControlNet module {module!r}: {error}") from None


def controlnet_label(value: str) -> str:
    """``ADetailer ControlNet model`` as ADetailer writes it: sd-webui-controlnet's list name ``stem [hash8]``
    (A1111's legacy hash) for a file path; a name (already ``name [hash]``, None, Passthrough) unchanged."""
    if value in ("None", "Passthrough") or _HASH.match(str(value)):
        return str(value)
    from ..checkpoint import legacy_model_hash
    from ..controlnet.unit import controlnet_path

    path = controlnet_path(str(value))  # a path, or a bare name of a file in the working directory
    if not path.is_file():
        return str(value)

    return f"{path.stem} [{legacy_model_hash(path)}]"


# --- the pass's checkpoint and VAE (override_settings sd_model_checkpoint / sd_vae) --------------------------------

def checkpoint_choice(unit: ADetailerUnit) -> str | None:
    c = unit.ad_checkpoint
    return c if unit.ad_use_checkpoint and c not in (None, "", "None", "Use same checkpoint") else None


def vae_choice(unit: ADetailerUnit) -> str | None:
    v = unit.ad_vae
    return v if unit.ad_use_vae and v not in (None, "", "Use same VAE") else None


def checkpoint_label(value: str) -> str:
    """``ADetailer checkpoint`` as A1111 titles a checkpoint: ``file.safetensors [sha256-10]`` for a file path."""
    path = Path(str(value))
    if _HASH.match(str(value)) or not path.is_file():
        return str(value)
    from ..checkpoint import short_hash

    return f"{path.name} [{short_hash(path)}]"


def _find(kind: str, name: str, given: Mapping[str, Any] | None) -> Any:
    if given and name in given:
        return given[name]
    path = Path(file_name(name))
    if not path.is_file():
        raise TechniqueError(f"ADetailer {kind} {name!r}: file not found at {path} (a name is looked up in the "
                             "working directory; give the file's path)")
    return path


def pass_pipeline(pipe: Any, unit: ADetailerUnit, cache: dict, *, checkpoints: Mapping[str, Any] | None = None,
                  vaes: Mapping[str, Any] | None = None) -> Any:
    """The pipeline a tab's passes run on: the main one, or (ad_use_checkpoint / ad_use_vae) one with the tab's
    checkpoint and/or VAE, loaded once per technique on the main pipeline's device, dtype and kernels. A VAE of
    "None" or "Automatic" means the checkpoint's own. `checkpoints` / `vaes` map names to files or loaded
    pipelines / VAE modules."""
    checkpoint, vae = checkpoint_choice(unit), vae_choice(unit)
    own_vae = vae in ("None", "Automatic")
    if checkpoint is None and (vae is None or (own_vae and pipe.config.vae_name is None)):
        return pipe
    key = (checkpoint, vae)
    if key in cache:
        return cache[key]
    if checkpoint is not None:
        found = _find("checkpoint", checkpoint, checkpoints)
        if isinstance(found, (str, Path)):
            from ..pipeline.load import load_like

            vae_file = None if vae is None or own_vae else _find("VAE", vae, vaes)
            out = load_like(pipe, found, vae=vae_file if isinstance(vae_file, (str, Path)) else None)
            if vae_file is not None and not isinstance(vae_file, (str, Path)):
                out = _with_vae(out, vae_file, vae)
        else:
            out = found if vae is None or own_vae else _with_vae(found, _find("VAE", vae, vaes), vae)
    elif own_vae:
        raise TechniqueError(f"ADetailer VAE {vae!r} (the checkpoint's own) with a main job on a separate VAE: "
                             "name the checkpoint too (ad_use_checkpoint / ad_checkpoint)")
    else:
        out = _with_vae(pipe, _find("VAE", vae, vaes), vae)
    cache[key] = out
    return out


def _with_vae(pipe: Any, vae: Any, name: str) -> Any:
    """A shallow copy of `pipe` decoding and encoding with another VAE (its UNet and text encoders shared)."""
    from ..checkpoint import load_vae_file, short_hash

    if isinstance(vae, (str, Path)):
        module = load_vae_file(vae, scale_factor=pipe.config.scale_factor, device=pipe.device,
                               dtype=next(pipe.vae.parameters()).dtype, kernels=getattr(pipe.unet, "kernels", "auto"))
        label, digest = Path(vae).name, short_hash(vae)
    else:
        module, label, digest = vae, Path(str(name)).name, None
    out = copy.copy(pipe)
    out.vae = module
    out.config = dataclasses.replace(pipe.config, vae_name=label, vae_hash=digest)
    return out
