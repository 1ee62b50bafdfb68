"""A1111's img2img scripts' own computations (the outpainting canvas and Outpainting mk2's matched noise)."""
from .outpainting import DIRECTIONS, Expansion, OutpaintError, expansion, match_histograms, matched_noise

__all__ = ["DIRECTIONS", "Expansion", "OutpaintError", "expansion", "match_histograms", "matched_noise"]
