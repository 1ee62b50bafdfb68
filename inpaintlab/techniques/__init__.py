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

Their settings rows are in `rows`, `controlnet_rows`, `noise_rows`, `color_rows` and `hires_rows` (no torch: the
registry loads them); `builtins.builtin` picks a job's techniques. This package imports each on first use, so that the
registry can load the rows modules without torch.
"""
from .._lazy import lazy_package

lazy_package(__name__, {
    "ADetailer": "inpaintlab.adetailer.technique", "BUILTIN": ".builtins", "BinaryBlend": ".blend",
    "ColorCorrection": ".color_correction", "ControlNet": ".controlnet", "DifferentialDiffusion": ".differential",
    "ExtraNoise": ".extra_noise", "HiresFix": ".hires", "Networks": ".lora", "NoiseMultiplier": ".noise_multiplier",
    "Refiner": "inpaintlab.refiner.technique", "SoftInpainting": ".soft", "builtin": ".builtins",
})

__all__ = ["ADetailer", "BUILTIN", "BinaryBlend", "ColorCorrection", "ControlNet", "DifferentialDiffusion", "ExtraNoise",
           "HiresFix", "Networks", "NoiseMultiplier", "Refiner", "SoftInpainting", "builtin"]
