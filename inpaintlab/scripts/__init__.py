"""A1111's img2img scripts: SD upscale and Loopback (through `Pipeline.img2img`), and the outpainting scripts' own
computations (the canvas and Outpainting mk2's matched noise)."""
from .img2img import CURVES, ScriptError, insert_keys, loopback, loopback_strengths, sd_upscale
from .outpainting import DIRECTIONS, Expansion, OutpaintError, expansion, match_histograms, matched_noise

__all__ = ["CURVES", "DIRECTIONS", "Expansion", "OutpaintError", "ScriptError", "expansion", "insert_keys", "loopback",
           "loopback_strengths", "match_histograms", "matched_noise", "sd_upscale"]
