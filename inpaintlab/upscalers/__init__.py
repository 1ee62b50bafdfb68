"""Image upscaler networks from raw files, run the way A1111 v1.10 runs them.

    model = inpaintlab.upscalers.load("RealESRGAN_x4plus.pth")
    big = inpaintlab.upscalers.upscale(image, 2.0, model)            # A1111's Upscaler.upscale (tiling, BGR, Lanczos)
    ups = inpaintlab.upscalers.UpscalerDir("models")                 # A1111 names: ups.load("R-ESRGAN 4x+")
"""
from .._lazy import lazy_package

# Imported on first use: the command line's parser needs none of them.
lazy_package(__name__, {
    "UpscalerError": ".errors", "UpscalerModel": ".load", "canonical_state_dict": ".load", "detect_architecture": ".load",
    "load": ".load", "KNOWN_FILES": ".names", "UpscalerDir": ".names",
    **dict.fromkeys(("BUILTIN", "Tiling", "model_pass", "resize_image", "upscale"), ".scale"),
})

__all__ = ["BUILTIN", "KNOWN_FILES", "Tiling", "UpscalerDir", "UpscalerError", "UpscalerModel", "canonical_state_dict",
           "detect_architecture", "load", "model_pass", "resize_image", "upscale"]
