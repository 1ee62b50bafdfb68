"""The built-in techniques, each a `inpaintlab.pipeline.Technique` in its own module (read any one alone):

* `lora.Networks`: LoRA / LyCORIS prompt tags (always active);
* `controlnet.ControlNet`: ControlNet units (when the call names any);
* `soft.SoftInpainting`, `differential.DifferentialDiffusion`: blends in place of the binary one (their settings);
* `blend.BinaryBlend`: A1111's binary inpaint blend, the default of the blend slot;
* `inpaintlab.adetailer.ADetailer`: ADetailer's tab 1 (when `ad_model` names a detector).
"""
from __future__ import annotations

from ..pipeline.job import Job
from ..pipeline.technique import Technique
# Imported in the order their settings rows appear in the registry (CLI help, sweep names).
from .soft import SoftInpainting  # noqa: I001
from .differential import DifferentialDiffusion
from .controlnet import ControlNet
from .lora import Networks
from .blend import BinaryBlend
from ..adetailer.technique import ADetailer

BUILTIN = (Networks, ControlNet, SoftInpainting, DifferentialDiffusion, BinaryBlend, ADetailer)


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


__all__ = ["ADetailer", "BUILTIN", "BinaryBlend", "ControlNet", "DifferentialDiffusion", "Networks", "SoftInpainting", "builtin"]
