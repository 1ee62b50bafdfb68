"""A1111's img2img scripts: SD upscale and Loopback (through `Pipeline.img2img`), Poor man's outpainting and
Outpainting mk2 (through `Pipeline.inpaint`), and the outpainting scripts' own computations (the canvas, the masks and
Outpainting mk2's matched noise). The scripts' arguments are in `rows` (standard library only)."""
from .._lazy import lazy_package

# Imported on first use: the command line's parser and sweep specs need only `rows`.
lazy_package(__name__, {
    **dict.fromkeys(("ScriptError", "insert_keys", "loopback", "loopback_strengths", "sd_upscale"), ".img2img"),
    **dict.fromkeys(("Expansion", "OutpaintError", "expansion", "match_histograms", "matched_noise"), ".outpainting"),
    **dict.fromkeys(("CURVES", "DIRECTIONS", "FILL_CHOICES", "SCRIPTS", "ScriptArg", "script_args"), ".rows"),
    "run_script": ".run",
    **dict.fromkeys(("ScriptMasks", "mk2_inputs", "mk2_latent_mask", "outpainting_mk2", "poor_mans_canvas",
                     "poor_mans_outpainting"), ".outpaint_run"),
})

__all__ = ["CURVES", "DIRECTIONS", "Expansion", "FILL_CHOICES", "OutpaintError", "ScriptError", "ScriptMasks", "expansion",
           "insert_keys", "loopback", "loopback_strengths", "match_histograms", "matched_noise", "mk2_inputs",
           "mk2_latent_mask", "outpainting_mk2", "poor_mans_canvas", "poor_mans_outpainting", "run_script",
           "SCRIPTS", "ScriptArg", "script_args", "sd_upscale"]
