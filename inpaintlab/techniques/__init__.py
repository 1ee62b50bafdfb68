"""The built-in techniques, each a `inpaintlab.pipeline.Technique` in its own module (read any one alone):

* `lora.Networks`: LoRA / LyCORIS prompt tags (always active);
* `extra_noise.ExtraNoise`: A1111's extra noise for img2img and the hires pass (when > 0);
* `hires.HiresFix`: A1111's txt2img hires fix (enable_hr);
* `inpaintlab.refiner.technique.Refiner`: A1111's refiner (refiner_checkpoint, refiner_switch_at);
* `noise_multiplier.NoiseMultiplier`: A1111's img2img noise multiplier (when not 1);
* `color_correction.ColorCorrection`: A1111's img2img colour correction (`color_correction`, row in `color_rows`);
* `controlnet.ControlNet`: ControlNet units (when the call names any);
* `soft.SoftInpainting`, `differential.DifferentialDiffusion`: blends in place of the binary one (their settings);
* `blend.BinaryBlend`: A1111's binary inpaint blend, the default of the blend slot;
* from `inpaintlab.guidance` (their rows in `guidance.rows`): FreeU, token merging, SEG (UNet level), NGMS / Skip
  Early CFG, PAG, dynamic thresholding, CFG rescale (CFG level).
"""
from __future__ import annotations

from ..guidance.cfg_techniques import PAG, CFGRescale, DynamicThresholdingTechnique, SkipUncond
from ..guidance.rows import register_rows
from ..guidance import tome_rows  # noqa: F401  (token_merging_ratio_hr)
from ..guidance.unet_techniques import SEG, FreeU, TokenMerging
from ..pipeline.job import Job
from ..pipeline.technique import Technique
# Imported in the order their settings rows appear in the registry (CLI help, sweep names).
from .soft import SoftInpainting  # noqa: I001
from .differential import DifferentialDiffusion
from .controlnet import ControlNet
from .lora import Networks
from .blend import BinaryBlend
from .noise_multiplier import NoiseMultiplier
from .extra_noise import ExtraNoise
from .color_correction import ColorCorrection
from .hires import HiresFix
from ..refiner.technique import Refiner
from ..adetailer.technique import ADetailer

register_rows()
BUILTIN = (Networks, ControlNet, NoiseMultiplier, ExtraNoise, ColorCorrection, HiresFix, Refiner, FreeU, TokenMerging,
           SEG, SkipUncond, PAG, DynamicThresholdingTechnique, CFGRescale, SoftInpainting, DifferentialDiffusion,
           BinaryBlend, ADetailer)


def builtin(job: Job, outside: list[Technique]) -> list[Technique]:
    """The built-in techniques this job uses; a default one only where no other technique takes its slot."""
    found: list[Technique] = []
    for cls in BUILTIN:
        technique = cls.for_job(job)
        if technique is None:
            continue
        if getattr(technique, "default", False) and any(t.slot == technique.slot for t in [*found, *outside]):
            continue
        found.append(technique)
    return found


__all__ = ["ADetailer", "BUILTIN", "BinaryBlend", "ColorCorrection", "ControlNet", "DifferentialDiffusion", "ExtraNoise",
           "HiresFix", "Networks", "NoiseMultiplier", "Refiner", "SoftInpainting", "builtin"]
