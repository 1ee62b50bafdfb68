"""A1111's img2img scripts: SD upscale and Loopback (through `Pipeline.img2img`), and the outpainting scripts' own
computations (the canvas and Outpainting mk2's matched noise)."""
from .._lazy import lazy_package

# Imported on first use: the command line's parser needs none of them.
lazy_package(__name__, {
    **dict.fromkeys(("CURVES", "ScriptError", "insert_keys", "loopback", "loopback_strengths", "sd_upscale"), ".img2img"),
    **dict.fromkeys(("DIRECTIONS", "Expansion", "OutpaintError", "expansion", "match_histograms", "matched_noise"),
                    ".outpainting"),
})

__all__ = ["CURVES", "DIRECTIONS", "Expansion", "OutpaintError", "ScriptError", "expansion", "insert_keys", "loopback",
           "loopback_strengths", "match_histograms", "matched_noise", "sd_upscale"]
