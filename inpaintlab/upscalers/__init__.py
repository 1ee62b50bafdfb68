"""Image upscaler networks from raw files, run the way A1111 v1.10 runs them.

    model = inpaintlab.upscalers.load("RealESRGAN_x4plus.pth")
    big = inpaintlab.upscalers.upscale(image, 2.0, model)            # A1111's Upscaler.upscale (tiling, BGR, Lanczos)
    ups = inpaintlab.upscalers.UpscalerDir("models")                 # A1111 names: ups.load("R-ESRGAN 4x+")
"""
from .errors import UpscalerError
from .load import UpscalerModel, canonical_state_dict, detect_architecture, load
from .names import KNOWN_FILES, UpscalerDir
from .scale import BUILTIN, Tiling, model_pass, resize_image, upscale

__all__ = ["BUILTIN", "KNOWN_FILES", "Tiling", "UpscalerDir", "UpscalerError", "UpscalerModel", "canonical_state_dict",
           "detect_architecture", "load", "model_pass", "resize_image", "upscale"]
