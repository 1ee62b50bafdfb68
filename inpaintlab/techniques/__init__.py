"""The built-in techniques, each a `inpaintlab.pipeline.Technique` in its own module (read any one alone):

* `lora.Networks`: LoRA / LyCORIS prompt tags (always active);
* `extra_noise.ExtraNoise`: A1111's extra noise for img2img and the hires pass (when > 0);
* `hires.HiresFix`: A1111's txt2img hires fix (enable_hr);
* `noise_multiplier.NoiseMultiplier`: A1111's img2img noise multiplier (when not 1);
* `controlnet.ControlNet`: ControlNet units (when the call names any);
* `soft.SoftInpainting`, `differential.DifferentialDiffusion`: blends in place of the binary one (their settings);
* `blend.BinaryBlend`: A1111's binary inpaint blend, the default of the blend slot;
* from `inpaintlab.guidance` (their rows in `guidance.rows`): FreeU, token merging, SEG (UNet level), NGMS / Skip
  Early CFG, PAG, dynamic thresholding, CFG rescale (CFG level).

Their settings rows are in `rows` (no torch: the registry loads it); `builtins.builtin` picks a job's techniques.
This package imports each on first use, so that the registry can load `rows` without torch.
"""
from .._lazy import lazy_package

lazy_package(__name__, {
    "ADetailer": "inpaintlab.adetailer.technique", "BUILTIN": ".builtins", "BinaryBlend": ".blend",
    "ControlNet": ".controlnet", "DifferentialDiffusion": ".differential", "ExtraNoise": ".extra_noise",
    "HiresFix": ".hires", "Networks": ".lora", "NoiseMultiplier": ".noise_multiplier", "SoftInpainting": ".soft",
    "builtin": ".builtins",
})

__all__ = ["ADetailer", "BUILTIN", "BinaryBlend", "ControlNet", "DifferentialDiffusion", "ExtraNoise", "HiresFix", "Networks",
           "NoiseMultiplier", "SoftInpainting", "builtin"]
