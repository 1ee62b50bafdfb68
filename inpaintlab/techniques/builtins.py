"""The built-in techniques in the order the pipeline asks them (`builtin`): a default one only where no other
technique takes its slot."""
from __future__ import annotations

from ..adetailer.technique import ADetailer
from ..guidance.cfg_techniques import PAG, CFGRescale, DynamicThresholdingTechnique, SkipUncond
from ..guidance.unet_techniques import SEG, FreeU, TokenMerging
from ..pipeline.job import Job
from ..pipeline.technique import Technique
from ..refiner.technique import Refiner
from .blend import BinaryBlend
from .color_correction import ColorCorrection
from .controlnet import ControlNet
from .differential import DifferentialDiffusion
from .extra_noise import ExtraNoise
from .hires import HiresFix
from .lora import Networks
from .noise_multiplier import NoiseMultiplier
from .soft import SoftInpainting

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
