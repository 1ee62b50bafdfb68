"""A1111's img2img scripts: SD upscale and Loopback (through `Pipeline.img2img`), Poor man's outpainting and
Outpainting mk2 (through `Pipeline.inpaint`), and the outpainting scripts' own computations (the canvas, the masks and
Outpainting mk2's matched noise)."""
from .img2img import CURVES, ScriptError, insert_keys, loopback, loopback_strengths, sd_upscale
from .outpainting import DIRECTIONS, Expansion, OutpaintError, expansion, match_histograms, matched_noise
from .rows import SCRIPTS, ScriptArg, script_args
from .run import run_script
from .outpaint_run import (FILL_CHOICES, ScriptMasks, mk2_inputs, mk2_latent_mask, outpainting_mk2, poor_mans_canvas,
                           poor_mans_outpainting)

__all__ = ["CURVES", "DIRECTIONS", "Expansion", "FILL_CHOICES", "OutpaintError", "ScriptError", "ScriptMasks", "expansion",
           "insert_keys", "loopback", "loopback_strengths", "match_histograms", "matched_noise", "mk2_inputs",
           "mk2_latent_mask", "outpainting_mk2", "poor_mans_canvas", "poor_mans_outpainting", "run_script",
           "SCRIPTS", "ScriptArg", "script_args", "sd_upscale"]
